//! Chaos: paced conversations of webhooks against a 3-broker mock cluster under a seeded fault
//! schedule, with a graceful handover to a second bridge mid-load; every 200 must be in Kafka,
//! byte for byte and in its conversation's order. `CHAOS_SEED=N` repeats a run's schedule.

use crate::common::{consumer, eventually_within, read_records, wait_ready_at, Got};
use crate::common::{PARTITIONS, PASS, USER};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use qikchat_bridge::config::{Args, Config};
use qikchat_bridge::{run_with_cut, Listeners, StartError};
use rdkafka::consumer::Consumer;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey::Produce, RDKafkaRespErr as E};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// The ack timeout (1 s) and 3 s more: an answer that never comes, or a wait on Kafka past the
/// deadline, exceeds it; a busy CI machine does not.
const ANSWERED_WITHIN: Duration = Duration::from_secs(4);
const LOAD: Duration = Duration::from_secs(8);
const CONVERSATIONS: u32 = 16;
const BROKERS: i32 = 3;
const TOPICS: [&str; 4] = [
    "whatsapp.message.in",
    "whatsapp.message.status",
    "whatsapp.unrouted",
    "whatsapp.deadletter",
];
/// The bridge's flags but its brokers, credential and spool. The mock checks no idempotent
/// producer's sequence numbers, so with several requests in flight a batch stored behind a refused
/// one makes librdkafka take the refused one as delivered ("implicitly acked"): a 200 for a record
/// no broker holds, which a real broker prevents (it refuses the later batch as out of order). One
/// request in flight avoids it.
const FLAGS: &str = "--listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --ack-timeout 1s \
    --shutdown-delay 1500ms --shutdown-grace 3s --flush-timeout 3s -X max.in.flight=1";

/// xorshift64: the fault schedule and the senders' pace, from the seed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

struct Bridge {
    url: String,
    admin: u16,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), StartError>>,
}

impl Bridge {
    async fn start(bootstrap: &str, spool: Option<&Path>) -> Bridge {
        let auth = format!("{USER}:{PASS}");
        let mut argv = vec!["qikchat-bridge".into(), "--auth".into(), auth];
        argv.extend(["--kafka-brokers".into(), bootstrap.into()]);
        argv.extend(FLAGS.split_whitespace().map(String::from));
        if let Some(d) = spool {
            argv.extend(["--spool-dir".into(), d.display().to_string()]);
        }
        let args = Args::try_parse_from(argv).expect("flags");
        let env = std::iter::empty::<(String, String)>();
        let config = Config::from_args(args, env, |p| std::fs::read_to_string(p)).expect("config");
        let webhook = TcpListener::bind(config.listen).await.expect("bind");
        let admin = TcpListener::bind(config.admin_listen).await.expect("bind");
        let url = format!("http://{}/webhook", webhook.local_addr().expect("addr"));
        let port = admin.local_addr().expect("addr").port();
        let (tx, rx) = oneshot::channel::<()>();
        let stop = async {
            let _ = rx.await;
        };
        let listeners = Listeners { webhook, admin };
        let handle = tokio::spawn(run_with_cut(
            config,
            listeners,
            stop,
            std::future::pending(),
        ));
        wait_ready_at(port).await;
        let shutdown = Some(tx);
        Bridge {
            url,
            admin: port,
            shutdown,
            handle,
        }
    }

    /// Shuts the bridge down gracefully (if not yet); whether it stopped cleanly within 30 s.
    async fn stop(&mut self) -> Result<(), String> {
        let _ = self.shutdown.take().map(|tx| tx.send(()));
        match tokio::time::timeout(Duration::from_secs(30), &mut self.handle).await {
            Ok(Ok(Ok(()))) => Ok(()),
            other => Err(format!("a bridge stopped: {other:?}")),
        }
    }
}

async fn scrape(admin: u16) -> Option<String> {
    let r = reqwest::get(format!("http://127.0.0.1:{admin}/metrics")).await;
    r.ok()?.text().await.ok()
}

/// The sum of the series of `qikchat_bridge_{name}` whose labels contain `label`.
fn metric(m: &str, name: &str, label: &str) -> f64 {
    let value = |l: &str| {
        let (series, value) = l.strip_prefix("qikchat_bridge_")?.rsplit_once(' ')?;
        let (n, labels) = series.split_once('{').unwrap_or((series, ""));
        (n == name && labels.contains(label)).then(|| value.parse::<f64>().ok())?
    };
    m.lines().filter_map(value).sum()
}

/// Event `seq` of conversation `conv` (every third a text message, the others statuses of varied
/// sizes): its topic and bytes.
fn body(seed: u64, conv: u32, seq: u32) -> (&'static str, Vec<u8>) {
    let (id, phone) = (format!("s{seed}-c{conv}-{seq}"), format!("+91{conv:08}"));
    let (topic, event, payload) = if seq % 3 == 2 {
        let message = format!(r#"{{"from":"{phone}","text":{{"body":"chaos {seq}"}}}}"#);
        let payload = format!(r#""type":"text","message":{message}"#);
        ("whatsapp.message.in", "in", payload)
    } else {
        let pad = "x".repeat((seq as usize * 37) % 300);
        let payload = format!(r#""to":"{phone}","status":"read","pad":"{pad}""#);
        ("whatsapp.message.status", "status", payload)
    };
    let body =
        format!(r#"{{"event":"whatsapp:message:{event}","payload":{{"id":"{id}",{payload}}}}}"#);
    (topic, body.into_bytes())
}

/// Where the senders post (bridge 0 or 1, none during the handover), and how many requests each
/// bridge has in flight.
struct Route {
    to: Mutex<Option<(usize, String)>>,
    flying: [AtomicUsize; 2],
}

impl Route {
    /// Where to post, counted in flight there at once: once the route is cleared, every request
    /// sent to the bridge it named is counted.
    fn enter(&self) -> Option<(usize, String)> {
        let to = self.to.lock().expect("lock");
        if let Some((bridge, _)) = &*to {
            self.flying[*bridge].fetch_add(1, SeqCst);
        }
        to.clone()
    }
}

#[derive(Debug)]
struct Attempt {
    conv: u32,
    seq: u32,
    bridge: usize,
    status: Option<u16>,
    took: Duration,
}

/// One conversation: its events one after the other, paced (so the mock's retention keeps every
/// record), each retried after a 503 or a failed connection (twice) as Qikchat would.
async fn converse(seed: u64, conv: u32, route: Arc<Route>) -> Vec<Attempt> {
    let http = reqwest::Client::builder().timeout(ANSWERED_WITHIN * 2);
    let (http, mut log, t0) = (http.build().expect("client"), Vec::new(), Instant::now());
    let mut pace = Rng(seed ^ (u64::from(conv) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for seq in 0.. {
        tokio::time::sleep(pace.ms(10, 40)).await;
        if t0.elapsed() >= LOAD {
            return log;
        }
        for _ in 0..3 {
            let (bridge, url) = loop {
                match route.enter() {
                    Some(to) => break to,
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            let (sent, post) = (Instant::now(), http.post(&url).basic_auth(USER, Some(PASS)));
            let r = post.body(body(seed, conv, seq).1).send().await;
            let (status, took) = (r.ok().map(|r| r.status().as_u16()), sent.elapsed());
            route.flying[bridge].fetch_sub(1, SeqCst);
            log.push(Attempt {
                conv,
                seq,
                bridge,
                status,
                took,
            });
            if !matches!(status, Some(503) | None) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    unreachable!()
}

/// What `bridge` counted (its /metrics), against what the senders it answered saw.
fn check_metrics(m: &str, bridge: usize, log: &[Attempt], spool: bool, bad: &mut Vec<String>) {
    let mine = log.iter().filter(|a| a.bridge == bridge);
    let mine: Vec<_> = mine.map(|a| a.status).collect();
    let saw = |s: u16| mine.iter().filter(|&&a| a == Some(s)).count() as f64;
    let answered = mine.iter().filter(|a| a.is_some()).count() as f64;
    let requests = |l: &str| metric(m, "requests_total", l);
    let acked = metric(m, "kafka_delivery_duration_seconds_count", "");
    let spooled = metric(m, "spool_appends_total", "\"ok\"");
    let (ok, spooled_without) = (requests("\"200\""), spooled * f64::from(!spool));
    for (what, counted, seen) in [
        ("200s", ok, saw(200)),
        ("503s", requests("\"503\""), saw(503)),
        ("answers", requests(""), answered),
        ("200s (Kafka acks + spool appends)", acked + spooled, ok),
        ("spool appends without a spool", spooled_without, 0.0),
    ] {
        if counted != seen {
            bad.push(format!("bridge {bridge}: {counted} {what}, seen {seen}"));
        }
    }
}

/// Every record of every topic (each through the common record checks), to the high watermarks.
fn read_all(bootstrap: &str) -> Vec<Got> {
    let (c, mut all) = (consumer(bootstrap), Vec::new());
    for topic in TOPICS {
        let watermarks = |p| c.fetch_watermarks(topic, p, Duration::from_secs(10));
        let count = (0..PARTITIONS).map(|p| watermarks(p).expect("watermarks"));
        let count = count.map(|(lo, hi)| (hi - lo) as usize).sum();
        let got = read_records(bootstrap, topic, count, Duration::from_secs(30));
        assert_eq!(got.len(), count, "read every record of {topic}");
        all.extend(got);
    }
    all
}

/// No stray record, no answer out of the status set or late, and each body answered 200 stored
/// in its topic after (and on the partition of) its conversation's earlier ones there.
fn check_kafka(seed: u64, log: &[Attempt], stored: &[Got], bad: &mut Vec<String>) {
    let mut first: HashMap<&[u8], (&str, i32, usize)> = HashMap::new();
    for (i, g) in stored.iter().enumerate() {
        first.entry(&g.value).or_insert((&g.topic, g.partition, i));
    }
    let sent = log
        .iter()
        .map(|a| ((a.conv, a.seq), body(seed, a.conv, a.seq)));
    let sent: BTreeMap<(u32, u32), (&str, Vec<u8>)> = sent.collect();
    let bodies: HashSet<&[u8]> = sent.values().map(|(_, b)| b.as_slice()).collect();
    for g in stored.iter().filter(|g| !bodies.contains(&g.value[..])) {
        let stray = String::from_utf8_lossy(&g.value);
        bad.push(format!("{}: a record no one sent: {stray}", g.topic));
    }
    for a in log {
        if !matches!(a.status, Some(200 | 503 | 413) | None) || a.took > ANSWERED_WITHIN {
            let (c, s) = (a.conv, a.seq);
            bad.push(format!("c{c}-{s}: {:?} after {:?}", a.status, a.took));
        }
    }
    let mut last: HashMap<(u32, &str), (u32, i32, usize)> = HashMap::new();
    for ((conv, seq), (topic, body)) in &sent {
        let tries = log.iter().filter(|a| (a.conv, a.seq) == (*conv, *seq));
        let statuses: Vec<_> = tries.map(|a| a.status).collect();
        match (statuses.contains(&Some(200)), first.get(body.as_slice())) {
            (true, None) => bad.push(format!("LOST: c{conv}-{seq} answered {statuses:?}")),
            (true, Some((t, ..))) if t != topic => bad.push(format!("c{conv}-{seq} in {t}")),
            (true, Some(&(_, p, i))) => {
                let before = last.insert((*conv, topic), (*seq, p, i));
                if let Some(b) = before.filter(|&(_, bp, bi)| bp != p || bi > i) {
                    bad.push(format!(
                        "ORDER: c{conv} {topic}: {b:?}, then {seq} at {p}/{i}"
                    ));
                }
            }
            (false, Some(_)) if statuses.iter().all(|s| *s == Some(413)) => {
                bad.push(format!("c{conv}-{seq} answered 413 but stored"))
            }
            _ => {}
        }
    }
}

async fn chaos(spool: bool) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let seed = std::env::var("CHAOS_SEED").map(|s| s.parse().expect("CHAOS_SEED"));
    let seed: u64 = seed.unwrap_or(now.expect("time").as_nanos() as u64 | 1);
    eprintln!("CHAOS_SEED={seed} (spool: {spool})");
    let (mut rng, mock) = (Rng(seed), MockCluster::new(BROKERS).expect("cluster"));
    let bootstrap = mock.bootstrap_servers();
    for topic in TOPICS {
        mock.create_topic(topic, PARTITIONS, BROKERS)
            .expect("topic");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = spool.then_some(dir.path());
    let mut bridges = vec![Bridge::start(&bootstrap, dir).await];
    let to = Mutex::new(Some((0, bridges[0].url.clone())));
    let flying = Default::default();
    let route = Arc::new(Route { to, flying });
    let spawn = |c| tokio::spawn(converse(seed, c, route.clone()));
    let senders: Vec<_> = (0..CONVERSATIONS).map(spawn).collect();

    let (t0, mut faults, mut bad) = (Instant::now(), Vec::new(), Vec::new());
    let (mut down, mut slow, mut metrics_0) = (None, None::<(i32, Instant)>, None);
    let errors = [
        E::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        E::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        E::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        E::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        E::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ];
    while t0.elapsed() < LOAD {
        let (now, at) = (Instant::now(), t0.elapsed().as_millis());
        if let Some((b, _)) = down.take_if(|d: &mut (i32, Instant)| now >= d.1) {
            mock.broker_up(b).expect("up");
            faults.push(format!("{at}ms broker {b} up"));
        }
        if let Some((b, _)) = slow.take_if(|s| now >= s.1) {
            mock.broker_round_trip_time(b, Duration::ZERO).expect("rtt");
            faults.push(format!("{at}ms broker {b} quick"));
        }
        if bridges.len() == 1 && t0.elapsed() >= LOAD / 2 {
            // A graceful shutdown under load: no new request reaches bridge 0, those in flight
            // are answered (in its shutdown delay, usually, when its metrics are read), and
            // bridge 1 (on the same spool) takes over.
            *route.to.lock().expect("lock") = None;
            faults.push(format!("{at}ms handover"));
            let _ = bridges[0].shutdown.take().map(|tx| tx.send(()));
            let answered = async || route.flying[0].load(SeqCst) == 0;
            eventually_within("bridge 0 answers", ANSWERED_WITHIN * 3, answered).await;
            metrics_0 = scrape(bridges[0].admin).await;
            bad.extend(bridges[0].stop().await.err());
            bridges.push(Bridge::start(&bootstrap, dir).await);
            *route.to.lock().expect("lock") = Some((1, bridges[1].url.clone()));
            continue;
        }
        let b = 1 + rng.below(BROKERS as u64) as i32;
        match rng.below(10) {
            0..=2 if down.is_none() => {
                let back = rng.ms(300, 1500);
                mock.broker_down(b).expect("down");
                down = Some((b, now + back));
                faults.push(format!("{at}ms broker {b} down for {back:?}"));
            }
            3 | 4 => {
                let e = (0..=rng.below(4)).map(|_| errors[rng.below(5) as usize]);
                let e: Vec<E> = e.collect();
                mock.request_errors(Produce, &e);
                faults.push(format!("{at}ms produce errors {e:?}"));
            }
            5 if rng.below(3) == 0 => {
                mock.request_errors(Produce, &[E::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE]);
                faults.push(format!("{at}ms produce error MSG_SIZE_TOO_LARGE"));
            }
            6 | 7 if slow.is_none() => {
                let (rtt, back) = (rng.ms(600, 1100), rng.ms(500, 1500));
                mock.broker_round_trip_time(b, rtt).expect("rtt");
                slow = Some((b, now + back));
                faults.push(format!("{at}ms broker {b} rtt {rtt:?} for {back:?}"));
            }
            8 | 9 => {
                let topic = TOPICS[rng.below(2) as usize];
                let p = rng.below(PARTITIONS as u64) as i32;
                mock.partition_leader(topic, p, Some(b)).expect("leader");
                faults.push(format!("{at}ms {topic}/{p} led by {b}"));
            }
            _ => {}
        }
        tokio::time::sleep(rng.ms(150, 500)).await;
    }
    for b in 1..=BROKERS {
        mock.broker_up(b).expect("up");
        mock.broker_round_trip_time(b, Duration::ZERO).expect("rtt");
    }
    mock.clear_request_errors(Produce);
    let mut log = Vec::new();
    for s in senders {
        log.extend(s.await.expect("sender"));
    }

    let admin = bridges[1].admin;
    let metrics_1 = scrape(admin).await.expect("metrics of bridge 1");
    check_metrics(&metrics_1, 1, &log, spool, &mut bad);
    match &metrics_0 {
        Some(m) => check_metrics(m, 0, &log, spool, &mut bad),
        None => eprintln!("bridge 0 closed its admin port before its last answer was counted"),
    }
    eventually_within("the spool drains", Duration::from_secs(60), async || {
        let m = scrape(admin).await.unwrap_or_default();
        metric(&m, "spool_records", "") == 0.0
    })
    .await;
    bad.extend(bridges[1].stop().await.err());
    let stored = tokio::task::spawn_blocking(move || read_all(&bootstrap));
    let stored = stored.await.expect("reader");
    check_kafka(seed, &log, &stored, &mut bad);

    let mut statuses: BTreeMap<Option<u16>, usize> = BTreeMap::new();
    for a in &log {
        *statuses.entry(a.status).or_default() += 1;
    }
    let (sent, stored, faults) = (log.len(), stored.len(), faults.join("\n"));
    eprintln!("{sent} requests {statuses:?}, {stored} records; faults:\n{faults}");
    assert!(statuses.get(&Some(200)) > Some(&100), "{statuses:?}");
    let first = bad.iter().take(30).cloned().collect::<Vec<_>>().join("\n");
    assert!(
        bad.is_empty(),
        "CHAOS_SEED={seed}: {} violations:\n{first}",
        bad.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_200_is_lost_reordered_or_altered_through_broker_faults_and_a_handover() {
    chaos(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_200_is_lost_reordered_or_altered_through_broker_faults_and_a_handover_with_a_spool() {
    chaos(true).await;
}
