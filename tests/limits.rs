//! Bounded resources: requests in flight and open connections.

mod common;

use std::time::Duration;

use common::{TestApp, PASS, STATUS, USER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn in_flight(app: &TestApp) -> i64 {
    let (_, metrics) = app.admin_get("/metrics").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("qikchat_bridge_requests_in_flight "))
        .and_then(|v| v.trim().parse().ok())
        .expect("in-flight gauge")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_in_flight_limit_get_503_at_once_and_the_first_still_succeeds() {
    let app = TestApp::start(&["--max-in-flight", "1", "--ack-timeout", "5s"]).await;
    app.cluster
        .broker_round_trip_time(1, Duration::from_millis(600))
        .expect("rtt");
    let (http, url) = (app.http.clone(), app.url());
    let first = tokio::spawn(async move {
        http.post(url)
            .basic_auth(USER, Some(PASS))
            .body(STATUS)
            .send()
            .await
            .expect("request")
    });
    while in_flight(&app).await < 1 {
        tokio::task::yield_now().await;
    }
    let started = std::time::Instant::now();
    let second = app.post(STATUS).await;
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "1");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused without waiting for Kafka"
    );
    assert_eq!(first.await.expect("task").status(), 200);
    let (_, metrics) = app.admin_get("/metrics").await;
    assert!(
        metrics.contains(r#"qikchat_bridge_requests_total{outcome="overloaded",status="503"} 1"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_a_new_client_waits_until_one_closes() {
    let app = TestApp::start(&["--max-connections", "1"]).await;
    let mut held = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let request = format!(
        "POST /webhook HTTP/1.1\r\nhost: x\r\nauthorization: Basic {}\r\ncontent-length: {}\r\n\r\n",
        base64_of(&format!("{USER}:{PASS}")),
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
    let waiting = tokio::spawn({
        let (http, url) = (reqwest::Client::new(), app.url());
        async move {
            http.post(url)
                .basic_auth(USER, Some(PASS))
                .body(STATUS)
                .send()
                .await
                .expect("request")
                .status()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "served beyond the connection limit");
    // ...until the first one closes.
    drop(held);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served after close")
        .expect("task");
    assert_eq!(status, 200);
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
