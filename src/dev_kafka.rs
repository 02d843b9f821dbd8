//! `dev-kafka`: only the embedded cluster, with the bridge's default topics, until a signal.

use std::io::Write;

use crate::config::{ConfigError, LogFormat};
use crate::embedded::{EmbeddedError, EmbeddedKafka};
use crate::topics::{self, TopicMap};

/// Why `dev-kafka` could not run.
#[derive(Debug, thiserror::Error)]
pub enum DevKafkaError {
    #[error(transparent)]
    Topics(#[from] ConfigError),
    #[error("{0}")]
    Runtime(std::io::Error),
    #[error("cannot listen for SIGTERM, SIGINT and SIGHUP: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Start(#[from] EmbeddedError),
    #[error("cannot print the address: {0}")]
    Print(std::io::Error),
}

impl DevKafkaError {
    /// A setting that cannot work (a topic prefix that makes invalid names), not a failure.
    pub fn is_usage(&self) -> bool {
        matches!(self, DevKafkaError::Topics(_))
    }
}

/// Runs the embedded cluster with the bridge's default topics (with `prefix`), prints
/// `bootstrap.servers=HOST:PORT` to `out` and returns at the first SIGTERM, SIGINT or SIGHUP.
pub fn run(partitions: i32, prefix: &str, out: &mut impl Write) -> Result<(), DevKafkaError> {
    // Held to the end: dropping it would stop the log writer.
    let _log = crate::telemetry::init(LogFormat::Auto);
    let topics = TopicMap::new(
        prefix,
        &[],
        topics::DEFAULT_FALLBACK,
        topics::DEFAULT_DEADLETTER,
    )?
    .all_topics();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DevKafkaError::Runtime)?;
    // Listening before the cluster starts: as a container's PID 1, a signal that came while it
    // started (or before its address was printed) would be dropped, and it would run on until
    // killed.
    let (signal, _) = {
        let _context = runtime.enter();
        crate::signals::shutdown_signals().map_err(DevKafkaError::Signals)?
    };
    let kafka = EmbeddedKafka::start(&topics, partitions)?;
    // The address is what dev-kafka is for: with no one left to read it, running on would only
    // hold a cluster nobody can find until a signal comes.
    writeln!(out, "bootstrap.servers={}", kafka.bootstrap_servers())
        .and_then(|()| out.flush())
        .map_err(DevKafkaError::Print)?;
    runtime.block_on(signal);
    drop(kafka);
    Ok(())
}
