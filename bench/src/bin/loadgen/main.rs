//! HTTP load generator for the bridge benchmark (hyper 1 client, keep-alive connections, tokio).
//!
//! ```text
//! loadgen run   --url http://127.0.0.1:P/webhook --connections N --duration SECS
//!               [--rate R] [--fixtures DIR] [--auth USER:PASS] [--watch NAME=PID]...
//! loadgen ready --url http://127.0.0.1:P/readyz [--timeout SECS]
//! ```
//!
//! `run` without `--rate` is closed-loop: N connections, each sending its next request as soon as
//! the previous answer is read, for SECS; it measures peak throughput. With `--rate R` it is
//! open-loop: request i is due at `t0 + i/R` on a fixed timeline (a pacing thread with
//! microsecond sleeps hands due requests to whichever of the N connections is free) and its
//! latency is measured from that *intended* time, so a stalled server is charged for the requests
//! it delayed (no coordinated omission). Either mode prints one JSON object on stdout: answers,
//! non-200 answers by status, connection errors, achieved rate (all answers and 200s only),
//! latency percentiles in ms, and CPU seconds of each watched process over the measured window,
//! with its threads' CPU per request and context switches by group (runtime, librdkafka, other),
//! the load generator's own, and the machine's CPU shares (see `procstat`).
//!
//! The bodies are the seed payloads (tests/fixtures: message-in-text.json, message-in-image.json,
//! status-read.json), cycled as text, sent, delivered, read, image, sent, delivered, read (one
//! incoming message for three statuses; the status field is rewritten), over 256 conversations
//! (the masked phone numbers get digits) with distinct message ids, so records spread over
//! partitions as real traffic would.
//!
//! `ready` polls URL every 200 µs with a fresh connection until it answers 200 and prints the
//! wall-clock time of that answer in microseconds since the epoch (the caller started the server
//! and knows when).

mod load;
mod mix;
mod procstat;
mod ready;

use load::{closed_loop, connect, open_loop, Shared};

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::prelude::{Engine, BASE64_STANDARD};
use bytes::Bytes;
use clap::Parser;
use hyper::header;
use serde_json::{json, Value};

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("loadgen: {msg}");
    std::process::exit(2)
}

struct Target {
    addr: SocketAddr,
    authority: String,
    path: String,
}

fn parse_url(url: &str) -> Target {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| die(format!("only http:// URLs: {url}")));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| die(format!("cannot resolve {authority}")));
    if !addr.ip().is_loopback() {
        die(format!(
            "{addr} is not a loopback address: this benchmark only targets this machine"
        ));
    }
    Target {
        addr,
        authority: authority.to_string(),
        path: path.to_string(),
    }
}

/// The request bodies, in sending order (see the module doc).
fn bodies(fixtures: &std::path::Path) -> Vec<Bytes> {
    let read = |name: &str| {
        std::fs::read_to_string(fixtures.join(name))
            .unwrap_or_else(|e| die(format!("{}: {e}", fixtures.join(name).display())))
    };
    mix::mix(
        &read("message-in-text.json"),
        &read("message-in-image.json"),
        &read("status-read.json"),
    )
    .into_iter()
    .map(Bytes::from)
    .collect()
}

#[derive(Parser)]
#[command(about = "HTTP load generator for the bridge benchmark")]
enum Cli {
    /// Drive URL over keep-alive connections and print one JSON object of results.
    Run(RunArgs),
    /// Poll URL with fresh connections until it answers 200; print that time (µs since the epoch).
    Ready {
        #[arg(long)]
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    connections: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0, value_parser = positive)]
    duration: f64,
    /// Requests per second (open loop); without it, closed loop.
    #[arg(long, value_parser = positive)]
    rate: Option<f64>,
    #[arg(long, default_value = "tests/fixtures")]
    fixtures: PathBuf,
    #[arg(long, default_value = "testuser:testpass")]
    auth: String,
    /// A process whose CPU time and memory to report, as NAME=PID (repeatable).
    #[arg(long, value_parser = name_pid)]
    watch: Vec<(String, u32)>,
}

fn positive(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("{v:?} is not a positive number")),
    }
}

fn name_pid(v: &str) -> Result<(String, u32), String> {
    let (name, pid) = v.split_once('=').ok_or("expected NAME=PID")?;
    let pid = pid.parse().map_err(|e| format!("PID {pid:?}: {e}"))?;
    Ok((name.to_string(), pid))
}

struct Opts {
    target: Target,
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
    auth: String,
    bodies: Arc<Vec<Bytes>>,
    watch: Vec<(String, u32)>,
}

impl From<RunArgs> for Opts {
    fn from(a: RunArgs) -> Opts {
        Opts {
            target: parse_url(&a.url),
            connections: usize::try_from(a.connections).unwrap_or(usize::MAX),
            duration: Duration::from_secs_f64(a.duration),
            rate: a.rate,
            auth: format!("Basic {}", BASE64_STANDARD.encode(a.auth.as_bytes())),
            bodies: Arc::new(bodies(&a.fixtures)),
            watch: a.watch,
        }
    }
}

fn run(opts: Opts) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let Opts {
        target,
        connections,
        duration,
        rate,
        auth,
        bodies,
        watch,
    } = opts;
    let shared = Arc::new(Shared {
        target,
        auth: header::HeaderValue::from_str(&auth).unwrap_or_else(|e| die(e)),
        bodies,
    });
    // The watched processes and this one (the client's own cost is part of the picture).
    let mut pids: Vec<u32> = watch.iter().map(|(_, p)| *p).collect();
    pids.push(std::process::id());
    let result = runtime.block_on(async move {
        // Open every connection before the clock starts.
        let mut connecting = Vec::new();
        for _ in 0..connections {
            let shared = shared.clone();
            connecting.push(tokio::spawn(async move { connect(&shared.target).await }));
        }
        let mut senders = Vec::new();
        for c in connecting {
            senders.push(c.await.expect("connect task").unwrap_or_else(|e| die(e)));
        }
        let sample = || {
            let cpu: Vec<Option<f64>> = pids.iter().map(|p| procstat::cpu_seconds(*p)).collect();
            let groups: Vec<_> = pids.iter().map(|p| procstat::thread_groups(*p)).collect();
            (cpu, groups, procstat::machine())
        };
        let before = sample();
        let t0 = Instant::now();
        let stats = match rate {
            None => closed_loop(shared.clone(), senders, t0 + duration).await,
            Some(r) => open_loop(shared.clone(), senders, t0, r, duration).await,
        };
        let end = Instant::now();
        let after = sample();
        (stats, t0, end, before, after)
    });
    let (stats, t0, end, (cpu0, groups0, machine0), (cpu1, groups1, machine1)) = result;
    // The /proc samples bracket [t0, end]; per-second figures use that window.
    let window = end.saturating_duration_since(t0).as_secs_f64().max(1e-9);
    let elapsed = stats
        .last_done
        .unwrap_or(end)
        .saturating_duration_since(t0)
        .as_secs_f64()
        .max(1e-9);
    let hist = stats.hist.as_ref().expect("histogram");
    let ms = |q: f64| {
        if hist.is_empty() {
            Value::Null
        } else {
            json!(hist.value_at_quantile(q) as f64 / 1000.0)
        }
    };
    let mut cpu = serde_json::Map::new();
    let mut cpu_per_req = serde_json::Map::new();
    let mut rss = serde_json::Map::new();
    let mut threads = serde_json::Map::new();
    let names = watch.iter().map(|(n, _)| n.as_str()).chain(["loadgen"]);
    for (k, name) in names.enumerate() {
        threads.insert(
            name.to_string(),
            procstat::groups_json(&groups0[k], &groups1[k], stats.answers, window),
        );
    }
    let machine = match (&machine0, &machine1) {
        (Some(a), Some(b)) => procstat::machine_json(a, b, window),
        _ => Value::Null,
    };
    let loadgen_cpu = match (cpu0[watch.len()], cpu1[watch.len()]) {
        (Some(a), Some(b)) if stats.answers > 0 => Some((b - a) * 1e6 / stats.answers as f64),
        _ => None,
    };
    for (k, (name, pid)) in watch.iter().enumerate() {
        let d = match (cpu0[k], cpu1[k]) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        cpu.insert(name.clone(), json!(d));
        cpu_per_req.insert(
            name.clone(),
            json!(d
                .filter(|_| stats.answers > 0)
                .map(|d| d * 1e6 / stats.answers as f64)),
        );
        rss.insert(
            name.clone(),
            json!({"vm_hwm_kib": procstat::status_kib(*pid, "VmHWM:"), "vm_rss_kib": procstat::status_kib(*pid, "VmRSS:")}),
        );
    }
    let non_200: u64 = stats.by_status.values().sum();
    let out = json!({
        "mode": if rate.is_some() { "open" } else { "closed" },
        "connections": connections,
        "duration_s": duration.as_secs_f64(),
        "offered_rate": rate,
        "answers": stats.answers,
        "ok": stats.ok,
        "non_200": non_200,
        "by_status": stats.by_status.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "errors": stats.errors,
        "last_error": stats.last_error,
        "unsent": stats.unsent,
        "elapsed_s": elapsed,
        "rate": stats.answers as f64 / elapsed,
        "ok_rate": stats.ok as f64 / elapsed,
        "latency_ms": {
            "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999),
            "max": if hist.is_empty() { Value::Null } else { json!(hist.max() as f64 / 1000.0) },
            "mean": if hist.is_empty() { Value::Null } else { json!(hist.mean() / 1000.0) },
        },
        "cpu_s": cpu,
        "cpu_us_per_req": cpu_per_req,
        "memory": rss,
        "loadgen_cpu_us_per_req": loadgen_cpu,
        "threads": threads,
        "machine": machine,
    });
    println!("{out}");
    if non_200 > 0 || stats.errors > 0 || stats.unsent > 0 {
        eprintln!(
            "loadgen: WARNING {non_200} non-200 answers {:?}, {} errors{}, {} never sent",
            stats.by_status,
            stats.errors,
            stats
                .last_error
                .as_deref()
                .map(|e| format!(" (last: {e})"))
                .unwrap_or_default(),
            stats.unsent
        );
    }
}

fn main() {
    match Cli::parse() {
        Cli::Run(args) => run(args.into()),
        Cli::Ready { url, timeout } => ready::ready(&url, timeout),
    }
}
