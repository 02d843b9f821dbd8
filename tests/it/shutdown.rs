//! Graceful shutdown: unready first, in-flight requests finish, the producer is flushed, `run`
//! returns; what is still open when the grace ends is closed.

use crate::common;

use std::time::Duration;

use crate::common::{eventually, HeldOpening, TestApp, STATUS};
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_request_finish_with_200() {
    // A slow broker keeps the request in flight long enough to shut down under it; the long ack
    // timeout keeps this test about draining, not about the deadline (it flaked under load).
    let mut app = TestApp::start(&["--ack-timeout", "20s"]).await;
    let request = app.spawn_post_held_by_a_slow_broker().await;
    app.trigger_shutdown();
    assert!(
        !request.is_finished(),
        "answered before the shutdown began: nothing was left to drain"
    );
    let response = request.await.expect("task");
    assert_eq!(response.status(), 200);
    app.wait_stopped(Duration::from_secs(15)).await;
    app.cluster
        .broker_round_trip_time(1, Duration::ZERO)
        .expect("rtt");
    assert_eq!(
        app.records("whatsapp.message.status", 1, Duration::from_secs(10))
            .await
            .len(),
        1
    );
    assert!(
        reqwest::Client::new()
            .post(app.url())
            .body(STATUS)
            .send()
            .await
            .is_err(),
        "the listener is closed after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_as_soon_as_shutdown_begins() {
    let mut app = TestApp::start(&["--shutdown-delay", "3s", "--ack-timeout", "10s"]).await;
    assert_eq!(app.admin_get("/readyz").await.0, 200);
    app.trigger_shutdown();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let (status, body) = app.admin_get("/readyz").await;
        if status == 503 {
            assert!(body.contains("shutting down"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still ready during shutdown"
        );
    }
    // During the delay the webhook port still serves, so nothing in transit is refused.
    assert_eq!(app.post(STATUS).await.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_open_when_the_shutdown_grace_ends_is_closed_unanswered() {
    // The flush may take long: the mock broker answers the requests on a connection one after
    // the other, so the readiness probe's metadata requests queue with the record's.
    let mut app = TestApp::start(&[
        "--ack-timeout",
        "15s",
        "--shutdown-grace",
        "500ms",
        "--flush-timeout",
        "30s",
    ])
    .await;
    // The idempotent producer's id first, on the real round trip.
    assert_eq!(app.post(common::TEXT).await.status(), 200);
    // The record stays in librdkafka's queue (a slow broker would store it at once and only
    // answer late): no answer can come before the grace ends, and only the flush delivers it.
    app.cluster.broker_down(1).expect("down");
    let mut s = common::raw_post(app.addr, STATUS).await;
    eventually("the request is in flight", async || {
        app.in_flight().await >= 1
    })
    .await;
    let started = std::time::Instant::now();
    app.trigger_shutdown();
    // Left open, the connection would get its 200 once the broker answers; closed, nothing.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection outlived the shutdown");
    assert!(
        buf.is_empty(),
        "answered: {}",
        String::from_utf8_lossy(&buf)
    );
    // Back later than a shutdown without a flush would have taken (the grace, and at most a
    // readiness check): one that dropped the producer then had purged the record.
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(started.elapsed())).await;
    app.cluster.broker_up(1).expect("up");
    app.wait_stopped(Duration::from_secs(30)).await;
    // The record it had handed over was flushed before `run` returned: the sender's retry makes
    // a duplicate, never a loss.
    let got = app
        .records("whatsapp.message.status", 1, Duration::from_secs(10))
        .await;
    assert_eq!(got.len(), 1, "flushed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flush_at_shutdown_gives_up_after_the_flush_timeout() {
    let mut app = TestApp::start(&[
        "--ack-timeout",
        "15s",
        "--shutdown-grace",
        "200ms",
        "--flush-timeout",
        "3s",
    ])
    .await;
    app.cluster.broker_down(1).expect("down");
    // librdkafka would keep this record for the 15 s of its message timeout.
    let _s = common::raw_post(app.addr, STATUS).await;
    eventually("the request is in flight", async || {
        app.in_flight().await >= 1
    })
    .await;
    let started = std::time::Instant::now();
    app.trigger_shutdown();
    app.wait_stopped(Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "shutdown took {took:?} with a 3 s flush timeout"
    );
    // It did wait for the record: a shutdown that skipped the flush would end with the grace and
    // a readiness check (at most ~1.3 s).
    assert!(
        took >= Duration::from_millis(2800),
        "shutdown took {took:?}: no flush"
    );
}

/// A second SIGTERM (or SIGINT) ends a drain whose waits would all run their full hour: the
/// unready delay, the open request's grace and the flush of its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_drain_short_ends_each_of_its_waits_at_once() {
    let mut app = TestApp::start(&[
        "--ack-timeout",
        "30s",
        "--shutdown-delay",
        "1h",
        "--shutdown-grace",
        "1h",
        "--flush-timeout",
        "1h",
    ])
    .await;
    app.cluster.broker_down(1).expect("down");
    let mut s = common::raw_post(app.addr, STATUS).await;
    eventually("the request is in flight", async || {
        app.in_flight().await >= 1
    })
    .await;
    app.trigger_shutdown();
    eventually("unready: the drain began", async || {
        app.admin_get("/readyz").await.0 == 503
    })
    .await;
    app.cut_drain_short();
    // Closed unanswered (its sender retries), well before its 30 s ack deadline.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the open request outlived the cut");
    assert!(
        buf.is_empty(),
        "answered: {}",
        String::from_utf8_lossy(&buf)
    );
    app.wait_stopped(Duration::from_secs(10)).await;
    app.cluster.broker_up(1).expect("up");
}

/// A second signal while the spool is still being opened (a hung volume, the integrity check of a
/// large file) ends the start there, cleanly: nothing was taken yet. Waiting for the opening
/// instead would leave SIGKILL as the only way out of a bridge that never started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_short_while_the_spool_is_still_being_opened_ends_the_start_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let held = HeldOpening::in_dir(dir.path());
    let spool = dir.path().to_str().expect("utf-8").to_string();
    let mut app = TestApp::spawn(&["--spool-dir", &spool], &[]).await;
    held.wait_reached().await;
    assert_eq!(app.admin_get("/readyz").await.0, 503, "started");
    app.trigger_shutdown();
    app.cut_drain_short();
    app.wait_stopped(Duration::from_secs(10)).await;
    drop(held);
}
