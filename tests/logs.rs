//! Logs never carry credentials, bodies or (unless the operator asks) phone numbers. Its own test binary,
//! because it installs the process-wide log subscriber.

mod common;

use common::{basic_auth_header, Captured, TestApp, PASS, TEXT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_request_shows_neither_the_password_nor_the_body() {
    // This test binary has a single test, so it may set the process-wide subscriber.
    let captured = Captured::install("trace");

    let app = TestApp::start(&[]).await;
    let accepted = app.post(TEXT).await;
    assert_eq!(accepted.status(), 200);
    let accepted_id = common::request_id(&accepted);
    let unrouted = app
        .post(br#"{"event":"made:up-event","payload":{"id":"m1","to":"+1"}}"#)
        .await;
    assert_eq!(unrouted.status(), 200);
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

    let logs = captured.text_from(0);
    assert!(
        logs.contains("request_id"),
        "requests are logged with their id:\n{logs}"
    );
    // The request's own line: readiness logs the same topic name at start-up, so a match
    // anywhere in the logs would prove nothing.
    let accepted_line = logs
        .lines()
        .filter(|l| l.contains(&accepted_id))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON log line"))
        .find(|l| l["span"]["request_id"] == accepted_id.as_str())
        .unwrap_or_else(|| panic!("no line for request {accepted_id}:\n{logs}"));
    assert_eq!(
        accepted_line["span"]["topic"], "whatsapp.message.in",
        "the topic is logged with the request: {accepted_line}"
    );
    // The event, and the latency in milliseconds (over a microsecond, under the second a
    // seconds-plus-1000 slip would pass); found missing by mutation testing.
    assert_eq!(accepted_line["span"]["event"], "whatsapp:message:in");
    // Where a line comes from, which `RUST_LOG` filters by (found missing by mutation testing).
    assert_eq!(
        accepted_line["target"], "qikchat_bridge::webhook",
        "{accepted_line}"
    );
    let latency = accepted_line["span"]["latency_ms"]
        .as_f64()
        .expect("latency_ms");
    assert!((0.001..1000.0).contains(&latency), "{accepted_line}");
    // An event name the bridge does not route is the sender's choice: not logged.
    let unrouted_id = common::request_id(&unrouted);
    let unrouted_line = logs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON log line"))
        .find(|l| l["span"]["request_id"] == unrouted_id.as_str())
        .unwrap_or_else(|| panic!("no line for request {unrouted_id}:\n{logs}"));
    assert!(
        unrouted_line["span"].get("event").is_none(),
        "{unrouted_line}"
    );
    assert!(!logs.contains("made:up-event"), "{logs}");
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

    // The operator's opt-in: the key (the sender's number) is logged, the rest still is not.
    let before = captured.len();
    let app = TestApp::start(&["--log-phone-numbers"]).await;
    assert_eq!(app.post(TEXT).await.status(), 200);
    // A sender's key may be as long as its body: it is cut, not repeated on every line whole.
    let long_key = format!("9184{}", "7".repeat(9_996));
    let long = String::from_utf8(TEXT.to_vec())
        .expect("UTF-8 fixture")
        .replace("9184XXXXXXX", &long_key);
    assert_eq!(app.post(long.leak().as_bytes()).await.status(), 200);
    drop(app);
    let logs = captured.text_from(before);
    assert!(logs.contains("9184XXXXXXX"), "no phone number:\n{logs}");
    assert!(
        logs.contains(&format!("9184{}… (10000 bytes)", "7".repeat(124))),
        "no cut key:\n{logs}"
    );
    assert!(
        !logs.contains(&"7".repeat(125)),
        "a long key was logged whole"
    );
    for secret in [PASS, encoded, "I want this product"] {
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
    }
}
