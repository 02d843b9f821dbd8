//! What an HTTP/1 connection does after an answer: a refused request's body is read and dropped
//! so the connection carries on, or the answer says the connection ends; refusals to a sender
//! who authenticated keep the idle timeout; empty lines between requests start no head.

use crate::common;

use std::time::Duration;

use crate::common::{TestApp, STATUS, TEXT};
use tokio::io::AsyncWriteExt;

/// Enough for the first delivery on a loaded machine: these tests are about connections.
const PATIENT: [&str; 2] = ["--ack-timeout", "10s"];

/// The connection carries an authenticated request after its answer: 200.
async fn takes_the_next_request(s: &mut tokio::net::TcpStream) {
    s.write_all(&common::post_bytes(STATUS))
        .await
        .expect("write the next request");
    let next = common::read_answer(s).await;
    assert!(next.starts_with("HTTP/1.1 200"), "{next}");
}

fn says_close(answer: &str) -> bool {
    answer
        .to_ascii_lowercase()
        .contains("\r\nconnection: close\r\n")
}

/// Closing a connection with the body still unread resets it, and a sender still writing may
/// see the reset instead of the 401: a body beyond what the connection's read buffer holds (16
/// KiB; hyper drops no more than that itself) is read and dropped, and the connection takes the
/// next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_requests_body_is_read_and_dropped_and_the_connection_carries_on() {
    let app = TestApp::start(&PATIENT).await;
    let mut s = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let body = vec![b' '; 64 * 1024];
    s.write_all(
        format!(
            "POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .expect("write head");
    s.write_all(&body).await.expect("write body");
    let refused = common::read_answer(&mut s).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(!says_close(&refused), "{refused}");
    takes_the_next_request(&mut s).await;
}

/// A body declared over the limit is not read: the 413 says the connection ends with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_too_large_is_refused_and_the_answer_says_the_connection_ends() {
    let app = TestApp::start(&[]).await;
    let mut s = common::raw_request(app.addr, 2 * 1024 * 1024, b"").await;
    let answer = common::read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(says_close(&answer), "{answer}");
}

/// A stranger's head that declares a body over the limit is refused at once, not after reading
/// (or waiting a second for) a body the bridge would drop: the 401 comes before any of it is sent,
/// and says the connection ends (found by mutation testing: nothing timed this).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_head_declaring_a_body_over_the_limit_is_answered_at_once() {
    let app = TestApp::start(&[]).await;
    let mut s = common::raw_send(app.addr, b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2097152\r\n\r\n").await;
    let started = std::time::Instant::now();
    let answer = common::read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(says_close(&answer), "{answer}");
    // The discard of a refused body waits at most a second for it: well under that means it
    // was not waited for (a loaded machine answers in milliseconds).
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "answered after {:?}",
        started.elapsed()
    );
}

/// A sender that waits for `100 Continue` before its body is not invited to send one that is
/// refused already: it gets the refusal, which says the connection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_sender_waiting_for_100_continue_is_not_asked_for_its_body() {
    let app = TestApp::start(&[]).await;
    let mut s = common::raw_send(app.addr, b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n").await;
    let answer = common::read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(!answer.contains(" 100 "), "{answer}");
    assert!(says_close(&answer), "{answer}");
}

/// A proxy's pool keeps the connection after a refusal as after a 200, and does not retry a POST
/// it sends on one the bridge closed meanwhile: a sender who authenticated keeps the idle
/// timeout after a 415 (or a 400, or a 503 while Kafka is down), not the header read timeout
/// that a stranger's 401 gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_sender_keeps_its_connection_after_a_refusal() {
    let app = TestApp::start(&["--header-read-timeout", "300ms", "--ack-timeout", "10s"]).await;
    let mut s = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = common::post_head("content-length: 2").replace("application/json", "text/plain");
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(b"{}").await.expect("write body");
    let refused = common::read_answer(&mut s).await;
    assert!(refused.starts_with("HTTP/1.1 415"), "{refused}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    takes_the_next_request(&mut s).await;
}

/// Some clients end a body with an extra CRLF; HTTP/1 servers ignore empty lines before a
/// request line, and the bridge does not take one for the start of a slow head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_line_after_an_answer_does_not_start_the_next_heads_clock() {
    let app = TestApp::start(&["--header-read-timeout", "300ms", "--ack-timeout", "10s"]).await;
    let mut s = common::raw_post(app.addr, STATUS).await;
    let first = common::read_answer(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    s.write_all(b"\r\n").await.expect("write an empty line");
    tokio::time::sleep(Duration::from_secs(1)).await;
    takes_the_next_request(&mut s).await;
}

/// Requests written all at once, on one connection: a stranger's with a body, a valid one, a
/// refused one whose chunked body holds a whole valid request, a wrong path and a wrong method
/// with bodies, and a valid one chunked in small pieces with extensions and a trailer. Each is
/// answered in the order sent, and exactly the valid bodies are stored, once each: a refused
/// request's body is dropped, never read as the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_and_only_the_valid_ones_stored() {
    use base64::Engine;
    let app = TestApp::start(&PATIENT).await;
    let auth = common::basic_auth_header();
    let stranger = base64::engine::general_purpose::STANDARD.encode("qikchat:nope");
    let head = |line: &str, fields: &str, length: usize| {
        format!("{line}\r\nhost: x\r\ncontent-type: application/json\r\n{fields}content-length: {length}\r\n\r\n")
    };
    let (mut sent, mut want, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let line = "POST /webhook HTTP/1.1";
        let stranger = format!("authorization: Basic {stranger}\r\n");
        sent.extend(head(line, &stranger, STATUS.len()).into_bytes());
        sent.extend(STATUS);
        want.push("401");
        let id = format!("pipelined-{round}-status");
        let fields = format!("authorization: {auth}\r\nx-request-id: {id}\r\n");
        sent.extend(head(line, &fields, STATUS.len()).into_bytes());
        sent.extend(STATUS);
        want.push("200");
        ids.push(id);
        let inner = common::post_bytes(TEXT);
        sent.extend(format!("POST /webhook HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n", inner.len()).into_bytes());
        sent.extend(&inner);
        sent.extend(b"\r\n0\r\n\r\n");
        want.push("415");
        sent.extend(head("POST /elsewhere HTTP/1.1", "", STATUS.len()).into_bytes());
        sent.extend(STATUS);
        want.push("404");
        let fields = format!("authorization: {auth}\r\n");
        sent.extend(head("PUT /webhook HTTP/1.1", &fields, STATUS.len()).into_bytes());
        sent.extend(STATUS);
        want.push("405");
        let id = format!("pipelined-{round}-text");
        sent.extend(format!("POST /webhook HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-type: application/json\r\nx-request-id: {id}\r\ntransfer-encoding: chunked\r\n\r\n").into_bytes());
        for piece in TEXT.chunks(7) {
            sent.extend(format!("{:x};ext=1\r\n", piece.len()).into_bytes());
            sent.extend(piece);
            sent.extend(b"\r\n");
        }
        sent.extend(b"0\r\nx-trailer: y\r\n\r\n");
        want.push("200");
        ids.push(id);
    }
    let mut s = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    s.write_all(&sent).await.expect("write");
    let got = read_statuses(&mut s, want.len()).await;
    assert_eq!(got, want);
    let mut stored = Vec::new();
    for (topic, body) in [
        ("whatsapp.message.status", STATUS),
        ("whatsapp.message.in", TEXT),
    ] {
        for record in app.records(topic, 3, Duration::from_secs(10)).await {
            assert_eq!(record.value, body, "{topic}");
            stored.push(record.headers["request-id"].clone());
        }
    }
    stored.sort();
    ids.sort();
    assert_eq!(stored, ids);
    assert_eq!(app.total_records().await, 6, "nothing else stored");
}

/// The status codes of the next `count` answers on `s`, each read whole by its `Content-Length`.
async fn read_statuses(s: &mut tokio::net::TcpStream, count: usize) -> Vec<String> {
    use tokio::io::AsyncReadExt;
    let (mut seen, mut statuses) = (Vec::<u8>::new(), Vec::new());
    while statuses.len() < count {
        if let Some(length) = common::answer_length(&seen) {
            statuses.push(String::from_utf8_lossy(&seen[9..12]).into_owned());
            seen.drain(..length);
            continue;
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("answered within 10 s")
            .expect("read");
        assert!(n > 0, "closed after {statuses:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    statuses
}
