//! Rotating the files the Kafka client reads (a `KAFKA_*_FILE` secret, an `ssl.*.location`
//! certificate) makes the producer again without a restart, and a rotation that cannot be used
//! keeps the producer that works. Its own test binary, because it installs the process-wide log
//! subscriber.

mod common;

use common::{eventually, rotate, Captured, TestApp, STATUS};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_kafka_client_files_make_the_producer_again_and_unusable_ones_keep_it() {
    let captured = Captured::install("info");
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("password");
    let ca = dir.path().join("ca.pem");
    rotate(&password, "kafka-pw-first-5521\n");
    rotate(&ca, "first CA\n");
    let ca_flag = format!("ssl.ca.location={}", ca.display());
    let app = TestApp::start_with_env(
        &["-X", &ca_flag],
        &[(
            "KAFKA_SASL_PASSWORD_FILE",
            password.to_str().expect("utf-8"),
        )],
    )
    .await;
    assert_eq!(app.post(STATUS).await.status(), 200);
    assert_eq!(reloads(&app, "rebuilt").await, 0);

    rotate(&password, "kafka-pw-second-8830\n");
    eventually("the producer made again after the password", async || {
        reloads(&app, "rebuilt").await == 1
    })
    .await;
    assert_eq!(app.post(STATUS).await.status(), 200);

    // The same text written again is no change (the watcher looks every second).
    rotate(&password, "kafka-pw-second-8830\n");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(reloads(&app, "rebuilt").await, 1);
    rotate(&ca, "second CA\n");
    eventually("the producer made again after the CA", async || {
        reloads(&app, "rebuilt").await == 2
    })
    .await;

    std::fs::remove_file(&password).expect("remove");
    eventually("the missing secret reported", async || {
        reloads(&app, "failed").await == 1
    })
    .await;
    assert_eq!(reloads(&app, "rebuilt").await, 2);
    assert_eq!(app.post(STATUS).await.status(), 200);
    assert!(stale(&app).await, "the failed rotation is shown");
    rotate(&password, "kafka-pw-third-1207\n");
    eventually(
        "the producer made again once the secret is back",
        async || reloads(&app, "rebuilt").await == 3,
    )
    .await;
    assert!(!stale(&app).await);

    let logs = captured.text_from(0);
    assert!(logs.contains("Kafka producer made again"), "{logs}");
    assert!(logs.contains("the producers stay as they are"), "{logs}");
    for secret in [
        "kafka-pw-first-5521",
        "kafka-pw-second-8830",
        "kafka-pw-third-1207",
    ] {
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
    }
}
