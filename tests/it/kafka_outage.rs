//! When Kafka cannot acknowledge, the bridge answers 503 inside the deadline — never 200 — and
//! recovers by itself when the broker returns.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{TestApp, STATUS};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_is_answered_503_within_the_deadline_and_200_again_after_it_returns() {
    let app = TestApp::start(&["--ack-timeout", "1s"]).await;
    // The first produce of a fresh app may outlast the 1 s deadline on a loaded machine.
    let before = retried_until_200(&app, Duration::from_secs(20), "no 200 before the outage").await;
    let mut answered_200 = vec![before];

    app.cluster.broker_down(1).expect("broker down");
    for _ in 0..3 {
        let started = Instant::now();
        let response = app.post(STATUS).await;
        let took = started.elapsed();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let body = response.text().await.expect("body");
        assert!(body.contains("not stored"), "{body}");
        // Bounded by the ack timeout, and in every case inside Qikchat's 2 s.
        assert!(took < Duration::from_secs(2), "503 took {took:?}");
        assert!(
            took >= Duration::from_millis(900),
            "answered before the deadline: {took:?}"
        );
    }

    app.cluster.broker_up(1).expect("broker up");
    answered_200.push(
        retried_until_200(
            &app,
            Duration::from_secs(20),
            "no 200 within 20 s of broker_up",
        )
        .await,
    );
    // Both requests answered 200 are in Kafka (a 503's record may be too: librdkafka may still
    // deliver it, which the README's duplicates section covers).
    common::wait_all_stored(&app.bootstrap, "whatsapp.message.status", &answered_200).await;
}

/// A record over the producer's own `message.max.bytes` posted (with a spool when `spooling`):
/// the status, how long the answer took, and the metrics after it.
async fn over_the_producers_own_limit(spooling: bool) -> (u16, Duration, String) {
    let spool = spooling.then(common::memory_tempdir);
    let mut flags = vec!["-X".to_string(), "message.max.bytes=2000".to_string()];
    if let Some(dir) = &spool {
        flags.extend(["--spool-dir".to_string(), dir.path().display().to_string()]);
    }
    let app = TestApp::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let big: &'static [u8] = Box::leak(
        format!(
            r#"{{"event":"whatsapp:message:in","payload":{{"pad":"{}"}}}}"#,
            "x".repeat(4000)
        )
        .into_boxed_str(),
    )
    .as_bytes();
    let started = Instant::now();
    let status = app.post(big).await.status().as_u16();
    let took = started.elapsed();
    let (_, metrics) = app.admin_get("/metrics").await;
    (status, took, metrics)
}

const OWN_LIMIT_COUNTED: &str = r#"qikchat_bridge_kafka_deliveries_total{result="msg_size_too_large",topic="whatsapp.message.in"} 1"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_producers_own_message_max_bytes_is_answered_413_at_once() {
    let (status, took, metrics) = over_the_producers_own_limit(false).await;
    assert_eq!(status, 413);
    assert!(
        took < Duration::from_secs(1),
        "refused at once, not after retries"
    );
    has_lines(&metrics, &[OWN_LIMIT_COUNTED]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_spool_a_record_over_the_producers_own_limit_is_answered_413_and_counted_the_same() {
    // The bridge checks the size itself before the spool, so librdkafka never sees the record;
    // the refusal must still show where an operator looks for it without a spool.
    let (status, took, metrics) = over_the_producers_own_limit(true).await;
    assert_eq!(status, 413);
    assert!(took < Duration::from_secs(1), "refused at once");
    has_lines(&metrics, &[OWN_LIMIT_COUNTED, NOTHING_SPOOLED]);
}

/// One status posted while the broker refuses the next produce request with `error` (with a
/// 10 s ack timeout, and a spool when `spooling`): what came back, and the metrics after it.
struct BrokerRefusal {
    app: TestApp,
    status: u16,
    retry_after: Option<String>,
    body: String,
    took: Duration,
    metrics: String,
    _spool: Option<tempfile::TempDir>,
}

async fn refused_by_the_broker(error: RDKafkaRespErr, spooling: bool) -> BrokerRefusal {
    let spool = spooling.then(common::memory_tempdir);
    let mut flags = vec!["--ack-timeout".to_string(), "10s".to_string()];
    if let Some(dir) = &spool {
        flags.extend(["--spool-dir".to_string(), dir.path().display().to_string()]);
    }
    let app = TestApp::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    app.cluster.request_errors(RDKafkaApiKey::Produce, &[error]);
    let started = Instant::now();
    let response = app.post(STATUS).await;
    let took = started.elapsed();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_string());
    let body = response.text().await.expect("body");
    let (_, metrics) = app.admin_get("/metrics").await;
    BrokerRefusal {
        app,
        status,
        retry_after,
        body,
        took,
        metrics,
        _spool: spool,
    }
}

fn has_lines(metrics: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            metrics.lines().any(|l| l == *line),
            "no {line} in {metrics}"
        );
    }
}

const TOO_LARGE_COUNTED: &str = r#"qikchat_bridge_kafka_deliveries_total{result="msg_size_too_large",topic="whatsapp.message.status"} 1"#;
const NOTHING_SPOOLED: &str = r#"qikchat_bridge_spool_appends_total{result="ok"} 0"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_broker_refuses_as_too_large_is_answered_413_well_before_the_ack_timeout() {
    // The topic's max.message.bytes on the broker: the client sends the record, and only the
    // produce response refuses it. No retry can change that answer.
    let r =
        refused_by_the_broker(RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, false).await;
    assert_eq!(r.status, 413);
    assert!(r.body.contains("too_large"), "{}", r.body);
    assert!(
        r.took < Duration::from_secs(5),
        "refused when the broker answered, not at the 10 s deadline: {:?}",
        r.took
    );
    has_lines(&r.metrics, &[TOO_LARGE_COUNTED]);
    // The injected error was used up by that one request, so the refusal was the broker's.
    assert_eq!(r.app.post(STATUS).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_spool_a_record_the_broker_refuses_as_too_large_is_answered_413_and_not_spooled() {
    let r = refused_by_the_broker(RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, true).await;
    assert_eq!(r.status, 413);
    assert!(r.took < Duration::from_secs(5), "{:?}", r.took);
    // A spooled copy would be replayed and refused again, for ever; the sender must see the 413.
    has_lines(&r.metrics, &[TOO_LARGE_COUNTED, NOTHING_SPOOLED]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_kafka_refuses_as_invalid_is_answered_500_at_once_and_not_spooled() {
    let r = refused_by_the_broker(RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD, true).await;
    // No retry and no spool can store what Kafka calls invalid: 500, and the sender stops.
    assert_eq!(r.status, 500);
    assert_eq!(r.retry_after, None);
    assert!(r.body.contains("internal_error"), "{}", r.body);
    assert!(r.took < Duration::from_secs(5), "{:?}", r.took);
    has_lines(
        &r.metrics,
        &[
            r#"qikchat_bridge_requests_total{outcome="failed",status="500"} 1"#,
            NOTHING_SPOOLED,
        ],
    );
    assert_eq!(r.app.post(STATUS).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_the_brokers_refuse_to_write_is_answered_503_so_the_sender_retries_once_fixed() {
    let app = TestApp::start(&[]).await;
    // The topic's ACL revoked for one produce request: an operator can fix that, and a retry
    // then succeeds, so the answer must not be a 500 ("a retry cannot help").
    app.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let refused = app.post(STATUS).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    // The retry, once the ACL is back.
    retried_until_200(&app, Duration::from_secs(30), "still refused").await;
}

/// Posts a status as a sender retrying would, until a 200 comes within `within` (every answer
/// before it is a 503); returns the accepted request's id.
async fn retried_until_200(app: &TestApp, within: Duration, why: &str) -> String {
    let deadline = Instant::now() + within;
    loop {
        let response = app.post(STATUS).await;
        let status = response.status();
        if status == 200 {
            return common::request_id(&response);
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A topic the brokers do not have (and do not create on first use): librdkafka holds its records
/// for `topic.metadata.propagation.max.ms` before failing them as an unknown topic, by its own
/// default 30 s, past every ack deadline, so each was answered at the deadline as a timeout, and
/// nothing at request time named the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_the_brokers_do_not_have_is_answered_before_the_deadline_named_unknown_and_taken_once_made(
) {
    // A long ack timeout (so a propagation wait of 2 s), for room on a loaded machine between the
    // answer that names the topic and the one at the deadline.
    let app = TestApp::start_without_topics(
        &[
            "--ack-timeout",
            "6s",
            "--topic",
            "whatsapp:message:status=absent.topic",
            "-X",
            "allow.auto.create.topics=false",
        ],
        &["absent.topic"],
    )
    .await;
    for _ in 0..2 {
        let started = Instant::now();
        let response = app.post(STATUS).await;
        let took = started.elapsed();
        assert_eq!(response.status(), 503);
        let body = response.text().await.expect("body");
        assert!(
            took < Duration::from_secs(5),
            "answered after {took:?}: {body}"
        );
    }
    // Counted as an unknown topic, none as a timeout: the first is failed by the broker's answer
    // (`unknown_topic_or_partition`), the next at once by librdkafka, which by then knows the
    // topic is not there (`unknown_topic`); the split rests on librdkafka's order, the sum not.
    let (_, metrics) = app.admin_get("/metrics").await;
    let count = |result: &str| {
        let series = format!(
            r#"qikchat_bridge_kafka_deliveries_total{{result="{result}",topic="absent.topic"}} "#
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.trim().parse::<u64>().expect("a count"))
    };
    assert_eq!(
        count("unknown_topic_or_partition") + count("unknown_topic"),
        2,
        "{metrics}"
    );
    assert_eq!(count("timeout"), 0, "{metrics}");
    // And once it exists, its records are taken (librdkafka asks again for a topic it took for
    // absent, 0.4 s here).
    app.cluster
        .create_topic("absent.topic", 1, 1)
        .expect("create");
    retried_until_200(
        &app,
        Duration::from_secs(20),
        "never 200 once the topic exists",
    )
    .await;
}
