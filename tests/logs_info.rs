//! At the default `info` level: refusals are logged once each with their request id, accepted
//! requests cost no log line. Its own test binary: it installs the process-wide subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{TestApp, STATUS, USER};
use qikchat_bridge::config::LogFormat;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_info_a_refusal_is_one_line_with_its_request_id_and_an_accepted_request_none() {
    std::env::set_var("RUST_LOG", "info");
    let captured = Captured::default();
    let writer = captured.clone();
    qikchat_bridge::telemetry::init_with(LogFormat::Json, move || writer.clone())
        .expect("subscriber");

    let app = TestApp::start(&[]).await;
    let before = captured.0.lock().expect("lock").len();
    for _ in 0..5 {
        assert_eq!(app.post(STATUS).await.status(), 200);
    }
    assert_eq!(
        captured.0.lock().expect("lock").len(),
        before,
        "accepted requests log nothing at info"
    );

    let refused = app
        .http
        .post(app.url())
        .basic_auth(USER, Some("wrong"))
        .header("x-request-id", "refused-req-1")
        .body(STATUS)
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 401);
    let logs =
        String::from_utf8(captured.0.lock().expect("lock")[before..].to_vec()).expect("utf-8");
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("refused-req-1"))
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
    let line: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON log line");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["status"], 401);
    assert!(line["latency_ms"].is_number());
}
