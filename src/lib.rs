//! qikchat-bridge: Qikchat webhooks in, exact Kafka records out.
//!
//! [`run`] is the whole service; it is handed its listeners and a shutdown future, so tests bind
//! port 0 and stop it when they like. The request path is in [`webhook`], one module per step.

pub mod admin;
pub mod auth;
mod background;
pub mod check_config;
pub mod classify;
pub mod config;
pub mod delivery;
pub mod dev_kafka;
pub mod drain;
pub mod embedded;
pub mod error;
pub mod kafka_props;
pub mod kafka_stats;
pub mod metrics;
pub mod open_files;
pub mod operator_file;
pub mod producer;
pub mod quiet;
pub mod record;
pub mod scrapes;
pub mod server;
pub mod signals;
pub mod spool;
mod start_warnings;
pub mod supervise;
pub mod tail;
mod teardown;
pub mod telemetry;
pub mod topics;
pub mod webhook;
mod words;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::admin::Health;
use crate::background::Background;
use crate::config::{Config, KafkaMode};
use crate::delivery::Delivery;
use crate::embedded::EmbeddedKafka;
use crate::metrics::Metrics;
use crate::producer::{KafkaSink, ProducerRole};
use crate::server::ServerOptions;
use crate::spool::Spool;
use crate::webhook::Webhook;

/// The sockets the bridge serves on, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    pub webhook: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds both addresses; an error names the one that failed (an address in use, say).
    pub async fn bind(config: &Config) -> std::io::Result<Listeners> {
        let bind = |flag: &'static str, addr: std::net::SocketAddr| {
            listen(addr).map_err(|e| std::io::Error::new(e.kind(), format!("{flag} {addr}: {e}")))
        };
        Ok(Listeners {
            webhook: bind("--listen", config.listen)?,
            admin: bind("--admin-listen", config.admin_listen)?,
        })
    }
}

/// Connections the kernel completes and queues for `accept`. `TcpListener::bind` asks for 128
/// (the standard library's), and beyond the queue the kernel drops a client's SYN, which it
/// sends again only after a second: at `--max-connections`, while accepting pauses, or in a burst
/// of new connections, that second is half of Qikchat's 2 s. The kernel caps it at
/// `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` as `TcpListener::bind` makes one (`SO_REUSEADDR`), with a longer queue.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Embedded(#[from] embedded::EmbeddedError),
    #[error("invalid Kafka producer settings: {0}")]
    Producer(#[from] kafka_props::ClientError),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("spool: {0}")]
    Spool(#[from] spool::SpoolError),
    /// The spool in `--spool-dir` could not be opened: not a directory, no permission, held by
    /// another process, a file redb cannot open.
    #[error("cannot open the spool in --spool-dir {}: {}", .0.display(), .1.cause())]
    SpoolOpen(std::path::PathBuf, spool::SpoolError),
    /// Not at start-up: the spool's file began refusing every write, and the bridge stopped so
    /// that its restart opens the file again.
    #[error("the spool cannot take records ({0}); stopped so that a restart opens its file anew")]
    SpoolFailed(String),
    /// Not at start-up: a background task panicked, and the bridge stopped so that its restart
    /// starts it again.
    #[error("{0}; stopped so that a restart starts it again")]
    TaskFailed(String),
}

/// Why a running bridge stopped by itself.
#[derive(Clone)]
enum Stopped {
    Spool(String),
    Task(String),
}

/// How long shutdown waits for the spool's writer to finish and close the file.
const SPOOL_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long shutdown waits for librdkafka to tear the flushed webhook producer down (see
/// [`destroy_within`]).
const PRODUCER_DESTROY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the bridge until `shutdown` resolves, then drains: readiness turns 503, the listener
/// waits `shutdown_delay` (so load balancers stop sending), stops accepting, lets in-flight
/// requests finish within `shutdown_grace`, and flushes the producer.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    run_with_cut(config, listeners, shutdown, std::future::pending()).await
}

/// [`run`], whose drain ends at once when `cut` resolves (see [`drain`]): the binary resolves
/// it on a second SIGTERM or SIGINT.
pub async fn run_with_cut(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
    cut: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let (cut, _watching) = drain::Cut::when(cut);
    let topics = config.topics.all_topics();
    let metrics = Arc::new(Metrics::with_ack_timeout(&topics, config.ack_timeout)?);
    let (_embedded, bootstrap) = start_kafka(&config, &topics)?;
    start_warnings::log(&config);

    // The admin port answers from here on: /livez while the spool is recovered (which can
    // take a while for a large one), /readyz 503 until everything is in place.
    let health = Arc::new(Health::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin_addr = listeners.admin.local_addr();
    let admin = tokio::spawn(admin::serve(
        listeners.admin,
        health.clone(),
        metrics.clone(),
        config.header_read_timeout,
        stop_rx.clone(),
    ));

    let sink = Arc::new(KafkaSink::new(
        &config.producer_properties(&bootstrap),
        metrics.clone(),
        ProducerRole::Webhooks,
    )?);
    let (supervisor, mut failures) = supervise::supervisor();
    let readiness = background::watch_readiness(&supervisor, &config, &sink, &health, &stop_rx);
    let spool = match &config.spool_dir {
        // Headroom: the largest body plus its headers and encoding.
        Some(dir) => {
            let opening = Spool::open_off_runtime(
                dir.clone(),
                config.spool_max_bytes,
                config.max_body_bytes as u64 + 4096,
            );
            // Nothing was taken yet, so nothing is left undone; the blocking open is abandoned
            // (redb's file survives being cut off as it survives a crash).
            let Some(opened) = cut.unless_cut(opening).await else {
                tracing::warn!("stopping before the spool was open");
                return Ok(());
            };
            Some(opened.map_err(|e| StartError::SpoolOpen(dir.clone(), e))?)
        }
        None => None,
    };
    if let Some(spool) = &spool {
        let _ = health.spool.set(spool.clone());
    }
    let delivery = Arc::new(
        Delivery::new(sink.clone(), spool.clone(), metrics.clone())
            .with_spool_budget(config.spool_write_budget),
    );
    let webhook = Arc::new(Webhook::new(&config, delivery, metrics.clone()));
    let background = Background::spawn(
        &supervisor,
        background::Wiring {
            config: &config,
            bootstrap: &bootstrap,
            sink: &sink,
            spool: spool.as_ref(),
            metrics: &metrics,
            credentials: webhook.credentials(),
            stop: &stop_rx,
            readiness,
        },
    )?;
    let options = ServerOptions::webhook(&config);
    tracing::info!(
        listen = %listeners.webhook.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        admin = %admin_addr.map(|a| a.to_string()).unwrap_or_default(),
        path = %config.webhook_path,
        "accepting webhooks"
    );
    health.started.store(true, Ordering::SeqCst);
    let draining = health.clone();
    let shutdown_delay = config.shutdown_delay;
    let failing = spool.clone();
    let spool_failed = async move {
        match &failing {
            Some(spool) => spool.failed().await,
            None => std::future::pending().await,
        }
    };
    let failure = Arc::new(std::sync::OnceLock::new());
    let failed = failure.clone();
    let scraped = health.clone();
    // Borrowed, not moved: a panic during the drain, when this no longer waits, is read at the end.
    let watched = &mut failures;
    let serving = server::serve(listeners.webhook, webhook, options, async move {
        let mut shutdown = std::pin::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => {}
            reason = spool_failed => {
                tracing::error!(%reason, "stopping: the spool cannot store records again until its file is opened anew, which a restart does");
                let _ = failed.set(Stopped::Spool(reason));
            }
            reason = watched.first() => {
                tracing::error!(%reason, "stopping: the bridge cannot go on without that task, which a restart starts again");
                let _ = failed.set(Stopped::Task(reason));
            }
        }
        draining.draining.store(true, Ordering::SeqCst);
        tracing::info!(delay = ?shutdown_delay, "shutdown requested: reporting unready");
        if failed.get().is_some() {
            // The counter that says why (spool_appends_total{result="error"}, say) would
            // otherwise go with the process: the restarted one counts from zero.
            // A SIGTERM meanwhile (a pod deleted) ends that wait, not the shutdown delay.
            tracing::info!("stopping after the next scrape of /metrics, if anything scrapes it (at most 2 min)");
            let scrape_or_signal = async {
                tokio::select! {
                    () = scraped.scrapes.next() => {}
                    () = &mut shutdown => {}
                }
            };
            tokio::join!(tokio::time::sleep(shutdown_delay), scrape_or_signal);
        } else {
            tokio::time::sleep(shutdown_delay).await;
        }
    });
    // Dropped when cut (in the delay or the grace), the server closes its listener and its
    // connections at once, as when its grace ends.
    tokio::select! {
        () = serving => {}
        () = cut.wait() => {}
    }

    flush(&sink, config.flush_timeout, &cut).await;
    let _ = stop_tx.send(true);
    let _ = admin.await;
    let replay_sink = background.stopped(config.flush_timeout, &cut).await;
    // Health holds the last other handle of the spool; the file closes with the spool.
    drop(health);
    let mut lost = None;
    if let Some(spool) = spool {
        // Records answered 200 left in a removed file: a clean exit would hide their loss from
        // whatever reads only the exit status.
        // One budget for both: a volume whose `stat` hangs would hang the close too.
        let began = tokio::time::Instant::now();
        spool.look_again_within(SPOOL_CLOSE_WAIT).await;
        lost = spool.lost_if_stopped().map(Stopped::Spool);
        spool
            .close_within(SPOOL_CLOSE_WAIT.saturating_sub(began.elapsed()))
            .await;
    }
    teardown::destroy_within([sink].into_iter().chain(replay_sink), PRODUCER_DESTROY_WAIT).await;
    tracing::info!("stopped");
    outcome(failure.get().cloned(), lost, &mut failures)
}

/// How a bridge that ran ends: for the failure that stopped it, else for the records a removed
/// spool file took with it, else for a task that panicked during the drain (no one waited for it
/// then, but its restart is owed all the same); a clean exit only when none of them came.
fn outcome(
    failure: Option<Stopped>,
    lost: Option<Stopped>,
    failures: &mut supervise::Failures,
) -> Result<(), StartError> {
    let panicked_in_drain = || failures.reported().map(Stopped::Task);
    match failure.or(lost).or_else(panicked_in_drain) {
        Some(Stopped::Spool(reason)) => Err(StartError::SpoolFailed(reason)),
        Some(Stopped::Task(reason)) => Err(StartError::TaskFailed(reason)),
        None => Ok(()),
    }
}

/// The Kafka the bridge produces to, and its bootstrap servers: `--kafka-brokers`, or an
/// embedded cluster held until the returned handle is dropped.
fn start_kafka(
    config: &Config,
    topics: &[String],
) -> Result<(Option<EmbeddedKafka>, String), StartError> {
    match &config.kafka {
        KafkaMode::Brokers(brokers) => Ok((None, brokers.clone())),
        KafkaMode::Embedded => {
            let kafka = EmbeddedKafka::start(topics, config.embedded_partitions)?;
            let bootstrap = kafka.bootstrap_servers().to_string();
            tracing::info!(topics = ?topics, "embedded Kafka listening: bootstrap.servers={bootstrap}");
            Ok((Some(kafka), bootstrap))
        }
    }
}

/// Flushes the webhook producer once no request waits any more: records whose requests already
/// got an answer may still sit in librdkafka's queue (those answered 503 on timeout), and
/// delivering them now avoids needless duplicates later.
async fn flush(sink: &Arc<KafkaSink>, timeout: Duration, cut: &drain::Cut) {
    // The producer the records are in: a credential rotated during the flush puts a new, empty
    // one in place, whose count would say none were left.
    let flushing = sink.flushing();
    let flush_cut = cut.clone();
    let flushed = tokio::task::spawn_blocking(move || {
        drain::flush(&flushing, timeout, &flush_cut).map_err(|e| (e, flushing.in_flight()))
    })
    .await;
    match flushed {
        Ok(Ok(())) => tracing::info!("producer flushed"),
        Ok(Err((e, left))) => tracing::warn!(error = %e, left, "producer flush incomplete"),
        Err(e) => tracing::warn!(error = %e, "producer flush task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that panicked while the bridge drained ends it with exit 1, as one that panicked
    /// while it served does: a clean exit would tell the orchestrator nothing needs restarting.
    #[tokio::test]
    async fn a_task_that_panicked_during_the_drain_fails_the_exit() {
        let (supervisor, mut failures) = supervise::supervisor();
        assert!(outcome(None, None, &mut failures).is_ok(), "none panicked");
        let task = supervisor.spawn("test", async { panic!("boom") });
        task.await.expect("the panic is caught");
        let ended = outcome(None, None, &mut failures);
        assert!(
            matches!(&ended, Err(StartError::TaskFailed(why)) if why.contains("boom")),
            "{ended:?}"
        );
        // The failure that stopped the bridge, then a spool's lost records, come first.
        supervisor
            .spawn("test", async { panic!("later") })
            .await
            .expect("caught");
        let lost = Some(Stopped::Spool("removed".into()));
        assert!(matches!(
            outcome(None, lost.clone(), &mut failures),
            Err(StartError::SpoolFailed(_))
        ));
        assert!(matches!(
            outcome(Some(Stopped::Task("first".into())), lost, &mut failures),
            Err(StartError::TaskFailed(why)) if why == "first"
        ));
    }
}
