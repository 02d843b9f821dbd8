//! Replacing a producer that librdkafka has declared failed, which would otherwise refuse every
//! record until the process restarts.
//!
//! An idempotent producer (`enable.idempotence=true`, the default) raises a fatal error when it
//! can no longer keep its promise of no duplicates and no reordering: a broker answers a produce
//! request with a sequence gap, or forgets the producer id. librdkafka then fails every record,
//! new and queued, and asks the application to make a new producer.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rdkafka::error::KafkaError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{BridgeContext, KafkaSink};

/// The pause after a replacement before the next one. A producer that fails again at once (a
/// permission idempotence needs is missing, say) is replaced at a slowing pace, not in a loop.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl KafkaSink {
    /// Makes a new producer from the same properties and drops the failed one. Blocking (the
    /// old producer's threads are joined); call off the runtime.
    fn replace(&self) -> Result<(), KafkaError> {
        let context = BridgeContext::new(self.metrics.clone(), self.role, self.fatal.clone());
        let fresh = self.config.create_with_context(context)?;
        let failed = std::mem::replace(
            &mut *self
                .producer
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        let role = self.role.label();
        self.metrics
            .producers_replaced
            .with_label_values(&[role])
            .inc();
        tracing::info!(role, "Kafka producer replaced");
        // Records still in it fail with "producer closed" and are answered 503 (or spooled).
        drop(failed);
        Ok(())
    }
}

/// Waits for librdkafka's fatal errors on `sink` and replaces its producer, until `stop`.
pub async fn replace_on_fatal(sink: Arc<KafkaSink>, mut stop: watch::Receiver<bool>) {
    let role = sink.role.label();
    let mut backoff = FIRST_BACKOFF;
    let mut last = None::<Instant>;
    loop {
        tokio::select! {
            () = sink.fatal.notified() => {}
            () = crate::admin::stopped(&mut stop) => return,
        }
        // Wake-ups also come from the replaced producer's last records: only a failed current
        // producer is replaced.
        let Some(reason) = sink.fatal_error() else {
            continue;
        };
        if last.is_some_and(|t| t.elapsed() > 2 * MAX_BACKOFF) {
            backoff = FIRST_BACKOFF;
        }
        tracing::error!(role, reason, "Kafka producer failed: replacing it");
        let replacing = sink.clone();
        match tokio::task::spawn_blocking(move || replacing.replace()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(role, error = %e, "Kafka producer not replaced"),
            Err(e) => tracing::error!(role, error = %e, "Kafka producer replacement task failed"),
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
