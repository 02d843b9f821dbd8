//! The background tasks: each is supervised (a panic in it is reported as its failure), and at
//! shutdown what is waited for, in which order, and for how long.

use std::sync::atomic::Ordering;

use super::*;

/// The watches share one wait: a hung secrets mount holds every file watch at once, and
/// each waited for in turn would add its own `WATCH_STOP_WAIT` to the pod's exit. Readiness
/// is waited for first, whole: its probe holds a handle of the producer destroyed next.
#[tokio::test(start_paused = true)]
async fn readiness_is_waited_for_then_stuck_watches_share_one_wait_not_one_each() {
    let (supervisor, _failures) = supervise::supervisor();
    let stuck = |name| named(&supervisor, name, std::future::pending());
    let background = Background {
        watches: vec![stuck("Kafka file watch"), stuck("auth file watch")],
        readiness: supervisor.spawn("readiness", tokio::time::sleep(Duration::from_secs(1))),
        replay: None,
        replay_sink: None,
        probe_topic: String::new(),
    };
    let (cut, _watching) = Cut::when(std::future::pending());
    let started = tokio::time::Instant::now();
    let replay_sink = background.stopped(Duration::ZERO, &cut).await;
    assert!(replay_sink.is_none());
    assert_eq!(started.elapsed(), Duration::from_secs(1) + WATCH_STOP_WAIT);
}

/// A cut (a second SIGTERM) ends the wait for replay's round at once, as it ends the drain's
/// other waits, not at `--flush-timeout`; the round is cancelled, its records stay spooled.
#[tokio::test(start_paused = true)]
async fn a_cut_ends_the_wait_for_replays_round_at_once() {
    let (supervisor, _failures) = supervise::supervisor();
    let (held, mut dropped) = tokio::sync::oneshot::channel::<()>();
    let background = Background {
        watches: Vec::new(),
        readiness: supervisor.spawn("readiness", async {}),
        replay: Some(supervisor.spawn("replay", async move {
            let _held = held;
            std::future::pending::<()>().await;
        })),
        replay_sink: None,
        probe_topic: String::new(),
    };
    let (cut, _watching) = Cut::when(async {});
    let started = tokio::time::Instant::now();
    let _ = background.stopped(Duration::from_secs(30), &cut).await;
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(
        dropped.try_recv(),
        Err(tokio::sync::oneshot::error::TryRecvError::Closed),
        "replay's round still runs"
    );
}

/// A replay round still running at shutdown is waited for, up to `replay_wait`: its records
/// leave the spool only once delivered, so a round cut at once would send them all again at the
/// next start. One that outlasts the wait is cancelled at its end, not waited out.
#[tokio::test(start_paused = true)]
async fn replays_round_is_waited_for_until_it_ends_or_the_wait_runs_out() {
    let (supervisor, _failures) = supervise::supervisor();
    let (cut, _watching) = Cut::when(std::future::pending());
    let (ended, mut finished) = tokio::sync::oneshot::channel::<()>();
    let background = Background {
        watches: Vec::new(),
        readiness: supervisor.spawn("readiness", async {}),
        replay: Some(supervisor.spawn("replay", async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = ended.send(());
        })),
        replay_sink: None,
        probe_topic: String::new(),
    };
    let started = tokio::time::Instant::now();
    let _ = background.stopped(Duration::from_secs(30), &cut).await;
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(finished.try_recv(), Ok(()), "the round was cut short");

    let background = Background {
        watches: Vec::new(),
        readiness: supervisor.spawn("readiness", async {}),
        replay: Some(supervisor.spawn("replay", std::future::pending())),
        replay_sink: None,
        probe_topic: String::new(),
    };
    let started = tokio::time::Instant::now();
    let _ = background.stopped(Duration::from_secs(30), &cut).await;
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

/// With no broker connected, no delivery can end replay's round: shutdown gives it up as soon as
/// a probe of replay's producer finds no broker, instead of holding the pod's exit for the whole
/// `replay_wait` while Kafka is down (its records stay spooled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_broker_connected_replays_round_is_not_waited_for() {
    let (supervisor, _failures) = supervise::supervisor();
    let (cut, _watching) = Cut::when(std::future::pending());
    let metrics = Arc::new(Metrics::new(&[]).expect("metrics"));
    // Nothing listens on port 9: no broker ever answers.
    let properties = BTreeMap::from([("bootstrap.servers".into(), "127.0.0.1:9".into())]);
    let sink = KafkaSink::new(&properties, metrics, ProducerRole::Replay).expect("producer");
    let background = Background {
        watches: Vec::new(),
        readiness: supervisor.spawn("readiness", async {}),
        replay: Some(supervisor.spawn("replay", std::future::pending())),
        replay_sink: Some(Arc::new(sink)),
        probe_topic: "whatsapp.message.status".into(),
    };
    let started = tokio::time::Instant::now();
    let replay_sink = background.stopped(Duration::from_secs(30), &cut).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?} for a round no broker could end",
        started.elapsed()
    );
    assert_eq!(
        replay_sink.map(|sink| Arc::strong_count(&sink)),
        Some(1),
        "the probe still holds replay's producer"
    );
}

/// A log that panics at the line `message` (logged with the field `role` equal to `role`, when
/// given), in whichever task logs it on this thread (a current-thread runtime's tasks): a panic
/// at a known point of a real task, with no hook in it.
/// Not far-fetched: a log reader gone once made every log call panic (see `tests/it/process.rs`).
struct PanicsAt {
    message: &'static str,
    role: Option<&'static str>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PanicsAt {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Logged {
            message: String,
            role: Option<String>,
        }
        impl tracing::field::Visit for Logged {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "role" {
                    self.role = Some(value.to_string());
                } else {
                    self.record_debug(field, &value);
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.message = format!("{value:?}");
                }
            }
        }
        let mut logged = Logged::default();
        event.record(&mut logged);
        let role_matches = self
            .role
            .is_none_or(|role| logged.role.as_deref() == Some(role));
        if logged.message == self.message && role_matches {
            panic!("logging {:?} panicked", self.message);
        }
    }
}

fn panics_at(message: &'static str) -> tracing::subscriber::DefaultGuard {
    panics_at_role(message, None)
}

fn panics_at_role(
    message: &'static str,
    role: Option<&'static str>,
) -> tracing::subscriber::DefaultGuard {
    use tracing_subscriber::layer::SubscriberExt;
    crate::telemetry::interest_of_every_thread();
    let layer = PanicsAt { message, role };
    tracing::subscriber::set_default(tracing_subscriber::registry().with(layer))
}

/// Nothing listens on port 9: no broker ever answers.
const NO_BROKER: &str = "127.0.0.1:9";

fn config() -> Config {
    Config::for_brokers(NO_BROKER, "u:p").expect("config")
}

/// A spool in memory holding one record, and what its storage's reads do.
async fn spool_of_one_record() -> (Arc<Spool>, Arc<crate::spool::test_storage::Reads>) {
    let (spool, reads) = crate::spool::test_storage::spool_over_faulty_reads();
    let record = crate::spool::SpooledRecord {
        topic: probe_topic(&config()),
        key: None,
        value: b"{}".to_vec(),
        headers: Vec::new(),
        timestamp_ms: 1_700_000_000_000,
    };
    spool.append(record).await.expect("spooled");
    (spool, reads)
}

/// The brokers `config` names.
fn bootstrap(config: &Config) -> &str {
    match &config.kafka {
        crate::config::KafkaMode::Brokers(brokers) => brokers,
        crate::config::KafkaMode::Embedded => unreachable!("the tests name brokers"),
    }
}

/// The metrics and the webhook producer, as `run` makes them.
fn webhook_sink(config: &Config) -> (Arc<Metrics>, Arc<KafkaSink>) {
    let metrics = Arc::new(Metrics::new(&config.topics.all_topics()).expect("metrics"));
    let properties = config.producer_properties(bootstrap(config));
    let sink = KafkaSink::new(&properties, metrics.clone(), ProducerRole::Webhooks);
    (metrics, Arc::new(sink.expect("producer")))
}

/// The webhook producer and the tasks, started as `run` starts them, with `spool`.
fn spawned(
    supervisor: &Supervisor,
    config: &Config,
    spool: Option<&Arc<Spool>>,
    stop: &watch::Receiver<bool>,
) -> (Arc<KafkaSink>, Background) {
    let (metrics, sink) = webhook_sink(config);
    let wiring = Wiring {
        config,
        bootstrap: bootstrap(config),
        sink: &sink,
        spool,
        metrics: &metrics,
        credentials: Arc::new(ArcSwap::from_pointee(Credentials::disabled())),
        stop,
        readiness: supervisor.spawn("readiness", async {}),
    };
    let background = Background::spawn(supervisor, wiring).expect("tasks");
    (sink, background)
}

/// A panic in replay stops the bridge, whose restart starts it again: unwatched, the bridge
/// would go on answering 200 and spooling while nothing sent the spool to Kafka any more.
#[tokio::test]
async fn a_panic_in_replay_is_reported_as_the_replay_tasks_failure() {
    // Replay's first read of the record fails, and the error it logs panics.
    let _panicking = panics_at("spool read failed");
    let (spool, reads) = spool_of_one_record().await;
    reads.fail.store(true, Ordering::SeqCst);
    let (supervisor, mut failures) = supervise::supervisor();
    let (stop_tx, stop) = watch::channel(false);
    let config = config();
    let (_sink, background) = spawned(&supervisor, &config, Some(&spool), &stop);
    let reported = tokio::time::timeout(Duration::from_secs(60), failures.first()).await;
    assert_reported(reported, "replay", "spool read failed");
    let _ = stop_tx.send(true);
    let (cut, _watching) = Cut::when(std::future::pending());
    let _ = background.stopped(Duration::ZERO, &cut).await;
}

/// That `reported`, the supervisor's first report, is `task`'s panic at the log line `message`.
fn assert_reported(
    reported: Result<String, tokio::time::error::Elapsed>,
    task: &str,
    message: &str,
) {
    assert_eq!(
        reported.as_deref(),
        Ok(format!("the {task} task panicked: logging {message:?} panicked").as_str()),
        "a panic in the {task} task went unreported"
    );
}

/// The config of `config()` on `brokers`, with `args` added and the process environment `env`.
fn config_with(brokers: &str, args: &[&str], env: &[(&str, &str)]) -> Config {
    use clap::Parser;
    let base = [
        "qikchat-bridge",
        "--kafka-brokers",
        brokers,
        "--auth",
        "u:p",
    ];
    let args = crate::config::Args::try_parse_from(base.iter().chain(args)).expect("args");
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_args(args, env, crate::operator_file::read_to_string).expect("config")
}

/// What the supervisor reports first (within 60 s) once the tasks, started with `config` and no
/// spool as `run` starts them, are running and `then` has run, while logging `message` panics.
async fn first_failure_logging(
    message: &'static str,
    config: &Config,
    then: impl FnOnce(),
) -> Result<String, tokio::time::error::Elapsed> {
    let _panicking = panics_at(message);
    first_failure(config, None, then).await
}

/// What the supervisor reports first (within 60 s) once the tasks, started with `config` and
/// `spool` as `run` starts them, are running and `then` has run.
async fn first_failure(
    config: &Config,
    spool: Option<&Arc<Spool>>,
    then: impl FnOnce(),
) -> Result<String, tokio::time::error::Elapsed> {
    let (supervisor, mut failures) = supervise::supervisor();
    let (stop_tx, stop) = watch::channel(false);
    let (_sink, background) = spawned(&supervisor, config, spool, &stop);
    then();
    let reported = tokio::time::timeout(Duration::from_secs(60), failures.first()).await;
    let _ = stop_tx.send(true);
    let (cut, _watching) = Cut::when(std::future::pending());
    let _ = background.stopped(Duration::ZERO, &cut).await;
    reported
}

/// A panic in the watch of `--auth-file` stops the bridge, whose restart starts it again:
/// unwatched, the bridge would go on accepting the credentials it last read, a rotation (or a
/// revocation) of the mounted Secret never taking effect, while `auth_file_stale` said nothing.
#[tokio::test]
async fn a_panic_in_the_auth_file_watch_is_reported_as_that_tasks_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("auth");
    std::fs::write(&file, "alice:secret\n").expect("write");
    let config = config_with(
        NO_BROKER,
        &["--auth-file", file.to_str().expect("utf-8")],
        &[],
    );
    // The file goes, and the warning the watch's next read logs panics.
    let message = "cannot read --auth-file; the accepted credentials stay as they are";
    let reported = first_failure_logging(message, &config, || {
        std::fs::remove_file(&file).expect("remove");
    })
    .await;
    assert_reported(reported, "auth file watch", message);
}

/// A panic in the watch of the Kafka client's files stops the bridge, whose restart starts it
/// again: unwatched, a rotated SASL password or certificate would never be applied, and the
/// producers would lose Kafka at their next reconnect after the old one is revoked or expires.
#[tokio::test]
async fn a_panic_in_the_kafka_file_watch_is_reported_as_that_tasks_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("client-id");
    std::fs::write(&file, "bridge\n").expect("write");
    let config = config_with(
        NO_BROKER,
        &[],
        &[("KAFKA_CLIENT_ID_FILE", file.to_str().expect("utf-8"))],
    );
    // The file goes, and the error the watch's next look logs panics.
    let message =
        "the properties cannot be made from the Kafka client files; the producers stay as they are";
    let reported = first_failure_logging(message, &config, || {
        std::fs::remove_file(&file).expect("remove");
    })
    .await;
    assert_reported(reported, "Kafka file watch", message);
}

/// A panic in the check for missing topics stops the bridge, whose restart starts it again: a
/// task that panics unwatched is a fault nobody hears of. With no broker, the check's first ask
/// times out (in 5 s) and the line it logs panics.
#[tokio::test]
async fn a_panic_in_the_topic_check_is_reported_as_that_tasks_failure() {
    let message = "topic check: no broker answered; asking again";
    let reported = first_failure_logging(message, &config(), || {}).await;
    assert_reported(reported, "topic check", message);
}

/// A mock cluster that refuses every producer id (its first hundred, more than a test asks for):
/// an idempotent producer made on it, as each of the bridge's is by default, is declared failed
/// by librdkafka (`ClusterAuthorizationFailed`) once it asks for one, and so is its replacement.
fn refusing_producer_ids(
) -> rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let refused = rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED;
    cluster.request_errors(
        rdkafka::types::RDKafkaApiKey::InitProducerId,
        &[refused; 100],
    );
    cluster
}

const REPLACING: &str = "Kafka producer failed: replacing it";

/// A panic in the replacement of a failed webhook producer stops the bridge, whose restart makes
/// a new one: unwatched, the failed producer would refuse every webhook (503) until a restart
/// nothing asks for, and a second failure would never be replaced.
#[tokio::test]
async fn a_panic_in_the_webhook_producer_replacement_is_reported_as_that_tasks_failure() {
    let _panicking = panics_at_role(REPLACING, Some("webhooks"));
    let cluster = refusing_producer_ids();
    let config = config_with(&cluster.bootstrap_servers(), &[], &[]);
    let reported = first_failure(&config, None, || {}).await;
    assert_reported(reported, "webhook producer replacement", REPLACING);
}

/// A panic in the replacement of a failed replay producer stops the bridge, whose restart makes
/// a new one: unwatched, replay's failed producer would refuse every spooled record, which would
/// stay on disk until a restart nothing asks for, while webhooks went on being answered 200.
#[tokio::test]
async fn a_panic_in_the_replay_producer_replacement_is_reported_as_that_tasks_failure() {
    let _panicking = panics_at_role(REPLACING, Some("replay"));
    // Both producers fail, in either order: the replay one's line panics.
    let cluster = refusing_producer_ids();
    let config = config_with(&cluster.bootstrap_servers(), &[], &[]);
    let (spool, _reads) = crate::spool::test_storage::spool_over_faulty_reads();
    let reported = first_failure(&config, Some(&spool), || {}).await;
    assert_reported(reported, "replay producer replacement", REPLACING);
}

/// A panic in readiness's check stops the bridge, whose restart starts it again: unwatched,
/// `/readyz` would keep its last answer for good while the bridge served on.
#[tokio::test]
async fn a_panic_in_the_readiness_check_is_reported_as_the_readiness_tasks_failure() {
    // The first check finds no broker, and the warning it logs panics.
    let _panicking = panics_at("Kafka check failed: not ready");
    let (supervisor, mut failures) = supervise::supervisor();
    let (_stop_tx, stop) = watch::channel(false);
    let config = config();
    let (_metrics, sink) = webhook_sink(&config);
    let readiness = watch_readiness(&supervisor, &config, &sink, &Health::default(), &stop);
    let reported = tokio::time::timeout(Duration::from_secs(60), failures.first()).await;
    assert_reported(reported, "readiness", "Kafka check failed: not ready");
    readiness.await.expect("the panic was caught");
}

/// Replay's own producer, as `Background::spawn` wires it, is what shutdown probes for a
/// connected broker and hands back for the bounded destroy: without it, a shutdown while Kafka
/// is down waits for replay's round until its record times out (30 s) or `--flush-timeout` runs
/// out, and replay's producer is destroyed, unbounded, by whichever task drops it last.
#[tokio::test]
async fn with_no_broker_connected_the_round_of_a_spawned_replay_is_not_waited_for() {
    let (kept, _default) = crate::telemetry::Kept::on_this_thread();
    let (spool, reads) = spool_of_one_record().await;
    // Replay's first read is held until the stop has come, so the stop finds its round begun.
    reads.stall.store(true, Ordering::SeqCst);
    let _unstall = Unstall(reads.clone());
    let (supervisor, _failures) = supervise::supervisor();
    let (stop_tx, stop) = watch::channel(false);
    let config = config();
    let (_sink, background) = spawned(&supervisor, &config, Some(&spool), &stop);
    let began = tokio::time::Instant::now();
    while reads.stalled.load(Ordering::SeqCst) == 0 {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "replay never read the spool"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    // The round goes on to send its record, to a Kafka with no broker.
    reads.stall.store(false, Ordering::SeqCst);
    let (cut, _watching) = Cut::when(std::future::pending());
    let started = tokio::time::Instant::now();
    let replay_sink = background.stopped(Duration::from_secs(60), &cut).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "waited {:?} for a round no broker could end",
        started.elapsed()
    );
    let logged = kept.text();
    assert!(logged.contains("no Kafka broker is connected"), "{logged}");
    assert_eq!(
        replay_sink.map(|sink| Arc::strong_count(&sink)),
        Some(1),
        "replay's producer is not handed back, as its last handle, for the bounded destroy"
    );
    assert_eq!(spool.records(), 1, "the record waits for the next start");
}

/// Ends a stalled read when dropped, so that a failed assertion does not leave the runtime's
/// exit waiting on its blocking thread for ever.
struct Unstall(Arc<crate::spool::test_storage::Reads>);

impl Drop for Unstall {
    fn drop(&mut self) {
        self.0.stall.store(false, Ordering::SeqCst);
    }
}
