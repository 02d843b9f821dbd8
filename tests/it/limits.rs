//! Bounded resources: requests in flight, their bodies' bytes, and open connections.

use crate::common;

use std::time::Duration;

use crate::common::{basic_auth_header, eventually, raw_framed, raw_request, TestApp, STATUS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_in_flight_limit_get_503_at_once_and_the_first_still_succeeds() {
    // A round trip long enough for every check below to run while the first holds its place,
    // even on a slow, shared runner.
    let app = TestApp::start(&["--max-in-flight", "1", "--ack-timeout", "20s"]).await;
    let first = app.spawn_post_held_by_a_slow_broker().await;
    let started = std::time::Instant::now();
    let second = app.post(STATUS).await;
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "1");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "refused without waiting for Kafka's 3 s: {took:?}"
    );
    // Refusals that cost nothing are still told apart while the bridge is full: a sender with a
    // wrong password or URL must learn so, not be told to retry.
    let wrong_password = app.post_as(common::USER, "wrong", STATUS).await;
    assert_eq!(wrong_password.status(), 401);
    let wrong_path = app
        .http
        .post(app.url().replace("/webhook", "/elsewhere"))
        .basic_auth(common::USER, Some(common::PASS))
        .body(STATUS)
        .send()
        .await
        .expect("request");
    assert_eq!(wrong_path.status(), 404);
    assert!(!first.is_finished(), "the place was taken throughout");
    assert_eq!(first.await.expect("task").status(), 200);
    let (_, metrics) = app.admin_get("/metrics").await;
    let overloaded = r#"qikchat_bridge_requests_total{outcome="overloaded",status="503"} 1"#;
    assert!(metrics.lines().any(|l| l == overloaded), "{metrics}");
    // The refused ones gave their places back: the limit's one place is free again.
    assert_eq!(app.post(STATUS).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_a_new_client_waits_until_one_closes() {
    let app = TestApp::start(&["--max-connections", "1"]).await;
    let mut held = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let request = format!(
        "POST /webhook HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-length: {}\r\n\r\n",
        basic_auth_header(),
        STATUS.len()
    );
    held.write_all(request.as_bytes()).await.expect("write");
    held.write_all(STATUS).await.expect("write");
    let mut buf = [0u8; 12];
    held.read_exact(&mut buf)
        .await
        .expect("answer on the held connection");
    assert_eq!(&buf, b"HTTP/1.1 200");

    // The held keep-alive connection uses the only permit: a second client is not served...
    let waiting = app.spawn_post(STATUS);
    // Served, it would be answered well within this (and counted, whatever the client saw).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!waiting.is_finished(), "served beyond the connection limit");
    let (_, metrics) = app.admin_get("/metrics").await;
    let accepted = r#"qikchat_bridge_requests_total{outcome="accepted",status="200"} 1"#;
    assert!(
        metrics.lines().any(|l| l == accepted),
        "a request beyond the connection limit reached the bridge: {metrics}"
    );
    // ...until the first one closes.
    drop(held);
    let response = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served after close")
        .expect("task");
    assert_eq!(response.status(), 200);
}

/// The status line of the next answer on `s`.
async fn status_line(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
        .await
        .expect("answered within 10 s")
        .expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_beyond_the_in_flight_bytes_get_503_at_once_and_fit_again_when_one_ends() {
    // Bodies over 64 KiB count against the bytes; smaller ones only against --max-in-flight.
    let app = with_room_for_one_large_body().await;
    // Announces the largest body and sends none of it yet: its 200000 bytes are held meanwhile.
    let held = raw_request(app.addr, 200_000, b"").await;
    eventually("the held request is in flight", async || {
        app.in_flight().await == 1
    })
    .await;
    // 100000 bytes are left: a real status passes, another body of 200000 bytes does not.
    assert_eq!(app.post(STATUS).await.status(), 200);
    a_large_body_waits_for(&app, held).await;
    let (_, metrics) = app.admin_get("/metrics").await;
    assert!(
        metrics.contains(r#"qikchat_bridge_requests_total{outcome="overloaded",status="503"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_content_length_holds_the_largest_body_against_the_in_flight_bytes() {
    let app = with_room_for_one_large_body().await;
    // Chunked, so its size is unknown until it ends: it may be as large as --max-body-bytes.
    let held = raw_framed(app.addr, "transfer-encoding: chunked", b"").await;
    eventually("the chunked request is in flight", async || {
        app.in_flight().await == 1
    })
    .await;
    a_large_body_waits_for(&app, held).await;
}

/// Bodies of up to 200000 bytes, and 300000 bytes of them in flight at once. A held request's
/// body never comes: the long timeouts keep it in flight however slow a loaded machine makes the
/// test (at the default 1.5 s ack timeout it was answered 408 and its bytes freed before the
/// request meant to find them held, which then waited for its own body instead of a 503).
async fn with_room_for_one_large_body() -> TestApp {
    TestApp::start(&[
        "--max-body-bytes",
        "200000",
        "--max-in-flight-bytes",
        "300000",
        "--ack-timeout",
        "30s",
        "--body-read-timeout",
        "30s",
    ])
    .await
}

/// With `held` in flight holding 200000 of the 300000 body bytes, a body of 200000 bytes gets
/// 503; once `held`'s client hangs up, its bytes are returned and the same body is taken.
async fn a_large_body_waits_for(app: &TestApp, held: tokio::net::TcpStream) {
    let mut large = STATUS.to_vec();
    large.resize(200_000, b' ');
    // Refused from its Content-Length: only the head is sent, since a client still writing the
    // body when the 503 closes the connection gets a broken pipe instead of the answer.
    let mut refused = raw_request(app.addr, large.len(), b"").await;
    assert_eq!(status_line(&mut refused).await, "HTTP/1.1 503");
    drop(held);
    eventually("the held request ended", async || {
        app.in_flight().await == 0
    })
    .await;
    let mut fits = raw_request(app.addr, large.len(), &large).await;
    assert_eq!(status_line(&mut fits).await, "HTTP/1.1 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_beyond_the_read_buffer_gets_431_before_anyone_is_authenticated() {
    let app = TestApp::start(&[]).await;
    // No credential: a head this long must not be buffered up to hyper's default ~408 KiB.
    let head = format!(
        "POST /webhook HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let mut s = common::raw_send(app.addr, head.as_bytes()).await;
    assert_eq!(status_line(&mut s).await, "HTTP/1.1 431");
    // A real webhook's head is far below it.
    assert_eq!(app.post(STATUS).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_once_read_holds_only_its_own_size_while_kafka_is_waited_for() {
    let app = TestApp::start(&[
        "--max-body-bytes",
        "200000",
        "--max-in-flight-bytes",
        "300000",
        "--ack-timeout",
        "30s",
    ])
    .await;
    // Kafka away: each request is in flight for as long as the test needs.
    app.cluster.broker_down(1).expect("down");
    let pad = "x".repeat(100_000);
    let body = format!(
        r#"{{"event":"whatsapp:message:status","payload":{{"id":"c1","to":"+91","pad":"{pad}"}}}}"#
    );
    let chunks = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let chunked = raw_framed(app.addr, "transfer-encoding: chunked", chunks.as_bytes()).await;
    eventually(
        "the chunked request is read and waits for Kafka",
        async || {
            let (_, metrics) = app.admin_get("/metrics").await;
            metrics.contains("qikchat_bridge_request_body_bytes_count 1")
        },
    )
    .await;
    // Reserved at the largest (200000) while unread, it now holds its ~100 KB: a declared body
    // of 190000 bytes fits beside it (it would not beside 200000).
    let mut large = STATUS.to_vec();
    large.resize(190_000, b' ');
    let _second = raw_request(app.addr, large.len(), &large).await;
    eventually("both are in flight", async || app.in_flight().await == 2).await;
    let (_, metrics) = app.admin_get("/metrics").await;
    assert!(
        metrics.contains(r#"qikchat_bridge_requests_total{outcome="overloaded",status="503"} 0"#),
        "{metrics}"
    );
    drop(chunked);
}

/// HPACK lets a byte sent stand for a whole header, so each open stream's header list, decoded
/// before anyone is authenticated, can take ~60 KiB: at 256 streams one unauthenticated
/// connection held ~15 MiB, and 200 of them 2.8 GiB. The server advertises 32.
#[tokio::test]
async fn an_http2_connection_may_have_at_most_32_streams_open_at_once() {
    let app = TestApp::start(&[]).await;
    let mut client = common::h2_connection(app.addr).await;
    // Answered (401, without credentials) only after the server's settings have come.
    let request = http::Request::post(app.url()).body(()).expect("request");
    let (answer, _) = client.send_request(request, true).expect("send");
    assert_eq!(answer.await.expect("answer").status(), 401);
    assert_eq!(client.current_max_send_streams(), 32);
}

/// Where only HTTP/1.1 senders connect (Qikchat, most proxies), HTTP/2 and what its connections
/// may hold before authentication can be refused altogether.
#[tokio::test]
async fn with_http1_only_an_http2_client_gets_no_answer_and_http1_is_served_as_before() {
    let app = TestApp::start(&["--http1-only"]).await;
    let h2 = common::h2c_client()
        .post(app.url())
        .body(common::STATUS)
        .send()
        .await;
    assert!(h2.is_err(), "{h2:?}");
    assert_eq!(app.post(common::STATUS).await.status(), 200);
}
