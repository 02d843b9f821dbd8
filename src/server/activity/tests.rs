//! The three waits of a connection, judged on tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Activity, Limits, OpenRequest, Verdict, Watched};

const LIMITS: Limits = Limits {
    header_read: Duration::from_secs(5),
    idle: Duration::from_secs(75),
};

async fn advance(by: Duration) {
    tokio::time::advance(by).await;
}

/// A connection: what its client writes is read through [`Watched`], one read a chunk.
struct Connection {
    client: tokio::io::DuplexStream,
    server: Watched<tokio::io::DuplexStream>,
}

impl Connection {
    fn new(activity: &Arc<Activity>) -> Connection {
        let (client, server) = tokio::io::duplex(1024);
        Connection {
            client,
            server: Watched::new(server, activity.clone()),
        }
    }

    async fn send(&mut self, chunks: &[&[u8]]) {
        for chunk in chunks {
            self.client.write_all(chunk).await.expect("write");
            let mut buf = [0u8; 64];
            let n = self.server.read(&mut buf).await.expect("read");
            assert_eq!(n, chunk.len());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_connection_that_sends_nothing_gets_the_header_read_timeout_not_the_idle_one() {
    let activity = Activity::default();
    advance(Duration::from_secs(4)).await;
    assert_eq!(
        activity.verdict(LIMITS),
        Verdict::Wait(Duration::from_secs(1))
    );
    advance(Duration::from_secs(1)).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Idle);
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_may_wait_the_idle_timeout_for_its_next_request() {
    let activity = Arc::new(Activity::default());
    OpenRequest::started(activity.clone()).answered(true);
    advance(Duration::from_secs(60)).await;
    // Looked at again within the header read timeout, in case a head begins meanwhile.
    assert_eq!(activity.verdict(LIMITS), Verdict::Wait(LIMITS.header_read));
    advance(Duration::from_secs(12)).await;
    assert_eq!(
        activity.verdict(LIMITS),
        Verdict::Wait(Duration::from_secs(3))
    );
    advance(Duration::from_secs(3)).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Idle);
}

#[tokio::test(start_paused = true)]
async fn an_open_request_is_never_judged_however_long_it_takes() {
    let activity = Arc::new(Activity::default());
    let open = OpenRequest::started(activity.clone());
    advance(Duration::from_secs(600)).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Wait(LIMITS.header_read));
    open.answered(true);
    advance(Duration::from_secs(74)).await;
    assert!(matches!(activity.verdict(LIMITS), Verdict::Wait(_)));
}

#[tokio::test(start_paused = true)]
async fn a_head_begun_after_an_idle_wait_must_be_whole_within_the_header_read_timeout() {
    let activity = Arc::new(Activity::default());
    let mut conn = Connection::new(&activity);
    OpenRequest::started(activity.clone()).answered(true);
    advance(Duration::from_secs(30)).await;
    conn.send(&[b"POST /webhook HTTP/1.1\r\n"]).await;
    advance(Duration::from_secs(4)).await;
    assert_eq!(
        activity.verdict(LIMITS),
        Verdict::Wait(Duration::from_secs(1))
    );
    // More of the same head does not restart the clock.
    conn.send(&[b"host: x\r\n"]).await;
    advance(Duration::from_secs(1)).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::SlowHead);
}

#[tokio::test(start_paused = true)]
async fn a_head_that_becomes_a_request_in_time_clears_the_head_clock() {
    let activity = Arc::new(Activity::default());
    let mut conn = Connection::new(&activity);
    conn.send(&[b"POST /webhook HTTP/1.1\r\n"]).await;
    advance(Duration::from_secs(4)).await;
    let open = OpenRequest::started(activity.clone());
    // Its body, read while the request is open, starts no head.
    conn.send(&[b"{\"a\":1}"]).await;
    open.answered(true);
    advance(Duration::from_secs(70)).await;
    assert_eq!(
        activity.verdict(LIMITS),
        Verdict::Wait(Duration::from_secs(5))
    );
}

#[tokio::test(start_paused = true)]
async fn http2_frames_between_requests_start_no_head_even_when_the_preface_comes_split() {
    let activity = Arc::new(Activity::default());
    let mut conn = Connection::new(&activity);
    conn.send(&[b"P", b"RI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]).await;
    OpenRequest::started(activity.clone()).answered(true);
    // A PING frame's bytes, long after the last stream ended.
    advance(Duration::from_secs(30)).await;
    conn.send(&[&[0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]])
        .await;
    advance(Duration::from_secs(42)).await;
    assert_eq!(
        activity.verdict(LIMITS),
        Verdict::Wait(Duration::from_secs(3))
    );
}

#[tokio::test(start_paused = true)]
async fn an_http1_client_whose_first_byte_is_p_is_not_taken_for_http2() {
    let activity = Arc::new(Activity::default());
    let mut conn = Connection::new(&activity);
    OpenRequest::started(activity.clone()).answered(true);
    conn.send(&[b"P", b"OST /webhook HTTP/1.1\r\n"]).await;
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::SlowHead);
}

/// hyper-util takes a connection for HTTP/2 only by the whole preface; any token is a method.
#[tokio::test(start_paused = true)]
async fn an_http1_method_that_begins_with_pri_is_not_taken_for_http2() {
    for start in [
        &b"PRIX /webhook HTTP/1.1\r\n"[..],
        b"PRI /webhook HTTP/1.1\r\n",
    ] {
        let activity = Arc::new(Activity::default());
        let mut conn = Connection::new(&activity);
        OpenRequest::started(activity.clone()).answered(true);
        // Read as HTTP/2, these bytes would make a whole frame header, and no head.
        conn.send(&[start, b"X-a: trickled"]).await;
        advance(LIMITS.header_read).await;
        assert_eq!(activity.verdict(LIMITS), Verdict::SlowHead);
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_whose_last_answer_was_a_refusal_gets_the_header_read_timeout() {
    let activity = Arc::new(Activity::default());
    OpenRequest::started(activity.clone()).answered(true);
    OpenRequest::started(activity.clone()).answered(false);
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Idle);
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 frame header: `len` bytes of payload, of type `kind`, with `flags`, on stream 1.
fn frame_header(len: u8, kind: u8, flags: u8) -> [u8; 9] {
    [0, 0, len, kind, flags, 0, 0, 0, 1]
}

/// A connection that began HTTP/2 and had one request answered to an authenticated sender, so
/// that it may wait the idle timeout; then 30 s of quiet.
async fn kept_alive_http2() -> (Arc<Activity>, Connection) {
    let activity = Arc::new(Activity::default());
    let mut conn = Connection::new(&activity);
    conn.send(&[PREFACE]).await;
    OpenRequest::started(activity.clone()).answered(true);
    advance(Duration::from_secs(30)).await;
    (activity, conn)
}

/// A client's first write is often its preface, its settings and its first request together,
/// read in one: the frames after the preface in that read are followed too, so a first head
/// begun there and never finished is dropped at the header read timeout, not told to close and
/// dropped a check later (found by mutation testing: dropping the rest of the preface's read went
/// unnoticed, every test sending the preface alone).
#[tokio::test(start_paused = true)]
async fn http2_frames_read_with_the_preface_are_followed_too() {
    let activity = Arc::new(Activity::default());
    let mut conn = Connection::new(&activity);
    conn.send(&[&[PREFACE, &frame_header(20, 1, 0x4), b"some"].concat()])
        .await;
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::SlowHead);
}

/// hyper bounds no HTTP/2 head: one HEADERS frame sent a byte at a time was held for the idle
/// timeout (or until a ping went unanswered), and held a shutdown's drain for its whole grace.
#[tokio::test(start_paused = true)]
async fn an_http2_header_block_begun_after_an_idle_wait_must_be_whole_within_the_header_read_timeout(
) {
    let (activity, mut conn) = kept_alive_http2().await;
    conn.send(&[&frame_header(20, 1, 0x4), b"some"]).await;
    advance(Duration::from_secs(4)).await;
    assert_eq!(
        activity.verdict(LIMITS),
        Verdict::Wait(Duration::from_secs(1))
    );
    conn.send(&[b"more"]).await;
    advance(Duration::from_secs(1)).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::SlowHead);
}

/// Its type is the frame header's fourth byte: a frame header itself sent slowly is a head too.
#[tokio::test(start_paused = true)]
async fn an_http2_frame_header_sent_slowly_is_held_to_the_header_read_timeout() {
    let (activity, mut conn) = kept_alive_http2().await;
    conn.send(&[&[0, 0]]).await;
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::SlowHead);
}

/// A header block ends with the frame that has `END_HEADERS`, a HEADERS or a CONTINUATION, once
/// its payload is whole; other frames between requests (a PING here) start no head.
#[tokio::test(start_paused = true)]
async fn an_http2_header_block_whole_in_time_clears_the_head_clock() {
    let (activity, mut conn) = kept_alive_http2().await;
    conn.send(&[
        &frame_header(3, 1, 0),
        b"abc",
        &frame_header(2, 9, 0x4),
        b"d",
    ])
    .await;
    advance(Duration::from_secs(4)).await;
    conn.send(&[b"e"]).await;
    let open = OpenRequest::started(activity.clone());
    open.answered(true);
    conn.send(&[&frame_header(8, 6, 0), b"12345678"]).await;
    advance(Duration::from_secs(70)).await;
    assert_eq!(
        activity.verdict(LIMITS),
        Verdict::Wait(Duration::from_secs(5))
    );
}

/// hyper may read the next frame's first bytes together with the end of a request's head, and
/// start that request after: starting it must not clear the clock of the head now arriving.
#[tokio::test(start_paused = true)]
async fn an_http2_request_started_after_the_next_head_began_leaves_that_heads_clock_running() {
    let (activity, mut conn) = kept_alive_http2().await;
    conn.send(&[&[&frame_header(1, 1, 0x5)[..], b"x", &[0, 0, 9]].concat()])
        .await;
    OpenRequest::started(activity.clone()).answered(true);
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::SlowHead);
}

/// A HEADERS frame with `END_HEADERS` is a whole head once its payload is in: nothing is left
/// arriving to be held to the header read timeout.
#[tokio::test(start_paused = true)]
async fn an_http2_headers_frame_with_end_headers_is_a_whole_head_once_its_payload_is_in() {
    let (activity, mut conn) = kept_alive_http2().await;
    conn.send(&[&frame_header(3, 1, 0x4), b"abc"]).await;
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Wait(LIMITS.header_read));
}

/// A HEADERS frame without `END_HEADERS` leaves its block open for CONTINUATIONs, however whole
/// the frame itself is.
#[tokio::test(start_paused = true)]
async fn an_http2_headers_frame_without_end_headers_leaves_the_head_arriving() {
    let (activity, mut conn) = kept_alive_http2().await;
    conn.send(&[&frame_header(3, 1, 0), b"abc"]).await;
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::SlowHead);
}

/// TCP may split a frame header anywhere: its rest and what follows, read together, are
/// followed as one frame header and then its payload.
#[tokio::test(start_paused = true)]
async fn an_http2_frame_header_split_across_reads_is_followed_into_its_payload() {
    let (activity, mut conn) = kept_alive_http2().await;
    let header = frame_header(3, 1, 0x4);
    conn.send(&[&header[..2], &[&header[2..], b"abc"].concat()])
        .await;
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Wait(LIMITS.header_read));
}

/// The wrapper only watches reads: what the server writes, however written, and its close reach
/// the client unchanged.
#[tokio::test(start_paused = true)]
async fn what_the_server_writes_and_its_close_reach_the_client_unchanged() {
    let activity = Arc::new(Activity::default());
    let Connection {
        mut client,
        mut server,
    } = Connection::new(&activity);
    server
        .write_all(b"HTTP/1.1 200 OK\r\n")
        .await
        .expect("write");
    let rest: [&[u8]; 2] = [b"content-length: 0\r\n", b"\r\n"];
    let slices = rest.map(std::io::IoSlice::new);
    let n = server.write_vectored(&slices).await.expect("write");
    assert!(n > 0, "nothing written");
    server.write_all(&rest.concat()[n..]).await.expect("write");
    server.flush().await.expect("flush");
    server.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(1), client.read_to_end(&mut got))
        .await
        .expect("the close reaches the client")
        .expect("read");
    assert_eq!(got, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
}

/// hyper writes an answer's head and body in one call only when the socket says it can: the
/// wrapper says what its socket says (found by mutation testing: `false` went unnoticed).
#[tokio::test]
async fn the_wrapper_writes_vectored_when_its_socket_does() {
    let activity = Arc::new(Activity::default());
    let Connection { server, .. } = Connection::new(&activity);
    assert!(server.is_write_vectored());
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_told_to_close_may_stay_only_a_check_longer_not_the_idle_timeout() {
    let activity = Arc::new(Activity::default());
    OpenRequest::started(activity.clone()).answered(true);
    advance(Duration::from_secs(60)).await;
    // A whole check from when it was told, though it has been quiet longer: the client may have
    // sent a request before the GOAWAY reached it, and needs a round trip to answer its ping.
    activity.told_to_close();
    assert_eq!(activity.verdict(LIMITS), Verdict::Wait(LIMITS.header_read));
    advance(Duration::from_secs(4)).await;
    assert_eq!(
        activity.verdict(LIMITS),
        Verdict::Wait(Duration::from_secs(1))
    );
    advance(Duration::from_secs(1)).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Idle);
    // A request answered after it was told (an HTTP/2 stream begun before the GOAWAY) earns
    // no idle wait either.
    OpenRequest::started(activity.clone()).answered(true);
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Idle);
}

/// Told to close while its request was still waited for (a shutdown under a slow broker), a
/// connection gets its check's time from that request's answer, not from the telling: an HTTP/2
/// client needs a round trip after the answer to take its GOAWAY's ping, and dropped at once
/// its answer could be cut.
#[tokio::test(start_paused = true)]
async fn a_connection_told_to_close_during_a_request_may_stay_a_check_after_its_answer() {
    let activity = Arc::new(Activity::default());
    let open = OpenRequest::started(activity.clone());
    activity.told_to_close();
    advance(Duration::from_secs(10)).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Wait(LIMITS.header_read));
    open.answered(true);
    assert_eq!(activity.verdict(LIMITS), Verdict::Wait(LIMITS.header_read));
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Idle);
}

/// With an idle timeout shorter than the header read timeout, a connection told to close gets
/// the shorter of the two, as the README's shutdown section says.
#[tokio::test(start_paused = true)]
async fn a_connection_told_to_close_may_stay_only_the_idle_timeout_when_that_is_the_shorter() {
    let limits = Limits {
        header_read: Duration::from_secs(5),
        idle: Duration::from_secs(2),
    };
    let activity = Arc::new(Activity::default());
    OpenRequest::started(activity.clone()).answered(true);
    activity.told_to_close();
    advance(Duration::from_secs(2)).await;
    assert_eq!(activity.verdict(limits), Verdict::Idle);
}

/// RFC 9112, 2.2: a client may send empty lines before a request line (one that ends its body
/// with an extra CRLF does); they start no head, so the idle wait still holds.
#[tokio::test(start_paused = true)]
async fn empty_lines_between_http1_requests_start_no_head() {
    let activity = Arc::new(Activity::default());
    let mut conn = Connection::new(&activity);
    OpenRequest::started(activity.clone()).answered(true);
    conn.send(&[b"\r\n", b"\n"]).await;
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Wait(LIMITS.header_read));
}

/// A reader may fill one buffer over several reads (`read_exact` does): only what each read
/// adds is new, or the preface's first byte, seen twice, hides the preface.
#[tokio::test(start_paused = true)]
async fn the_wrapper_follows_only_what_each_read_adds_to_a_buffer_filled_across_reads() {
    let activity = Arc::new(Activity::default());
    let Connection {
        mut client,
        mut server,
    } = Connection::new(&activity);
    client.write_all(&PREFACE[..1]).await.expect("write");
    let mut preface = [0u8; 24];
    let (read, written) = tokio::join!(server.read_exact(&mut preface), async {
        tokio::task::yield_now().await;
        client.write_all(&PREFACE[1..]).await
    });
    read.expect("read");
    written.expect("write");
    assert_eq!(&preface[..], PREFACE);
    OpenRequest::started(activity.clone()).answered(true);
    let mut conn = Connection { client, server };
    conn.send(&[&[&frame_header(8, 6, 0)[..], b"12345678"].concat()])
        .await;
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Wait(LIMITS.header_read));
}

/// Timeouts are often set below a second (the integration tests use 300 ms): the clock counts
/// milliseconds, not whole seconds.
#[tokio::test(start_paused = true)]
async fn limits_under_a_second_are_judged_to_the_millisecond() {
    let limits = Limits {
        header_read: Duration::from_millis(300),
        idle: Duration::from_secs(3),
    };
    let activity = Activity::default();
    advance(Duration::from_millis(299)).await;
    assert_eq!(
        activity.verdict(limits),
        Verdict::Wait(Duration::from_millis(1))
    );
    advance(Duration::from_millis(1)).await;
    assert_eq!(activity.verdict(limits), Verdict::Idle);
}

/// A CONTINUATION may carry nothing but `END_HEADERS`: the block is whole once its frame header
/// is in, with no payload to wait for.
#[tokio::test(start_paused = true)]
async fn an_empty_continuation_with_end_headers_ends_the_http2_header_block() {
    let (activity, mut conn) = kept_alive_http2().await;
    conn.send(&[&frame_header(3, 1, 0), b"abc", &frame_header(0, 9, 0x4)])
        .await;
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Wait(LIMITS.header_read));
}

/// A frame's length has three bytes: a header block over 255 bytes (any with a few custom
/// headers) is followed to its end, not read as frame headers from its 256th byte on.
#[tokio::test(start_paused = true)]
async fn an_http2_frame_longer_than_255_bytes_is_followed_to_its_end() {
    let (activity, mut conn) = kept_alive_http2().await;
    let mut header = frame_header(0, 1, 0x4);
    header[1] = 1;
    header[2] = 0x10;
    let payload = [0u8; 0x110];
    let mut chunks: Vec<&[u8]> = vec![&header];
    chunks.extend(payload.chunks(64));
    conn.send(&chunks).await;
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Wait(LIMITS.header_read));
}
