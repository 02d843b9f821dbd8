//! Where an accepted record goes: Kafka within the deadline, or — when a spool is configured and
//! Kafka cannot acknowledge in time — the durable spool, replayed to Kafka in order later.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::producer::{Delivered, ProduceError, Sink};
use crate::record::Record;
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

/// Replays the spool to Kafka in order until `stop`, deleting records only once acknowledged.
pub async fn replay<K: Sink>(
    spool: Arc<Spool>,
    kafka: Arc<K>,
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
                () = spool.appended.notified() => {}
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
        // `delivered` is what leaves the spool; `acknowledged` only what Kafka took, which the
        // replayed counter reports (the records dropped have their own counter).
        let mut delivered = Vec::new();
        let mut acknowledged = 0u64;
        let mut failed = 0u64;
        for ((seq, r, len), result) in batch.iter().zip(results) {
            match result {
                Ok(_) => {
                    acknowledged += 1;
                    delivered.push((*seq, r.key.clone(), *len));
                }
                Err(ProduceError::TooLarge | ProduceError::Rejected(_)) => {
                    // Kafka will never take it: keeping it would block its key forever.
                    tracing::error!(seq, topic = %r.topic, "Kafka refuses a spooled record permanently; dropping it from the spool");
                    metrics.spool.dropped.inc();
                    delivered.push((*seq, r.key.clone(), *len));
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
        headers: crate::record::RecordHeaders::Raw(&headers),
    };
    kafka.send(&record, deadline).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Acknowledges every record except those for the topic `refused`, which it refuses for good.
    struct RefusesOneTopic;

    impl Sink for RefusesOneTopic {
        async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
            if record.topic == "refused" {
                Err(ProduceError::Rejected("TopicAuthorizationFailed".into()))
            } else {
                Ok(Delivered::Kafka {
                    partition: 0,
                    offset: 0,
                })
            }
        }
    }

    fn spooled(topic: &str) -> SpooledRecord {
        SpooledRecord {
            topic: topic.into(),
            key: Some("k".into()),
            value: b"{}".to_vec(),
            headers: Vec::new(),
            timestamp_ms: 1_700_000_000_000,
        }
    }

    #[tokio::test]
    async fn replay_counts_as_replayed_only_what_kafka_acknowledged_and_drops_the_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), 1 << 20, 1).expect("open");
        for topic in ["ok", "refused", "ok", "ok"] {
            spool.append(spooled(topic)).await.expect("append");
        }
        let metrics = Arc::new(Metrics::new(&[]).expect("metrics"));
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(replay(
            spool.clone(),
            Arc::new(RefusesOneTopic),
            metrics.clone(),
            stop,
        ));
        let emptied = tokio::time::timeout(Duration::from_secs(10), async {
            while spool.records() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        stop_tx.send(true).expect("stop");
        task.await.expect("replay task");
        assert!(
            emptied.is_ok(),
            "the spool still holds {} records",
            spool.records()
        );
        assert!(!spool.holds_key("k"));
        assert_eq!(metrics.spool.replayed.get(), 3);
        assert_eq!(metrics.spool.dropped.get(), 1);
        assert_eq!(metrics.spool.replay_failures.get(), 0);
    }
}
