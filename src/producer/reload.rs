//! The files a producer is made from, read again every second: when a rotated SASL password
//! (`KAFKA_*_FILE`) or certificate (`ssl.*.location`) lands, the producers are made again from
//! them, without a restart and without failing the records already handed over.
//!
//! librdkafka reads these files once, when a producer is made; an old certificate keeps working
//! on open connections and fails at the next reconnect after it expires, so a pod that is never
//! restarted would lose Kafka long after the rotation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::util::Timeout;
use sha2::{Digest, Sha256};

use super::{client_config, KafkaSink};
use crate::kafka_props::{KafkaProperties, KafkaSources};
use crate::metrics::Metrics;

/// How often the files are read: a few small reads a second, and a rotation takes effect at once.
const EVERY: Duration = Duration::from_secs(1);

/// A producer to make again: its sink, and the properties it sets over the shared ones.
#[derive(Debug)]
pub struct Rebuilt {
    pub sink: Arc<KafkaSink>,
    pub overrides: BTreeMap<String, String>,
}

impl KafkaSink {
    /// Makes a producer from `properties` and puts it in place; the one it replaces is flushed
    /// (its records still get their delivery reports) for at most `flush_timeout`, then
    /// dropped. Blocking: call off the runtime. On an error the current producer stays.
    pub fn rebuild(
        &self,
        properties: &BTreeMap<String, String>,
        flush_timeout: Duration,
    ) -> Result<(), KafkaError> {
        let fresh = client_config(properties);
        let mut config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.swap_producer(&fresh)?;
        *config = fresh;
        drop(config);
        if let Err(e) = old.flush(Timeout::After(flush_timeout)) {
            tracing::warn!(role = self.role.label(), error = %e, "the replaced producer's records were not all delivered within the flush timeout");
        }
        Ok(())
    }

    /// The property `key` of the current producer (for tests).
    pub fn property(&self, key: &str) -> Option<String> {
        let config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        config.get(key).map(str::to_string)
    }
}

/// Each file's SHA-256, or `None` while it cannot be read (a file that comes back is a change).
fn fingerprint(files: &[PathBuf]) -> Vec<Option<[u8; 32]>> {
    files
        .iter()
        .map(|f| std::fs::read(f).ok().map(|b| Sha256::digest(&b).into()))
        .collect()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Reads the files behind `properties` every second until `stop`; when one changes, makes the
/// properties again and rebuilds each producer from them. Properties that cannot be made (a
/// secret file gone) or a producer librdkafka refuses to make (a key that does not match its
/// certificate) keep the producers as they are, with an error logged and counted.
pub async fn watch_kafka_files(
    sources: KafkaSources,
    properties: KafkaProperties,
    bootstrap: String,
    producers: Vec<Rebuilt>,
    flush_timeout: Duration,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut files = sources.files(&properties);
    if files.is_empty() {
        return;
    }
    let watched = files.clone();
    let mut seen = blocking(move || fingerprint(&watched)).await;
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = crate::admin::stopped(&mut stop) => return,
        }
        let watched = files.clone();
        let now = blocking(move || fingerprint(&watched)).await;
        if now == seen {
            continue;
        }
        seen = now;
        let again = sources.clone();
        let made = blocking(move || again.properties(&|p: &Path| std::fs::read_to_string(p))).await;
        let properties = match made {
            Some(Ok(properties)) => properties,
            Some(Err(e)) => {
                tracing::error!(error = %e, "Kafka client files changed but the properties cannot be made from them; the producers stay as they are");
                for p in &producers {
                    metrics.kafka_reloaded(p.sink.role.label(), false);
                }
                continue;
            }
            None => continue,
        };
        // A new location is watched from now on.
        let now_files = sources.files(&properties);
        if now_files != files {
            files = now_files;
            let watched = files.clone();
            seen = blocking(move || fingerprint(&watched)).await;
        }
        for p in &producers {
            let mut map = properties.to_map();
            map.insert("bootstrap.servers".into(), bootstrap.clone());
            map.extend(p.overrides.clone());
            let sink = p.sink.clone();
            let role = sink.role.label();
            match blocking(move || sink.rebuild(&map, flush_timeout)).await {
                Some(Ok(())) => {
                    tracing::info!(role, "Kafka producer made again: a file it reads changed");
                    metrics.kafka_reloaded(role, true);
                }
                Some(Err(e)) => {
                    tracing::error!(role, error = %e, "Kafka client files changed but librdkafka refused them; the producer stays as it was");
                    metrics.kafka_reloaded(role, false);
                }
                None => {}
            }
        }
    }
}
