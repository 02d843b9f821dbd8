//! Slowloris and slow-body clients are cut off while normal traffic is served.

mod common;

use std::time::{Duration, Instant};

use common::{TestApp, STATUS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_slow_body_clients_are_cut_off_while_others_are_served() {
    let app = TestApp::start(&[
        "--header-read-timeout",
        "500ms",
        "--body-read-timeout",
        "500ms",
    ])
    .await;
    let mut slow = Vec::new();
    for i in 0..40 {
        let mut s = tokio::net::TcpStream::connect(app.addr)
            .await
            .expect("connect");
        if i % 2 == 0 {
            // A head that never ends.
            s.write_all(b"POST /webhook HTTP/1.1\r\nhost: x\r\n")
                .await
                .expect("write");
        } else {
            // A complete head, then a body that never comes.
            s.write_all(b"POST /webhook HTTP/1.1\r\nhost: x\r\nauthorization: Basic cWlrY2hhdDpjb3JyZWN0IGhvcnNlIGJhdHRlcnkgc3RhcGxl\r\ncontent-length: 500\r\n\r\n{").await.expect("write");
        }
        slow.push(s);
    }
    // Meanwhile, normal requests are answered.
    for _ in 0..20 {
        assert_eq!(app.post(STATUS).await.status(), 200);
    }
    // Every slow client is answered (408) or disconnected, not held forever.
    let started = Instant::now();
    for (i, mut s) in slow.into_iter().enumerate() {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "slow client {i} still connected after {:?}",
            started.elapsed()
        );
        let text = String::from_utf8_lossy(&buf);
        if i % 2 == 1 {
            assert!(
                text.starts_with("HTTP/1.1 408"),
                "slow body answered: {text}"
            );
        }
    }
}
