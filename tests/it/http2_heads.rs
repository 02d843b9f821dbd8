//! HTTP/2 clients that send their request heads slowly or go silent, spoken frame by frame:
//! hyper bounds neither, so the bridge's own header read timeout must.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{basic_auth_header, TestApp, STATUS};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const DATA: u8 = 0x0;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;

/// A frame: its 9-byte header (RFC 9113, 4.1), then `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small").to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A header block of literal fields without indexing, names and values as they are (RFC 7541,
/// 6.2.2: no Huffman coding, lengths below 127).
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0);
        for s in [name, value] {
            block.push(u8::try_from(s.len()).expect("short"));
            block.extend_from_slice(s.as_bytes());
        }
    }
    block
}

/// The frames of one authenticated webhook on `stream`.
fn webhook(stream: u32) -> Vec<u8> {
    let auth = basic_auth_header();
    let block = header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/webhook"),
        (":authority", "127.0.0.1"),
        ("authorization", &auth),
        ("content-type", "application/json"),
    ]);
    let mut frames = frame(HEADERS, END_HEADERS, stream, &block);
    frames.extend(frame(DATA, END_STREAM, stream, STATUS));
    frames
}

/// The next frame: its type, stream and payload.
async fn next_frame(s: &mut TcpStream) -> (u8, u32, Vec<u8>) {
    frame_or_close(s).await.expect("a frame")
}

/// The next frame, or `None` once the server has closed (or reset) the connection.
async fn frame_or_close(s: &mut TcpStream) -> Option<(u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    let on = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], on, payload))
}

/// Reads frames until the answer's head on `stream` and returns its first byte: HPACK's
/// indexed `:status 200` is 0x88.
async fn answer_head(s: &mut TcpStream, stream: u32) -> u8 {
    loop {
        let (kind, on, payload) = next_frame(s).await;
        if kind == HEADERS && on == stream {
            return payload[0];
        }
    }
}

/// A connection whose client sent HTTP/2's preface, its settings and one webhook, answered 200.
async fn answered_once(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut start = PREFACE.to_vec();
    start.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    start.extend(webhook(1));
    s.write_all(&start).await.expect("send");
    assert_eq!(answer_head(&mut s, 1).await, 0x88, ":status 200");
    s
}

/// A client that had a webhook answered 200 (and so may wait the idle timeout, 75 s) then sends
/// one HEADERS frame a byte every half second: held to the header read timeout, not until a ping
/// goes unanswered (~40 s) or the idle timeout; before, it also held a shutdown's drain for its
/// whole grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_head_sent_slowly_on_a_kept_alive_connection_is_cut_at_the_header_read_timeout() {
    let app = TestApp::start(&["--header-read-timeout", "2s"]).await;
    let mut s = answered_once(app.addr).await;

    let slow = frame(
        HEADERS,
        END_HEADERS,
        3,
        &header_block(&[(":method", "POST")]),
    );
    let began = Instant::now();
    let mut cut = false;
    for byte in slow {
        if s.write_all(&[byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if began.elapsed() > Duration::from_secs(12) {
            break;
        }
    }
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
    let closed = cut || matches!(read, Ok(Ok(_)) | Ok(Err(_)));
    assert!(
        closed && began.elapsed() < Duration::from_secs(10),
        "the connection was still open {:?} into a head sent slowly",
        began.elapsed()
    );
}

/// A client that had a webhook answered 200 (and so may wait the idle timeout, 75 s), then goes
/// silent: it never answers the ping that follows the shutdown's GOAWAY, as one that vanished
/// without closing would not. Its connection is dropped a header read timeout later, not held
/// to the end of the shutdown grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_http2_client_holds_a_shutdown_for_a_header_read_timeout_not_the_whole_grace() {
    let mut app = TestApp::start(&["--header-read-timeout", "1s", "--shutdown-grace", "60s"]).await;
    let s = answered_once(app.addr).await;
    let began = Instant::now();
    app.trigger_shutdown();
    app.wait_stopped(Duration::from_secs(20)).await;
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "the shutdown took {:?}",
        began.elapsed()
    );
    drop(s);
}

/// A client that had been quiet longer than the header read timeout when the shutdown began sends
/// its next webhook before the GOAWAY reaches it (a round trip later here: hyper's first GOAWAY
/// still takes every stream), then answers the GOAWAY's ping: its webhook is answered, not cut
/// off with the connection (its client could not have told whether it was taken).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_sent_before_the_shutdowns_goaway_arrived_is_answered() {
    let mut app = TestApp::start(&["--header-read-timeout", "2s", "--shutdown-grace", "60s"]).await;
    let mut s = answered_once(app.addr).await;
    // The connection's checks come every 2 s from its opening: the shutdown just before one,
    // where a connection judged by how long it has been quiet is dropped at once.
    tokio::time::sleep(Duration::from_millis(3900)).await;
    app.trigger_shutdown();
    let (mut goaway, mut ping) = (false, None);
    while !goaway || ping.is_none() {
        match next_frame(&mut s).await {
            (GOAWAY, 0, _) => goaway = true,
            (PING, 0, payload) => ping = Some(payload),
            _ => {}
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut late = webhook(3);
    late.extend(frame(PING, ACK, 0, &ping.expect("a ping")));
    s.write_all(&late).await.expect("send");
    assert_eq!(answer_head(&mut s, 3).await, 0x88, ":status 200");
    drop(s);
    app.wait_stopped(Duration::from_secs(20)).await;
}

/// A head begun and never finished is dropped when the header read timeout ends: there is
/// nothing to answer, so it is not first told to close (GOAWAY) and then dropped a check later,
/// which held a slowloris for twice the timeout (found by mutation testing: handling a slow head
/// as an idle connection went unnoticed, the test above allowing 10 s for a 2 s timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_head_never_finished_is_dropped_at_the_header_read_timeout_not_a_check_later() {
    let app = TestApp::start(&["--header-read-timeout", "3s"]).await;
    let mut s = answered_once(app.addr).await;
    // A whole frame header and the first byte of its header block: the head has begun.
    let head = frame(
        HEADERS,
        END_HEADERS,
        3,
        &header_block(&[(":method", "POST")]),
    );
    s.write_all(&head[..10]).await.expect("send");
    let began = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while frame_or_close(&mut s).await.is_some() {}
    })
    .await;
    let took = began.elapsed();
    assert!(
        read.is_ok(),
        "still open {took:?} into a head never finished"
    );
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_millis(4500),
        "dropped {took:?} into a head never finished, not at the 3 s header read timeout"
    );
}

/// A kept-alive connection told to close at its idle timeout whose client neither answers the
/// GOAWAY's ping nor closes (one that vanished without a FIN) is dropped a check later (the header
/// read timeout, 1 s here), not after a second idle timeout: such peers would otherwise hold
/// their connection slots twice as long (found by mutation testing: waiting the idle timeout
/// again went unnoticed, the idle test's two timeouts being equal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_client_that_ignores_the_goaway_is_dropped_a_check_after_it() {
    let app = TestApp::start(&["--header-read-timeout", "1s", "--idle-timeout", "4s"]).await;
    let mut s = answered_once(app.addr).await;
    let answered = Instant::now();
    let mut goaway = None;
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some((kind, _, _)) = frame_or_close(&mut s).await {
            if kind == GOAWAY && goaway.is_none() {
                goaway = Some(answered.elapsed());
            }
        }
    })
    .await;
    let closed = answered.elapsed();
    assert!(read.is_ok(), "still open {closed:?} after its answer");
    let goaway = goaway.expect("told to close with GOAWAY before the close");
    assert!(
        goaway >= Duration::from_millis(3500),
        "told to close {goaway:?} after its answer, before the idle timeout"
    );
    assert!(
        closed - goaway < Duration::from_millis(2500),
        "dropped {:?} after its GOAWAY, not a check (1 s) later",
        closed - goaway
    );
}

/// A client told to close at its idle timeout may still send a webhook, taken by hyper's first
/// GOAWAY; answered, it earns no new idle wait: if it then neither answers the GOAWAY's ping nor
/// closes, it is dropped a check (the header read timeout, 1 s here) after that answer, not after
/// the idle timeout again (found by mutation testing: telling the connection's clock nothing of
/// the close it was told went unnoticed, a silent client being dropped in time either way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answered_after_an_idle_goaway_earns_no_new_idle_wait() {
    let app = TestApp::start(&["--header-read-timeout", "1s", "--idle-timeout", "6s"]).await;
    let mut s = answered_once(app.addr).await;
    let told = tokio::time::timeout(Duration::from_secs(20), async {
        while next_frame(&mut s).await.0 != GOAWAY {}
    })
    .await;
    assert!(told.is_ok(), "not told to close at the idle timeout");
    s.write_all(&webhook(3)).await.expect("send");
    assert_eq!(answer_head(&mut s, 3).await, 0x88, ":status 200");
    let answered = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while frame_or_close(&mut s).await.is_some() {}
    })
    .await;
    let closed = answered.elapsed();
    assert!(read.is_ok(), "still open {closed:?} after its answer");
    assert!(
        closed < Duration::from_millis(3500),
        "dropped {closed:?} after its answer, not a check (1 s) later"
    );
}
