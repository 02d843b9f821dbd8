//! A disk that fills up: spool writes fail, the bridge answers 503 (never a 200 without a durable
//! copy), stops (redb refuses every write after a failed one until the file is opened again), and
//! every 200 reaches Kafka after a restart. The file-size limit (`ulimit -f`, with SIGXFSZ ignored
//! so writes fail with EFBIG instead of killing the process) stands in for a full volume. It
//! applies on any filesystem, so the spool is on memory where the machine has one
//! (`common::memory_tempdir`): a CI run on a loaded machine answered no record 200, as when the
//! first records' fsync outlasts the 250 ms a record has for the spool (a 503, late but
//! committed) and the next ones fill the file (inferred: the spool tests failed so beside a
//! `dd`, this one did not).

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Spawned, PASS, USER};

const BIN: &str = env!("CARGO_BIN_EXE_qikchat-bridge");
const TOPIC: &str = "whatsapp.message.status";

/// 2 MiB of file size: room for the empty database and some records, then EFBIG.
const SMALL_DISK: &str = "trap '' XFSZ; ulimit -f 4096; ";

/// The bridge on Kafka at `bootstrap` with its spool in `spool`, under a shell that sets
/// `limits` first (`$0` the binary, `$1` the spool).
fn start(bootstrap: &str, spool: &std::path::Path, limits: &str) -> Spawned {
    let flags = format!(
        "--kafka-brokers {bootstrap} --auth {USER}:'{PASS}' --ack-timeout 1s {} --spool-dir \"$1\"",
        common::ANY_PORTS.join(" ")
    );
    Spawned::start(
        Command::new("sh")
            .args(["-c", &format!("{limits}exec \"$0\" {flags}"), BIN])
            .arg(spool)
            .env_clear()
            .env("RUST_LOG", common::LOG_FILTER)
            .stdout(Stdio::null()),
    )
}

/// The spool's appends by result in a scrape: what a failure above was made of.
fn spool_appends(scrape: &str) -> String {
    let counts: Vec<_> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("qikchat_bridge_spool_appends_total"))
        .collect();
    counts.join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_stops_the_bridge_and_every_200_reaches_kafka_after_a_restart() {
    let (cluster, bootstrap) = common::cluster_with_broker_down(TOPIC);
    let dir = common::memory_tempdir();
    let spool = dir.path().join("spool");
    let mut bridge = start(&bootstrap, &spool, SMALL_DISK);
    let (port, child) = (bridge.port, &mut bridge.child);
    let http = reqwest::Client::new();
    common::wait_ready_at(bridge.admin).await;
    // Scraped every 2 s, as Prometheus would, until a webhook is answered 503 (the failed
    // write); the next scrape comes 3 s after that answer. Without its wait for a scrape, the
    // bridge has gone by then (its admin port closes about 1 s after the failure), and the
    // last scrape it answered came before the failure; with it (5 s at this interval), that
    // scrape is the one that shows the failed write.
    let first_503: std::sync::Arc<std::sync::Mutex<Option<Instant>>> = Default::default();
    let last_scrape = std::sync::Arc::new(std::sync::Mutex::new((Instant::now(), String::new())));
    let scraper = tokio::spawn({
        let (http, kept, first_503) = (http.clone(), last_scrape.clone(), first_503.clone());
        let url = format!("http://127.0.0.1:{}/metrics", bridge.admin);
        async move {
            let mut last = Instant::now() - Duration::from_secs(2);
            loop {
                let failed = *first_503.lock().expect("first 503");
                let due = (last + Duration::from_secs(2))
                    .max(failed.map_or(last, |at| at + Duration::from_secs(3)));
                if Instant::now() >= due {
                    let asked = Instant::now();
                    if let Ok(r) = http.get(&url).send().await {
                        if let Ok(text) = r.text().await {
                            *kept.lock().expect("kept") = (asked, text);
                        }
                    }
                    last = asked;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    let pad = "x".repeat(60_000);
    let (mut ok, mut n503, mut unreachable) = (Vec::new(), 0, 0);
    for round in 0..6 {
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (http, url) = (http.clone(), format!("http://127.0.0.1:{port}/webhook"));
                let first_503 = first_503.clone();
                let body = format!(r#"{{"event":"whatsapp:message:status","payload":{{"id":"d{round}-{i}","to":"+91{round}{i:04}","pad":"{pad}"}}}}"#);
                tokio::spawn(async move {
                    // Once the bridge has stopped, a connection error is expected; it is counted
                    // apart so that a bridge that died at its first failed write cannot pass.
                    let Ok(r) = http.post(url).basic_auth(USER, Some(PASS)).body(body).send().await else {
                        return (0, String::new(), None);
                    };
                    if r.status() == 503 {
                        first_503.lock().expect("first 503").get_or_insert_with(Instant::now);
                    }
                    let retry_after = r.headers().get("retry-after").map(|v| v.to_str().expect("ascii").to_string());
                    (r.status().as_u16(), r.headers()["x-request-id"].to_str().expect("id").to_string(), retry_after)
                })
            })
            .collect();
        for t in tasks {
            match t.await.expect("task") {
                (200, id, _) => ok.push(id),
                (503, _, retry_after) => {
                    assert_eq!(
                        retry_after.as_deref(),
                        Some("1"),
                        "a 503 says when to retry"
                    );
                    n503 += 1;
                }
                (0, _, _) => unreachable += 1,
                (s, _, _) => panic!("unexpected {s}"),
            }
        }
    }
    assert!(
        n503 >= 1,
        "the failed spool write must be answered 503 ({unreachable} connection errors)"
    );
    assert!(
        !ok.is_empty(),
        "some records fit before it ({n503} answers 503, {unreachable} connection errors; the \
         last scrape: {})",
        spool_appends(&last_scrape.lock().expect("kept").1)
    );

    // It stops by itself, with an error, rather than answer 503 until someone restarts it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running with a spool that refuses writes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Status 1, not a signal: it stopped on purpose rather than crashed.
    assert_eq!(status.code(), Some(1), "{status}");
    scraper.abort();
    let (scraped_at, scraped) = last_scrape.lock().expect("kept").clone();
    let failed_at = first_503.lock().expect("first 503").expect("a 503");
    assert!(
        scraped_at > failed_at,
        "the bridge exited without waiting for a scrape after its failed write"
    );
    let errors: u64 = scraped
        .lines()
        .find_map(|l| l.strip_prefix(r#"qikchat_bridge_spool_appends_total{result="error"} "#))
        .expect("the counter")
        .parse()
        .expect("a number");
    assert!(
        errors >= 1,
        "the last scrape before the exit shows the failed write"
    );
    let logged = bridge.log_to_end();
    assert!(
        logged.contains("cannot take records again") && logged.contains("a new write is refused"),
        "{logged}"
    );

    // Restarted with room on the disk, it replays what it answered 200 for.
    cluster.broker_up(1).expect("up");
    let mut restarted = start(&bootstrap, &spool, "");
    common::wait_all_stored(&bootstrap, TOPIC, &ok).await;
    let _ = restarted.child.kill();
    let _ = restarted.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_ends_the_wait_for_a_scrape_after_a_failed_spool_write() {
    let (_cluster, bootstrap) = common::cluster_with_broker_down(TOPIC);
    let dir = common::memory_tempdir();
    let mut bridge = start(&bootstrap, &dir.path().join("spool"), SMALL_DISK);
    common::wait_ready_at(bridge.admin).await;
    let http = reqwest::Client::new();
    // Scraped once: with no interval known, the stop would wait a minute for the next scrape.
    let metrics = format!("http://127.0.0.1:{}/metrics", bridge.admin);
    http.get(&metrics).send().await.expect("scrape");

    let pad = "x".repeat(60_000);
    let url = format!("http://127.0.0.1:{}/webhook", bridge.port);
    let readyz = format!("http://127.0.0.1:{}/readyz", bridge.admin);
    let shutting_down = async || {
        let answer = http.get(&readyz).send().await.expect("readyz");
        answer.text().await.expect("text").contains("shutting down")
    };
    let mut stopping = false;
    for round in 0..10 {
        let sent: Vec<_> = (0..20)
            .map(|i| {
                let body = format!(r#"{{"event":"whatsapp:message:status","payload":{{"id":"t{round}-{i}","to":"+91{round}{i:04}","pad":"{pad}"}}}}"#);
                let request = http.post(&url).basic_auth(USER, Some(PASS)).body(body);
                tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
            })
            .collect();
        let mut refused = false;
        for answer in sent {
            refused |= answer.await.expect("task").is_ok_and(|s| s == 503);
        }
        // Stopping, it waits for that scrape, serving unready meanwhile. A 503 is also a write
        // late for its ack deadline (`result="late"`) on a loaded machine, which stops nothing:
        // then more records go until one fails.
        let looked = Instant::now();
        while refused && looked.elapsed() < Duration::from_secs(5) {
            if shutting_down().await {
                stopping = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if stopping {
            break;
        }
    }
    assert!(stopping, "a spool write failed, and the bridge is stopping");
    assert!(bridge.child.try_wait().expect("wait").is_none(), "waiting");

    let signalled = Instant::now();
    let status = common::stop_with(&mut bridge.child, "-TERM");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "{:?}",
        signalled.elapsed()
    );
    assert_eq!(status.code(), Some(1), "it still stops for the failure");
}
