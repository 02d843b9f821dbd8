//! The admin listener, kept off the webhook port: `/metrics`, `/livez` and `/readyz`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::producer::KafkaCheck;
use crate::server::{self, ServerOptions};
use crate::spool::Spool;

/// A spool commit (one fsync) takes milliseconds; one running this long is a disk that hangs,
/// and the spool stores nothing within any ack deadline: not a reason to take traffic.
const SPOOL_STALLED: Duration = Duration::from_secs(5);

/// What readiness depends on.
#[derive(Debug, Default)]
pub struct Health {
    /// The producer has not failed and a broker answered its last metadata request for the
    /// incoming-message topic without an error for it; or why not.
    pub kafka: Arc<KafkaCheck>,
    /// The producer is made and the spool (if any) recovered: the admin port answers before,
    /// so a long recovery is not taken for a hung process.
    pub started: AtomicBool,
    /// Shutdown has begun.
    pub draining: AtomicBool,
    /// With a spool that has room, records are safe even while Kafka is away. Set once it
    /// is recovered.
    pub spool: OnceLock<Arc<Spool>>,
    /// Held by the scrape whose read runs, until that read ends (see [`one_read`]).
    scraping: Arc<tokio::sync::Mutex<()>>,
    /// The scrapes answered, for an exit after a failure to wait for the next one.
    pub scrapes: crate::scrapes::Scrapes,
}

impl Health {
    /// `Ok` when the bridge should get traffic, else the reason it should not.
    pub fn readiness(&self) -> Result<(), Cow<'static, str>> {
        if self.draining.load(Ordering::SeqCst) {
            Err("shutting down".into())
        } else if !self.started.load(Ordering::SeqCst) {
            Err("starting: recovering the spool and making the producer".into())
        } else if self.kafka.ready()
            || self
                .spool
                .get()
                .is_some_and(|s| s.has_room() && s.write_stalled_for() < SPOOL_STALLED)
        {
            Ok(())
        } else if self.spool.get().is_some() {
            Err(format!(
                "Kafka is unavailable ({}) and the spool is full, its disk has stalled or its file \
                 was removed",
                self.kafka.why_not()
            )
            .into())
        } else {
            Err(format!("Kafka is unavailable: {}", self.kafka.why_not()).into())
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub fn answer<B>(req: &Request<B>, health: &Health, metrics: &Metrics) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        // A 405 must say what is allowed (RFC 9110, 15.5.6).
        r.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/livez" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let ready = health.readiness();
            metrics.ready.set(i64::from(ready.is_ok()));
            match ready {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(reason) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}\n"),
                ),
            }
        }
        "/metrics" => {
            metrics.ready.set(i64::from(health.readiness().is_ok()));
            metrics.kafka_reachable.set(i64::from(health.kafka.ready()));
            if let Some(spool) = health.spool.get() {
                metrics.spool.observe(spool);
            }
            let mut r = text(StatusCode::OK, metrics.render());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /livez or /readyz\n",
        ),
    }
}

/// Resolves once `stop` holds true (or its sender is gone).
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Probes and scrapers open a few connections and send their small requests at once. The limit
/// keeps a stuck or hostile client inside the cluster from taking the process's file descriptors;
/// the short header timeout frees its slots within two seconds (a head begun late, or a client
/// told to close that stays open, gets a second more), inside the chart's probe timeout (a
/// scraper's idle keep-alive connection is closed too, and it reconnects).
pub const MAX_CONNECTIONS: usize = 256;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a scrape may wait for the spool's disk. One stuck on a stalled disk would otherwise
/// hold its connection (hyper does not notice a client that gave up while an answer is pending),
/// and scrapes every few seconds would take the slots the kubelet's probes need.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The probes read atomics and are answered at once; a scrape reads the spool's oldest record
/// from disk, so off the async workers, and within `scrape_timeout`.
async fn respond(
    req: Request<()>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    scrape_timeout: Duration,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return answer(&req, &health, &metrics);
    }
    let get = req.method() == hyper::Method::GET;
    let seen = health.clone();
    let scraping = health.scraping.clone();
    let answer = one_read(&scraping, scrape_timeout, move || {
        answer(&req, &health, &metrics)
    })
    .await;
    // Counted as a scrape only when read: a read that outlived its timeout was answered 503, and
    // a stop waiting for the scraper to see its counters must not end on that.
    if get && answer.status() == StatusCode::OK {
        seen.scrapes.served();
    }
    answer
}

/// Runs a scrape's `read` off the async workers, within `timeout`, one at a time: each read given
/// up on would otherwise leave a blocking thread behind, until a disk stalled for hours had taken
/// the whole pool (the readiness check, replay and the exit flush need it too). A scrape that
/// comes while another reads waits its turn within the same `timeout`: two scrapers (a
/// Prometheus pair, a person with curl) often come together, and refusing the second at once
/// answered a healthy pod 503, which Prometheus records as down.
async fn one_read<F>(
    scraping: &Arc<tokio::sync::Mutex<()>>,
    timeout: Duration,
    read: F,
) -> Response<Full<Bytes>>
where
    F: FnOnce() -> Response<Full<Bytes>> + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let Ok(turn) = tokio::time::timeout_at(deadline, scraping.clone().lock_owned()).await else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics: an earlier scrape still waits for the spool's disk (a stalled disk?)\n",
        );
    };
    // Held by the read itself, so a read given up on keeps later ones waiting until it ends;
    // one that panics (a damaged spool page) lets go as it unwinds.
    let read = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        read()
    });
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => text(StatusCode::INTERNAL_SERVER_ERROR, "admin handler failed\n"),
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics: reading the spool did not finish in time (a stalled disk?)\n",
        ),
    }
}

/// Serves until `stop` turns true, then closes its connections (a scraper's idle keep-alive
/// connection would otherwise keep the bridge's state, and the spool file, open).
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    header_read_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let options = ServerOptions {
        name: "admin",
        header_read_timeout: header_read_timeout.min(HEADER_READ_TIMEOUT),
        // Probes connect afresh; a scraper that keeps its connection reconnects.
        idle_timeout: header_read_timeout.min(HEADER_READ_TIMEOUT),
        // Probes and scrapes are short: a second is plenty.
        shutdown_grace: Duration::from_secs(1),
        max_connections: MAX_CONNECTIONS,
        http1_only: false,
    };
    let handler = move |req: Request<hyper::body::Incoming>| {
        let (health, metrics) = (health.clone(), metrics.clone());
        let req = Request::from_parts(req.into_parts().0, ());
        respond(req, health, metrics, SCRAPE_TIMEOUT)
    };
    server::serve_with(listener, handler, options, async move {
        stopped(&mut stop).await
    })
    .await;
}

#[cfg(test)]
mod tests;
