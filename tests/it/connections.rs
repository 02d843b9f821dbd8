//! What an HTTP/1 connection does after an answer: a refused request's body is read and dropped
//! so the connection carries on, or the answer says the connection ends; refusals to a sender
//! who authenticated keep the idle timeout; empty lines between requests start no head.

use crate::common;

use std::time::Duration;

use crate::common::{TestApp, STATUS};
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
