//! Where an accepted record goes: Kafka within the deadline, or — when a spool is configured and
//! Kafka cannot acknowledge in time — the durable spool, replayed to Kafka in order later.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::producer::{Delivered, ProduceError, Sink};
use crate::record::{
    Record, RecordHeaders, HEADER_BODY_SHA256, HEADER_CONTENT_TYPE, HEADER_DEADLETTER_REASON,
    HEADER_RECEIVED_AT, HEADER_REQUEST_ID,
};
use crate::spool::{Spool, SpoolError, SpooledRecord};

/// Time kept back from the ack deadline for the spool's fsync when Kafka is slow.
const SPOOL_BUDGET: Duration = Duration::from_millis(250);
/// How long a record may wait for Kafka: the whole ack timeout, or without the time kept for
/// the spool's fsync when a spool is configured. Also librdkafka's `message.timeout.ms`, so that
/// a record spooled after its deadline is not also delivered late by librdkafka.
pub fn kafka_wait(ack_timeout: Duration, spool: bool) -> Duration {
    if spool {
        ack_timeout - SPOOL_BUDGET.min(ack_timeout / 4)
    } else {
        ack_timeout
    }
}

/// Records replayed per round.
const REPLAY_BATCH: usize = 256;
/// How long a replayed record may take to be acknowledged (its producer's `message.timeout.ms`).
pub const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);

/// The sink the webhook uses: Kafka first, the spool as the fallback.
#[derive(Debug)]
pub struct Delivery<K> {
    kafka: Arc<K>,
    spool: Option<Arc<Spool>>,
    metrics: Arc<Metrics>,
}

impl<K: Sink> Delivery<K> {
    pub fn new(kafka: Arc<K>, spool: Option<Arc<Spool>>, metrics: Arc<Metrics>) -> Delivery<K> {
        Delivery {
            kafka,
            spool,
            metrics,
        }
    }

    async fn spool(
        &self,
        spool: &Spool,
        record: &Record<'_>,
        cause: &str,
    ) -> Result<Delivered, ProduceError> {
        let result = spool.append(SpooledRecord::from_record(record)).await;
        self.metrics.spool.append(&result);
        match result {
            Ok(seq) => {
                tracing::debug!(seq, cause, "spooled");
                Ok(Delivered::Spooled { seq })
            }
            Err(SpoolError::Full { .. }) => Err(ProduceError::Unavailable("spool full".into())),
            Err(SpoolError::Io(e)) => Err(ProduceError::Unavailable(format!(
                "spool write failed: {e}"
            ))),
        }
    }
}

impl<K: Sink> Sink for Delivery<K> {
    async fn send(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        let Some(spool) = &self.spool else {
            return self.kafka.send(record, deadline).await;
        };
        if record.key.as_deref().is_some_and(|k| spool.holds_key(k)) {
            return self
                .spool(spool, record, "older records of this key are spooled")
                .await;
        }
        let now = Instant::now();
        let budget = SPOOL_BUDGET.min(deadline.saturating_duration_since(now) / 4);
        match self.kafka.send(record, deadline - budget).await {
            Ok(d) => Ok(d),
            Err(
                e
                @ (ProduceError::Timeout | ProduceError::QueueFull | ProduceError::Unavailable(_)),
            ) => self.spool(spool, record, &e.to_string()).await,
            // Retrying cannot help these; spooling them would block their key forever.
            Err(e) => Err(e),
        }
    }
}

/// Replays the spool to Kafka in order until `stop`, deleting records only once acknowledged:
/// by their topic, or — for a record its topic refuses for good — by the `deadletter` topic.
pub async fn replay<K: Sink>(
    spool: Arc<Spool>,
    kafka: Arc<K>,
    deadletter: String,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let reader = spool.clone();
        let batch = match tokio::task::spawn_blocking(move || reader.oldest(REPLAY_BATCH)).await {
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "spool read failed");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "spool read task failed");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = spool.appended().notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = crate::admin::stopped(&mut stop) => return,
            }
            continue;
        }
        // Sent together, so librdkafka batches them; enqueued in spool order, so each
        // partition receives them in order.
        let deadline = Instant::now() + REPLAY_TIMEOUT;
        let sends = batch
            .iter()
            .map(|(_, r, _)| replay_one(&*kafka, r, deadline));
        let results = futures_util::future::join_all(sends).await;
        // `delivered` is what leaves the spool; `acknowledged` what its own topic took.
        let mut delivered = Vec::new();
        let mut acknowledged = 0u64;
        let mut failed = 0u64;
        for ((seq, r, len), result) in batch.iter().zip(results) {
            match result {
                Ok(_) => {
                    acknowledged += 1;
                    delivered.push((*seq, r.key.clone(), *len));
                }
                // It was answered 200: it leaves the spool only for a topic that holds it. A
                // refusal an operator can fix (authorization, a missing topic) is retried.
                Err(e) if e.is_record_fault() && r.topic != deadletter => {
                    match divert(&*kafka, r, &deadletter, &e, deadline).await {
                        Ok(_) => {
                            tracing::error!(seq, topic = %r.topic, error = %e, %deadletter, "Kafka refuses a spooled record on its topic for good; moved it to the dead-letter topic");
                            metrics.spool.deadlettered.inc();
                            delivered.push((*seq, r.key.clone(), *len));
                        }
                        Err(d) => {
                            tracing::error!(seq, topic = %r.topic, error = %e, %deadletter, deadletter_error = %d, "Kafka refuses a spooled record on its topic and on the dead-letter topic; it stays spooled");
                            failed += 1;
                        }
                    }
                }
                Err(_) => failed += 1,
            }
        }
        let remover = spool.clone();
        match tokio::task::spawn_blocking(move || remover.remove(&delivered)).await {
            Ok(Ok(())) => metrics.spool.replayed.inc_by(acknowledged),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "spool delete failed; records will be replayed again")
            }
            Err(e) => tracing::error!(error = %e, "spool delete task failed"),
        }
        if failed > 0 {
            metrics.spool.replay_failures.inc_by(failed);
            tracing::warn!(failed, retry_in = ?backoff, "replay to Kafka failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = crate::admin::stopped(&mut stop) => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        } else {
            backoff = Duration::from_millis(100);
        }
    }
}

/// Sends a spooled record to the dead-letter topic as a dead-letter record (no key, the
/// dead-letter headers of the consumer contract), saying why its own topic refused it.
async fn divert<K: Sink>(
    kafka: &K,
    r: &SpooledRecord,
    deadletter: &str,
    error: &ProduceError,
    deadline: Instant,
) -> Result<Delivered, ProduceError> {
    let reason = format!("Kafka refused the record on topic {}: {error}", r.topic);
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .filter(|(k, _)| {
            [
                HEADER_REQUEST_ID,
                HEADER_RECEIVED_AT,
                HEADER_CONTENT_TYPE,
                HEADER_BODY_SHA256,
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([(HEADER_DEADLETTER_REASON, reason.as_str())])
        .collect();
    let record = Record {
        topic: deadletter,
        key: None,
        value: &r.value,
        timestamp_ms: r.timestamp_ms,
        headers: RecordHeaders::Raw(&headers),
    };
    kafka.send(&record, deadline).await
}

async fn replay_one<K: Sink>(
    kafka: &K,
    r: &SpooledRecord,
    deadline: Instant,
) -> Result<Delivered, ProduceError> {
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let record = Record {
        topic: &r.topic,
        key: r.key.as_deref().map(std::borrow::Cow::Borrowed),
        value: &r.value,
        timestamp_ms: r.timestamp_ms,
        headers: RecordHeaders::Raw(&headers),
    };
    kafka.send(&record, deadline).await
}

#[cfg(test)]
mod tests;
