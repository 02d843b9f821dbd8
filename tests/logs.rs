//! Logs never carry credentials, bodies or (by default) phone numbers. Its own test binary,
//! because it installs the process-wide log subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{basic_auth_header, TestApp, PASS, TEXT};
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
async fn a_logged_request_shows_neither_the_password_nor_the_body() {
    // SAFETY of the environment change: this test binary has a single test.
    std::env::set_var("RUST_LOG", "trace");
    let captured = Captured::default();
    let writer = captured.clone();
    qikchat_bridge::telemetry::init_with(LogFormat::Json, move || writer.clone())
        .expect("subscriber");

    let app = TestApp::start(&[]).await;
    assert_eq!(app.post(TEXT).await.status(), 200);
    let wrong = app
        .http
        .post(app.url())
        .basic_auth("qikchat", Some("guess-pw"))
        .body(TEXT)
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        app.post(b"{\"event\": broken-secret-body").await.status(),
        400
    );
    drop(app);

    let logs = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(
        logs.contains("request_id"),
        "requests are logged with their id:\n{logs}"
    );
    assert!(logs.contains("whatsapp.message.in"), "the topic is logged");
    let encoded = basic_auth_header();
    let encoded = encoded.trim_start_matches("Basic ");
    for secret in [
        PASS,
        "guess-pw",
        encoded,
        "I want this product",
        "broken-secret-body",
        "9184XXXXXXX",
    ] {
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
    }
}
