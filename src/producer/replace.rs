//! Replacing a producer that librdkafka has declared failed, which would otherwise refuse every
//! record until the process restarts.
//!
//! An idempotent producer (`enable.idempotence=true`, the default) raises a fatal error when it
//! can no longer keep its promise of no duplicates and no reordering: a broker answers a produce
//! request with a sequence gap, or forgets the producer id. librdkafka then fails every record,
//! new and queued, and asks the application to make a new producer.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::{Attached, BridgeContext, KafkaSink, LastError, ProducerHandle, ProducerRole};
use crate::kafka_props::{ClientError, Scrubber};
use crate::metrics::Metrics;

/// The pause after a replacement before the next one. A producer that fails again at once (a
/// permission idempotence needs is missing, say) is replaced at a slowing pace, not in a loop.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often the current producer is looked at for a failure no wake-up announced: librdkafka's
/// error callback names a fatal error by its cause (`ClusterAuthorizationFailed` for a refused
/// producer id), not `Fatal`, and with no record in flight only its `FATAL` log line (see
/// `BridgeContext::log_at`), a text rather than an interface, tells of it.
const LOOK_EVERY: Duration = Duration::from_secs(1);

impl KafkaSink {
    /// Makes a new producer from the same properties and drops the failed one. Blocking (the
    /// old producer's threads are joined); call off the runtime.
    fn replace_producer(&self) -> Result<(), ClientError> {
        let config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        // A rebuild (a credential rotation) may have put a working producer in place since the
        // failure was seen: dropping it would purge the records it holds.
        if self.fatal_error().is_none() {
            tracing::info!(
                role = self.role.label(),
                "failed Kafka producer already replaced"
            );
            return Ok(());
        }
        let failed = self.put(self.make(&config, self.scrubber())?);
        drop(config);
        let role = self.role.label();
        self.metrics
            .producers_replaced
            .with_label_values(&[role])
            .inc();
        tracing::info!(role, "Kafka producer replaced");
        // Records still in it fail as `ProducerClosed` and are answered 503 (or spooled); a
        // readiness probe or flush still holding it drops it last, on its own blocking thread.
        drop(failed);
        Ok(())
    }

    /// Makes a producer of this sink's role from `config`, whose secrets `scrubber` hides.
    /// Blocking.
    pub(super) fn make(
        &self,
        config: &ClientConfig,
        scrubber: Arc<Scrubber>,
    ) -> Result<ProducerHandle, ClientError> {
        ProducerHandle::make(config, scrubber, &self.metrics, self.role, &self.fatal)
    }

    /// Puts `fresh` in place of the current producer, which it returns, marked retired so that
    /// its last statistics stay off the gauges; `fresh`'s go on them from now on.
    pub(super) fn put(&self, fresh: ProducerHandle) -> ProducerHandle {
        fresh
            .attached
            .retired
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let producer = std::mem::replace(
            &mut *self
                .producer
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            fresh.producer,
        );
        // After the producer: its fatal error, read meanwhile, may be hidden with the new one's.
        let attached = std::mem::replace(
            &mut *self.attached.lock().unwrap_or_else(PoisonError::into_inner),
            fresh.attached,
        );
        attached
            .retired
            .store(true, std::sync::atomic::Ordering::Relaxed);
        ProducerHandle {
            producer,
            attached,
            message_timeout: Duration::ZERO,
        }
    }
}

impl ProducerHandle {
    /// A producer of `role` made from `config`, its statistics going to `metrics` and its fatal
    /// errors waking `fatal`; `scrubber`, made from the same properties, hides their secrets in
    /// librdkafka's log lines and errors (a rebuild's rotated ones too). Blocking. Its statistics
    /// stay off the gauges until it is put in place: a candidate that cannot reach the brokers
    /// (rotated credentials refused) would otherwise show an empty queue and no broker while the
    /// working producer struggles.
    pub(super) fn make(
        config: &ClientConfig,
        scrubber: Arc<Scrubber>,
        metrics: &Arc<Metrics>,
        role: ProducerRole,
        fatal: &Arc<Notify>,
    ) -> Result<ProducerHandle, ClientError> {
        if let Some(e) = crate::kafka_props::fails_without_oidc(config) {
            return Err(ClientError::from_client(e, scrubber, config));
        }
        let retired = Arc::new(AtomicBool::new(true));
        let last_error = Arc::new(LastError::default());
        let context = BridgeContext::new(
            metrics.clone(),
            role,
            fatal.clone(),
            retired.clone(),
            scrubber.clone(),
            last_error.clone(),
        );
        let producer = config
            .create_with_context(context)
            .map_err(|e| ClientError::from_client(e, scrubber.clone(), config))?;
        Ok(ProducerHandle {
            producer,
            attached: Attached {
                retired,
                scrubber,
                last_error,
            },
            message_timeout: Duration::ZERO,
        })
    }
}

/// What `replace_on_fatal` needs of a sink: a trait so that its pacing is tested on a paused
/// clock with a fake.
pub trait Replaceable: Send + Sync + 'static {
    /// Wakes the task when librdkafka reports a fatal error.
    fn fatal_signal(&self) -> &Notify;
    /// librdkafka's reason when the current producer has failed.
    fn failure(&self) -> Option<String>;
    /// The `role` label.
    fn role_label(&self) -> &'static str;
    /// Puts a new producer in place of the failed one.
    fn replace(self: Arc<Self>) -> impl Future<Output = Result<(), String>> + Send;
}

impl Replaceable for KafkaSink {
    fn fatal_signal(&self) -> &Notify {
        &self.fatal
    }

    fn failure(&self) -> Option<String> {
        self.fatal_error()
    }

    fn role_label(&self) -> &'static str {
        self.role.label()
    }

    async fn replace(self: Arc<Self>) -> Result<(), String> {
        match tokio::task::spawn_blocking(move || self.replace_producer()).await {
            Ok(replaced) => replaced.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Waits for librdkafka's fatal errors on `sink` and replaces its producer, until `stop`.
pub async fn replace_on_fatal<S: Replaceable>(sink: Arc<S>, mut stop: watch::Receiver<bool>) {
    let role = sink.role_label();
    let mut backoff = FIRST_BACKOFF;
    let mut last = None::<Instant>;
    loop {
        // A producer still failed after the pause (its replacement failed too) is tried again
        // without waiting for a wake-up, which may never come: librdkafka reports a fatal
        // error once, and without a spool an unready pod gets no traffic to run into it.
        if sink.failure().is_none() {
            tokio::select! {
                () = sink.fatal_signal().notified() => {}
                () = tokio::time::sleep(LOOK_EVERY) => {}
                () = crate::admin::stopped(&mut stop) => return,
            }
        }
        // Wake-ups also come from the replaced producer's last records: only a failed current
        // producer is replaced.
        let Some(reason) = sink.failure() else {
            continue;
        };
        if last.is_some_and(|t| t.elapsed() > 2 * MAX_BACKOFF) {
            backoff = FIRST_BACKOFF;
        }
        tracing::error!(role, reason, "Kafka producer failed: replacing it");
        if let Err(e) = sink.clone().replace().await {
            tracing::error!(role, error = %e, "Kafka producer not replaced");
        }
        last = Some(Instant::now());
        // A failure seen during the pause keeps its wake-up, so it is handled right after.
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = crate::admin::stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests;
