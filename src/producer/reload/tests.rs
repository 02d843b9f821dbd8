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
    watching_producers(files, &made_from["bootstrap.servers"], producers, metrics)
}

/// Watches `files` for `producers` (on `bootstrap`, the topic `t`): the sender that stops it, and
/// its task.
fn watching_producers(
    files: ClientFiles,
    bootstrap: &str,
    producers: Vec<Rebuilt>,
    metrics: &Arc<Metrics>,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(watch_kafka_files(
        files,
        bootstrap.to_string(),
        "t".into(),
        producers,
        metrics.clone(),
        stopped,
    ));
    (stop, task)
}

/// A mock cluster with the topic `t`, and a `statistics.interval.ms` file reading 1000 to rotate:
/// the files, the properties made from them on that cluster, and the metrics.
struct Rotation {
    cluster: rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    interval: std::path::PathBuf,
    files: ClientFiles,
    made_from: BTreeMap<String, String>,
    metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

fn rotation() -> Rotation {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("t", 1, 1).expect("topic");
    let dir = tempfile::tempdir().expect("tempdir");
    let interval = dir.path().join("statistics-interval");
    std::fs::write(&interval, "1000\n").expect("write");
    let (properties, files) = client_files("KAFKA_STATISTICS_INTERVAL_MS_FILE", &interval);
    let mut made_from = properties.to_map();
    made_from.insert("bootstrap.servers".into(), cluster.bootstrap_servers());
    Rotation {
        cluster,
        interval,
        files,
        made_from,
        metrics: Arc::new(crate::metrics::Metrics::new(&[]).expect("metrics")),
        _dir: dir,
    }
}

/// `kafka_client_reloads_total` of the webhooks' producer with `result`.
fn reloads(metrics: &Metrics, result: &str) -> u64 {
    reloads_of(metrics, result, "webhooks")
}

/// `kafka_client_reloads_total` of `role`'s producer with `result`.
fn reloads_of(metrics: &Metrics, result: &str, role: &str) -> u64 {
    let series = format!(
        "qikchat_bridge_kafka_client_reloads_total{{result=\"{result}\",role=\"{role}\"}} "
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

/// Files that can be used but make a producer the brokers refuse (rotated credentials not yet
/// granted the topic) keep the working producer, and are tried again every 30 s without another
/// change: the brokers may grant them after the Secret changed, and nothing else would make the
/// producer again until the next rotation. A value that earns a caveat is logged once it is in
/// force, after the retry that made the producer, and not while it was refused.
/// Paused clock, as above; the producer is made on a mock cluster in real time.
#[tokio::test(start_paused = true)]
async fn a_producer_the_brokers_refused_is_made_again_30_s_later_without_another_change() {
    let (kept, _guard) = crate::telemetry::Kept::on_this_thread();
    let r = rotation();
    let (stop, watching) = watching(r.files, &r.made_from, &r.metrics);
    let refused = rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
    r.cluster.topic_error("t", refused).expect("topic error");
    std::fs::write(&r.interval, "0\n").expect("write");
    let rotated = Instant::now();
    while reloads(&r.metrics, "failed") == 0 {
        assert!(rotated.elapsed() < Duration::from_secs(10), "never tried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_try = Instant::now();
    let caveat = "statistics.interval.ms is 0";
    assert!(
        !kept.text().contains(caveat),
        "a caveat of r.files not in force: {}",
        kept.text()
    );
    let granted = rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR;
    r.cluster.topic_error("t", granted).expect("topic error");
    tokio::time::sleep_until(first_try + RETRY - 2 * EVERY).await;
    assert_eq!(reloads(&r.metrics, "rebuilt"), 0, "tried again before 30 s");
    tokio::time::sleep_until(first_try + RETRY + 3 * EVERY).await;
    while reloads(&r.metrics, "rebuilt") == 0 {
        assert!(
            first_try.elapsed() < RETRY + Duration::from_secs(60),
            "not tried again once 30 s had passed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reloads(&r.metrics, "failed"), 1);
    let logged = kept.text();
    assert_eq!(logged.matches(caveat).count(), 1, "{logged}");
    stop.send(true).expect("stop");
    watching.await.expect("watch");
}

/// A rotation that makes one producer again but not the other (here replay's own properties are
/// refused) tries again, every 30 s, only the one still to be made: the one made from the files in
/// place is not replaced again at each try, each time retiring a working producer and counting a
/// reload that changed nothing. Paused clock, as above.
#[tokio::test(start_paused = true)]
async fn a_retry_makes_again_only_the_producers_the_files_in_place_did_not_make() {
    let r = rotation();
    let sink =
        |role| Arc::new(KafkaSink::new(&r.made_from, r.metrics.clone(), role).expect("producer"));
    let producers = vec![
        Rebuilt {
            sink: sink(super::super::ProducerRole::Webhooks),
            overrides: |_| BTreeMap::new(),
        },
        Rebuilt {
            sink: sink(super::super::ProducerRole::Replay),
            overrides: |_| BTreeMap::from([("acks".to_string(), "none of these".to_string())]),
        },
    ];
    let (stop, watching) = watching_producers(
        r.files,
        &r.cluster.bootstrap_servers(),
        producers,
        &r.metrics,
    );
    let count = |result: &str, role: &str| reloads_of(&r.metrics, result, role);
    std::fs::write(&r.interval, "2000\n").expect("write");
    let rotated = Instant::now();
    while count("failed", "replay") == 0 {
        assert!(rotated.elapsed() < Duration::from_secs(10), "never tried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count("rebuilt", "webhooks"), 1);
    let first_try = Instant::now();
    tokio::time::sleep_until(first_try + RETRY + 3 * EVERY).await;
    while count("failed", "replay") < 2 {
        assert!(
            first_try.elapsed() < RETRY + Duration::from_secs(60),
            "replay's producer not tried again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count("rebuilt", "webhooks"),
        1,
        "the webhooks' producer, made from the r.files in place, was made again"
    );
    stop.send(true).expect("stop");
    watching.await.expect("watch");
}

/// A producer still being made when the bridge stops never takes over: shutdown does not wait
/// out its warm-up, and the producer the shutdown flushes must stay the one in place. Real time:
/// the broker answers 3 s late, so the candidate is still warming up when the watch stops.
#[tokio::test]
async fn a_producer_still_warming_up_at_shutdown_never_takes_over() {
    let r = rotation();
    let sink = Arc::new(
        KafkaSink::new(
            &r.made_from,
            r.metrics.clone(),
            super::super::ProducerRole::Webhooks,
        )
        .expect("producer"),
    );
    let producers = vec![Rebuilt {
        sink: sink.clone(),
        overrides: |_| BTreeMap::new(),
    }];
    let (stop, watching) = watching_producers(
        r.files,
        &r.cluster.bootstrap_servers(),
        producers,
        &r.metrics,
    );
    r.cluster
        .broker_round_trip_time(1, Duration::from_secs(3))
        .expect("rtt");
    std::fs::write(&r.interval, "2000\n").expect("write");
    // Seen within a second; its candidate then waits about 6 s for its broker's answers.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.send(true).expect("stop");
    tokio::time::timeout(Duration::from_secs(1), watching)
        .await
        .expect("stopped without waiting out the warm-up")
        .expect("watch");
    // Past the candidate's warm-up (10 s) and settling.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        sink.property("statistics.interval.ms").as_deref(),
        Some("1000")
    );
}

#[test]
fn a_retired_producers_wait_is_its_message_timeout_as_librdkafka_reads_it() {
    assert_eq!(message_timeout(Some("2000")), Duration::from_secs(2));
    assert_eq!(message_timeout(Some("0x7d0")), Duration::from_secs(2));
    assert_eq!(message_timeout(None), Duration::from_secs(300));
    assert_eq!(message_timeout(Some("0")), Duration::from_secs(300));
}
