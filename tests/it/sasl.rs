//! SASL end to end: the bridge, run as a process with SASL credentials, produces through a broker
//! that checks them, and a consumer reads the record back.
//!
//! librdkafka's mock cluster speaks no SASL: its request table (`rdkafka_mock_handlers.c`,
//! `rd_kafka_mock_api_handlers`) has no SaslHandshake or SaslAuthenticate handler, so its
//! ApiVersions answer lists neither, and a SASL client gives up before sending a credential ("SASL
//! Handshake not supported by broker"). [`SaslFront`] is the SASL half of a broker in front of
//! it: it answers SaslHandshake and SaslAuthenticate itself, checking PLAIN, SCRAM-SHA-256/512
//! (RFC 5802/7677, the server side) and OAUTHBEARER (RFC 7628) credentials as Kafka does, adds the
//! two APIs to the mock's ApiVersions answer, relays everything else to the mock once the client
//! is authenticated, and names itself in the mock's Metadata answers, so that every connection of
//! the producer comes through it. The consumer that reads the records back talks to the mock.
//!
//! The bridge runs as a process (`Spawned`), as in production; the tests with an identity
//! provider are in `oidc`, the password files rotated against the checking broker in
//! `rotation`, and `tail` in `tail`.

pub(crate) mod front;
mod oidc;
pub(crate) mod rotation;
mod tail;

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::common::{stop_with, Spawned, TEXT};
use front::{Accepts, SaslFront};

const BIN: &str = env!("CARGO_BIN_EXE_qikchat-bridge");
pub(crate) const KAFKA_USER: &str = "qikchat-bridge";
pub(crate) const KAFKA_PASSWORD: &str = "Kafka-Pw-4f9c2e7b";
const WRONG_PASSWORD: &str = "Wrong-Pw-81d3a6c0";
pub(crate) const TOPIC: &str = "whatsapp.message.in";

/// A mock cluster with the bridge's topics.
pub(crate) fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let args = qikchat_bridge::config::Args::try_parse_from([
        "qikchat-bridge",
        "--kafka-brokers",
        "kafka:9092",
        "--auth",
        "qikchat:pass",
    ])
    .expect("flags");
    let config = qikchat_bridge::config::Config::from_args(args, std::iter::empty(), |p| {
        std::fs::read_to_string(p)
    })
    .expect("config");
    for topic in config.topics.all_topics() {
        cluster
            .create_topic(&topic, common::PARTITIONS, 1)
            .expect("topic");
    }
    cluster
}

/// The bridge against `brokers`, with `env` and `args`, logging at `filter`.
pub(crate) fn bridge(brokers: &str, env: &[(&str, &str)], args: &[&str], filter: &str) -> Spawned {
    let credential = format!("{}:{}", common::USER, common::PASS);
    Spawned::start(
        Command::new(BIN)
            .env_clear()
            .env("RUST_LOG", filter)
            .envs(env.iter().copied())
            .args(common::ANY_PORTS)
            .args(["--kafka-brokers", brokers, "--auth", &credential])
            .args(["--shutdown-delay", "0s"])
            .args(args)
            .stdout(Stdio::null()),
    )
}

pub(crate) fn password_file(dir: &tempfile::TempDir, name: &str, secret: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("write secret");
    path
}

pub(crate) async fn post(port: u16) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhook"))
        .basic_auth(common::USER, Some(common::PASS))
        .header("content-type", "application/json")
        .body(TEXT)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("request")
}

pub(crate) async fn readyz(admin: u16) -> (u16, String) {
    let r = reqwest::get(format!("http://127.0.0.1:{admin}/readyz"))
        .await
        .expect("readyz");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// The record the bridge produced for [`TEXT`], read from the mock itself.
pub(crate) async fn stored(bootstrap: &str) -> Vec<u8> {
    let got = read_back(bootstrap, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    got[0].value.clone()
}

/// Up to `count` records of [`TOPIC`] in the mock at `bootstrap`, read within `wait`.
pub(crate) async fn read_back(bootstrap: &str, count: usize, wait: Duration) -> Vec<common::Got> {
    let bootstrap = bootstrap.to_string();
    tokio::task::spawn_blocking(move || common::read_records(&bootstrap, TOPIC, count, wait))
        .await
        .expect("consumer")
}

/// What a bridge that cannot reach Kafka answered once readiness had checked: `/readyz`'s status
/// and reason, then a webhook's status, `Retry-After` and time.
pub(crate) struct Outage {
    ready: (u16, String),
    webhook: (u16, Option<String>),
    took: Duration,
}

impl Outage {
    pub(crate) async fn seen(bridge: &Spawned) -> Outage {
        // Readiness is checked every second.
        common::eventually("a readiness check", async || {
            !readyz(bridge.admin).await.1.contains("not checked yet")
        })
        .await;
        let ready = readyz(bridge.admin).await;
        let asked = Instant::now();
        let response = post(bridge.port).await;
        let took = asked.elapsed();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or("").to_string());
        Outage {
            ready,
            webhook: (response.status().as_u16(), retry_after),
            took,
        }
    }

    /// Unready, and a webhook answered 503 with `Retry-After` within the ack timeout (1.5 s).
    pub(crate) fn holds(&self) {
        assert_eq!(self.ready.0, 503, "{}", self.ready.1);
        assert_eq!(self.webhook, (503, Some("1".to_string())));
        assert!(self.took < Duration::from_secs(3), "{:?}", self.took);
    }
}

/// Once `bridge` is ready, one webhook is answered 200 and its record is in `cluster` byte for
/// byte; then the bridge stops on SIGTERM with status 0. Returns its log.
pub(crate) async fn delivers_one(
    bridge: &mut Spawned,
    cluster: &MockCluster<'static, DefaultProducerContext>,
) -> String {
    common::wait_ready_at(bridge.admin).await;
    assert_eq!(post(bridge.port).await.status(), 200);
    assert_eq!(stored(&cluster.bootstrap_servers()).await, TEXT);
    assert!(stop_with(&mut bridge.child, "-TERM").success());
    bridge.log_to_end()
}

/// Starts the bridge through a front that takes `KAFKA_USER`/`KAFKA_PASSWORD`, waits for
/// readiness, delivers one webhook, and checks the record, the front's verdicts and the log.
async fn delivers_through_sasl(mechanism: &str, env: &[(&str, &str)], args: &[&str]) {
    let started = Instant::now();
    let cluster = cluster();
    let accepts = Accepts::user(KAFKA_USER, KAFKA_PASSWORD);
    let front = SaslFront::start(&cluster.bootstrap_servers(), accepts).await;
    let mut bridge = bridge(&front.addr.to_string(), env, args, "debug");
    let log = delivers_one(&mut bridge, &cluster).await;
    let outcomes = front.outcomes();
    assert!(!outcomes.is_empty());
    assert!(
        outcomes
            .iter()
            .all(|(m, u, ok)| m == mechanism && u == KAFKA_USER && *ok),
        "{outcomes:?}"
    );
    assert!(
        !log.contains(KAFKA_PASSWORD),
        "the password reached the log:\n{log}"
    );
    eprintln!("{mechanism}: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_with_x_flags_delivers_the_record() {
    let password = format!("sasl.password={KAFKA_PASSWORD}");
    let user = format!("sasl.username={KAFKA_USER}");
    delivers_through_sasl(
        "PLAIN",
        &[],
        &[
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanisms=PLAIN",
            "-X",
            &user,
            "-X",
            &password,
            "-X",
            "debug=all",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_sha_256_with_the_password_from_a_file_delivers_the_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = password_file(&dir, "password", KAFKA_PASSWORD);
    let file = file.to_str().expect("path");
    delivers_through_sasl(
        "SCRAM-SHA-256",
        &[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
            ("KAFKA_SASL_USERNAME", KAFKA_USER),
            ("KAFKA_SASL_PASSWORD_FILE", file),
        ],
        &["-X", "debug=security,broker"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_sha_512_with_the_password_from_a_file_delivers_the_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = password_file(&dir, "password", KAFKA_PASSWORD);
    let file = file.to_str().expect("path");
    let user = format!("sasl.username={KAFKA_USER}");
    delivers_through_sasl(
        "SCRAM-SHA-512",
        &[("KAFKA_SASL_PASSWORD_FILE", file)],
        &[
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-512",
            "-X",
            &user,
            "-X",
            "debug=security,broker",
        ],
    )
    .await;
}

/// A refused password: never ready, webhooks answered 503 with `Retry-After` within the ack
/// timeout (README: "Kafka refusing ... authentication: the retry succeeds once it is fixed"),
/// nothing stored, the reason in the log without the password.
/// With `debug`, every librdkafka debug context at the log's debug level; without, the log as an
/// operator runs it, which must still say why.
async fn a_refused_password_is_an_outage(mechanism: &str, debug: bool) {
    let cluster = cluster();
    let accepts = Accepts::user(KAFKA_USER, KAFKA_PASSWORD);
    let front = SaslFront::start(&cluster.bootstrap_servers(), accepts).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = password_file(&dir, "password", WRONG_PASSWORD);
    let mut bridge = bridge(
        &front.addr.to_string(),
        &[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", mechanism),
            ("KAFKA_SASL_USERNAME", KAFKA_USER),
            ("KAFKA_SASL_PASSWORD_FILE", file.to_str().expect("path")),
        ],
        if debug { &["-X", "debug=all"] } else { &[] },
        if debug { "debug" } else { common::LOG_FILTER },
    );
    common::eventually("the front refused the password", async || {
        front.outcomes().iter().any(|(_, _, ok)| !ok)
    })
    .await;
    common::eventually("the refusal logged", async || {
        bridge.log_so_far().contains("Authentication failed")
    })
    .await;
    let outage = Outage::seen(&bridge).await;
    let (status_after, reason_after) = readyz(bridge.admin).await;
    assert!(stop_with(&mut bridge.child, "-TERM").success());
    let log = bridge.log_to_end();
    outage.holds();
    assert_eq!(status_after, 503, "{reason_after}");
    // The cause, not only "no broker answered": librdkafka's, without the password.
    assert!(
        reason_after.contains("SASL authentication error: Authentication failed")
            && !reason_after.contains(WRONG_PASSWORD),
        "{reason_after}"
    );
    assert!(front.outcomes().iter().all(|(_, _, ok)| !ok));
    let got = read_back(&cluster.bootstrap_servers(), 1, Duration::from_secs(1)).await;
    assert!(got.is_empty(), "{got:?}");
    assert!(
        log.contains("Authentication failed"),
        "the reason is not in the log:\n{log}"
    );
    for secret in [WRONG_PASSWORD, KAFKA_PASSWORD] {
        assert!(!log.contains(secret), "a password reached the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_plain_password_is_an_outage_and_never_logged() {
    a_refused_password_is_an_outage("PLAIN", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_scram_password_is_an_outage_and_never_logged() {
    a_refused_password_is_an_outage("SCRAM-SHA-256", true).await;
}

/// The mock cluster alone, asked for SASL: no credential is ever checked, the client stops at the
/// handshake it does not offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_cluster_alone_takes_no_sasl_client() {
    let cluster = cluster();
    let mut bridge = bridge(
        &cluster.bootstrap_servers(),
        &[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "PLAIN"),
            ("KAFKA_SASL_USERNAME", KAFKA_USER),
            ("KAFKA_SASL_PASSWORD", KAFKA_PASSWORD),
        ],
        &[],
        common::LOG_FILTER,
    );
    common::eventually("librdkafka's reason", async || {
        bridge
            .log_so_far()
            .contains("SASL Handshake not supported by broker")
    })
    .await;
    assert_eq!(readyz(bridge.admin).await.0, 503);
    assert!(stop_with(&mut bridge.child, "-TERM").success());
    let log = bridge.log_to_end();
    assert!(!log.contains(KAFKA_PASSWORD), "{log}");
}
