//! SIGKILL while Kafka is down and records are spooled: after a restart, every request that was
//! answered 200 reaches Kafka.

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Spawned, PASS, USER};

const BIN: &str = env!("CARGO_BIN_EXE_qikchat-bridge");
const TOPIC: &str = "whatsapp.message.status";

fn start(bootstrap: &str, spool: &std::path::Path) -> Spawned {
    Spawned::start(
        Command::new(BIN)
            .args([
                "--kafka-brokers",
                bootstrap,
                "--auth",
                &format!("{USER}:{PASS}"),
                "--ack-timeout",
                "1s",
            ])
            .args(common::ANY_PORTS)
            .arg("--spool-dir")
            .arg(spool)
            .env_clear()
            .env("RUST_LOG", common::LOG_FILTER)
            .stdout(Stdio::null()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_answered_200_survive_a_sigkill_and_a_torn_tail_while_kafka_is_down() {
    let (cluster, bootstrap) = common::cluster_with_broker_down(TOPIC);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = start(&bootstrap, dir.path());
    let (port, admin) = (first.port, first.admin);
    common::wait_ready_at(admin).await;

    // Load that is still running when the process dies: senders that keep going until the
    // connection fails. The kill waits for ten 200s rather than a fixed time: a CI run once got
    // no answer at all within the 1.2 s this test used to wait (cause not found; never locally).
    let http = reqwest::Client::new();
    let answered = Arc::new(AtomicUsize::new(0));
    // Every other answer, so that a failure says what the bridge said instead.
    let refused = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
    let mut senders = Vec::new();
    for w in 0..20u32 {
        let (http, url) = (http.clone(), format!("http://127.0.0.1:{port}/webhook"));
        let (answered, refused) = (answered.clone(), refused.clone());
        senders.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..1000u32 {
                let body = format!(r#"{{"event":"whatsapp:message:status","payload":{{"id":"c{w}-{i}","to":"+91{w:04}{i:04}","status":"sent"}}}}"#);
                let Ok(r) = http.post(&url).basic_auth(USER, Some(PASS)).body(body).send().await
                else {
                    break;
                };
                let id = r.headers().get("x-request-id").and_then(|v| v.to_str().ok());
                match (r.status().as_u16(), id) {
                    (200, Some(id)) => {
                        ids.push(id.to_string());
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    (status, _) => *refused.lock().expect("lock").entry(status).or_default() += 1,
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ids
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while answered.load(Ordering::SeqCst) < 10 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reaped");
    let mut accepted = Vec::new();
    for s in senders {
        accepted.extend(s.await.expect("sender"));
    }
    assert!(
        accepted.len() >= 10,
        "only {} answered 200 before the kill; the other answers by status: {:?}",
        accepted.len(),
        refused.lock().expect("lock")
    );

    // A torn tail: bytes a dying write left behind the last commit.
    let file = dir.path().join("spool.redb");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .expect("spool file")
        .write_all(&[0xA5; 4096])
        .expect("tear");

    cluster.broker_up(1).expect("up");
    let mut restarted = start(&bootstrap, dir.path());
    common::wait_ready_at(restarted.admin).await;

    common::wait_all_stored(&bootstrap, TOPIC, &accepted).await;
    restarted.child.kill().expect("stop");
    let _ = restarted.child.wait();
}
