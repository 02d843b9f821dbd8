//! A shutdown whose flush cannot finish says so at `warn`, with how many records librdkafka still
//! held: what the sender's retries must make up for. Its own test binary: it installs the
//! process-wide subscriber.

mod common;

use std::time::Duration;

use common::{eventually, Captured, TestApp, IMAGE, STATUS};

/// The JSON log lines whose message is `message`.
fn lines_saying(logs: &str, message: &str) -> Vec<serde_json::Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == message)
        .collect()
}

// Real time throughout: librdkafka's flush and the broker's outage run on threads of their own,
// which tokio's paused clock does not reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_cut_off_by_its_timeout_logs_how_many_records_were_left_in_the_producer() {
    let captured = Captured::install("warn");
    let mut app = TestApp::start(&[
        // Past the test's end: librdkafka keeps both records queued while the broker is down.
        "--ack-timeout",
        "30s",
        "--shutdown-grace",
        "500ms",
        "--flush-timeout",
        "1s",
    ])
    .await;
    app.cluster.broker_down(1).expect("down");
    // Kept open, unanswered: each has handed its record to librdkafka, where it stays queued.
    let _status = common::raw_post(app.addr, STATUS).await;
    let _image = common::raw_post(app.addr, IMAGE).await;
    eventually("both requests are in flight", async || {
        app.in_flight().await >= 2
    })
    .await;
    app.trigger_shutdown();
    app.wait_stopped(Duration::from_secs(30)).await;
    app.cluster.broker_up(1).expect("up");

    let logs = captured.text_from(0);
    let incomplete = lines_saying(&logs, "producer flush incomplete");
    assert_eq!(incomplete.len(), 1, "{logs}");
    assert_eq!(incomplete[0]["level"], "WARN", "{logs}");
    // librdkafka's count (`rd_kafka_outq_len`) takes in the events it has not yet handed over
    // too: one of the outage's connection errors may come between the flush's last poll and the
    // count.
    let left = incomplete[0]["left"].as_u64();
    assert!(
        matches!(left, Some(2 | 3)),
        "both records were still in the producer: {logs}"
    );
    assert!(
        incomplete[0]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{logs}"
    );
}
