//! Tests of the rotation of the Kafka client's files: what is made again, when, and what a
//! replaced producer may still deliver.

use super::*;

/// Replay's own properties follow the rotated ones: with idempotence turned off by a rotated
/// file, one request in flight, which keeps a conversation's order through retries.
#[test]
fn replays_own_properties_are_made_from_the_rotated_ones() {
    let metrics = Arc::new(crate::metrics::Metrics::new(&[]).expect("metrics"));
    let properties = BTreeMap::from([("bootstrap.servers".into(), "127.0.0.1:9".into())]);
    let sink = KafkaSink::new(&properties, metrics, super::super::ProducerRole::Replay);
    let replay = Rebuilt {
        sink: Arc::new(sink.expect("producer")),
        overrides: crate::delivery::replay_overrides,
    };
    let made = |idempotence: &str| {
        let env = [(
            "KAFKA_ENABLE_IDEMPOTENCE".to_string(),
            idempotence.to_string(),
        )];
        let limits = crate::kafka_props::Defaults {
            wait: Duration::from_secs(1),
            max_body_bytes: 1 << 20,
        };
        let shared = crate::kafka_props::from_sources(env, &[], limits, &|_| unreachable!())
            .expect("properties");
        replay.properties(&shared, "kafka:9092")
    };
    let without = made("false");
    assert_eq!(without.get("max.in.flight").map(String::as_str), Some("1"));
    assert_eq!(
        without.get("bootstrap.servers").map(String::as_str),
        Some("kafka:9092")
    );
    assert_eq!(made("true").get("max.in.flight"), None);
}

/// What start-up gives `watch_kafka_files` when the one `KAFKA_*_FILE` variable `variable`
/// names `file`: the properties made from it now, and the files behind them.
fn client_files(variable: &str, file: &std::path::Path) -> (KafkaProperties, ClientFiles) {
    let env = [(
        variable.to_string(),
        file.to_str().expect("utf-8").to_string(),
    )];
    let limits = crate::kafka_props::Defaults {
        wait: Duration::from_secs(1),
        max_body_bytes: 1 << 20,
    };
    let sources = KafkaSources::new(env, &[], limits);
    let (properties, watched) = sources
        .properties_watched(&crate::operator_file::read_to_string)
        .expect("properties");
    let caveats = KafkaCaveats::new(Duration::from_secs(1), false, 1 << 20, &properties);
    let files = ClientFiles {
        sources,
        watched,
        caveats,
    };
    (properties, files)
}

/// Watches `files` for a webhook producer made from `made_from` (its `bootstrap.servers`, the
/// topic `t`): the sender that stops it, and its task.
fn watching(
    files: ClientFiles,
    made_from: &BTreeMap<String, String>,
    metrics: &Arc<Metrics>,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let sink = KafkaSink::new(
        made_from,
        metrics.clone(),
        super::super::ProducerRole::Webhooks,
    )
    .expect("producer");
    let producers = vec![Rebuilt {
        sink: Arc::new(sink),
        overrides: |_| BTreeMap::new(),
    }];
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(watch_kafka_files(
        files,
        made_from["bootstrap.servers"].clone(),
        "t".into(),
        producers,
        metrics.clone(),
        stopped,
    ));
    (stop, task)
}

/// `kafka_client_reloads_total` of the webhooks' producer with `result`.
fn reloads(metrics: &Metrics, result: &str) -> u64 {
    let series = format!(
        "qikchat_bridge_kafka_client_reloads_total{{result=\"{result}\",role=\"webhooks\"}} "
    );
    String::from_utf8(metrics.render())
        .expect("utf-8")
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

/// The log line of a reload that failed says why: the error of the step that failed, or, for
/// a step that panicked and so gave no error, that it panicked.
#[test]
fn a_failed_reload_is_told_by_its_error_or_as_a_panic() {
    let failed: Option<Result<(), String>> = Some(Err("the secret file is empty".into()));
    assert_eq!(
        why(failed, "reading the files panicked"),
        "the secret file is empty"
    );
    let panicked: Option<Result<(), String>> = None;
    assert_eq!(
        why(panicked, "reading the files panicked"),
        "reading the files panicked"
    );
}

/// Files that cannot be used (a secret file gone) keep the producers as they are and are
/// tried again, unchanged, every 30 s, not at every look: each try logs an error and counts
/// a failed reload, and one a second would flood both until an operator fixes the Secret.
/// Paused clock: time moves only while the watch and the test wait on timers, and not while
/// a file is read on a blocking thread.
#[tokio::test(start_paused = true)]
async fn files_that_cannot_be_used_are_tried_again_every_30_s_not_at_every_look() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("password");
    std::fs::write(&password, "first-pw\n").expect("write");
    let (_, files) = client_files("KAFKA_SASL_PASSWORD_FILE", &password);
    let metrics = Arc::new(crate::metrics::Metrics::new(&[]).expect("metrics"));
    // Never made again here: from the first change on, the files cannot be used.
    let nowhere = BTreeMap::from([("bootstrap.servers".into(), "127.0.0.1:9".into())]);
    let (stop, watching) = watching(files, &nowhere, &metrics);
    let failed = || reloads(&metrics, "failed");
    let step = Duration::from_millis(100);
    std::fs::remove_file(&password).expect("remove");
    let removed = Instant::now();
    while failed() == 0 {
        assert!(removed.elapsed() < Duration::from_secs(10), "never tried");
        tokio::time::sleep(step).await;
    }
    // Within a step of the failure: the next try is due 30 s after it, at the first look
    // from then on (one a second).
    let first = Instant::now();
    tokio::time::sleep_until(first + RETRY - 2 * EVERY).await;
    assert_eq!(failed(), 1, "tried again before 30 s had passed");
    tokio::time::sleep_until(first + RETRY + 3 * EVERY).await;
    assert_eq!(failed(), 2, "tried again once 30 s had passed");
    stop.send(true).expect("stop");
    watching.await.expect("watch");
}

/// A rotation that moves a file librdkafka reads (the CA's location, itself read from a
/// `KAFKA_*_FILE`) has the file at its new location watched from then on: a certificate
/// rotated there later makes the producer again too, instead of going unseen until the pod
/// restarts. Paused clock, as above; the producer is made on a mock cluster in real time.
#[tokio::test(start_paused = true)]
async fn a_file_a_rotation_moved_is_watched_at_its_new_location() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("t", 1, 1).expect("topic");
    let dir = tempfile::tempdir().expect("tempdir");
    let (location, first, second) = (
        dir.path().join("ca-location"),
        dir.path().join("first-ca.pem"),
        dir.path().join("second-ca.pem"),
    );
    // Not PEM: librdkafka does not read the CA of a plaintext connection.
    std::fs::write(&first, "first CA\n").expect("write");
    std::fs::write(&second, "second CA\n").expect("write");
    std::fs::write(&location, first.to_str().expect("utf-8")).expect("write");
    let (properties, files) = client_files("KAFKA_SSL_CA_LOCATION_FILE", &location);
    let metrics = Arc::new(crate::metrics::Metrics::new(&[]).expect("metrics"));
    let bootstrap = cluster.bootstrap_servers();
    let mut made_from = properties.to_map();
    made_from.insert("bootstrap.servers".into(), bootstrap.clone());
    let (stop, watching) = watching(files, &made_from, &metrics);
    let rebuilt = || reloads(&metrics, "rebuilt");
    let until = |count: u64, what: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while rebuilt() != count {
            assert!(Instant::now() < deadline, "{what} within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    std::fs::write(&location, second.to_str().expect("utf-8")).expect("write");
    until(1, "the producer made again from the CA's new location").await;
    std::fs::write(&second, "second CA, rotated\n").expect("write");
    until(
        2,
        "the producer made again after the CA at its new location",
    )
    .await;
    stop.send(true).expect("stop");
    watching.await.expect("watch");
}

#[test]
fn a_retired_producers_wait_is_its_message_timeout_as_librdkafka_reads_it() {
    assert_eq!(message_timeout(Some("2000")), Duration::from_secs(2));
    assert_eq!(message_timeout(Some("0x7d0")), Duration::from_secs(2));
    assert_eq!(message_timeout(None), Duration::from_secs(300));
    assert_eq!(message_timeout(Some("0")), Duration::from_secs(300));
}
