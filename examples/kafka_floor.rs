//! The Kafka client's own cost per record, without HTTP, for bench/run.sh's decomposition.
//!
//! `C` tasks on the bridge's runtime each send the load generator's mix of seed bodies (text,
//! three statuses, image, three statuses: both topics) through the bridge's `KafkaSink` (same
//! producer settings, the six headers a webhook's record carries, a key per conversation) and wait
//! for its delivery report before sending the next, as `C` keep-alive connections would. It prints one JSON line: records acknowledged per second and the CPU per
//! record of this process, split into the runtime's threads and librdkafka's. Set beside the
//! bridge's CPU per request minus the bridge without Kafka's, it says how much of the Kafka
//! share is librdkafka's own work and how much its interaction with the HTTP side.
//!
//! Usage: kafka_floor BOOTSTRAP [CONCURRENCY=256] [SECONDS=10] [BROKER_PID]
//! With the broker's PID (dev-kafka), its CPU per record over the same window is printed too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use qikchat_bridge::config::Config;
use qikchat_bridge::metrics::Metrics;
use qikchat_bridge::producer::{KafkaSink, ProducerRole, Sink};
use qikchat_bridge::record::{
    Record, RecordHeaders, HEADER_BODY_SHA256, HEADER_CONTENT_TYPE, HEADER_EVENT,
    HEADER_MESSAGE_ID, HEADER_RECEIVED_AT, HEADER_REQUEST_ID,
};
use tokio::time::Instant;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const TEXT: &[u8] = include_bytes!("../tests/fixtures/message-in-text.json");
const IMAGE: &[u8] = include_bytes!("../tests/fixtures/message-in-image.json");
const STATUS: &[u8] = include_bytes!("../tests/fixtures/status-read.json");
const IN: (&str, &str) = ("whatsapp.message.in", "whatsapp:message:in");
const STATUSES: (&str, &str) = ("whatsapp.message.status", "whatsapp:message:status");
/// loadgen's cycle: each incoming message followed by three statuses, so the records spread over
/// the two topics' partitions as the bridge's do (more, smaller batches than one topic makes).
const MIX: [(&[u8], (&str, &str)); 8] = [
    (TEXT, IN),
    (STATUS, STATUSES),
    (STATUS, STATUSES),
    (STATUS, STATUSES),
    (IMAGE, IN),
    (STATUS, STATUSES),
    (STATUS, STATUSES),
    (STATUS, STATUSES),
];
/// A header of the real one's length; its value does not matter to Kafka.
const BODY_SHA256: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// CPU seconds (utime + stime) from a `/proc/.../stat` file: after the parenthesised name, the
/// state is the first field, utime the 12th and stime the 13th, in ticks of USER_HZ (100).
fn stat_cpu(path: &std::path::Path) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// CPU seconds of a process.
fn cpu_of(pid: &str) -> Option<f64> {
    stat_cpu(std::path::Path::new(&format!("/proc/{pid}/stat")))
}

/// CPU seconds (utime + stime) of this process's threads, by group: the runtime's workers,
/// librdkafka's threads (and rdkafka's polling thread), the rest.
fn cpu_by_group() -> [f64; 3] {
    let mut groups = [0.0; 3];
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return groups;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let Some(cpu) = stat_cpu(&path.join("stat")) else {
            continue;
        };
        let group = if comm.starts_with("tokio-rt-worker") {
            0
        } else if comm.starts_with("rdk:") || comm.starts_with("producer pol") {
            1
        } else {
            2
        };
        groups[group] += cpu;
    }
    groups
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(bootstrap) = args.get(1).cloned() else {
        eprintln!("usage: kafka_floor BOOTSTRAP [CONCURRENCY] [SECONDS]");
        std::process::exit(2);
    };
    let concurrency: u32 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(256);
    let seconds: f64 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(10.0);
    let broker = args.get(4).cloned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(
        bootstrap,
        concurrency,
        Duration::from_secs_f64(seconds),
        broker,
    ));
}

async fn run(bootstrap: String, concurrency: u32, measured: Duration, broker: Option<String>) {
    let config = Config::for_brokers(&bootstrap, "u:p").expect("config");
    let metrics = Arc::new(Metrics::new(&config.topics.all_topics()).expect("metrics"));
    let sink = Arc::new(
        KafkaSink::new(
            &config.producer_properties(&bootstrap),
            metrics,
            ProducerRole::Webhooks,
        )
        .expect("producer"),
    );
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (sink, ok, failed, stop) = (sink.clone(), ok.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let key = format!("91{c:08}");
            let headers = |event| {
                [
                    (HEADER_EVENT, event),
                    (HEADER_MESSAGE_ID, "wamid.floor"),
                    (HEADER_REQUEST_ID, "6f1c1d2e-0000-4000-8000-000000000000"),
                    (HEADER_RECEIVED_AT, "2026-12-02T12:00:00.000Z"),
                    (HEADER_CONTENT_TYPE, "application/json"),
                    (HEADER_BODY_SHA256, BODY_SHA256),
                ]
            };
            // Tasks start at different points of the cycle, as loadgen's connections do.
            let mut i = c as usize;
            while !stop.load(Ordering::Relaxed) {
                let (body, (topic, event)) = MIX[i % MIX.len()];
                i += 1;
                let headers = headers(event);
                let record = Record {
                    topic,
                    key: Some(key.as_str().into()),
                    value: body,
                    timestamp_ms: 0,
                    headers: RecordHeaders::Raw(&headers),
                };
                let deadline = Instant::now() + Duration::from_millis(1500);
                match sink.send(&record, deadline).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // Warm-up: connections, the producer id, batches at their steady size.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let broker_cpu = || broker.as_deref().and_then(cpu_of);
    let (ok0, failed0, cpu0, b0, t0) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        cpu_by_group(),
        broker_cpu(),
        Instant::now(),
    );
    tokio::time::sleep(measured).await;
    let (ok1, failed1, cpu1, b1, elapsed) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        cpu_by_group(),
        broker_cpu(),
        t0.elapsed(),
    );
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    if ok1 == ok0 {
        eprintln!(
            "kafka_floor: no record was acknowledged in the measured window ({} failed)",
            failed1 - failed0
        );
        std::process::exit(1);
    }
    let records = (ok1 - ok0) as f64;
    let us = |i: usize| (cpu1[i] - cpu0[i]) * 1e6 / records;
    let broker_us = match (b0, b1) {
        (Some(a), Some(b)) => format!("{:.3}", (b - a) * 1e6 / records),
        _ => "null".into(),
    };
    println!(
        "{{\"concurrency\":{concurrency},\"ok_rate\":{:.0},\"failed\":{},\"cpu_us_per_record\":{:.3},\"runtime_us\":{:.3},\"librdkafka_us\":{:.3},\"other_us\":{:.3},\"broker_us\":{broker_us}}}",
        records / elapsed.as_secs_f64(),
        failed1 - failed0,
        us(0) + us(1) + us(2),
        us(0),
        us(1),
        us(2),
    );
    let flushing = sink.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.flush(Duration::from_secs(5))).await;
}
