//! Measures how fast the spool drains once Kafka is back: it spools `N` records of the load
//! generator's mix (a key per conversation, both topics), then runs the bridge's replay through
//! its replay producer (same settings) to a mock cluster in this process and prints records
//! replayed per second. A measurement for the README, not a check:
//! `cargo run --release --example replay_throughput [N=100000] [BROKER_RTT_MS=0] [BODY_BYTES]`.
//! BODY_BYTES pads each body to that size (the seed bodies are 275 and 545 bytes; Qikchat's
//! real ones 1–3 KiB). With `REPLAY_BOOTSTRAP=HOST:PORT` (a `qikchat-bridge dev-kafka` in
//! another process; no round trip is added) it also prints how much replay raised this
//! process's peak memory, which then holds no broker. With `REPLAY_SPOOL_DIR=DIR` it only
//! fills a spool in DIR (for `--spool-dir DIR`: a bridge replays it as it starts) and exits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qikchat_bridge::config::Config;
use qikchat_bridge::metrics::Metrics;
use qikchat_bridge::producer::{KafkaSink, ProducerRole};
use qikchat_bridge::spool::{Spool, SpooledRecord};
use rdkafka::mocking::MockCluster;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const TEXT: &[u8] = include_bytes!("../tests/fixtures/message-in-text.json");
const STATUS: &[u8] = include_bytes!("../tests/fixtures/status-read.json");
const IN: &str = "whatsapp.message.in";
const STATUSES: &str = "whatsapp.message.status";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rtt_ms: u64 = std::env::args()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body_bytes: Option<usize> = std::env::args().nth(3).and_then(|v| v.parse().ok());
    let deadletter = "whatsapp.deadletter";
    let keep = std::env::var_os("REPLAY_SPOOL_DIR").map(std::path::PathBuf::from);
    let (_cluster, bootstrap) = match std::env::var("REPLAY_BOOTSTRAP") {
        Ok(bootstrap) => (None, bootstrap),
        // Only filling a spool: no broker needed.
        Err(_) if keep.is_some() => (None, String::new()),
        Err(_) => {
            let cluster = MockCluster::new(1)?;
            if rtt_ms > 0 {
                cluster.broker_round_trip_time(1, Duration::from_millis(rtt_ms))?;
            }
            for topic in [IN, STATUSES, deadletter] {
                cluster.create_topic(topic, 3, 1)?;
            }
            let bootstrap = cluster.bootstrap_servers();
            (Some(cluster), bootstrap)
        }
    };
    let dir = tempfile::tempdir()?;
    // With `REPLAY_SPOOL_DIR`, only fill a spool there, for a bridge to replay at its start.
    let spool = Spool::open(keep.as_deref().unwrap_or(dir.path()), 8 << 30, 1)?;

    let started = Instant::now();
    let writers: Vec<_> = (0..64)
        .map(|w| {
            let spool = spool.clone();
            tokio::spawn(async move {
                for i in (w..n).step_by(64) {
                    let (topic, body) = if i % 4 == 0 {
                        (IN, TEXT)
                    } else {
                        (STATUSES, STATUS)
                    };
                    let mut value = body.to_vec();
                    if let Some(size) = body_bytes {
                        value.resize(size.max(body.len()), b' ');
                    }
                    let record = SpooledRecord {
                        topic: topic.into(),
                        key: Some(format!("91981{:07}", i / 4 % 5000)),
                        value,
                        headers: vec![("request-id".into(), format!("r{i}"))],
                        timestamp_ms: 1_700_000_000_000,
                    };
                    spool.append(record).await?;
                }
                Ok::<_, qikchat_bridge::spool::SpoolError>(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    println!(
        "spooled {n} records in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    if keep.is_some() {
        spool.close();
        return Ok(());
    }

    let config = Config::for_brokers(&bootstrap, "u:p")?;
    let metrics = Arc::new(Metrics::new(&config.topics.all_topics())?);
    let mut props = config.producer_properties(&bootstrap);
    props.insert(
        "message.timeout.ms".into(),
        qikchat_bridge::delivery::REPLAY_TIMEOUT
            .as_millis()
            .to_string(),
    );
    let sink = Arc::new(KafkaSink::new(
        &props,
        metrics.clone(),
        ProducerRole::Replay,
    )?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let peak_before = peak_rss_kib();
    let started = Instant::now();
    let task = tokio::spawn(qikchat_bridge::delivery::replay(
        qikchat_bridge::delivery::Batch::for_queue(&props),
        spool.clone(),
        sink,
        deadletter.into(),
        metrics,
        stop_rx,
    ));
    while spool.records() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    task.await?;
    println!(
        "replayed {n} records in {secs:.2} s: {:.0} records/s",
        n as f64 / secs
    );
    if std::env::var("REPLAY_BOOTSTRAP").is_ok() {
        println!(
            "replay raised peak RSS by {:.1} MiB",
            peak_rss_kib().saturating_sub(peak_before) as f64 / 1024.0
        );
    }
    Ok(())
}

/// The process's peak resident set (VmHWM), KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
