//! The binary's other modes, run as a process: `tail`, `dev-kafka` and `--check-config`.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{OutputWithin, TestApp, EXIT_LIMIT, STATUS, TEXT};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const BIN: &str = env!("CARGO_BIN_EXE_qikchat-bridge");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_each_record_as_one_json_line_with_the_exact_body() {
    let app = TestApp::start(&[]).await;
    assert_eq!(app.post(TEXT).await.status(), 200);
    assert_eq!(app.post(STATUS).await.status(), 200);

    let bootstrap = app.bootstrap.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "tail",
                "--kafka-brokers",
                &bootstrap,
                "--from-beginning",
                "--count",
                "2",
            ])
            .args([
                "--idle-timeout",
                "20s",
                "whatsapp.message.in",
                "whatsapp.message.status",
            ])
            .env_clear()
            .output_within(EXIT_LIMIT)
    })
    .await
    .expect("task");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let by_topic = |t: &str| {
        lines
            .iter()
            .find(|l| l["topic"] == t)
            .expect("record of topic")
    };
    let message = by_topic("whatsapp.message.in");
    assert_eq!(message["value"].as_str().expect("value").as_bytes(), TEXT);
    assert_eq!(message["key"], "9184XXXXXXX");
    assert_eq!(message["headers"]["event"], "whatsapp:message:in");
    assert!(message["offset"].is_i64() && message["partition"].is_i64());
    assert_eq!(
        by_topic("whatsapp.message.status")["value"]
            .as_str()
            .expect("value")
            .as_bytes(),
        STATUS
    );

    // Its group id must stay without offsets: a tail that committed would move where any
    // consumer sharing the id starts, and librdkafka commits on close when auto-commit is on.
    let bootstrap = app.bootstrap.clone();
    let committed = tokio::task::spawn_blocking(move || committed_offsets_of_tail(&bootstrap))
        .await
        .expect("task");
    assert!(
        committed
            .iter()
            .all(|(_, offset)| *offset == Offset::Invalid),
        "tail committed offsets: {committed:?}"
    );
}

/// What the `tail` group has committed for every partition of the two topics the tests read.
fn committed_offsets_of_tail(bootstrap: &str) -> Vec<((String, i32), Offset)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "qikchat-bridge-tail")
        .create()
        .expect("consumer");
    let mut partitions = TopicPartitionList::new();
    for topic in ["whatsapp.message.in", "whatsapp.message.status"] {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        for p in 0..metadata.topics()[0].partitions().len() {
            partitions.add_partition(topic, p as i32);
        }
    }
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .expect("the group coordinator answers");
    let all: Vec<_> = committed
        .elements()
        .iter()
        .map(|e| ((e.topic().to_string(), e.partition()), e.offset()))
        .collect();
    assert!(all.len() >= 2, "{all:?}");
    all
}

/// A one-broker cluster holding `topic`, whose next `n` fetches fail with `error`.
fn failing_fetches(
    topic: &str,
    error: RDKafkaRespErr,
    n: usize,
) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("cluster");
    cluster.create_topic(topic, 1, 1).expect("topic");
    cluster.request_errors(RDKafkaApiKey::Fetch, &vec![error; n]);
    cluster
}

/// Credentials that may describe and write a topic but not read it (as the bridge's own often
/// are): every fetch is refused. Read past, the errors left a script with no record and exit 0.
#[test]
fn tail_exits_1_when_kafka_refuses_to_serve_the_records() {
    let cluster = failing_fetches(
        "write.only",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        50,
    );
    let (code, _, stderr) = tail(
        &cluster.bootstrap_servers(),
        &["--from-beginning", "--idle-timeout", "10s", "write.only"],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("TopicAuthorizationFailed"), "{stderr}");
}

/// Fetches that fail with an error librdkafka reads past until the idle timeout: no record then
/// does not mean an empty topic, so the exit is 1 with the error, not 0.
#[test]
fn tail_exits_1_when_it_went_idle_with_every_fetch_failing() {
    let cluster = failing_fetches("failing", RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN, 500);
    let (code, _, stderr) = tail(
        &cluster.bootstrap_servers(),
        // Failing fetches repeat about once a second; the last must be in the last half.
        &["--from-beginning", "--idle-timeout", "6s", "failing"],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("fetching failed"), "{stderr}");
}

/// A broker that failed a fetch and then recovered leaves an empty topic, not a failing one.
#[test]
fn tail_exits_0_when_idle_on_an_empty_topic_after_errors_that_stopped() {
    let cluster = failing_fetches("recovered", RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN, 3);
    cluster.request_errors(
        RDKafkaApiKey::FindCoordinator,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED; 50],
    );
    let (code, _, stderr) = tail(
        &cluster.bootstrap_servers(),
        // The errors come 1 s and 2 s in: 6 s before the idle exit, 2 s outside its last half.
        &["--from-beginning", "--idle-timeout", "8s", "recovered"],
    );
    assert!(stderr.contains("Unknown broker error"), "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
}

/// librdkafka looks up the coordinator of tail's group although tail never joins it: credentials
/// that may read the topic but not describe that group still read it.
#[test]
fn tail_reads_on_when_its_group_may_not_be_described() {
    let cluster = MockCluster::new(1).expect("cluster");
    cluster.create_topic("readable", 1, 1).expect("topic");
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .expect("producer");
    producer
        .send(rdkafka::producer::BaseRecord::<(), _>::to("readable").payload("{}"))
        .expect("send");
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).expect("flush");
    cluster.request_errors(
        RDKafkaApiKey::FindCoordinator,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED; 50],
    );
    let (code, stdout, stderr) = tail(
        &cluster.bootstrap_servers(),
        // A regression that never read the record ends here (exit 0 without it), not hangs.
        &[
            "--from-beginning",
            "--count",
            "1",
            "--idle-timeout",
            "30s",
            "readable",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(r#""value":"{}""#), "{stdout}");
}

/// librdkafka's own reason reaches the operator: the metadata wait alone ends in "Broker
/// transport failure" whether the broker is down, the password wrong or the certificate untrusted.
#[test]
fn tail_says_why_it_could_not_reach_kafka() {
    let (code, _, stderr) = tail("127.0.0.1:1", &["any.topic"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("127.0.0.1:1/bootstrap: Connect to"),
        "{stderr}"
    );
}

/// A broker URL with a password can never work (librdkafka takes credentials only from
/// `sasl.*`): tail refuses it as the bridge does, without printing it.
#[test]
fn tail_refuses_a_broker_url_with_a_password_without_printing_it() {
    let (code, stdout, stderr) = tail(
        "PLAINTEXT://u:hunter2pw@127.0.0.1:1",
        &["--idle-timeout", "2s", "any.topic"],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        !format!("{stdout}{stderr}").contains("hunter2pw"),
        "{stdout}{stderr}"
    );
    assert!(
        stderr.contains("--kafka-brokers: the 1st broker holds user information"),
        "{stderr}"
    );
}

/// librdkafka refuses a first backoff above its cap, which the operator never set: tail raises
/// the cap with it, as the bridge does for its own.
#[test]
fn tail_takes_a_first_reconnect_backoff_above_librdkafkas_cap() {
    let cluster = MockCluster::new(1).expect("cluster");
    cluster.create_topic("quiet", 1, 1).expect("topic");
    let (code, _, stderr) = tail(
        &cluster.bootstrap_servers(),
        &[
            "-X",
            "reconnect.backoff.ms=20000",
            "--idle-timeout",
            "2s",
            "quiet",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn tail_names_a_missing_topic() {
    let cluster = MockCluster::new(1).expect("cluster");
    let output = Command::new(BIN)
        .args([
            "tail",
            "--kafka-brokers",
            &cluster.bootstrap_servers(),
            "-X",
            "allow.auto.create.topics=false",
            // A regression that waited on the topic would end here (exit 0), not hang.
            "--idle-timeout",
            "5s",
            "no.such.topic",
        ])
        .env_clear()
        .output_within(EXIT_LIMIT);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a failure other than a property"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("no.such.topic"));

    // A topic the broker will not describe is named with the broker's reason, not "missing".
    cluster.create_topic("guarded", 1, 1).expect("topic");
    cluster
        .topic_error(
            "guarded",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .expect("topic error");
    let (code, _, stderr) = tail(
        &cluster.bootstrap_servers(),
        &["--idle-timeout", "5s", "guarded"],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("TopicAuthorizationFailed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_ends_quietly_with_status_0_when_its_reader_goes_away() {
    let cluster = MockCluster::new(1).expect("cluster");
    cluster.create_topic("t", 1, 1).expect("topic");
    common::produce(&cluster.bootstrap_servers(), "t", b"{}").await;
    // `tail | head -1` (or `2>&1 | head -1`) once head has exited: both pipes closed.
    let mut child = Command::new(BIN)
        .args(["tail", "--kafka-brokers", &cluster.bootstrap_servers()])
        .args(["--from-beginning", "--idle-timeout", "20s", "t"])
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tail");
    let started = std::time::Instant::now();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("task")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "{status}");
    // Ended by the closed pipe, not by the idle timeout, which also exits 0.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// `tail … | head -1` where the line head takes is the last record: no write comes to fail, so
/// tail must see the closed pipe by itself, not run on until its idle timeout (or for good; a
/// review found it did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_ends_with_status_0_when_its_reader_goes_away_after_the_last_record() {
    let cluster = MockCluster::new(1).expect("cluster");
    cluster.create_topic("t", 1, 1).expect("topic");
    common::produce(&cluster.bootstrap_servers(), "t", b"{}").await;
    let (mut child, reader) = tail_past_the_first_record(&cluster, &["60s"]);
    drop(reader);
    let status = tokio::task::spawn_blocking(move || {
        common::exited_within(&mut child, Duration::from_secs(20)).map(|s| s.code())
    })
    .await
    .expect("task");
    assert_eq!(
        status,
        Some(Some(0)),
        "still running 20 s after its reader went away"
    );
}

/// `tail --from-beginning t --idle-timeout IDLE...` (the idle timeout and any arguments after it)
/// once it has printed the first record of `t` (the one at offset 0): it is fetching, and its
/// idle time starts. Its stdout, to read on.
fn tail_past_the_first_record(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    idle: &[&str],
) -> (common::KillOnDrop, BufReader<std::process::ChildStdout>) {
    use std::io::BufRead;
    let mut child = common::KillOnDrop(
        Command::new(BIN)
            .args(["tail", "--kafka-brokers", &cluster.bootstrap_servers()])
            .args(["--from-beginning", "t", "--idle-timeout"])
            .args(idle)
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tail"),
    );
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    stdout.read_line(&mut line).expect("a line");
    assert!(line.contains(r#""offset":0"#), "{line}");
    (child, stdout)
}

/// `tail --from-beginning --idle-timeout IDLE t` after the record `t` holds: its status once it
/// exits (within 30 s), and its stderr; `meanwhile` runs once the record is read, while tail
/// waits.
async fn tail_idle(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    idle: &[&str],
    meanwhile: impl FnOnce(),
) -> (Option<Option<i32>>, String) {
    use std::io::Read;
    let (mut child, stdout) = tail_past_the_first_record(cluster, idle);
    meanwhile();
    tokio::task::spawn_blocking(move || {
        let status = common::exited_within(&mut child, Duration::from_secs(30));
        let mut stderr = String::new();
        if status.is_some() {
            let _ = child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut stderr);
        }
        drop(stdout);
        (status.map(|s| s.code()), stderr)
    })
    .await
    .expect("task")
}

/// A broker that stops answering (a frozen host: here every answer 30 s late) fails no fetch for
/// a minute: tail's idle timeout must not then end it with status 0, as if the topic had no
/// more records (a review found it did). Healthy leaders of many partitions, each fetch waiting
/// at the broker, end it with 0 even at a short timeout (an earlier check that asked the brokers
/// for offsets failed such tails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_idle_while_a_leader_does_not_answer_exits_1_not_0() {
    let cluster = MockCluster::new(2).expect("cluster");
    cluster.create_topic("t", 20, 1).expect("topic");
    for p in 0..20 {
        cluster
            .partition_leader("t", p, Some(1 + p % 2))
            .expect("leader");
    }
    let producer = common::producer_to(&cluster.bootstrap_servers());
    producer
        .send(
            rdkafka::producer::FutureRecord::<(), [u8]>::to("t")
                .partition(0)
                .payload(b"{}"),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
    let (status, stderr) = tail_idle(&cluster, &["1s"], || {}).await;
    assert_eq!(status, Some(Some(0)), "healthy: {stderr}");
    // An interval meant for the bridge (KAFKA_STATISTICS_INTERVAL_MS) would have tail wait a
    // minute for statistics (past tail_idle's 30 s), then take their age for a leader's silence.
    let (status, stderr) = tail_idle(
        &cluster,
        &["1s", "-X", "statistics.interval.ms=60000"],
        || {},
    )
    .await;
    assert_eq!(status, Some(Some(0)), "healthy: {stderr}");
    // librdkafka writes client.id into its statistics unescaped, which then were no JSON, and
    // tail waited for good (a fourth look): they are read escaped.
    let (status, stderr) =
        tail_idle(&cluster, &["1s", "-X", "client.id=CORP\\svc\t\"x\""], || {}).await;
    assert_eq!(status, Some(Some(0)), "{stderr}");
    assert!(!stderr.contains("cannot be read"), "{stderr}");
    let (status, stderr) = tail_idle(&cluster, &["3s"], || {
        cluster
            .broker_round_trip_time(2, Duration::from_secs(30))
            .expect("rtt");
    })
    .await;
    assert_eq!(status, Some(Some(1)), "{stderr}");
    // Frozen while its connection was still being set up, it is not connected yet.
    assert!(
        stderr.contains("/2 has answered nothing for") || stderr.contains("/2 is not connected ("),
        "{stderr}"
    );
    // Frozen before tail started, it never answers tail's first request: the broker is never
    // connected, which no fetch error tells either (a second look found tail ended with 0).
    let (status, stderr) = tail_idle(&cluster, &["1s"], || {}).await;
    assert_eq!(status, Some(Some(1)), "{stderr}");
    assert!(stderr.contains("/2 is not connected ("), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_shows_repeated_headers_and_bytes_that_are_not_utf8_and_stops_when_idle() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;

    let cluster = MockCluster::new(1).expect("cluster");
    cluster.create_topic("t", 1, 1).expect("topic");
    let producer = common::producer_to(&cluster.bootstrap_servers());
    let headers = ["1", "2", "3"]
        .into_iter()
        .fold(OwnedHeaders::new(), |h, v| {
            h.insert(Header {
                key: "h",
                value: Some(v),
            })
        })
        .insert(Header {
            key: "raw",
            value: Some(&b"\xff"[..]),
        });
    producer
        .send(
            FutureRecord::<(), _>::to("t")
                .payload("{}")
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    // Written by some other producer: a key and a value that are not UTF-8.
    producer
        .send(
            FutureRecord::to("t")
                .key(&b"\xff"[..])
                .payload(&b"\xfe\x00"[..]),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    // A tombstone (no value at all) and an empty value.
    producer
        .send(
            FutureRecord::<_, ()>::to("t").key("gone"),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    producer
        .send(
            FutureRecord::<(), _>::to("t").payload(""),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");

    // No --count: it stops once nothing came for the idle timeout.
    let bootstrap = cluster.bootstrap_servers();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["tail", "--kafka-brokers", &bootstrap, "--from-beginning"])
            // Named twice: read once.
            .args(["--idle-timeout", "8s", "t", "t"])
            .env_clear()
            .output_within(EXIT_LIMIT)
    })
    .await
    .expect("task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(records.len(), 4, "{stdout}");
    assert_eq!(
        records[0]["headers"],
        serde_json::json!({"h": ["1", "2", "3"], "raw": {"base64": "/w=="}})
    );
    assert_eq!(records[1]["key"], serde_json::json!({"base64": "/w=="}));
    assert_eq!(records[1]["value_base64"], "/gA=");
    assert!(records[1].get("value").is_none(), "{}", records[1]);
    assert_eq!(
        records[2]["value"],
        serde_json::Value::Null,
        "{}",
        records[2]
    );
    assert_eq!(records[3]["value"], "", "{}", records[3]);
}

#[test]
fn tail_exits_2_when_a_kafka_property_is_unknown_or_malformed() {
    for (property, says) in [
        ("not.a.property=1", "not.a.property"),
        ("no-equals-sign", "KEY=VALUE"),
        // librdkafka's own refusal said only "consumer queue not available".
        ("group.id=", "group.id: is empty"),
    ] {
        let output = Command::new(BIN)
            .args([
                "tail",
                "--kafka-brokers",
                "127.0.0.1:1",
                "-X",
                property,
                "t",
            ])
            .env_clear()
            .output_within(EXIT_LIMIT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{property}: {stderr}");
        assert!(stderr.contains("qikchat-bridge tail:"), "{stderr}");
        assert!(stderr.contains(says), "{property}: {stderr}");
    }
}

#[test]
fn tail_exits_2_for_no_broker_or_an_idle_timeout_of_zero() {
    for (args, says) in [
        (&["--kafka-brokers", ""][..], "--kafka-brokers: is empty"),
        (&["--kafka-brokers", " , "][..], "--kafka-brokers: is empty"),
        (
            &["--kafka-brokers", "127.0.0.1:1", "--idle-timeout", "0s"][..],
            "--idle-timeout: must be greater than zero",
        ),
    ] {
        let output = Command::new(BIN)
            .arg("tail")
            .args(args)
            .arg("t")
            .env_clear()
            .output_within(EXIT_LIMIT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// An empty topic (a variable that resolved to nothing) or one Kafka cannot have is a usage
/// error, as the serving flags' topic names are: the brokers' "unknown topic" exited 1. A count of
/// zero exited 0 at once, having read nothing.
#[test]
fn tail_exits_2_for_a_topic_name_kafka_cannot_have_or_a_count_of_zero() {
    let cluster = MockCluster::new(1).expect("cluster");
    cluster.create_topic("t", 1, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    for (args, says) in [
        (
            &[""][..],
            "TOPICS: the 1st topic name is not one Kafka can have",
        ),
        (
            &["t", "a/b"][..],
            "TOPICS: the 2nd topic name is not one Kafka can have",
        ),
        (
            &["--count", "0", "t"][..],
            "--count: must be greater than zero",
        ),
    ] {
        let mut all = vec!["--idle-timeout", "3s"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = tail(&brokers, &all);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
}

/// Whatever `RUST_LOG` shows: an empty one, or one naming only librdkafka, hid the reason
/// (exit 2 with nothing on stderr), since it is a log line.
#[test]
fn serving_exits_2_when_librdkafka_refuses_a_property_as_check_config_does() {
    for rust_log in [None, Some(""), Some("librdkafka=warn"), Some("off")] {
        let mut command = Command::new(BIN);
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--kafka-brokers",
                "127.0.0.1:1",
                "--auth",
                "a:b",
                "-X",
                "not.a.property=1",
            ])
            .env_clear()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(rust_log) = rust_log {
            command.env("RUST_LOG", rust_log);
        }
        let child = command.spawn().expect("run");
        let (status, stderr) = exited_within(child, 30, "with an unknown property");
        assert_eq!(status.code(), Some(2), "RUST_LOG={rust_log:?}: {stderr}");
        assert!(
            stderr.contains("cannot start") && stderr.contains("not.a.property"),
            "RUST_LOG={rust_log:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_kafka_prints_an_address_the_bridge_can_produce_to() {
    let (mut child, bootstrap) = dev_kafka(&["--partitions", "2"]);

    let config = qikchat_bridge::config::Config::for_brokers(&bootstrap, "u:p").expect("config");
    let sink = qikchat_bridge::producer::KafkaSink::new(
        &config.producer_properties(&bootstrap),
        std::sync::Arc::new(qikchat_bridge::metrics::Metrics::new(&[]).expect("metrics")),
        qikchat_bridge::producer::ProducerRole::Webhooks,
    )
    .expect("producer");
    let sink = std::sync::Arc::new(sink);
    let probing = sink.clone();
    let probe = tokio::task::spawn_blocking(move || {
        probing.readiness_check("whatsapp.message.in", Duration::from_secs(10))
    });
    probe
        .await
        .expect("task")
        .expect("the topic exists in dev-kafka");

    // A record produced there is acknowledged and stored, in one of the two partitions asked for.
    use qikchat_bridge::producer::{Delivered, Sink};
    let record = qikchat_bridge::record::Record {
        topic: "whatsapp.message.in",
        key: None,
        value: br#"{"event":"whatsapp:message:in"}"#,
        timestamp_ms: 0,
        headers: qikchat_bridge::record::RecordHeaders::Raw(&[]),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let Ok(Delivered::Kafka { partition, offset }) = sink.send(&record, deadline).await else {
        panic!("the record was not acknowledged");
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("consumer");
    let stored = tokio::task::spawn_blocking(move || {
        let metadata = consumer
            .fetch_metadata(Some("whatsapp.message.in"), Duration::from_secs(5))
            .expect("metadata");
        let partitions = metadata.topics()[0].partitions().len();
        let (low, high) = consumer
            .fetch_watermarks("whatsapp.message.in", partition, Duration::from_secs(5))
            .expect("watermarks");
        (partitions, high - low)
    })
    .await
    .expect("task");
    assert_eq!(stored, (2, 1), "partitions, and records in {partition}");
    assert_eq!(offset, 0);

    // SIGTERM ends it cleanly.
    assert!(common::stop_with(&mut child, "-TERM").success());
}

/// `dev-kafka` with `args`, and the address it printed, within 20 s.
fn dev_kafka(args: &[&str]) -> (common::KillOnDrop, String) {
    let mut child = common::KillOnDrop(
        Command::new(BIN)
            .arg("dev-kafka")
            .args(args)
            .env_clear()
            .env("RUST_LOG", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dev-kafka"),
    );
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(read.map(|_| line));
    });
    let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
        let _ = child.kill();
        panic!("dev-kafka printed no address within 20 s");
    };
    let line = line.expect("first line");
    let bootstrap = line
        .trim()
        .strip_prefix("bootstrap.servers=")
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, bootstrap.to_string())
}

/// The topics `dev-kafka` makes carry `--topic-prefix`, as the bridge's own names do: a bridge
/// run with the same prefix against it would otherwise find none of its topics (found by
/// mutation testing: the prefix was checked for validity only).
#[test]
fn dev_kafka_makes_the_bridges_topics_with_the_topic_prefix() {
    let (mut child, bootstrap) = dev_kafka(&["--topic-prefix", "staging."]);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut topics: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    topics.sort_unstable();
    assert!(
        topics.contains(&"staging.whatsapp.message.in")
            && topics.iter().all(|t| t.starts_with("staging.")),
        "{topics:?}"
    );
    assert!(common::stop_with(&mut child, "-TERM").success());
}

#[test]
fn check_config_accepts_a_valid_environment_and_redacts_secrets() {
    let output = Command::new(BIN)
        .arg("--check-config")
        .env_clear()
        .env("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
        .env("BRIDGE_AUTH", "qikchat:pa55word,other:second-pa55")
        .env("KAFKA_SASL_PASSWORD", "kafka-secret")
        .env("KAFKA_ACKS", "1")
        .env(
            "BRIDGE_TOPICS",
            "whatsapp:template:status=wa.templates,billing:update=wa.billing",
        )
        .output_within(EXIT_LIMIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("\"acks\": \"1\""), "{stdout}");
    // What start-up would warn of is said too (it was not).
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("qikchat-bridge: warning: acks is 1: "),
        "{stderr}"
    );
    // The user names are in the credentials field itself: "qikchat" alone is also in the
    // default client.id.
    let credentials = stdout
        .split_once("credentials: [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(field, _)| field)
        .unwrap_or_else(|| panic!("no credentials field: {stdout}"));
    // After a comma, the text before a colon may be a piece of a password: not shown as a user.
    for user in [
        "qikchat:<redacted>",
        "<the 2nd --auth credential, user not shown>:<redacted>",
    ] {
        assert!(credentials.contains(user), "{user} not in [{credentials}]");
    }
    assert!(!credentials.contains("other"), "[{credentials}]");
    assert!(
        stderr.contains("qikchat-bridge: warning: an --auth value (or BRIDGE_AUTH) holds commas"),
        "{stderr}"
    );
    // BRIDGE_TOPICS is split at commas: both routes.
    assert!(
        stdout.contains("\"wa.templates\"") && stdout.contains("\"billing:update\""),
        "{stdout}"
    );
    for secret in ["pa55word", "second-pa55", "kafka-secret"] {
        assert!(!stdout.contains(secret), "{secret} printed");
    }
}

/// A broker URL with a password (`SASL_SSL://user:pass@host:9093`) can never work:
/// `--check-config` refuses it as start-up does, without printing it; and a port librdkafka would
/// read as another (`99999`, which it took for 34463) or as 0 (a word).
#[test]
fn check_config_refuses_a_broker_url_with_a_password_without_printing_it() {
    let output = Command::new(BIN)
        .args([
            "--check-config",
            "--kafka-brokers",
            "PLAINTEXT://u:hunter2pw@127.0.0.1:21499",
            "--auth",
            "a:b",
        ])
        .env_clear()
        .output_within(EXIT_LIMIT);
    let (code, stdout, stderr) = shown_without(output, "hunter2pw");
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("--kafka-brokers: the 1st broker holds user information"),
        "{stderr}"
    );
    for brokers in ["k:1, k:99999", "k:1, k:port"] {
        let output = Command::new(BIN)
            .args([
                "--check-config",
                "--kafka-brokers",
                brokers,
                "--auth",
                "a:b",
            ])
            .env_clear()
            .output_within(EXIT_LIMIT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{brokers}: {stderr}");
        assert!(
            stderr.contains("--kafka-brokers: the 2nd broker has a port that is not a number"),
            "{brokers}: {stderr}"
        );
    }
}

/// An entry whose scheme is not `security.protocol` is one librdkafka connects to no broker from
/// (it only logs it), so the bridge would wait for Kafka for ever: `--check-config` and `tail`
/// refuse it, and take it once the protocol matches, from `-X` or a `KAFKA_*` variable.
#[test]
fn a_broker_scheme_that_is_not_security_protocol_is_refused_by_check_config_and_tail() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let output = Command::new(BIN)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .output_within(EXIT_LIMIT);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    };
    let check = ["--check-config", "--auth", "a:b", "--kafka-brokers"];
    let brokers = "k:1, SSL://127.0.0.1:1";
    let (code, stderr) = run(&[&check[..], &[brokers]].concat(), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "--kafka-brokers: the 2nd broker's scheme, ssl://, is not security.protocol (plaintext)"
        ),
        "{stderr}"
    );
    let (code, stderr) = run(
        &[&check[..], &[brokers, "-X", "security.protocol=SASL_SSL"]].concat(),
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("the 2nd broker's scheme, ssl://, is not security.protocol (sasl_ssl)"),
        "{stderr}"
    );
    let (code, stderr) = run(
        &[&check[..], &["SSL://127.0.0.1:1"]].concat(),
        &[("KAFKA_SECURITY_PROTOCOL", "ssl")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let tail = ["tail", "--count", "1", "--kafka-brokers", brokers, "t"];
    let (code, stderr) = run(&tail, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("the 2nd broker's scheme, ssl://, is not security.protocol"),
        "{stderr}"
    );
}

/// librdkafka reads backslash escapes in `ssl.providers` and quotes the provider it could not
/// load as it read it: not shown either (a fourth look found it shown). In a process of its own:
/// a provider OpenSSL tried to load spoils the TLS of every later client in the process.
#[test]
fn an_escaped_ssl_provider_librdkafka_refuses_is_not_shown() {
    // Split at commas not escaped, cut at an escaped NUL (a fifth look found both shown).
    for value in [
        r"Hunter8Sec\,ret",
        r"Hun\ter8Secret",
        r"Hunter8Sec\0xyzzy",
        r"er8\,Sec\,x7Z,legacy",
    ] {
        let output = Command::new(BIN)
            .args(["--check-config", "--insecure-disable-auth"])
            .args([
                "--kafka-brokers",
                "ssl://127.0.0.1:1",
                "-X",
                "security.protocol=SSL",
            ])
            .args(["-X", &format!("ssl.providers={value}")])
            .env_clear()
            .output_within(EXIT_LIMIT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("Failed to load OpenSSL provider"),
            "{stderr}"
        );
        assert!(!stderr.contains("er8Sec"), "{stderr}");
    }
}

/// A password with a comma in BRIDGE_AUTH (or --auth) is split there: no piece of it is quoted,
/// whether the pieces are refused (by --check-config and at start-up alike) or accepted (with a
/// warning), and each time the operator is sent to --auth-file.
#[test]
fn a_password_split_at_a_comma_is_never_quoted_and_points_to_the_auth_file() {
    let run = |args: &[&str], auth: &str| {
        let output = Command::new(BIN)
            .args(args)
            .args(["--kafka-brokers", "127.0.0.1:9"])
            .env_clear()
            .env("BRIDGE_AUTH", auth)
            .output_within(EXIT_LIMIT);
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for secret in ["SECabc", "SECdef", "ghi"] {
            assert!(!out.contains(secret), "{secret} shown: {out}");
        }
        assert!(
            out.contains("--auth-file (one USER:PASS per line; a comma there is part of the"),
            "{out}"
        );
        (output.status.code(), out)
    };
    for args in [&["--check-config"][..], &[][..]] {
        for auth in ["eve:SECabc, SECdef:ghi", "eve:SECabc,SECdef:"] {
            let (code, out) = run(args, auth);
            assert_eq!(code, Some(2), "{args:?} {auth}: {out}");
            assert!(
                out.contains("invalid configuration: --auth: the 2nd credential (none of it"),
                "{args:?} {auth}: {out}"
            );
        }
    }
    let (code, out) = run(&["--check-config"], "eve:SECabc,SECdef:ghi");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("eve:<redacted>")
            && out.contains("<the 2nd --auth credential, user not shown>:<redacted>")
            && out.contains("warning: an --auth value (or BRIDGE_AUTH) holds commas"),
        "{out}"
    );
}

/// Start-up's warnings about its environment, too: a check run where the bridge will run (an init
/// container, the same host) says what the bridge would.
#[test]
fn check_config_prints_the_warnings_start_up_would_log_of_its_environment() {
    let check = |shell: &str, args: &[&str], envs: &[(&str, &str)]| {
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("{shell} exec \"$0\" --check-config \"$@\""))
            .arg(BIN)
            .args(args)
            .env_clear()
            .envs(envs.iter().copied())
            .output_within(EXIT_LIMIT);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
    };
    // The embedded Kafka, with the example credential, a log filter that does not parse, and
    // an open-file limit below what --max-connections' 4096 need.
    let stderr = check("ulimit -n 1024 &&", &[], &[("RUST_LOG", "info,[[bad")]);
    for warning in [
        "warning: RUST_LOG is not a valid filter",
        "warning: the open-file limit is below what --max-connections needs",
        "warning: EMBEDDED KAFKA",
        "warning: no credentials configured: accepting Qikchat's documented example credential",
    ] {
        assert!(stderr.contains(warning), "no {warning:?} in {stderr}");
    }
    // A spool limit of 100 TB on this machine's disk, for a directory not made yet.
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("new/spool");
    let stderr = check(
        "",
        &[
            "--spool-dir",
            spool.to_str().expect("utf-8"),
            "--spool-max-bytes",
            "100000000000000",
        ],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"),
            ("BRIDGE_AUTH", "qikchat:pa55word"),
        ],
    );
    assert!(
        stderr.contains("warning: the spool's volume is too small for --spool-max-bytes"),
        "{stderr}"
    );
    assert!(!spool.exists(), "a check makes nothing");
    // Nothing of RUST_LOG when it is unset: unset is `info` (found by mutation testing: taken
    // for a value not UTF-8, it was warned of in every check and at every start).
    assert!(!stderr.contains("RUST_LOG"), "{stderr}");
}

/// The check warns of the open-file limit the bridge would have once start-up has raised its soft
/// limit to the hard one: warning of the soft limit found sent operators to raise a limit the
/// bridge raises itself (found by mutation testing).
#[test]
fn check_config_warns_of_the_open_file_limit_as_start_up_would_raise_it() {
    let check = |limits: &str| {
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit {limits} && exec \"$0\" --check-config --max-connections 10"
            ))
            .arg(BIN)
            .env_clear()
            .env("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
            .env("BRIDGE_AUTH", "qikchat:pa55word")
            .output_within(EXIT_LIMIT);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
    };
    // 10 connections need 10 + 256 + 256 descriptors: more than 300, less than the hard limit.
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    assert!(
        hard.is_some_and(|h| h >= 522),
        "this test needs a finite hard limit of 522 or more, not {hard:?}"
    );
    let stderr = check("-Sn 300");
    assert!(!stderr.contains("open-file limit"), "{stderr}");
    let stderr = check("-n 300");
    assert!(
        stderr.contains("warning: the open-file limit is below")
            && stderr.contains("(the limit: 300 files)"),
        "{stderr}"
    );
}

/// `--check-config` with `flags`, in an environment of the brokers and a credential only, with
/// `variable` set to `bytes` (which may replace the brokers): its exit code and stderr.
fn check_config_with_bytes(variable: &str, bytes: &[u8], flags: &[&str]) -> (Option<i32>, String) {
    use std::os::unix::ffi::OsStrExt as _;
    let output = Command::new(BIN)
        .arg("--check-config")
        .args(flags)
        .env_clear()
        .env("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
        .env("BRIDGE_AUTH", "a:b")
        .env(variable, std::ffi::OsStr::from_bytes(bytes))
        .output_within(EXIT_LIMIT);
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), err)
}

/// A `KAFKA_*` variable that is not UTF-8 (a Latin-1 value set by a shell or a Secret in another
/// encoding) cannot be handed to librdkafka: skipped, its property silently kept the bridge's
/// default (another client.id, no password) while the check called the settings valid.
#[test]
fn check_config_refuses_a_kafka_variable_that_is_not_utf8_naming_it_without_its_value() {
    let (code, err) = check_config_with_bytes("KAFKA_CLIENT_ID", b"caf\xe9-secret", &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("KAFKA_CLIENT_ID is not UTF-8"), "{err}");
    assert!(!err.contains("caf"), "the value is not shown: {err}");
}

/// Only a variable read for a property is refused for a value that is not UTF-8: a Kubernetes
/// service link (`KAFKA_PORT_9092_TCP`) is ignored as a property, and one whose property a `-X`
/// flag sets is never used (the flag wins).
#[test]
fn check_config_accepts_a_kafka_variable_not_read_as_a_property_that_is_not_utf8() {
    for (variable, flags) in [
        ("KAFKA_PORT_9092_TCP", &[][..]),
        ("KAFKA_CLIENT_ID", &["-X", "client.id=ok"][..]),
    ] {
        let (code, err) = check_config_with_bytes(variable, b"caf\xe9", flags);
        assert_eq!(code, Some(0), "{variable} {flags:?}: {err}");
    }
}

/// A flag's twin variable that is not UTF-8 is refused by clap, whose message names no variable.
#[test]
fn check_config_names_a_flag_variable_that_is_not_utf8() {
    let (code, err) = check_config_with_bytes("KAFKA_BOOTSTRAP_SERVERS", b"caf\xe9:9092", &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("(the value of KAFKA_BOOTSTRAP_SERVERS)"),
        "{err}"
    );
    assert!(!err.contains("caf"), "the value is not shown: {err}");
}

#[test]
fn check_config_refuses_bad_settings_with_exit_code_2_and_a_reason() {
    let run = |envs: &[(&str, &str)]| {
        let output = Command::new(BIN)
            .arg("--check-config")
            .env_clear()
            .envs(envs.iter().copied())
            .output_within(EXIT_LIMIT);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (code, err) = run(&[("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--insecure-disable-auth"), "{err}");
    let (code, err) = run(&[
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"),
        ("BRIDGE_AUTH", "a:b"),
        ("KAFKA_NOT_A_PROPERTY", "1"),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("not.a.property"), "{err}");
    // Valid one by one, refused together: librdkafka says so only when it makes the producer.
    let (code, err) = run(&[
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"),
        ("BRIDGE_AUTH", "a:b"),
        ("KAFKA_ACKS", "1"),
        ("KAFKA_ENABLE_IDEMPOTENCE", "true"),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("idempotence"), "{err}");
    // librdkafka's refusal names no flag: not blamed on the variable the brokers came from
    // (found by mutation testing: a setting named for it passed every test).
    assert!(!err.contains("(the value of"), "{err}");
    let (code, err) = run(&[
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"),
        ("BRIDGE_AUTH", "a:b"),
        ("KAFKA_SECURITY_PROTOCOL", "ssl"),
        ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem"),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("ssl.ca.location"), "{err}");
    let (code, _) = run(&[("BRIDGE_ACK_TIMEOUT", "soon")]);
    assert_eq!(code, Some(2));
    // A variable that resolved to nothing is not taken for "unset" (the in-memory Kafka).
    let (code, err) = run(&[("KAFKA_BOOTSTRAP_SERVERS", ""), ("BRIDGE_AUTH", "a:b")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is empty"), "{err}");
}

/// A --spool-dir this process cannot write to (here under `/`, run as a user other than root: as
/// `nobody` when the tests run as root): --check-config refuses it, and start-up too, with exit
/// code 2, where start-up failed to create the spool with exit code 1 and --check-config passed
/// it (found by a review of the tools).
#[test]
fn a_spool_dir_this_process_cannot_write_to_is_refused_by_check_config_and_at_start_up() {
    use std::os::unix::fs::PermissionsExt;
    let spool = "/qikchat-bridge-not-here/spool";
    let root = rustix::process::geteuid().is_root();
    // `nobody` may not reach the build's directory: a copy it can run.
    let bin = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let copy = bin.path().join("qikchat-bridge");
    std::fs::copy(BIN, &copy).expect("copy");
    let mut start = common::ANY_PORTS.to_vec();
    start.extend(["--kafka-brokers", "127.0.0.1:1", "--auth", "u:Zq7Wm3Kx9Pv2"]);
    for args in [vec!["--check-config"], start] {
        let mut command = if root {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", "nobody", "--"]).arg(&copy);
            runuser
        } else {
            Command::new(&copy)
        };
        let output = command
            .args(&args)
            .args(["--spool-dir", spool])
            .env_clear()
            // For `runuser`.
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output_within(EXIT_LIMIT);
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("--spool-dir: this process cannot write to /: Permission denied"),
            "{args:?}: {err}"
        );
    }
}

/// A --spool-dir that names a file: --check-config refuses it, and start-up too, with the same
/// exit code 2 (start-up said "spool write failed" with nothing written, then exited 1). A spool
/// that cannot be opened for another reason (here: another process holds its lock) is named at
/// start-up.
#[test]
fn a_spool_dir_that_is_a_file_is_refused_by_check_config_and_at_start_up() {
    let file = tempfile::NamedTempFile::new().expect("file");
    let path = file.path().display().to_string();
    let mut start = common::ANY_PORTS.to_vec();
    start.push("--spool-dir");
    for spool_dir in [path.clone(), format!("{path}/spool")] {
        for args in [vec!["--check-config", "--spool-dir"], start.clone()] {
            let output = Command::new(BIN)
                .args(&args)
                .arg(&spool_dir)
                .env_clear()
                .output_within(EXIT_LIMIT);
            let err = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains(&format!("--spool-dir: {path} is not a directory")),
                "{args:?}: {err}"
            );
        }
    }
    let dir = tempfile::tempdir().expect("dir");
    let lock = std::fs::File::create(dir.path().join("spool.lock")).expect("lock file");
    lock.try_lock()
        .expect("the spool's lock, held by this process");
    let dir = dir.path().display().to_string();
    start.push(&dir);
    let log = common::failed_start(&start);
    assert!(
        log.contains(&format!(
            "cannot open the spool in --spool-dir {dir}: another process holds the spool"
        )) && !log.contains("spool write failed"),
        "{log}"
    );
}

/// A FIFO where a secret file should be (a hung secrets mount looks the same): opening it waited
/// for a writer, so start-up and --check-config hung without a word. Now both refuse it at once.
#[test]
fn a_secret_file_that_is_a_pipe_is_refused_at_once_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("password");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    let fifo = fifo.display().to_string();
    for (args, var, named) in [
        (
            &["--check-config"][..],
            "KAFKA_SASL_PASSWORD_FILE",
            "KAFKA_SASL_PASSWORD_FILE",
        ),
        (
            &[][..],
            "KAFKA_SASL_PASSWORD_FILE",
            "KAFKA_SASL_PASSWORD_FILE",
        ),
        (&["--check-config"][..], "BRIDGE_AUTH_FILE", "--auth-file"),
    ] {
        let child = Command::new(BIN)
            .args(args)
            .env_clear()
            .env("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
            .env("BRIDGE_AUTH", "a:b")
            .env(var, &fifo)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        let (status, err) = exited_within(child, 10, &format!("{args:?} {var}"));
        assert_eq!(status.code(), Some(2), "{args:?} {var}: {err}");
        assert!(
            err.contains(named) && err.contains("not a regular file"),
            "{args:?} {var}: {err}"
        );
    }
}

/// A caller acts on the exit code; `eprintln!` on a closed stderr panicked, which turned the 2 of
/// a setting that cannot work into 101.
#[test]
fn a_bad_setting_exits_2_even_when_no_one_reads_stderr() {
    for args in [&[][..], &["--check-config"][..]] {
        let mut child = Command::new(BIN)
            .args(args)
            .env_clear()
            .env("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        // Closed before the bridge has loaded its libraries, long before it writes.
        drop(child.stderr.take());
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(2), "{args:?}: {status}");
    }
}

/// `-X sasl.password "$PW"` (a space for the `=`) leaves the password as a stray argument: the
/// refusal says so with exit code 2 but does not print it, as stderr ends up in the pod's logs.
#[test]
fn a_password_clap_cannot_place_is_refused_without_being_printed() {
    let output = Command::new(BIN)
        .args(["-X", "sasl.password", "hunter2"])
        .env_clear()
        .output_within(EXIT_LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(stderr.contains("not shown"), "{stderr}");

    // Nor is a password in a yes/no variable, whose values clap lists instead.
    let output = Command::new(BIN)
        .env_clear()
        .env("BRIDGE_INSECURE_DISABLE_AUTH", "hunter2")
        .output_within(EXIT_LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(
        stderr.contains("not shown") && stderr.contains("--insecure-disable-auth"),
        "{stderr}"
    );
    assert!(stderr.contains("possible values: true, false"), "{stderr}");

    // Help still goes to stdout with exit code 0.
    let help = Command::new(BIN)
        .arg("--help")
        .env_clear()
        .output_within(EXIT_LIMIT);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--kafka-property"));
}

/// A password that starts with `-` (`-X sasl.password --S3cretPW`, a space for the `=`) looks
/// like a flag: refused with exit code 2, named by its place and not printed, also when it starts
/// with `-h` or `-V`, which clap would take for a request for help or the version (exit 0).
#[test]
fn a_password_that_looks_like_a_flag_is_refused_without_being_printed() {
    for (args, place) in [
        (&["-X", "sasl.password", "--S3cretPW"][..], 3),
        (&["--auth", "alice", "--S3cretPW"][..], 3),
        (&["-X", "sasl.password", "-hS3cretPW"][..], 3),
        (&["-X", "sasl.password", "-VS3cretPW"][..], 3),
        (&["tail", "-X", "sasl.password", "-hS3cretPW", "t"][..], 4),
    ] {
        let output = Command::new(BIN)
            .args(args)
            .env_clear()
            .output_within(EXIT_LIMIT);
        let (code, stdout, stderr) = shown_without(output, "S3cretPW");
        assert_eq!(code, Some(2), "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!(
                "(argument {place}, not shown: it may hold a secret)"
            )),
            "{args:?}: {stderr}"
        );
    }
}

/// `tail -X sasl.password Hunter2!Secret topic` (a space for the `=`) leaves the password among
/// the topic names; one with a character no topic may have was quoted by the topic check.
#[test]
fn a_password_given_to_tail_with_a_space_for_the_equals_sign_is_never_printed() {
    for password in ["Hunter2!Secret", "p@ss/w+rd="] {
        // A space for the `=`, a space after it, and an unquoted `sasl.password=$PW` whose
        // value holds a space.
        for (args, says) in [
            (
                ["sasl.password", password],
                "-X flag is not KEY=VALUE (its text is not shown",
            ),
            (
                ["sasl.password=", password],
                "-X sasl.password= sets sasl.password to nothing",
            ),
            (
                ["sasl.password=correct", password],
                "the 1st topic name is not one Kafka can have",
            ),
        ] {
            let (code, stdout, stderr) = shown_without(
                Command::new(BIN)
                    .args(["tail", "--kafka-brokers", "127.0.0.1:1", "-X"])
                    .args(args)
                    .arg("whatsapp.message.in")
                    .env_clear()
                    .output_within(EXIT_LIMIT),
                password,
            );
            assert_eq!(code, Some(2), "{args:?}: {stdout}{stderr}");
            assert!(stderr.contains(says), "{args:?}: {stderr}");
        }
    }
}

/// `--help` names each flag's variable and shows its value, but not one that may hold a secret:
/// a broker URL's password, or a password in the wrong variable (a file's, a yes/no one).
#[test]
fn help_never_prints_a_secret_set_in_the_environment() {
    for args in [&["--help"][..], &["-h"][..], &["tail", "--help"][..]] {
        let output = Command::new(BIN)
            .args(args)
            .env_clear()
            .env(
                "KAFKA_BOOTSTRAP_SERVERS",
                "PLAINTEXT://u:hunter2pw@127.0.0.1:1",
            )
            .env("BRIDGE_AUTH", "a:hunter2pw")
            .env("BRIDGE_AUTH_FILE", "hunter2pw")
            .env("BRIDGE_INSECURE_DISABLE_AUTH", "hunter2pw")
            .env("BRIDGE_LOG_FORMAT", "hunter2pw")
            .output_within(EXIT_LIMIT);
        let (code, stdout, stderr) = shown_without(output, "hunter2pw");
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(
            stdout.contains("KAFKA_BOOTSTRAP_SERVERS"),
            "{args:?}: {stdout}"
        );
    }
}

/// Its help named SIGTERM and SIGINT only, though SIGHUP stops it too (as it does the bridge),
/// with exit code 0.
#[test]
fn dev_kafka_s_help_names_each_signal_that_stops_it_and_sighup_does() {
    let help = Command::new(BIN)
        .args(["dev-kafka", "--help"])
        .env_clear()
        .output_within(EXIT_LIMIT);
    let text = String::from_utf8_lossy(&help.stdout);
    assert_eq!(help.status.code(), Some(0), "{text}");
    assert!(text.contains("SIGTERM, SIGINT or SIGHUP"), "{text}");

    let (mut child, _) = dev_kafka(&[]);
    assert!(common::stop_with(&mut child, "-HUP").success());
}

/// `dev-kafka`'s address is all it is for: with its reader gone it says so and exits 1 rather than
/// panicking (`println!`) or holding a cluster nobody can find. Waited for within a limit: one
/// that held the cluster on (an error ignored, a stop that never ends) hung this test for good
/// (found by mutation testing).
#[test]
fn dev_kafka_with_no_one_to_read_its_address_exits_1_and_says_why() {
    let mut child = Command::new(BIN)
        .arg("dev-kafka")
        .env_clear()
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dev-kafka");
    // Closed before the cluster has started, which takes milliseconds more than this.
    drop(child.stdout.take());
    let (status, stderr) = exited_within(child, 30, "with no one to read its address");
    assert_eq!(status.code(), Some(1), "{status}: {stderr}");
    assert!(stderr.contains("cannot print the address"), "{stderr}");
}

/// Waits for `child` (its stderr piped) to exit within `seconds`, else kills it and fails naming
/// `what`: its status and stderr.
fn exited_within(
    mut child: std::process::Child,
    seconds: u64,
    what: &str,
) -> (std::process::ExitStatus, String) {
    let Some(status) = common::exited_within(&mut child, Duration::from_secs(seconds)) else {
        let _ = child.kill();
        panic!("{what}: still running after {seconds} s");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    (status, stderr)
}

/// Runs `tail --kafka-brokers BROKERS ARGS` with no environment: its exit code, stdout, stderr.
/// A setting refused after parsing names its variable too when the command line does not give it:
/// the flag alone says nothing to whoever set a pod's environment.
#[test]
fn a_setting_refused_from_a_variable_names_the_variable() {
    let from_the_environment = Command::new(BIN)
        .arg("--check-config")
        .env_clear()
        .env("BRIDGE_TOPICS", "a=x,")
        .output_within(EXIT_LIMIT);
    let (code, _, stderr) = shown_without(from_the_environment, "hunter2pw");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--topic: \"\" is not EVENT=TOPIC (the value of BRIDGE_TOPICS)"),
        "{stderr}"
    );
    let on_the_line = Command::new(BIN)
        .args(["--check-config", "--topic", ""])
        .env_clear()
        .output_within(EXIT_LIMIT);
    let (code, _, stderr) = shown_without(on_the_line, "BRIDGE_TOPICS");
    assert_eq!(code, Some(2), "{stderr}");
    // Refused beside another setting, at its default: no variable gave it.
    let at_its_default = Command::new(BIN)
        .args(["--check-config", "--max-body-bytes", "200000000"])
        .env_clear()
        .output_within(EXIT_LIMIT);
    let (code, _, stderr) = shown_without(at_its_default, "(the value of");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--max-in-flight-bytes"), "{stderr}");
}

/// Refusals made after the settings were parsed name the variable too: a spool directory that
/// is a file, a credentials file that cannot be read, and dev-kafka's topic prefix.
#[test]
fn later_refusals_of_a_value_from_a_variable_name_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").expect("file");
    let missing = dir.path().join("missing");
    let cases: [(&[&str], (&str, &std::ffi::OsStr), &str); 3] = [
        (
            &["--check-config"],
            ("BRIDGE_SPOOL_DIR", file.as_os_str()),
            "is not a directory (the value of BRIDGE_SPOOL_DIR)",
        ),
        (
            &["--check-config", "--kafka-brokers", "k:1"],
            ("BRIDGE_AUTH_FILE", missing.as_os_str()),
            "(the value of BRIDGE_AUTH_FILE)",
        ),
        (
            &["dev-kafka"],
            ("BRIDGE_TOPIC_PREFIX", "a b".as_ref()),
            "(the value of BRIDGE_TOPIC_PREFIX)",
        ),
    ];
    for (args, (variable, value), says) in cases {
        let output = Command::new(BIN)
            .args(args)
            .env_clear()
            .env(variable, value)
            .output_within(EXIT_LIMIT);
        let (code, _, stderr) = shown_without(output, "hunter2pw");
        assert_eq!(code, Some(2), "{variable}: {stderr}");
        assert!(stderr.contains(says), "{variable}: {stderr}");
    }
}

/// `output`'s exit code, stdout and stderr, once checked to show `secret` in neither.
fn shown_without(output: std::process::Output, secret: &str) -> (Option<i32>, String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "{secret:?} shown: {stdout}{stderr}"
    );
    (output.status.code(), stdout, stderr)
}

fn tail(brokers: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(BIN)
        .args(["tail", "--kafka-brokers", brokers])
        .args(args)
        .env_clear()
        .output_within(EXIT_LIMIT);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}
