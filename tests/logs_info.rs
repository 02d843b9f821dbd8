//! At the default `info` level: refusals are logged once each with their request id (failures to
//! store at `warn`, with their cause), accepted requests cost no log line, the drain counts only open connections. Its own test binary: it installs the process-wide subscriber.

mod common;

use common::{Captured, TestApp, STATUS, USER};

/// A POST with a wrong password, refused with 401, under `request_id`.
fn wrong_password(app: &TestApp, request_id: &str) -> reqwest::RequestBuilder {
    app.http
        .post(app.url())
        .basic_auth(USER, Some("wrong"))
        .header("x-request-id", request_id)
        .body(STATUS)
}

/// The one JSON log line that names `request_id`.
fn the_line(logs: &str, request_id: &str) -> serde_json::Value {
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(request_id)).collect();
    assert_eq!(lines.len(), 1, "{logs}");
    serde_json::from_str(lines[0]).expect("JSON log line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_info_a_refusal_is_one_line_with_its_request_id_and_an_accepted_request_none() {
    // This test binary has a single test, so it may set the process-wide subscriber.
    let captured = Captured::install("info");

    // With the broker down below, librdkafka's own message timeout (by default the ack timeout
    // itself) and the deadline race; whichever fires first, the logged cause is the same.
    let app = TestApp::start(&[]).await;
    // /readyz turns 200 a moment before readiness logs so at info; counted after it, that line
    // cannot pass for one of the accepted requests'.
    common::eventually("readiness logged", async || {
        captured
            .text_from(0)
            .contains("Kafka answers metadata requests")
    })
    .await;
    let before = captured.len();
    for _ in 0..5 {
        assert_eq!(app.post(STATUS).await.status(), 200);
    }
    assert_eq!(
        captured.len(),
        before,
        "accepted requests log nothing at info"
    );

    let refused = wrong_password(&app, "refused-req-1")
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 401);
    let line = the_line(&captured.text_from(before), "refused-req-1");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["status"], 401);
    assert!(line["latency_ms"].is_number());

    // A failure to store: its cause logged once at warn, the answer opaque.
    app.cluster.broker_down(1).expect("down");
    let before = captured.len();
    let failed = app
        .http
        .post(app.url())
        .basic_auth(USER, Some(common::PASS))
        .header("x-request-id", "failed-req-1")
        .body(STATUS)
        .send()
        .await
        .expect("request");
    assert_eq!(failed.status(), 503);
    let answer = failed.text().await.expect("body");
    assert!(answer.contains("not stored; retry later"), "{answer}");
    assert!(
        !answer.contains("acknowledgement"),
        "the cause stays in the log: {answer}"
    );
    let line = the_line(&captured.text_from(before), "failed-req-1");
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["status"], 503);
    assert_eq!(line["message"], "not stored");
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("acknowledgement")),
        "{line}"
    );

    // Anyone who can connect can cause refusals: so many lines a second per outcome, the rest
    // counted in the next line's `held_back`, so that no refusal goes uncounted.
    let before = captured.len();
    let flood = 200;
    let started = std::time::Instant::now();
    let sends = (0..flood).map(|i| wrong_password(&app, &format!("flood-{i}")).send());
    for answer in futures_util::future::join_all(sends).await {
        assert_eq!(answer.expect("request").status(), 401);
    }
    let took = started.elapsed();
    let logs = captured.text_from(before);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| l.contains("flood-"))
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .collect();
    assert!(
        lines.len() as u64 <= 10 * (took.as_secs() + 2),
        "{} lines for {flood} refusals in {took:?}",
        lines.len()
    );
    // A second later the next refusal is logged, with what was held back since.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let last = wrong_password(&app, "flood-last")
        .send()
        .await
        .expect("request");
    assert_eq!(last.status(), 401);
    let last = the_line(&captured.text_from(before), "flood-last");
    let held: u64 = lines
        .iter()
        .chain([&last])
        .map(|l| l["held_back"].as_u64().expect("held_back"))
        .sum();
    assert_eq!(
        held + lines.len() as u64,
        flood,
        "every refusal counted once"
    );

    // The drain's line counts the connections still open, not those that ended since the last
    // accept (this app's client keeps its pooled ones open: a fresh app, spoken to by hand).
    let mut app = TestApp::start(&[]).await;
    for _ in 0..3 {
        let framing = format!("content-length: {}\r\nconnection: close", STATUS.len());
        let mut s = common::raw_framed(app.addr, &framing, STATUS).await;
        let mut answer = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut answer)
            .await
            .expect("read");
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    // The server closed each; its task ends a moment after.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let before = captured.len();
    app.stop().await;
    let logs = captured.text_from(before);
    let draining: serde_json::Value = logs
        .lines()
        .filter(|l| l.contains("stopped accepting") && l.contains("\"webhook\""))
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .next()
        .unwrap_or_else(|| panic!("no drain line:\n{logs}"));
    assert_eq!(draining["open_connections"], 0, "{draining}");
}
