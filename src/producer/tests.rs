//! Producer unit tests: error sorting, metric labels, a deadline that has already passed, the
//! start-up topic check, and a producer made again while records wait for their reports.

use super::*;

type MockCluster =
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// A mock cluster with one topic `t` of one partition, its properties and a sink on it.
fn one_topic_sink() -> (MockCluster, BTreeMap<String, String>, Arc<KafkaSink>) {
    one_topic_sink_with(&[])
}

/// [`one_topic_sink`] with more producer properties.
fn one_topic_sink_with(
    extra: &[(&str, &str)],
) -> (MockCluster, BTreeMap<String, String>, Arc<KafkaSink>) {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("t", 1, 1).expect("topic");
    let mut properties =
        BTreeMap::from([("bootstrap.servers".to_string(), cluster.bootstrap_servers())]);
    properties.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let metrics = Arc::new(Metrics::new(&["t".to_string()]).expect("metrics"));
    let sink =
        Arc::new(KafkaSink::new(&properties, metrics, ProducerRole::Webhooks).expect("producer"));
    (cluster, properties, sink)
}

/// `sink.rebuild` on a blocking thread, for topic `t`, with the cancel flag already `cancelled`.
async fn rebuild(
    sink: &Arc<KafkaSink>,
    properties: BTreeMap<String, String>,
    warm_up: Duration,
    cancelled: bool,
) -> Result<reload::ProducerHandle, reload::RebuildError> {
    let sink = sink.clone();
    tokio::task::spawn_blocking(move || {
        let cancel = std::sync::atomic::AtomicBool::new(cancelled);
        sink.rebuild(&properties, "t", warm_up, &cancel)
    })
    .await
    .expect("task")
}

fn record() -> Record<'static> {
    Record {
        topic: "t",
        key: None,
        value: b"{}",
        timestamp_ms: 0,
        headers: crate::record::RecordHeaders::Raw(&[]),
    }
}

#[test]
fn librdkafka_errors_sort_into_retryable_and_permanent() {
    let e = |c| ProduceError::from_kafka(&KafkaError::MessageProduction(c));
    assert_eq!(e(RDKafkaErrorCode::QueueFull), ProduceError::QueueFull);
    assert_eq!(
        e(RDKafkaErrorCode::MessageSizeTooLarge),
        ProduceError::TooLarge
    );
    // Until an operator fixes it: the sender is told to retry, or the record is spooled.
    for fixable in [
        RDKafkaErrorCode::TopicAuthorizationFailed,
        RDKafkaErrorCode::UnknownTopic,
        RDKafkaErrorCode::Authentication,
    ] {
        assert!(
            matches!(e(fixable), ProduceError::Refused(_)),
            "{fixable:?}"
        );
        assert!(!e(fixable).is_record_fault());
    }
    assert!(matches!(
        e(RDKafkaErrorCode::InvalidRecord),
        ProduceError::Rejected(_)
    ));
    assert!(e(RDKafkaErrorCode::InvalidRecord).is_record_fault());
    // Failed for another record of its batch: nothing wrong with it, and nothing wrong with Kafka.
    let casualty = e(RDKafkaErrorCode::InvalidDifferentRecord);
    assert!(casualty.is_batch_casualty() && !casualty.is_record_fault());
    assert!(!e(RDKafkaErrorCode::InvalidRecord).is_batch_casualty());
    assert!(!e(RDKafkaErrorCode::NotLeaderForPartition).is_batch_casualty());
    assert_eq!(e(RDKafkaErrorCode::MessageTimedOut), ProduceError::Timeout);
    assert!(matches!(
        e(RDKafkaErrorCode::NotLeaderForPartition),
        ProduceError::Unavailable(_)
    ));
    // The producer failed, not the record: the replacement producer will take it.
    assert!(matches!(
        e(RDKafkaErrorCode::Fatal),
        ProduceError::Unavailable(_)
    ));
}

/// Every code `from_kafka` names is sorted as the README's table says: a record too large is a
/// 413, an invalid one a 500 (never spooled, as it would block its conversation), and a refusal
/// an operator can fix is kept (503, or spooled) rather than answered as the record's own fault.
#[test]
fn each_code_librdkafka_names_is_sorted_into_the_answer_the_readme_gives_it() {
    let e = |c| ProduceError::from_kafka(&KafkaError::MessageProduction(c));
    use RDKafkaErrorCode as C;
    for code in [C::MessageSizeTooLarge, C::InvalidMessageSize] {
        assert_eq!(e(code), ProduceError::TooLarge, "{code:?}");
    }
    for code in [C::InvalidRecord, C::InvalidMessage, C::InvalidTimestamp] {
        assert_eq!(
            e(code),
            ProduceError::Rejected(format!("{code:?}")),
            "{code:?}"
        );
    }
    for code in [
        C::TopicAuthorizationFailed,
        C::ClusterAuthorizationFailed,
        C::UnknownTopic,
        C::InvalidTopic,
        C::Authentication,
    ] {
        assert_eq!(
            e(code),
            ProduceError::Refused(format!("{code:?}")),
            "{code:?}"
        );
    }
}

#[tokio::test]
async fn a_record_whose_deadline_has_passed_is_not_handed_to_librdkafka_nor_counted_as_a_delivery()
{
    let (_cluster, _, sink) = one_topic_sink();
    let record = record();
    let expired = sink.send(&record, Instant::now()).await;
    assert_eq!(expired, Err(ProduceError::Timeout));
    let text = String::from_utf8(sink.metrics.render()).expect("utf-8");
    assert!(
        text.contains(r#"kafka_deliveries_total{result="timeout",topic="t"} 0"#),
        "a record never sent counted as a Kafka timeout: {text}"
    );
    // Had the first been queued, it would hold offset 0 of the one partition.
    let next = sink
        .send(&record, Instant::now() + Duration::from_secs(30))
        .await;
    assert_eq!(
        next,
        Ok(Delivered::Kafka {
            partition: 0,
            offset: 0
        })
    );
}

#[tokio::test]
async fn a_record_librdkafka_times_out_before_the_deadline_is_a_timeout_in_the_metrics_too() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("t", 1, 1).expect("topic");
    cluster.broker_down(1).expect("down");
    let properties = BTreeMap::from([
        ("bootstrap.servers".to_string(), cluster.bootstrap_servers()),
        ("message.timeout.ms".to_string(), "300".to_string()),
    ]);
    let metrics = Arc::new(Metrics::new(&["t".to_string()]).expect("metrics"));
    let sink = KafkaSink::new(&properties, metrics.clone(), ProducerRole::Webhooks).expect("sink");
    let started = Instant::now();
    let sent = sink
        .send(&record(), started + Duration::from_secs(30))
        .await;
    assert_eq!(sent, Err(ProduceError::Timeout));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "librdkafka's timer fired, not the deadline"
    );
    let text = String::from_utf8(metrics.render()).expect("utf-8");
    assert!(
        text.contains(r#"kafka_deliveries_total{result="timeout",topic="t"} 1"#),
        "{text}"
    );
}

#[test]
fn metric_kinds_are_snake_case_names() {
    let e = ProduceError::from_kafka(&KafkaError::MessageProduction(
        RDKafkaErrorCode::NotLeaderForPartition,
    ));
    assert_eq!(e.metric_kind(), "not_leader_for_partition");
    assert_eq!(ProduceError::Timeout.metric_kind(), "timeout");
    assert_eq!(
        ProduceError::Unavailable("ProducerClosed".into()).metric_kind(),
        "producer_closed"
    );
    // Free text (a client error without a librdkafka code) never becomes a label value.
    let text = ProduceError::from_kafka(&KafkaError::Canceled);
    assert!(matches!(text, ProduceError::Unavailable(_)));
    assert_eq!(text.metric_kind(), "other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_waiting_for_their_report_are_delivered_when_the_producer_is_made_again() {
    // A linger long enough for the five records below to leave in one produce request, so that
    // each injected error holds all of them.
    let (cluster, properties, sink) = one_topic_sink_with(&[("linger.ms", "100")]);
    let deadline = || Instant::now() + Duration::from_secs(30);
    sink.send(&record(), deadline()).await.expect("connected");
    // The next produce requests fail with an error librdkafka retries (backing off 0.1 s, then
    // twice as long each time up to 1 s): the records wait through the rebuild, whose own
    // requests are not produce requests.
    use rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS as RETRIABLE;
    cluster.request_errors(rdkafka::types::RDKafkaApiKey::Produce, &[RETRIABLE; 8]);
    let waiting: Vec<_> = (0..5)
        .map(|_| {
            let sink = sink.clone();
            tokio::spawn(async move { sink.send(&record(), deadline()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut rotated = properties.clone();
    rotated.insert("client.id".into(), "rotated".into());
    let old = rebuild(&sink, rotated, Duration::from_secs(10), false)
        .await
        .expect("rebuilt");
    assert!(
        old.producer.in_flight_count() > 0 && waiting.iter().all(|w| !w.is_finished()),
        "the records were still waiting in the replaced producer"
    );
    tokio::task::spawn_blocking(move || reload::retire(old))
        .await
        .expect("task");
    for w in waiting {
        let delivered = w.await.expect("task");
        assert!(
            matches!(delivered, Ok(Delivered::Kafka { .. })),
            "{delivered:?}"
        );
    }
    assert_eq!(sink.property("client.id").as_deref(), Some("rotated"));
    assert!(sink.send(&record(), deadline()).await.is_ok());
}

#[tokio::test]
async fn a_producer_that_cannot_reach_a_broker_does_not_replace_the_working_one() {
    let (_cluster, _, sink) = one_topic_sink();
    // What refused credentials look like from here: no broker ever answers.
    let unreachable = BTreeMap::from([
        ("bootstrap.servers".to_string(), "127.0.0.1:9".to_string()),
        ("client.id".to_string(), "unreachable".to_string()),
    ]);
    let refused = rebuild(&sink, unreachable, Duration::from_millis(500), false).await;
    assert!(
        matches!(refused, Err(reload::RebuildError::Unreachable(_))),
        "{refused:?}"
    );
    assert_eq!(sink.property("client.id"), None);
    let delivered = sink
        .send(&record(), Instant::now() + Duration::from_secs(30))
        .await;
    assert!(delivered.is_ok(), "{delivered:?}");
}

/// A port nothing listens on: bound, then let go.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").to_string()
}

/// `sink`'s readiness check for `t`, on a blocking thread.
async fn readiness(sink: &Arc<KafkaSink>) -> Result<(), String> {
    let sink = sink.clone();
    tokio::task::spawn_blocking(move || sink.readiness_check("t", Duration::from_millis(100)))
        .await
        .expect("check")
}

/// A check that reaches no broker fails with `BrokerTransportFailure` whatever the cause (a
/// refused password, a certificate, a dead port): `/readyz` quotes librdkafka's own last error
/// too, the producer in place's: not a rebuild candidate's (whose rotated credentials may be the
/// ones refused) until it is put in place, and then its own from before (librdkafka repeats an
/// identical error only every 30 s).
#[tokio::test]
async fn a_check_that_reaches_no_broker_quotes_the_last_error_of_the_producer_in_place() {
    let (in_place, candidate) = (closed_port(), closed_port());
    let properties = BTreeMap::from([("bootstrap.servers".to_string(), in_place.clone())]);
    let metrics = Arc::new(Metrics::new(&["t".to_string()]).expect("metrics"));
    let sink =
        Arc::new(KafkaSink::new(&properties, metrics, ProducerRole::Webhooks).expect("producer"));
    let mut rotated = properties.clone();
    rotated.insert("bootstrap.servers".into(), candidate.clone());
    let fresh = another_producer(&sink, &rotated);
    let refused = |port: &str| {
        format!("s ago: BrokerTransportFailure: {port}/bootstrap: Connect to ipv4#{port} failed: Connection refused")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let why = readiness(&sink).await.expect_err("no broker");
        assert!(
            why.starts_with("no broker answered a metadata request for t ("),
            "{why}"
        );
        if why.contains(&refused(&in_place)) {
            break;
        }
        assert!(Instant::now() < deadline, "no cause within 10 s: {why}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The candidate has tried its broker by now too (both connect at once), and been refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let why = readiness(&sink).await.expect_err("no broker");
    assert!(why.contains(&refused(&in_place)), "{why}");
    drop(sink.put(fresh));
    let why = readiness(&sink).await.expect_err("no broker");
    assert!(why.contains(&refused(&candidate)), "{why}");
}

/// A check that passes forgets librdkafka's last error: a later failure that brings no error of
/// its own (a broker connected but slow to answer) would otherwise quote, as its cause, one that
/// was fixed before the check passed, and send the operator after a problem that is gone.
#[tokio::test]
async fn a_readiness_check_that_passes_forgets_librdkafkas_last_error() {
    let (_cluster, _, sink) = one_topic_sink();
    let fixed = "SASL authentication error: Authentication failed";
    sink.last_error().set(fixed, std::time::Instant::now());
    let probe = sink.clone();
    let check =
        tokio::task::spawn_blocking(move || probe.readiness_check("t", Duration::from_secs(10)));
    assert_eq!(check.await.expect("task"), Ok(()));
    assert_eq!(sink.last_error().cause(std::time::Instant::now()), "");
}

/// A producer librdkafka has declared failed still gets its metadata answered, but refuses every
/// record until it is replaced: readiness must fail on it, and say so, or the pod keeps getting
/// webhooks it can only answer 503.
#[tokio::test]
async fn a_failed_producer_fails_the_readiness_check_though_its_broker_answers() {
    let (cluster, _, sink) = one_topic_sink_with(&[("enable.idempotence", "true")]);
    // Twice: one refusal may be lost with the bootstrap connection (see
    // `an_idle_producer_declared_failed_is_replaced`).
    let refused = rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED;
    cluster.request_errors(
        rdkafka::types::RDKafkaApiKey::InitProducerId,
        &[refused, refused],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.fatal_error().is_none() {
        assert!(Instant::now() < deadline, "not declared failed within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let probe = sink.clone();
    let check =
        tokio::task::spawn_blocking(move || probe.readiness_check("t", Duration::from_secs(10)));
    let why = check
        .await
        .expect("task")
        .expect_err("a failed producer is not ready");
    assert!(
        why.starts_with("the producer has failed: ")
            && why.contains("Cluster authorization failed"),
        "{why}"
    );
}

#[tokio::test]
async fn a_topic_the_brokers_refuse_fails_the_readiness_check_and_the_rebuild() {
    let (cluster, properties, sink) = one_topic_sink();
    let check = |sink: Arc<KafkaSink>| {
        tokio::task::spawn_blocking(move || sink.readiness_check("t", Duration::from_secs(5)))
    };
    assert!(check(sink.clone()).await.expect("task").is_ok());
    cluster
        .topic_error(
            "t",
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .expect("topic error");
    let refused = check(sink.clone()).await.expect("task");
    assert!(
        refused
            .as_ref()
            .is_err_and(|why| why.starts_with("the brokers refuse topic t: ")
                && why.ends_with("(TopicAuthorizationFailed)")),
        "{refused:?}"
    );
    // What new credentials without the topic's ACL look like: a broker answers, but not for `t`.
    let mut rotated = properties.clone();
    rotated.insert("client.id".into(), "no-acl-yet".into());
    let rebuilt = rebuild(&sink, rotated, Duration::from_secs(5), false).await;
    assert!(
        matches!(&rebuilt, Err(reload::RebuildError::TopicRefused(e)) if e == "TopicAuthorizationFailed"),
        "{rebuilt:?}"
    );
    assert_eq!(sink.property("client.id"), None);
}

/// Readiness checked on topic `t` every 100 ms: its state, the stop and the task.
fn watching_readiness(
    sink: Arc<KafkaSink>,
) -> (
    Arc<KafkaCheck>,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let check = Arc::new(KafkaCheck::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watching = tokio::spawn(watch_readiness(
        sink,
        "t".into(),
        check.clone(),
        Duration::from_millis(100),
        stopped,
    ));
    (check, stop, watching)
}

/// `/readyz` says which check failed: with the topic refused it said "the producer has failed or
/// no broker answered the last metadata request", although a broker had answered. A bridge that
/// never reaches Kafka logs it once, at its first check: the alert on Kafka being unreachable
/// sends operators to that line.
#[tokio::test]
async fn a_failed_readiness_check_says_the_brokers_refuse_the_topic_and_a_first_is_logged_once() {
    let (kept, _guard) = crate::telemetry::Kept::on_this_thread();
    let (cluster, _properties, sink) = one_topic_sink();
    cluster
        .topic_error(
            "t",
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .expect("topic error");
    let (check, stop, watching) = watching_readiness(sink);
    let deadline = Instant::now() + Duration::from_secs(10);
    while check.why_not() == "not checked yet" {
        assert!(Instant::now() < deadline, "no check within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Several more checks, 100 ms apart, all failing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).expect("stop");
    watching.await.expect("watch");
    assert!(!check.ready());
    let why = check.why_not();
    assert!(
        why.starts_with("the brokers refuse topic t: ")
            && why.ends_with("(TopicAuthorizationFailed)"),
        "{why}"
    );
    let logged = kept.text();
    let failed = the_one_line(&logged, "Kafka check failed: not ready");
    assert!(
        failed.contains("WARN") && failed.contains("TopicAuthorizationFailed"),
        "{logged}"
    );
}

#[tokio::test]
async fn a_rebuild_cancelled_by_shutdown_does_not_take_over() {
    let (_cluster, properties, sink) = one_topic_sink();
    let mut rotated = properties.clone();
    rotated.insert("client.id".into(), "too-late".into());
    let cancelled = rebuild(&sink, rotated, Duration::from_secs(10), true).await;
    assert!(
        matches!(cancelled, Err(reload::RebuildError::Cancelled)),
        "{cancelled:?}"
    );
    assert_eq!(sink.property("client.id"), None);
}

/// `Record::wire_size` is the size librdkafka checks against `message.max.bytes`: a producer
/// whose limit is exactly that size takes the record (and, with no broker, times out), one a
/// byte smaller refuses it at once. The bridge reads the limit as librdkafka does, in hex or
/// octal too: read as decimal, `0x…` fell back to 1000000 and passed records librdkafka refused.
#[tokio::test]
async fn wire_size_is_the_size_librdkafka_weighs_against_message_max_bytes() {
    let value = vec![b'x'; 3000];
    let headers = [
        ("event", "whatsapp:message:in"),
        ("request-id", "01HZY3J5W4ZK6M8Q9R2T7V0X1Y"),
        ("long", &*"h".repeat(200)),
        // 64 bytes, as every record's digest: the first length whose zig-zag varint takes two
        // bytes (a plain varint would take one).
        ("body-sha256", &*"d".repeat(64)),
    ];
    let record = Record {
        topic: "t",
        key: Some(std::borrow::Cow::Borrowed("919876543210")),
        value: &value,
        timestamp_ms: 0,
        headers: crate::record::RecordHeaders::Raw(&headers),
    };
    let size = record.wire_size();
    let sent_with_limit = |limit: usize, spelled: String| {
        let properties = BTreeMap::from([
            // Nothing listens there: a record librdkafka takes waits until the deadline.
            ("bootstrap.servers".to_string(), "127.0.0.1:9".to_string()),
            ("message.max.bytes".to_string(), spelled),
        ]);
        let metrics = Arc::new(Metrics::new(&["t".to_string()]).expect("metrics"));
        let sink = KafkaSink::new(&properties, metrics, ProducerRole::Webhooks).expect("producer");
        assert_eq!(sink.max_record_bytes(), limit);
        let record = &record;
        async move {
            sink.send(record, Instant::now() + Duration::from_millis(200))
                .await
        }
    };
    let spellings: [fn(usize) -> String; 3] = [
        |n| n.to_string(),
        |n| format!("{n:#x}"),
        |n| format!("0{n:o}"),
    ];
    for spell in spellings {
        let taken = sent_with_limit(size, spell(size)).await;
        assert_eq!(taken, Err(ProduceError::Timeout), "{}", spell(size));
        let refused = sent_with_limit(size - 1, spell(size - 1)).await;
        assert_eq!(refused, Err(ProduceError::TooLarge), "{}", spell(size - 1));
    }
}

/// New credentials the brokers let describe the topic but not write to it: the idempotent
/// producer is refused its producer id, which librdkafka takes as fatal. Put in place, it would
/// fail every record, and the replacement made from the same files would fail again. librdkafka
/// reads `1` and `t` as true too, so the check must not hang on the spelling.
#[tokio::test]
async fn a_producer_refused_its_producer_id_does_not_replace_the_working_one() {
    for idempotence in ["true", "1", "T"] {
        let (cluster, properties, sink) = one_topic_sink();
        // Twice: one refusal may be lost with the candidate's bootstrap connection (see
        // `an_idle_producer_declared_failed_is_replaced`); the old producer asks for no id.
        let refused =
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED;
        cluster.request_errors(
            rdkafka::types::RDKafkaApiKey::InitProducerId,
            &[refused, refused],
        );
        let mut rotated = properties.clone();
        rotated.insert("enable.idempotence".into(), idempotence.into());
        rotated.insert("client.id".into(), "no-write-acl".into());
        let rebuilt = rebuild(&sink, rotated, Duration::from_secs(5), false).await;
        assert!(
            matches!(&rebuilt, Err(reload::RebuildError::Failed(_))),
            "{idempotence}: {rebuilt:?}"
        );
        assert_eq!(sink.property("client.id"), None);
        let delivered = sink
            .send(&record(), Instant::now() + Duration::from_secs(30))
            .await;
        assert!(delivered.is_ok(), "{delivered:?}");
    }
}

/// A candidate made from rotated settings that reach no broker: while it waits for the topic's
/// metadata, its statistics must not replace the working producer's on the gauges; once a
/// candidate is put in place, its own are the ones shown, and the replaced producer's no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_candidate_stays_off_the_gauges_until_it_is_put_in_place() {
    let (_cluster, properties, sink) = one_topic_sink_with(&[("statistics.interval.ms", "50")]);
    let queue_max = |sink: &KafkaSink| -> i64 {
        String::from_utf8(sink.metrics.render())
            .expect("utf-8")
            .lines()
            .find_map(|l| l.strip_prefix("qikchat_bridge_kafka_queue_max_messages "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1)
    };
    let shown = |sink: Arc<KafkaSink>, wanted: i64| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while queue_max(&sink) != wanted {
            assert!(Instant::now() < deadline, "the gauge never showed {wanted}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    // librdkafka's default queue size, from the working producer's statistics.
    shown(sink.clone(), 100_000).await;
    // Told apart by the queue size each reports.
    let mut unreachable = properties.clone();
    unreachable.insert("bootstrap.servers".into(), "127.0.0.1:1".into());
    unreachable.insert("queue.buffering.max.messages".into(), "12345".into());
    let making = tokio::spawn({
        let sink = sink.clone();
        async move { rebuild(&sink, unreachable, Duration::from_secs(1), false).await }
    });
    while !making.is_finished() {
        assert_ne!(
            queue_max(&sink),
            12345,
            "the candidate's statistics took the gauges"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(making.await.expect("task").is_err(), "no broker to reach");
    let mut rotated = properties.clone();
    rotated.insert("queue.buffering.max.messages".into(), "23456".into());
    // Kept, as a rotation keeps it while it delivers what it holds: retired, its statistics
    // still come, and must not take the gauges back from the producer in place.
    let _retiring = rebuild(&sink, rotated, Duration::from_secs(5), false)
        .await
        .expect("put in place");
    shown(sink.clone(), 23456).await;
    for _ in 0..50 {
        assert_eq!(
            queue_max(&sink),
            23456,
            "the replaced producer's statistics took the gauges back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The spool's replay producer shares the metrics, but its queue decides no answer: its
/// statistics count its traffic and never take the gauges, which show the webhooks' producer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_producers_statistics_stay_off_the_gauges() {
    let (cluster, properties, sink) = one_topic_sink_with(&[("statistics.interval.ms", "50")]);
    let queue_max = || -> i64 {
        String::from_utf8(sink.metrics.render())
            .expect("utf-8")
            .lines()
            .find_map(|l| l.strip_prefix("qikchat_bridge_kafka_queue_max_messages "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue_max() != 100_000 {
        assert!(
            Instant::now() < deadline,
            "the webhooks' producer's gauge never shown"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut own = properties.clone();
    own.insert("queue.buffering.max.messages".into(), "34567".into());
    let _replay =
        KafkaSink::new(&own, sink.metrics.clone(), ProducerRole::Replay).expect("replay producer");
    for _ in 0..50 {
        assert_eq!(
            queue_max(),
            100_000,
            "the replay producer's statistics took the gauges"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(cluster);
}

#[tokio::test]
async fn a_replacement_asked_for_a_producer_that_has_not_failed_keeps_it() {
    let (_cluster, _, sink) = one_topic_sink();
    // As after a rebuild: the failure was seen, then a working producer was put in place.
    replace::Replaceable::replace(sink.clone())
        .await
        .expect("nothing to do");
    let replaced = sink
        .metrics
        .producers_replaced
        .with_label_values(&["webhooks"])
        .get();
    assert_eq!(replaced, 0);
    let sent = sink
        .send(&record(), Instant::now() + Duration::from_secs(30))
        .await;
    assert!(matches!(sent, Ok(Delivered::Kafka { .. })), "{sent:?}");
}

#[tokio::test]
async fn topics_the_brokers_do_not_know_are_named_with_their_reason() {
    // The mock creates a topic a producer names; the check asks for all topics, so it creates none.
    let (_cluster, _, sink) = one_topic_sink();
    let topics = vec!["t".to_string(), "whatsapp.unrouted".to_string()];
    let (refused, again) = tokio::task::spawn_blocking(move || {
        let check = || {
            sink.missing_topics(&topics, Duration::from_secs(10))
                .expect("the broker answered")
        };
        (check(), check())
    })
    .await
    .expect("task");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, "whatsapp.unrouted");
    assert!(refused[0].1.contains("does not exist"), "{refused:?}");
    assert_eq!(again, refused, "the check created no topic");
}

/// A topic the brokers list with an error of its own (the bridge may not describe it, it has no
/// leader yet) refuses records as surely as a missing one: the start-up check names it too, with
/// the brokers' reason.
#[tokio::test]
async fn a_topic_the_brokers_list_with_an_error_is_named_with_that_error() {
    let (cluster, _, sink) = one_topic_sink();
    cluster
        .topic_error(
            "t",
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .expect("topic error");
    let topics = vec!["t".to_string()];
    let missing =
        tokio::task::spawn_blocking(move || sink.missing_topics(&topics, Duration::from_secs(10)))
            .await
            .expect("task")
            .expect("the broker answered");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0].0, "t");
    assert!(
        missing[0].1.ends_with("(TopicAuthorizationFailed)"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn the_topic_check_asks_again_until_a_broker_answers() {
    let (cluster, _, sink) = one_topic_sink();
    cluster.broker_down(1).expect("broker down");
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let topics = vec!["t".to_string(), "absent".to_string()];
    let (timeout, retry) = (Duration::from_millis(300), Duration::from_millis(100));
    let check = tokio::spawn(readiness::missing_topics_once_answered(
        sink, topics, stop, timeout, retry,
    ));
    // Real time: librdkafka's clock. Several asks fail meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!check.is_finished(), "no broker has answered yet");
    cluster.broker_up(1).expect("broker up");
    let answer = tokio::time::timeout(Duration::from_secs(60), check)
        .await
        .expect("answered once the broker was back")
        .expect("task");
    let named: Vec<String> = answer
        .expect("not stopped")
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(named, ["absent"]);
}

#[tokio::test(start_paused = true)]
async fn the_topic_check_ends_without_an_answer_when_the_bridge_stops() {
    let (cluster, _, sink) = one_topic_sink();
    cluster.broker_down(1).expect("broker down");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let check = tokio::spawn(readiness::missing_topics_once_answered(
        sink,
        vec!["t".to_string()],
        stop,
        Duration::from_millis(50),
        Duration::from_secs(3600),
    ));
    stop_tx.send(true).expect("send");
    let answer = tokio::time::timeout(Duration::from_secs(10), check).await;
    assert_eq!(answer.expect("stopped at once").expect("task"), None);
}

#[tokio::test]
async fn replay_tells_a_keyed_records_partition_as_librdkafka_places_it() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("t", 3, 1).expect("topic");
    let sink = |partitioner: Option<&str>| {
        let mut properties =
            BTreeMap::from([("bootstrap.servers".to_string(), cluster.bootstrap_servers())]);
        if let Some(p) = partitioner {
            properties.insert("partitioner".into(), p.into());
        }
        let metrics = Arc::new(Metrics::new(&["t".to_string()]).expect("metrics"));
        KafkaSink::new(&properties, metrics, ProducerRole::Replay).expect("producer")
    };
    let murmur2 = sink(Some("murmur2_random"));
    assert_eq!(murmur2.key_partitions("t").await, Some(3));
    let mut seen = std::collections::HashSet::new();
    // Lengths 1 to 12: murmur2 hashes the last 1 to 3 bytes of a key apart.
    for i in 0..30 {
        let key = format!("{i}{}", "9198765432".get(..i % 11).unwrap_or_default());
        let record = Record {
            key: Some(key.as_str().into()),
            ..record()
        };
        let delivered = murmur2
            .send(&record, Instant::now() + Duration::from_secs(30))
            .await
            .expect("delivered");
        let Delivered::Kafka { partition, .. } = delivered else {
            panic!("not from Kafka: {delivered:?}");
        };
        assert_eq!(partition, spread::partition_of(key.as_bytes(), 3), "{key}");
        seen.insert(partition);
    }
    assert_eq!(seen.len(), 3, "the keys spread over every partition");
    // librdkafka's own default hashes with CRC32: not followed.
    assert_eq!(sink(None).key_partitions("t").await, None);
    assert_eq!(sink(Some("consistent")).key_partitions("t").await, None);
}

#[test]
fn failures_of_a_partition_are_told_from_failures_of_the_producer_or_cluster() {
    let e = |c| ProduceError::from_kafka(&KafkaError::MessageProduction(c));
    use RDKafkaErrorCode as C;
    for code in [
        C::MessageTimedOut,
        C::LeaderNotAvailable,
        C::NotLeaderForPartition,
        C::PreferredLeaderNotAvailable,
        C::RequestTimedOut,
        C::NotEnoughReplicas,
        C::NotEnoughReplicasAfterAppend,
        C::KafkaStorageError,
        C::BrokerNotAvailable,
        C::BrokerTransportFailure,
    ] {
        assert!(e(code).is_partition_failure(), "{code:?}");
    }
    for code in [
        C::AllBrokersDown,
        C::Fatal,
        C::QueueFull,
        C::TopicAuthorizationFailed,
        C::MessageSizeTooLarge,
    ] {
        assert!(!e(code).is_partition_failure(), "{code:?}");
    }
    assert!(ProduceError::Timeout.is_partition_failure(), "the deadline");
    assert!(!ProduceError::Unavailable("ProducerClosed".into()).is_partition_failure());
}

#[tokio::test]
async fn librdkafkas_texts_are_scrubbed_of_the_secrets_a_rebuild_rotated_in() {
    let (_cluster, mut properties, sink) = one_topic_sink_with(&[("sasl.password", "first-pw")]);
    assert_eq!(sink.scrubber().scrub("pw: first-pw"), "pw: <redacted>");
    properties.insert("sasl.password".into(), "rotated-pw".into());
    let old = rebuild(&sink, properties, Duration::from_secs(10), false)
        .await
        .expect("rebuilt");
    assert_eq!(sink.scrubber().scrub("pw: rotated-pw"), "pw: <redacted>");
    assert_eq!(
        old.attached.scrubber.scrub("pw: first-pw"),
        "pw: <redacted>"
    );
}

#[tokio::test]
async fn a_producer_made_again_with_another_partitioner_is_no_longer_followed_by_replay() {
    let (_cluster, mut properties, sink) =
        one_topic_sink_with(&[("partitioner", "murmur2_random")]);
    assert_eq!(sink.key_partitions("t").await, Some(1));
    properties.insert("partitioner".into(), "consistent_random".into());
    rebuild(&sink, properties, Duration::from_secs(10), false)
        .await
        .expect("rebuilt");
    assert_eq!(sink.key_partitions("t").await, None);
}

/// `KAFKA_MESSAGE_MAX_BYTES_FILE` rotated: the bridge's own check of a record's size (a 413, or
/// a spooled record it would never deliver) follows the new producer's limit.
#[tokio::test]
async fn a_producer_made_again_with_another_record_limit_has_the_bridge_check_by_it() {
    let (_cluster, mut properties, sink) = one_topic_sink_with(&[("message.max.bytes", "200000")]);
    assert_eq!(sink.max_record_bytes(), 200_000);
    properties.insert("message.max.bytes".into(), "100000".into());
    rebuild(&sink, properties, Duration::from_secs(10), false)
        .await
        .expect("rebuilt");
    assert_eq!(sink.max_record_bytes(), 100_000);
}

/// Replay's sends wait up to 30 s behind a backlog: timed with the webhooks', they would pin the
/// delivery-time histogram (whose buckets end at 5 s) at its top after every outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_deliveries_are_counted_but_only_the_webhooks_are_timed() {
    let (_cluster, properties, webhooks) = one_topic_sink();
    let replay = KafkaSink::new(&properties, webhooks.metrics.clone(), ProducerRole::Replay)
        .expect("producer");
    let deadline = Instant::now() + Duration::from_secs(10);
    let timed = |sink: &KafkaSink| {
        String::from_utf8(sink.metrics.render())
            .expect("utf-8")
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    r#"qikchat_bridge_kafka_delivery_duration_seconds_count{topic="t"} "#,
                )
            })
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("the delivery-time histogram")
    };
    replay.send(&record(), deadline).await.expect("replayed");
    // Looked at between the two sends: with one timed in all, a count of 1 at the end would not
    // tell which role was timed.
    assert_eq!(timed(&webhooks), 0, "the replayed delivery was timed");
    webhooks.send(&record(), deadline).await.expect("delivered");
    let text = String::from_utf8(webhooks.metrics.render()).expect("utf-8");
    assert!(
        text.contains(r#"kafka_deliveries_total{result="ok",topic="t"} 2"#),
        "{text}"
    );
    assert_eq!(timed(&webhooks), 1, "the webhook's delivery was not timed");
}

// Real clock: librdkafka's own threads time the round trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_broker_still_answers_the_shutdown_probe_and_a_down_one_does_not() {
    let (cluster, _properties, sink) = one_topic_sink();
    let probe = |sink: Arc<KafkaSink>| {
        tokio::task::spawn_blocking(move || sink.brokers_answer("t", Duration::from_secs(1)))
    };
    // A delivery first: the connection to the partition's leader is up, as replay's is while
    // its round waits.
    sink.send(&record(), Instant::now() + Duration::from_secs(30))
        .await
        .expect("delivered");
    assert!(probe(sink.clone()).await.expect("probe"), "a broker up");
    // Connected, but slower than the probe's timeout: its deliveries may still come.
    cluster
        .broker_round_trip_time(1, Duration::from_secs(3))
        .expect("rtt");
    assert!(probe(sink.clone()).await.expect("probe"), "a slow broker");
    cluster
        .broker_round_trip_time(1, Duration::ZERO)
        .expect("rtt");
    cluster.broker_down(1).expect("down");
    // The connection's loss takes librdkafka a moment to see.
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe(sink.clone()).await.expect("probe") {
        assert!(Instant::now() < deadline, "a broker down still answers");
    }
}

/// A credential rotated during the shutdown's flush puts a new producer in place; the flush keeps
/// waiting on the one that holds the records, instead of ending on the new, empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_flush_waits_on_the_producer_it_began_with_through_a_rebuild() {
    let (cluster, properties, sink) = one_topic_sink();
    let deadline = || Instant::now() + Duration::from_secs(60);
    sink.send(&record(), deadline()).await.expect("connected");
    // Produce requests fail, retriably, for a few seconds (librdkafka backs off up to 1 s).
    use rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS as RETRIABLE;
    cluster.request_errors(rdkafka::types::RDKafkaApiKey::Produce, &[RETRIABLE; 6]);
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let sink = sink.clone();
            tokio::spawn(async move { sink.send(&record(), deadline()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (cut, _watching) = crate::drain::Cut::when(std::future::pending());
    let flushing = sink.flushing();
    let flush = tokio::task::spawn_blocking(move || {
        crate::drain::flush(&flushing, Duration::from_secs(30), &cut)
    });
    let mut rotated = properties.clone();
    rotated.insert("client.id".into(), "rotated".into());
    let old = rebuild(&sink, rotated, Duration::from_secs(10), false)
        .await
        .expect("rebuilt");
    flush.await.expect("task").expect("flushed");
    assert_eq!(
        old.producer.in_flight_count(),
        0,
        "the flush ended with records still in the producer it began with"
    );
    for w in waiting {
        assert!(matches!(
            w.await.expect("task"),
            Ok(Delivered::Kafka { .. })
        ));
    }
    tokio::task::spawn_blocking(move || reload::retire(old))
        .await
        .expect("task");
}

/// Replay sends a record spooled under an earlier configuration to the topic that one routed it
/// to: its deliveries count too, or a replay after a change of routes would look like nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_a_topic_the_configuration_does_not_name_are_counted_under_it() {
    let (cluster, properties, webhooks) = one_topic_sink();
    cluster.create_topic("earlier", 1, 1).expect("topic");
    let replay = KafkaSink::new(&properties, webhooks.metrics.clone(), ProducerRole::Replay)
        .expect("producer");
    let deadline = Instant::now() + Duration::from_secs(10);
    let spooled_earlier = Record {
        topic: "earlier",
        ..record()
    };
    replay
        .send(&spooled_earlier, deadline)
        .await
        .expect("replayed");
    replay.count_refused("earlier", &ProduceError::TooLarge);
    let text = String::from_utf8(webhooks.metrics.render()).expect("utf-8");
    for line in [
        r#"kafka_deliveries_total{result="ok",topic="earlier"} 1"#,
        r#"kafka_deliveries_total{result="msg_size_too_large",topic="earlier"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}

/// The replacement task asks the sink whether its producer has failed, and logs under its role:
/// a working producer is not failed, or the task would "replace" it again and again, logging a
/// failure each time, and meet a real failure only when its growing pause ran out.
#[tokio::test]
async fn the_replacement_task_sees_a_working_producer_as_not_failed_under_its_role() {
    let (_cluster, _properties, sink) = one_topic_sink();
    assert_eq!(replace::Replaceable::failure(&*sink), None);
    assert_eq!(replace::Replaceable::role_label(&*sink), "webhooks");
}

/// Whether the replacement task was woken (`sink.fatal` notified) since it last looked; looking
/// takes the wake-up.
fn fatal_woken(sink: &KafkaSink) -> bool {
    // A permit stored by `notify_one` makes `notified` ready at its first poll.
    std::pin::pin!(sink.fatal.notified())
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        .is_ready()
}

/// An error callback with the code `Fatal` wakes the replacement task, and another error does not
/// (it would only have the task look again for nothing). librdkafka 2.12's event API passes a
/// fatal error's cause instead (see the next test): this guards a client that passes the code as
/// librdkafka's documentation describes it.
#[tokio::test]
async fn a_fatal_error_librdkafka_calls_back_with_wakes_the_replacement_task_and_another_does_not()
{
    use rdkafka::client::ClientContext;
    use rdkafka::error::RDKafkaErrorCode;
    let (_cluster, _properties, sink) = one_topic_sink();
    let context = sink.current().client().context().clone();
    context.error(
        KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
        "1/1 brokers are down",
    );
    assert!(
        !fatal_woken(&sink),
        "a broker outage is no failure of the producer"
    );
    context.error(
        KafkaError::Global(RDKafkaErrorCode::Fatal),
        "Fatal error: Broker: Broker received an out of order sequence number",
    );
    assert!(fatal_woken(&sink), "the fatal error woke nothing");
}

/// librdkafka raises a fatal error with a log line of facility `FATAL`, then calls the error
/// callback with the error's cause, not `Fatal` (rdkafka_event.h translates it): the log line
/// must wake the replacement task, or an idle failed producer waits for the next look.
#[tokio::test]
async fn librdkafkas_fatal_log_line_wakes_the_replacement_task() {
    use rdkafka::client::ClientContext;
    use rdkafka::config::RDKafkaLogLevel;
    let (_cluster, _properties, sink) = one_topic_sink();
    let context = sink.current().client().context().clone();
    context.log(
        RDKafkaLogLevel::Warning,
        "GETPID",
        "Failed to acquire idempotence PID from broker b/1: Broker: Not coordinator: retrying",
    );
    assert!(
        !fatal_woken(&sink),
        "a retried error is no failure of the producer"
    );
    context.log(
        RDKafkaLogLevel::Emerg,
        "FATAL",
        "Fatal error: Broker: Cluster authorization failed: Failed to acquire idempotence PID",
    );
    assert!(fatal_woken(&sink), "the fatal error woke nothing");
}

/// An idle producer that librdkafka declares failed (no record in it, so no delivery report says
/// so: an unready pod gets no webhooks, a replayer with an empty spool sends nothing) is replaced
/// all the same. librdkafka's error callback does not name it `Fatal`: it passes the underlying
/// error (here `ClusterAuthorizationFailed`), so the replacement task must not wait for that word,
/// or the failed producer stays, and the pod unready, until the process restarts.
#[tokio::test]
async fn an_idle_producer_declared_failed_is_replaced() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("t", 1, 1).expect("topic");
    // Refused twice, as one refusal may never reach the producer: librdkafka may ask for its
    // producer id on its bootstrap connection, which it closes as soon as the cluster's metadata
    // names broker 1. The refusal, held back by the round trip below, is then lost with it: the
    // request fails as `_DESTROY_BROKER` and is retried on broker 1, which, refusing once only,
    // gave an id, and nothing failed (on a loaded machine, about 1 run in 20; with a 400 ms
    // round trip, every run). The second refusal then fails the producer; otherwise it fails the
    // replacement, which the task replaces in turn, unlooked at.
    let refused = rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED;
    cluster.request_errors(
        rdkafka::types::RDKafkaApiKey::InitProducerId,
        &[refused, refused],
    );
    // Answers come late enough for the task to wait for a wake-up before the failure.
    cluster
        .broker_round_trip_time(1, Duration::from_millis(300))
        .expect("rtt");
    let properties = BTreeMap::from([
        ("bootstrap.servers".to_string(), cluster.bootstrap_servers()),
        ("enable.idempotence".to_string(), "true".to_string()),
    ]);
    let metrics = Arc::new(Metrics::new(&["t".to_string()]).expect("metrics"));
    let sink =
        Arc::new(KafkaSink::new(&properties, metrics, ProducerRole::Webhooks).expect("producer"));
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(replace::replace_on_fatal(sink.clone(), stop));
    let replaced = || {
        sink.metrics
            .producers_replaced
            .with_label_values(&["webhooks"])
            .get()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while replaced() == 0 {
        assert!(
            Instant::now() < deadline,
            "not replaced within 15 s; failed: {:?}",
            sink.fatal_error()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
}

/// Readiness logs its changes, not its checks: that Kafka answers once it does, and a failed check
/// at `warn` once it fails, with why (the pod turning unready says nothing else in the log).
#[tokio::test]
async fn readiness_logs_when_kafka_starts_answering_and_when_a_check_then_fails() {
    let (kept, _guard) = crate::telemetry::Kept::on_this_thread();
    let (cluster, _properties, sink) = one_topic_sink();
    let (check, stop, watching) = watching_readiness(sink);
    let until = |ready: bool, what: &'static str| {
        let check = check.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while check.ready() != ready {
                assert!(Instant::now() < deadline, "{what} within 10 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    until(true, "ready").await;
    cluster
        .topic_error(
            "t",
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .expect("topic error");
    until(false, "unready").await;
    stop.send(true).expect("stop");
    watching.await.expect("watch");
    let logged = kept.text();
    let answers = "Kafka answers metadata requests";
    the_one_line(&logged, answers);
    // A first check that failed before the broker ever answered (a loaded host's transport
    // failure) is logged as well, by design: the failure under test is the one after.
    let after = &logged[logged.find(answers).expect("answers")..];
    let failed = the_one_line(after, "Kafka check failed: not ready");
    assert!(
        failed.contains("WARN") && failed.contains("TopicAuthorizationFailed"),
        "{logged}"
    );
}

/// The line of `logged` that holds `text`, which must be one.
fn the_one_line<'a>(logged: &'a str, text: &str) -> &'a str {
    let lines: Vec<&str> = logged.lines().filter(|l| l.contains(text)).collect();
    assert_eq!(lines.len(), 1, "{text:?} in {logged}");
    lines[0]
}

/// A topic the brokers do not offer refuses every record routed to it, which readiness (probing
/// one topic) does not show: the start-up check logs each such topic at `warn` with why, and
/// none that they offer.
#[tokio::test]
async fn the_start_up_topic_check_warns_of_each_topic_the_brokers_do_not_offer() {
    let (kept, _guard) = crate::telemetry::Kept::on_this_thread();
    let (_cluster, _properties, sink) = one_topic_sink();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let topics = vec!["t".to_string(), "whatsapp.unrouted".to_string()];
    tokio::time::timeout(
        Duration::from_secs(30),
        warn_of_missing_topics(sink, topics, stopped),
    )
    .await
    .expect("the broker answered");
    let logged = kept.text();
    let warned = the_one_line(&logged, "the brokers do not offer this topic");
    assert!(
        warned.contains("WARN")
            && warned.contains("topic=whatsapp.unrouted")
            && warned.contains("does not exist"),
        "{logged}"
    );
}

/// A webhook producer made from `properties` beside `sink`'s, sharing its metrics, scrubber and
/// fatal-error wake-up, as a rotation makes one.
fn another_producer(sink: &KafkaSink, properties: &BTreeMap<String, String>) -> ProducerHandle {
    ProducerHandle::make(
        &client_config(properties),
        sink.scrubber(),
        &sink.metrics,
        ProducerRole::Webhooks,
        &sink.fatal,
    )
    .expect("producer")
}

mod retiring;
mod sending;
