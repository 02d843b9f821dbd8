//! Readiness: the webhook producer's current instance has not failed and a broker answers its
//! metadata requests for the first topic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::KafkaSink;

/// Keeps `ready` true while the producer has not failed and a broker answers its metadata
/// requests for `topic`, checking every `interval` until `stop` turns true.
pub async fn watch_readiness(
    sink: Arc<KafkaSink>,
    topic: String,
    ready: Arc<AtomicBool>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let probe = sink.clone();
        let t = topic.clone();
        let ok = tokio::task::spawn_blocking(move || match probe.fatal_error() {
            // Its metadata requests still work, but it refuses every record until replaced.
            Some(reason) => Err(format!("the producer has failed: {reason}")),
            None => probe
                .check_metadata(&t, interval.max(Duration::from_millis(500)))
                .map_err(|e| e.to_string()),
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let was = ready.swap(ok.is_ok(), Ordering::SeqCst);
        match (&ok, was) {
            (Ok(()), false) => tracing::info!(topic, "Kafka answers metadata requests: ready"),
            (Err(e), true) => {
                tracing::warn!(topic, error = %e, "Kafka check failed: not ready")
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            () = crate::admin::stopped(&mut stop) => return,
        }
    }
}
