//! The files a producer is made from, read again every second: when a rotated SASL password
//! (`KAFKA_*_FILE`) or certificate (`ssl.*.location`) lands, the producers are made again from
//! them, without a restart and without failing the records already handed over.
//!
//! librdkafka reads these files once, when a producer is made; an old certificate keeps working
//! on open connections and fails at the next reconnect after it expires, so a pod that is never
//! restarted would lose Kafka long after the rotation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

mod made;
#[cfg(test)]
pub(super) use made::message_timeout;
pub use made::{retire, ProducerHandle};

use super::KafkaSink;
use crate::config::KafkaCaveats;
use crate::kafka_props::{KafkaProperties, KafkaSources, Watched};
use crate::metrics::Metrics;

/// How often the files are read: a few small reads a second, and a rotation takes effect at once.
const EVERY: Duration = Duration::from_secs(1);
/// While the files in place could not be used, how often they are tried again without a change:
/// the broker may learn the new credential after the Secret changed.
const RETRY: Duration = Duration::from_secs(30);
/// How long a new producer may take to reach a broker (connect, TLS, SASL, metadata) before it
/// is judged unusable and the working one kept.
const WARM_UP: Duration = Duration::from_secs(10);

/// A producer to make again: its sink, and the properties it sets over the shared ones, made
/// from them (replay's depend on the rotated ones: without idempotence, one request in flight).
#[derive(Debug)]
pub struct Rebuilt {
    pub sink: Arc<KafkaSink>,
    pub overrides: fn(&BTreeMap<String, String>) -> BTreeMap<String, String>,
}

impl Rebuilt {
    /// Its properties: the shared ones, its brokers, and its own over them.
    fn properties(&self, shared: &KafkaProperties, bootstrap: &str) -> BTreeMap<String, String> {
        let mut map = shared.to_map();
        map.insert("bootstrap.servers".into(), bootstrap.to_string());
        let own = (self.overrides)(&map);
        map.extend(own);
        map
    }
}

/// The Kafka client files to watch: what the properties are made from, the files as they were
/// when they were made, and the caveats their values earned.
#[derive(Debug, Clone)]
pub struct ClientFiles {
    pub sources: KafkaSources,
    pub watched: Watched,
    pub caveats: KafkaCaveats,
}

/// Why a producer was not made again; the text never holds a property's value.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("librdkafka refused the new properties: {0}")]
    Refused(String),
    #[error("the new producer did not reach a broker (credentials refused, certificate not trusted, or Kafka unreachable): {0}")]
    Unreachable(String),
    /// The new credentials work, but the brokers refuse them the topic (an ACL not yet granted).
    #[error("the new producer reached a broker, which refused it the topic: {0}")]
    TopicRefused(String),
    /// librdkafka declared the new producer failed: with idempotence, the brokers refused it a
    /// producer id (credentials that may describe the topic but not write to it).
    #[error("librdkafka declared the new producer failed: {0}")]
    Failed(String),
    #[error("the bridge is shutting down")]
    Cancelled,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Reads the files behind the properties every second until `stop`; when one changes, makes the
/// properties again and rebuilds each producer from them (checking each reaches a broker and
/// `topic`). What cannot be used (a secret file gone or emptied, a key that does not match its
/// certificate, credentials the brokers refuse) keeps the producers as they are, logged and shown by
/// `kafka_client_files_stale`; the producers still to be made are tried again every 30 s until
/// they work or the files change again. A value that earns a caveat (as at start-up: `acks` 1,
/// statistics off) is logged once every producer is made from it.
pub async fn watch_kafka_files(
    files: ClientFiles,
    bootstrap: String,
    topic: String,
    producers: Vec<Rebuilt>,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let ClientFiles {
        sources,
        mut watched,
        mut caveats,
    } = files;
    if watched.is_empty() {
        return;
    }
    // Which producers are still to be made from the files in place.
    let mut pending = vec![false; producers.len()];
    let mut failed_at: Option<Instant> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = crate::admin::stopped(&mut stop) => return,
        }
        let before = watched.clone();
        let Some(now) = blocking(move || before.now()).await else {
            continue;
        };
        let changed = now != watched;
        let retry = failed_at.is_some_and(|t| t.elapsed() >= RETRY);
        if !changed && !retry {
            continue;
        }
        if changed {
            pending.fill(true);
        }
        // Taken before the properties are made from the files, so a change in between is seen.
        watched = now;
        let again = sources.clone();
        let made = blocking(move || again.properties(&crate::operator_file::read_to_string)).await;
        let properties = match made {
            Some(Ok(properties)) => properties,
            failed => {
                let error = why(failed, "reading the files panicked");
                tracing::error!(%error, "the properties cannot be made from the Kafka client files; the producers stay as they are");
                for (p, _) in producers.iter().zip(&pending).filter(|(_, todo)| **todo) {
                    metrics.kafka_reloaded(p.sink.role.label(), false);
                }
                failed_at = Some(Instant::now());
                continue;
            }
        };
        // A new location is watched from now on; the files watched before keep the fingerprint
        // taken before the properties were made.
        let files = sources.files(&properties);
        if files != watched.files() {
            let kept = watched.clone();
            if let Some(rebased) = blocking(move || kept.rebase(files)).await {
                watched = rebased;
            }
        }
        failed_at = None;
        for (p, todo) in producers.iter().zip(pending.iter_mut()) {
            if !*todo {
                continue;
            }
            match rebuild(p, &properties, &bootstrap, &topic, &metrics, &mut stop).await {
                Outcome::Rebuilt => *todo = false,
                Outcome::Failed => failed_at = Some(Instant::now()),
                Outcome::Stopped => return,
            }
        }
        // Said once the properties are in force: a property rotated to a weaker value (`acks`,
        // `message.timeout.ms`) would otherwise weaken the bridge's promise without a word.
        if failed_at.is_none() {
            for caveat in caveats.new_in(&properties) {
                tracing::warn!("the rotated Kafka client files: {caveat}");
            }
        }
    }
}

/// Why a blocking step that did not succeed failed: its error, or `panicked` (no result).
fn why<T, E: std::fmt::Display>(failed: Option<Result<T, E>>, panicked: &str) -> String {
    failed.map_or(panicked.into(), |e| {
        e.err().map(|e| e.to_string()).unwrap_or_default()
    })
}

enum Outcome {
    Rebuilt,
    Failed,
    Stopped,
}

/// Rebuilds one producer and retires the old one.
async fn rebuild(
    p: &Rebuilt,
    properties: &KafkaProperties,
    bootstrap: &str,
    topic: &str,
    metrics: &Metrics,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Outcome {
    if *stop.borrow() {
        return Outcome::Stopped;
    }
    let map = p.properties(properties, bootstrap);
    let sink = p.sink.clone();
    let role = sink.role.label();
    let topic = topic.to_string();
    let cancel = Arc::new(AtomicBool::new(false));
    let cancelled = cancel.clone();
    let making = tokio::task::spawn_blocking(move || sink.rebuild(&map, &topic, WARM_UP, &cancel));
    // Shutdown does not wait out the warm-up; the cancel keeps a late producer from taking over.
    let made = tokio::select! {
        made = making => made.ok(),
        () = crate::admin::stopped(stop) => {
            cancelled.store(true, Ordering::SeqCst);
            return Outcome::Stopped;
        }
    };
    let old = match made {
        Some(Ok(old)) => old,
        failed => {
            // A panic while making it (`None`) is a failure too: silent, it showed no stale files.
            let error = why(failed, "making it panicked");
            tracing::error!(role, %error, "no working Kafka producer could be made from the client files; the producer stays as it was");
            metrics.kafka_reloaded(role, false);
            return Outcome::Failed;
        }
    };
    tracing::info!(role, "Kafka producer made again from its client files");
    metrics.kafka_reloaded(role, true);
    // Not waited for: the old producer's flush can take its whole message timeout (30 s for
    // replay's) when its records are stuck, and the next producer, or the next rotation, would
    // wait that long on the files in place before. It goes on in its thread as long as the
    // process does (at shutdown, records whose requests were not answered 200 may then be lost).
    drop(tokio::task::spawn_blocking(move || retire(old)));
    Outcome::Rebuilt
}

#[cfg(test)]
mod tests;
