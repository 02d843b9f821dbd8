//! The load itself: keep-alive connections, the closed loop (peak) and the open loop (fixed rate,
//! latency from each request's intended send time), and the statistics they gather.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request};
use hyper_util::rt::TokioIo;

use crate::Target;

pub type Sender = SendRequest<Full<Bytes>>;

/// Longest a single request may take before it counts as an error (the bridge answers 503
/// after its ack timeout, 1.5 s by default, so this only fires on a hung server).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// After an open-loop schedule ends, how long queued requests may still be sent.
const DRAIN: Duration = Duration::from_secs(5);
/// Histogram range: 1 µs .. 60 s, 3 significant digits.
const HIST_MAX_US: u64 = 60_000_000;

pub async fn connect(t: &Target) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(t.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", t.addr))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

#[derive(Default)]
pub struct Stats {
    pub hist: Option<Histogram<u64>>,
    pub answers: u64,
    pub ok: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub errors: u64,
    pub unsent: u64,
    pub last_error: Option<String>,
    pub last_done: Option<Instant>,
}

impl Stats {
    fn new() -> Self {
        Stats {
            hist: Some(Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("histogram bounds")),
            ..Default::default()
        }
    }
    /// Latency is of 200s only: a server that answers fast refusals must not look fast. The
    /// report judges no latency target of a phase with any failure.
    fn record(&mut self, status: u16, latency: Duration, done: Instant) {
        self.answers += 1;
        if status == 200 {
            let us = (latency.as_micros() as u64).clamp(1, HIST_MAX_US);
            if let Some(h) = self.hist.as_mut() {
                let _ = h.record(us);
            }
            self.ok += 1;
        } else {
            *self.by_status.entry(status).or_default() += 1;
        }
        self.last_done = Some(self.last_done.map_or(done, |d| d.max(done)));
    }
    fn merge(&mut self, o: Stats) {
        if let (Some(h), Some(oh)) = (self.hist.as_mut(), o.hist.as_ref()) {
            let _ = h.add(oh);
        }
        self.answers += o.answers;
        self.ok += o.ok;
        for (k, v) in o.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        self.errors += o.errors;
        self.unsent += o.unsent;
        if o.last_error.is_some() {
            self.last_error = o.last_error;
        }
        self.last_done = match (self.last_done, o.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

pub struct Shared {
    pub target: Target,
    pub auth: header::HeaderValue,
    pub bodies: Arc<Vec<Bytes>>,
}

impl Shared {
    fn request(&self, i: u64) -> Request<Full<Bytes>> {
        let body = self.bodies[(i % self.bodies.len() as u64) as usize].clone();
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.target.path.parse().expect("path");
        let h = req.headers_mut();
        h.insert(
            header::HOST,
            header::HeaderValue::from_str(&self.target.authority).expect("host"),
        );
        h.insert(header::AUTHORIZATION, self.auth.clone());
        h.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        req
    }
}

/// Sends request `i` on `sender` (reconnecting first if it is gone) and reads the whole answer.
async fn exchange(
    shared: &Shared,
    sender: &mut Option<Sender>,
    i: u64,
    stats: &mut Stats,
) -> Option<u16> {
    let result = async {
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            *sender = Some(connect(&shared.target).await?);
        }
        let s = sender.as_mut().expect("connected");
        s.ready().await.map_err(|e| e.to_string())?;
        let resp = s
            .send_request(shared.request(i))
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<u16, String>(status)
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, result).await {
        Ok(Ok(status)) => Some(status),
        Ok(Err(e)) => {
            stats.errors += 1;
            stats.last_error = Some(e);
            *sender = None;
            None
        }
        Err(_) => {
            stats.errors += 1;
            stats.last_error = Some(format!("no answer within {REQUEST_TIMEOUT:?}"));
            *sender = None;
            None
        }
    }
}

/// Runs `work` on every connection, each in a task of its own, and adds up their statistics.
/// `work` is dropped once every task is spawned, so what it holds (a channel's receiver) is only
/// held by the tasks.
async fn on_each_connection<F, Fut>(senders: Vec<Sender>, work: F) -> Stats
where
    F: Fn(Sender) -> Fut,
    Fut: std::future::Future<Output = Stats> + Send + 'static,
{
    let tasks: Vec<_> = senders.into_iter().map(|s| tokio::spawn(work(s))).collect();
    drop(work);
    let mut total = Stats::new();
    for t in tasks {
        total.merge(t.await.expect("worker panicked"));
    }
    total
}

pub async fn closed_loop(shared: Arc<Shared>, senders: Vec<Sender>, deadline: Instant) -> Stats {
    let counter = Arc::new(AtomicU64::new(0));
    on_each_connection(senders, |s| {
        let shared = shared.clone();
        let counter = counter.clone();
        async move {
            let mut stats = Stats::new();
            let mut sender = Some(s);
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let start = Instant::now();
                if let Some(status) = exchange(&shared, &mut sender, i, &mut stats).await {
                    let done = Instant::now();
                    stats.record(status, done - start, done);
                } else {
                    // Do not spin on a refused connection.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            stats
        }
    })
    .await
}

pub async fn open_loop(
    shared: Arc<Shared>,
    senders: Vec<Sender>,
    t0: Instant,
    rate: f64,
    duration: Duration,
) -> Stats {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let interval_ns = 1e9 / rate;
    let due = move |i: u64| t0 + Duration::from_nanos((i as f64 * interval_ns) as u64);
    let (tx, rx) = async_channel::unbounded::<u64>();
    // The pacer: a plain thread with fine-grained sleeps (tokio's timer has 1 ms granularity).
    let pacer = std::thread::spawn(move || {
        // SAFETY: PR_SET_TIMERSLACK takes integers only; it sets 1 µs of timer slack for this
        // thread's sleeps (the default 50 µs would show up in every latency).
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1000u64, 0u64, 0u64, 0u64);
        }
        for i in 0..total {
            let at = due(i);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if tx.send_blocking(i).is_err() {
                break;
            }
        }
    });
    let drain_deadline = t0 + duration + DRAIN;
    let stats = on_each_connection(senders, move |s| {
        let shared = shared.clone();
        let rx = rx.clone();
        async move {
            let mut stats = Stats::new();
            let mut sender = Some(s);
            while let Ok(i) = rx.recv().await {
                if Instant::now() > drain_deadline {
                    stats.unsent += 1;
                    continue;
                }
                let intended = due(i);
                if let Some(status) = exchange(&shared, &mut sender, i, &mut stats).await {
                    let done = Instant::now();
                    stats.record(status, done.saturating_duration_since(intended), done);
                }
            }
            stats
        }
    })
    .await;
    let _ = pacer.join();
    stats
}
