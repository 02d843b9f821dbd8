//! Rotating the files the Kafka client reads (a `KAFKA_*_FILE` secret, an `ssl.*.location`
//! certificate) makes the producer again without a restart, and a rotation that cannot be used
//! keeps the producer that works. Its own test binary, because it installs the process-wide log
//! subscriber; one test, running its two cases in turn, so that what the log shows comes from
//! the first case alone (a second test alongside made the same lines).

mod common;

use std::time::Duration;

use common::{eventually, eventually_within, rotate, Captured, TestApp, STATUS};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

async fn reloads(app: &TestApp, result: &str) -> u64 {
    let (_, metrics) = app.admin_get("/metrics").await;
    let series = format!(
        "qikchat_bridge_kafka_client_reloads_total{{result=\"{result}\",role=\"webhooks\"}} "
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

async fn stale(app: &TestApp) -> bool {
    let (_, metrics) = app.admin_get("/metrics").await;
    let series = "qikchat_bridge_kafka_client_files_stale{role=\"webhooks\"} ";
    match metrics.lines().find_map(|l| l.strip_prefix(series)) {
        Some("1") => true,
        Some("0") => false,
        other => panic!("{series}: {other:?}"),
    }
}

/// A password file and a CA file, each with its first text, read by a bridge started on them
/// with `args` too.
struct ClientFiles {
    _dir: tempfile::TempDir,
    password: std::path::PathBuf,
    ca: std::path::PathBuf,
}

async fn start_on_files(password: &str, args: &[&str]) -> (TestApp, ClientFiles) {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = ClientFiles {
        password: dir.path().join("password"),
        ca: dir.path().join("ca.pem"),
        _dir: dir,
    };
    rotate(&files.password, password);
    rotate(&files.ca, "first CA\n");
    let ca_flag = format!("ssl.ca.location={}", files.ca.display());
    let mut args = args.to_vec();
    args.extend(["-X", &ca_flag]);
    let app = TestApp::start_with_env(
        &args,
        &[(
            "KAFKA_SASL_PASSWORD_FILE",
            files.password.to_str().expect("utf-8"),
        )],
    )
    .await;
    (app, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_kafka_client_files_make_the_producer_again_unusable_ones_keep_it_and_a_retrying_one_holds_up_no_rotation(
) {
    let captured = Captured::install("info");
    rotations_make_the_producer_again_and_unusable_ones_keep_it(&captured).await;
    a_second_rotation_is_taken_while_the_replaced_producer_still_retries_its_record().await;
    a_rotated_value_that_weakens_a_promise_is_logged_as_at_start_up(&captured).await;
}

async fn rotations_make_the_producer_again_and_unusable_ones_keep_it(captured: &Captured) {
    let (app, files) = start_on_files("kafka-pw-first-5521\n", &[]).await;
    let (password, ca) = (&files.password, &files.ca);
    assert_eq!(app.post(STATUS).await.status(), 200);
    assert_eq!(reloads(&app, "rebuilt").await, 0);

    rotate(password, "kafka-pw-second-8830\n");
    eventually("the producer made again after the password", async || {
        reloads(&app, "rebuilt").await == 1
    })
    .await;
    assert_eq!(app.post(STATUS).await.status(), 200);

    // (The same text written again is no change: a unit test of the files' fingerprints.)
    rotate(ca, "second CA\n");
    eventually("the producer made again after the CA", async || {
        reloads(&app, "rebuilt").await == 2
    })
    .await;

    std::fs::remove_file(password).expect("remove");
    eventually("the missing secret reported", async || {
        reloads(&app, "failed").await == 1
    })
    .await;
    assert_eq!(reloads(&app, "rebuilt").await, 2);
    assert_eq!(app.post(STATUS).await.status(), 200);
    assert!(stale(&app).await, "the failed rotation is shown");
    rotate(password, "kafka-pw-third-1207\n");
    eventually(
        "the producer made again once the secret is back",
        async || reloads(&app, "rebuilt").await == 3,
    )
    .await;
    assert!(!stale(&app).await);

    let logs = captured.text_from(0);
    assert_eq!(
        logs.matches("Kafka producer made again").count(),
        3,
        "one line for each rebuild: {logs}"
    );
    assert!(logs.contains("the producers stay as they are"), "{logs}");
    for secret in [
        "kafka-pw-first-5521",
        "kafka-pw-second-8830",
        "kafka-pw-third-1207",
    ] {
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
    }
}

/// The replaced producer delivers what it holds in the background: a record it keeps retrying
/// (for up to its message timeout, the ack timeout here) does not hold up the next rotation.
async fn a_second_rotation_is_taken_while_the_replaced_producer_still_retries_its_record() {
    let (app, files) = start_on_files("kafka-pw-first\n", &["--ack-timeout", "60s"]).await;
    let (password, ca) = (&files.password, &files.ca);
    assert_eq!(app.post(STATUS).await.status(), 200);

    // Every produce request is refused as retriable until cleared: the next record stays in the
    // producer now in place, which retries it until its message timeout (60 s).
    app.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 1000],
    );
    let stuck = {
        let (http, url) = (app.http.clone(), app.url());
        tokio::spawn(async move {
            http.post(url)
                .basic_auth(common::USER, Some(common::PASS))
                .header("content-type", "application/json")
                .body(STATUS)
                .send()
                .await
        })
    };
    app.wait_metric("qikchat_bridge_requests_in_flight 1").await;

    rotate(password, "kafka-pw-second\n");
    eventually("the producer made again after the password", async || {
        reloads(&app, "rebuilt").await == 1
    })
    .await;
    // Before, the watch waited for the replaced producer's flush (here up to 61 s) before it
    // looked at the files again.
    rotate(ca, "second CA\n");
    eventually_within(
        "the producer made again after the CA, with the first one still retrying",
        Duration::from_secs(15),
        async || reloads(&app, "rebuilt").await == 2,
    )
    .await;
    assert_eq!(
        app.admin_get("/metrics")
            .await
            .1
            .lines()
            .find(|l| l.starts_with("qikchat_bridge_requests_in_flight ")),
        Some("qikchat_bridge_requests_in_flight 1"),
        "the first producer still held its record"
    );

    // Its record goes through, and its request is answered.
    app.cluster.clear_request_errors(RDKafkaApiKey::Produce);
    let answered = tokio::time::timeout(Duration::from_secs(20), stuck)
        .await
        .expect("answered once the broker took records again")
        .expect("the request task")
        .expect("an answer");
    assert_eq!(answered.status(), 200);
}

/// A file that rotates a property to a value start-up would have warned of (statistics off, so
/// the queue and broker alerts cannot fire) is warned of once the producer is made from it, and
/// only once.
async fn a_rotated_value_that_weakens_a_promise_is_logged_as_at_start_up(captured: &Captured) {
    let dir = tempfile::tempdir().expect("tempdir");
    let interval = dir.path().join("statistics-interval");
    rotate(&interval, "1000\n");
    let app = TestApp::start_with_env(
        &[],
        &[(
            "KAFKA_STATISTICS_INTERVAL_MS_FILE",
            interval.to_str().expect("utf-8"),
        )],
    )
    .await;
    let from = captured.len();
    rotate(&interval, "0\n");
    eventually("the producer made again after the rotation", async || {
        reloads(&app, "rebuilt").await == 1
    })
    .await;
    assert_eq!(app.post(STATUS).await.status(), 200);
    let said = |logs: &str| logs.matches("statistics.interval.ms is 0").count();
    eventually("the caveat logged", async || {
        said(&captured.text_from(from)) == 1
    })
    .await;
    let logs = captured.text_from(from);
    assert!(logs.contains("the rotated Kafka client files"), "{logs}");

    // The same value again (a rewrite with another line end) earns no second warning; the next
    // rotation's, logged by the same task after it, shows that the rewrite's would be in by then.
    rotate(&interval, "0\r\n");
    eventually("the producer made again after the rewrite", async || {
        reloads(&app, "rebuilt").await == 2
    })
    .await;
    rotate(&interval, "120000\n");
    eventually("the next rotation's caveat logged", async || {
        captured
            .text_from(from)
            .contains("statistics.interval.ms (120000) is over a minute")
    })
    .await;
    assert_eq!(said(&captured.text_from(from)), 1);
}
