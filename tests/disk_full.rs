//! A disk that fills up: spool writes fail, the bridge answers 503 (never a 200 without a durable
//! copy), and every 200 reaches Kafka. The file-size limit (`ulimit -f`, with SIGXFSZ ignored so
//! writes fail with EFBIG instead of killing the process) stands in for a full volume.

mod common;

use std::process::{Command, Stdio};

use common::{PASS, USER};

const BIN: &str = env!("CARGO_BIN_EXE_qikchat-bridge");
const TOPIC: &str = "whatsapp.message.status";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_every_200_still_reaches_kafka() {
    let (cluster, bootstrap) = common::cluster_with_broker_down(TOPIC);
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, admin) = (common::free_port(), common::free_port());
    // 2 MiB of file size: room for the empty database and some records, then EFBIG.
    let script = format!(
        "trap '' XFSZ; ulimit -f 4096; exec \"$0\" --kafka-brokers {bootstrap} --auth {USER}:'{PASS}' \
         --ack-timeout 1s --listen 127.0.0.1:{port} --admin-listen 127.0.0.1:{admin} --spool-dir \"$1\""
    );
    let mut child = Command::new("sh")
        .args(["-c", &script, BIN])
        .arg(dir.path())
        .env_clear()
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let http = reqwest::Client::new();
    common::wait_ready_at(admin).await;

    let pad = "x".repeat(60_000);
    let (mut ok, mut refused) = (Vec::new(), 0);
    for round in 0..6 {
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (http, url) = (http.clone(), format!("http://127.0.0.1:{port}/webhook"));
                let body = format!(r#"{{"event":"whatsapp:message:status","payload":{{"id":"d{round}-{i}","to":"+91{round}{i:04}","pad":"{pad}"}}}}"#);
                tokio::spawn(async move {
                    let r = http.post(url).basic_auth(USER, Some(PASS)).body(body).send().await.expect("request");
                    (r.status().as_u16(), r.headers()["x-request-id"].to_str().expect("id").to_string())
                })
            })
            .collect();
        for t in tasks {
            match t.await.expect("task") {
                (200, id) => ok.push(id),
                (503, _) => refused += 1,
                (s, _) => panic!("unexpected {s}"),
            }
        }
    }
    assert!(refused > 0, "the size limit must be hit");
    assert!(!ok.is_empty(), "some records fit before it");
    let metrics = http
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        !metrics.contains(r#"qikchat_bridge_spool_appends_total{result="error"} 0"#),
        "write errors counted"
    );

    cluster.broker_up(1).expect("up");
    common::wait_all_stored(&bootstrap, TOPIC, &ok).await;
    let _ = child.kill();
    let _ = child.wait();
}
