//! SIGKILL while Kafka is down and records are spooled: after a restart, every request that was
//! answered 200 reaches Kafka.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{PASS, USER};

const BIN: &str = env!("CARGO_BIN_EXE_qikchat-bridge");
const TOPIC: &str = "whatsapp.message.status";

fn start(bootstrap: &str, spool: &std::path::Path, port: u16, admin: u16) -> Child {
    Command::new(BIN)
        .args([
            "--kafka-brokers",
            bootstrap,
            "--auth",
            &format!("{USER}:{PASS}"),
            "--ack-timeout",
            "1s",
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .arg("--spool-dir")
        .arg(spool)
        .env_clear()
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the bridge")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_answered_200_survive_a_sigkill_and_a_torn_tail_while_kafka_is_down() {
    let (cluster, bootstrap) = common::cluster_with_broker_down(TOPIC);
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, admin) = (common::free_port(), common::free_port());
    let mut child = start(&bootstrap, dir.path(), port, admin);
    common::wait_ready_at(admin).await;

    // Load that is still running when the process dies.
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..150u32 {
        let (http, url) = (http.clone(), format!("http://127.0.0.1:{port}/webhook"));
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(u64::from(i) * 10)).await;
            let body = format!(r#"{{"event":"whatsapp:message:status","payload":{{"id":"c{i}","to":"+91{i:08}","status":"sent"}}}}"#);
            let r = http.post(url).basic_auth(USER, Some(PASS)).body(body).send().await.ok()?;
            let id = r.headers().get("x-request-id")?.to_str().ok()?.to_string();
            (r.status() == 200).then_some(id)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let mut accepted = Vec::new();
    for t in tasks {
        if let Some(id) = t.await.expect("task") {
            accepted.push(id);
        }
    }
    assert!(
        accepted.len() >= 10,
        "only {} answered 200 before the kill",
        accepted.len()
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
    let mut child = start(&bootstrap, dir.path(), port, admin);
    common::wait_ready_at(admin).await;

    common::wait_all_stored(&bootstrap, TOPIC, &accepted).await;
    child.kill().expect("stop");
    let _ = child.wait();
}
