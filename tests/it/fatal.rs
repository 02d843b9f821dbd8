//! A producer librdkafka declares failed (an idempotent producer that met a sequence gap) is
//! replaced: the webhooks caught in it are answered 503, never a lasting 500, and the next ones
//! are stored. One that keeps failing is replaced at a slowing pace, and `/readyz` says so.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::{request_id, TestApp, PASS, USER};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const TOPIC: &str = "whatsapp.message.status";

fn status(n: u32) -> Vec<u8> {
    format!(r#"{{"event":"whatsapp:message:status","payload":{{"id":"f{n}","to":"+9100{n:06}","status":"read"}}}}"#)
        .into_bytes()
}

async fn post(app: &TestApp, n: u32) -> (u16, String, Option<String>) {
    let r = app
        .http
        .post(app.url())
        .basic_auth(USER, Some(PASS))
        .body(status(n))
        .send()
        .await
        .expect("request");
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    (r.status().as_u16(), request_id(&r), retry_after)
}

/// The bridge with an idempotent producer and a spool in `dir`.
async fn start_with_spool(dir: &tempfile::TempDir) -> TestApp {
    let spool = dir.path().display().to_string();
    TestApp::start(&[
        "-X",
        "enable.idempotence=true",
        "-X",
        "acks=all",
        // The webhook producer's queue gauge current within 100 ms (see `webhook_copies_expired`).
        "-X",
        "statistics.interval.ms=100",
        "--spool-dir",
        &spool,
    ])
    .await
}

/// Once the webhook producer's copies of spooled records have expired (its message timeout is
/// 1250 ms with a spool) it holds nothing the broker could take when it returns, so only replay's
/// producer meets the sequence gap injected then. librdkafka scans for expired records about once
/// a second, so the queue gauge says when, on a loaded machine too.
async fn webhook_copies_expired(app: &TestApp) {
    // Past the timeout first: before it the gauge may not show the copies yet.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.wait_metric("qikchat_bridge_kafka_queue_messages 0")
        .await;
}

fn replaced(metrics: &str) -> Option<u64> {
    replaced_as(metrics, "webhooks")
}

fn replaced_as(metrics: &str, role: &str) -> Option<u64> {
    let prefix = format!(r#"qikchat_bridge_kafka_producers_replaced_total{{role="{role}"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// The replacement runs beside the requests: waits for the counter to reach `want`.
async fn wait_replaced(app: &TestApp, want: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = app.admin_get("/metrics").await;
        let now = replaced(&metrics);
        if now == Some(want) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "producers replaced: {now:?}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_error_is_answered_503_and_the_producer_is_replaced() {
    let app = TestApp::start(&["-X", "enable.idempotence=true", "-X", "acks=all"]).await;
    let (first, first_id, _) = post(&app, 0).await;
    assert_eq!(first, 200);
    assert_eq!(replaced(&app.admin_get("/metrics").await.1), Some(0));

    // The broker answers the next produce request with a gap in the sequence: librdkafka cannot
    // retry it without risking a duplicate or a reordering, so it declares the producer failed.
    app.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    let mut statuses = BTreeMap::<u16, usize>::new();
    let mut stored = vec![first_id];
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 1;
    // Until the replacement has taken a few webhooks in a row.
    let mut in_a_row = 0;
    while in_a_row < 3 {
        assert!(
            Instant::now() < deadline,
            "no webhook stored since the fatal error: {statuses:?}"
        );
        let (status, id, retry_after) = post(&app, n).await;
        n += 1;
        *statuses.entry(status).or_default() += 1;
        match status {
            200 => {
                in_a_row += 1;
                stored.push(id);
            }
            503 => {
                in_a_row = 0;
                assert_eq!(retry_after.as_deref(), Some("1"), "503 carries Retry-After");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("answered {other} after the fatal error ({statuses:?})"),
        }
    }
    assert!(
        statuses.get(&503).copied().unwrap_or(0) >= 1,
        "the webhook caught in the failed producer is answered 503: {statuses:?}"
    );
    wait_replaced(&app, 1).await;
    // Readiness is re-checked every 1 s, so it may lag the replacement.
    let ready_by = Instant::now() + Duration::from_secs(10);
    while app.admin_get("/readyz").await.0 != 200 {
        assert!(Instant::now() < ready_by, "not ready again within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let got = app
        .records(TOPIC, stored.len(), Duration::from_secs(10))
        .await;
    for id in &stored {
        assert!(
            got.iter().any(|g| g.headers.get("request-id") == Some(id)),
            "{id} was answered 200 but is not in Kafka"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_spool_the_webhooks_caught_in_a_failed_producer_are_spooled_and_all_reach_kafka() {
    let dir = crate::common::memory_tempdir();
    let app = start_with_spool(&dir).await;
    // A gap after the first record (the first sequence number is always accepted).
    let (status, id, _) = post(&app, 0).await;
    assert_eq!(status, 200);
    let mut ids = vec![id];
    app.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    for n in 1..20 {
        let (status, id, _) = post(&app, n).await;
        assert_eq!(
            status, 200,
            "webhook {n}: every answer is 200 while the spool has room"
        );
        ids.push(id);
    }
    let metrics = wait_replaced(&app, 1).await;
    let spooled: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"qikchat_bridge_spool_appends_total{result="ok"} "#))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no spool appends counted: {metrics}"));
    assert!(
        spooled >= 1.0,
        "the webhook caught in the failed producer went to the spool"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = app.records(TOPIC, ids.len(), Duration::from_secs(2)).await;
        let missing: Vec<_> = ids
            .iter()
            .filter(|id| !got.iter().any(|g| g.headers.get("request-id") == Some(*id)))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "answered 200, not in Kafka: {missing:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_keeps_failing_is_replaced_at_a_slowing_pace_and_readyz_says_so() {
    let app = TestApp::start(&["-X", "enable.idempotence=true", "-X", "acks=all"]).await;
    assert_eq!(post(&app, 0).await.0, 200);
    // The next two producers are refused the producer id that idempotence needs (as without the
    // IdempotentWrite permission), so each fails as soon as it starts; the third one works. One
    // refusal may be spent on a bootstrap connection that librdkafka closes before the answer
    // (src/producer/tests.rs), so only one replacement may fail: the pauses are then checked
    // against the replacements counted.
    app.cluster.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED,
        ],
    );
    app.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    let failed_at = Instant::now();
    let deadline = failed_at + Duration::from_secs(30);
    let (mut n, mut unready) = (1, false);
    loop {
        assert!(Instant::now() < deadline, "no webhook stored in 30 s");
        let (status, _, _) = post(&app, n).await;
        n += 1;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "webhook {n} while the producers fail");
        unready |= app.admin_get("/readyz").await.0 == 503;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored_after = failed_at.elapsed();
    let (_, metrics) = app.admin_get("/metrics").await;
    let replacements = replaced(&metrics).expect("the replacements counted");
    // Replaced at once, then after a 1 s and a 2 s pause: never sooner.
    assert!(
        (2..=3).contains(&replacements),
        "{replacements} replacements: want the failed producer's, then one for each refused one"
    );
    let paused = Duration::from_secs((1 << (replacements - 1)) - 1);
    assert!(
        stored_after >= paused,
        "stored again after {stored_after:?}, with {replacements} replacements"
    );
    assert!(unready, "/readyz reported the failed producer");
    wait_replaced(&app, replacements).await;
    while app.admin_get("/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spools_replay_producer_is_replaced_too_when_librdkafka_declares_it_failed() {
    let dir = crate::common::memory_tempdir();
    let app = start_with_spool(&dir).await;
    // Replay's producer sends one record first (the first sequence number is always accepted).
    app.cluster.broker_down(1).expect("down");
    assert_eq!(post(&app, 0).await.0, 200, "spooled");
    webhook_copies_expired(&app).await;
    app.cluster.broker_up(1).expect("up");
    app.wait_metric("qikchat_bridge_spool_replayed_total 1")
        .await;

    app.cluster.broker_down(1).expect("down");
    for n in 1..4 {
        assert_eq!(post(&app, n).await.0, 200, "spooled");
    }
    webhook_copies_expired(&app).await;
    // Replay's next produce request meets a sequence gap: librdkafka declares its producer failed.
    app.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    app.cluster.broker_up(1).expect("up");
    app.wait_metric(r#"qikchat_bridge_kafka_producers_replaced_total{role="replay"} 1"#)
        .await;
    // Its replacement delivers the records spooled.
    app.wait_metric("qikchat_bridge_spool_replayed_total 4")
        .await;
    let (_, metrics) = app.admin_get("/metrics").await;
    assert_eq!(replaced_as(&metrics, "webhooks"), Some(0), "only replay's");
}
