//! The password file rotated against a broker that checks it: a wrong one fixed, a refused
//! rotation that keeps the working producer, and with a spool, the records spooled meanwhile.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::front::{Accepts, SaslFront};
use super::{
    bridge, cluster, password_file, post, read_back, readyz, stored, KAFKA_PASSWORD, KAFKA_USER,
    WRONG_PASSWORD,
};
use crate::common::{self, stop_with, Spawned, TEXT};

pub(crate) async fn metric(admin: u16, series: &str) -> Option<String> {
    let text = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .map(|v| v.trim().to_string())
}

pub(crate) fn reloads(result: &str) -> String {
    format!("qikchat_bridge_kafka_client_reloads_total{{result=\"{result}\",role=\"webhooks\"}} ")
}

const STALE: &str = "qikchat_bridge_kafka_client_files_stale{role=\"webhooks\"} ";

/// The bridge on a password file, through a front that takes `accepts`.
async fn start_on_password_file(
    accepts: Accepts,
    password: &str,
) -> (
    SaslFront,
    MockCluster<'static, DefaultProducerContext>,
    Spawned,
    PathBuf,
    tempfile::TempDir,
) {
    let cluster = cluster();
    let front = SaslFront::start(&cluster.bootstrap_servers(), accepts).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = password_file(&dir, "password", password);
    let bridge = bridge(
        &front.addr.to_string(),
        &[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", KAFKA_USER),
            ("KAFKA_SASL_PASSWORD_FILE", file.to_str().expect("path")),
        ],
        &["-X", "debug=security"],
        "debug",
    );
    (front, cluster, bridge, file, dir)
}

/// A wrong password fixed in its file: the bridge recovers without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fixed_in_its_file_recovers_without_a_restart() {
    let started = Instant::now();
    let (front, cluster, mut bridge, file, _dir) =
        start_on_password_file(Accepts::user(KAFKA_USER, KAFKA_PASSWORD), WRONG_PASSWORD).await;
    common::eventually("the front refused the password", async || {
        front.outcomes().iter().any(|(_, _, ok)| !ok)
    })
    .await;
    assert_eq!(readyz(bridge.admin).await.0, 503);
    common::rotate(&file, &format!("{KAFKA_PASSWORD}\n"));
    common::eventually("ready after the fix", async || {
        readyz(bridge.admin).await.0 == 200
    })
    .await;
    let response = post(bridge.port).await;
    assert_eq!(response.status(), 200);
    assert_eq!(stored(&cluster.bootstrap_servers()).await, TEXT);
    let rebuilt = metric(bridge.admin, &reloads("rebuilt")).await;
    assert!(stop_with(&mut bridge.child, "-TERM").success());
    let log = bridge.log_to_end();
    assert_eq!(rebuilt.as_deref(), Some("1"));
    assert!(front.outcomes().iter().any(|(_, _, ok)| *ok));
    for secret in [WRONG_PASSWORD, KAFKA_PASSWORD] {
        assert!(!log.contains(secret), "a password reached the log:\n{log}");
    }
    eprintln!("wrong then fixed: {:?}", started.elapsed());
}

/// A password the broker does not take (yet) keeps the producer that works; one it takes
/// replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_the_broker_refuses_keeps_the_working_producer() {
    let started = Instant::now();
    let next = "Next-Pw-0c6d9e21";
    let accepts = Accepts {
        users: vec![
            (KAFKA_USER.to_string(), KAFKA_PASSWORD.to_string()),
            (KAFKA_USER.to_string(), next.to_string()),
        ],
        bearer: None,
    };
    let (front, cluster, mut bridge, file, _dir) =
        start_on_password_file(accepts, KAFKA_PASSWORD).await;
    common::wait_ready_at(bridge.admin).await;
    common::rotate(&file, &format!("{WRONG_PASSWORD}\n"));
    common::eventually("the rotation failed", async || {
        metric(bridge.admin, &reloads("failed")).await.as_deref() == Some("1")
    })
    .await;
    assert_eq!(metric(bridge.admin, STALE).await.as_deref(), Some("1"));
    assert!(front.outcomes().iter().any(|(_, _, ok)| !ok));
    // Ready: a check may time out on a loaded machine (1 s), so not on the first look.
    common::eventually("still ready", async || readyz(bridge.admin).await.0 == 200).await;
    assert_eq!(post(bridge.port).await.status(), 200);
    common::rotate(&file, &format!("{next}\n"));
    common::eventually("the next password taken", async || {
        metric(bridge.admin, &reloads("rebuilt")).await.as_deref() == Some("1")
    })
    .await;
    assert_eq!(metric(bridge.admin, STALE).await.as_deref(), Some("0"));
    assert_eq!(post(bridge.port).await.status(), 200);
    assert!(stop_with(&mut bridge.child, "-TERM").success());
    let log = bridge.log_to_end();
    let got = read_back(&cluster.bootstrap_servers(), 2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2);
    for secret in [WRONG_PASSWORD, KAFKA_PASSWORD, next] {
        assert!(!log.contains(secret), "a password reached the log:\n{log}");
    }
    // The failed rotation's line says why the new producer reached no broker.
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("did not reach a broker"))
        .collect();
    assert!(
        !failed.is_empty()
            && failed
                .iter()
                .all(|l| l.contains("SASL authentication error")),
        "{log}"
    );
    eprintln!("rotations: {:?}", started.elapsed());
}

/// With a spool, a refused password is answered 200 (spooled), and replay delivers the record
/// once the password file is fixed: replay's own producer is made again from it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_spool_a_refused_password_spools_and_the_fix_replays() {
    let started = Instant::now();
    let cluster = cluster();
    let front = SaslFront::start(
        &cluster.bootstrap_servers(),
        Accepts::user(KAFKA_USER, KAFKA_PASSWORD),
    )
    .await;
    let dir = common::memory_tempdir();
    let file = password_file(&dir, "password", WRONG_PASSWORD);
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).expect("spool dir");
    let mut bridge = bridge(
        &front.addr.to_string(),
        &[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
            ("KAFKA_SASL_USERNAME", KAFKA_USER),
            ("KAFKA_SASL_PASSWORD_FILE", file.to_str().expect("path")),
        ],
        &["--spool-dir", spool.to_str().expect("path")],
        common::LOG_FILTER,
    );
    common::eventually("the front refused the password", async || {
        front.outcomes().iter().any(|(_, _, ok)| !ok)
    })
    .await;
    let response = post(bridge.port).await;
    assert_eq!(response.status(), 200, "spooled");
    let rotated = Instant::now();
    common::rotate(&file, &format!("{KAFKA_PASSWORD}\n"));
    common::eventually("ready after the fix", async || {
        readyz(bridge.admin).await.0 == 200
    })
    .await;
    let ready_after = rotated.elapsed();
    // The replay batch sent before the fix is held by the old replay producer until its 30 s
    // message timeout; only then is it sent again through the new one.
    common::eventually_within("the spool replayed", Duration::from_secs(45), async || {
        metric(bridge.admin, "qikchat_bridge_spool_records ")
            .await
            .as_deref()
            == Some("0")
    })
    .await;
    eprintln!(
        "ready {ready_after:?}, replayed {:?} after the fix",
        rotated.elapsed()
    );
    assert_eq!(stored(&cluster.bootstrap_servers()).await, TEXT);
    assert!(stop_with(&mut bridge.child, "-TERM").success());
    let log = bridge.log_to_end();
    for secret in [WRONG_PASSWORD, KAFKA_PASSWORD] {
        assert!(!log.contains(secret), "a password reached the log:\n{log}");
    }
    eprintln!("spool then replay: {:?}", started.elapsed());
}
