//! Where an accepted record goes: Kafka within the deadline, or — when a spool is configured and
//! Kafka cannot acknowledge in time — the durable spool, replayed to Kafka in order later.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::producer::{Delivered, ProduceError, Sink};
use crate::record::Record;
use crate::spool::{Spool, SpoolError, SpooledRecord};

mod replay;
pub use replay::{replay, Batch};

/// Time kept back from the ack deadline for the spool's write and fsync when Kafka is slow,
/// unless `--spool-write-budget` says otherwise.
const DEFAULT_SPOOL_BUDGET: Duration = Duration::from_millis(250);

/// The time kept back from what is left of a request's ack deadline for the spool's write and
/// fsync, should Kafka not acknowledge: Kafka gets the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SpoolBudget {
    /// 250 ms, or a quarter of the time left when that is less: a short `--ack-timeout` still
    /// leaves Kafka most of it.
    #[default]
    Default,
    /// `--spool-write-budget`: an operator whose disk takes longer to sync (or who would rather
    /// give Kafka more of the wait) says how long; all of the time left when less is left.
    Set(Duration),
}

impl SpoolBudget {
    /// The budget `--spool-write-budget` asks for, the default without it.
    pub fn from_setting(set: Option<Duration>) -> SpoolBudget {
        set.map_or(SpoolBudget::Default, SpoolBudget::Set)
    }

    /// The part of `left` kept for the spool.
    pub fn of(self, left: Duration) -> Duration {
        match self {
            SpoolBudget::Default => DEFAULT_SPOOL_BUDGET.min(left / 4),
            SpoolBudget::Set(budget) => budget.min(left),
        }
    }
}

/// How long a record may wait for Kafka: the whole ack timeout, or without the time kept for
/// the spool's write when a spool is configured. Also librdkafka's `message.timeout.ms`, so that
/// a record spooled after its deadline is not sent again by librdkafka later; one whose produce
/// request already reached the leader may still be stored there, so a spooled record can arrive
/// twice (README: Duplicates).
pub fn kafka_wait(ack_timeout: Duration, spool: Option<SpoolBudget>) -> Duration {
    ack_timeout - spool.map_or(Duration::ZERO, |budget| budget.of(ack_timeout))
}

/// How long a replayed record may take to be acknowledged (its producer's `message.timeout.ms`).
pub const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the replay producer sets over the webhook producer's `properties`: its own timeout and
/// client id, and, without idempotence (`acks` below `all` turns it off), one produce request in
/// flight per broker. Replay puts a whole batch of a conversation in flight at once, and
/// librdkafka's retry of a failed request behind a later one that succeeded would reorder them
/// silently: the idempotent producer's sequence numbers are what prevent that.
pub fn replay_overrides(
    properties: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    let mut overrides = std::collections::BTreeMap::from([
        (
            "message.timeout.ms".to_string(),
            REPLAY_TIMEOUT.as_millis().to_string(),
        ),
        ("client.id".to_string(), "qikchat-bridge-replay".to_string()),
    ]);
    let idempotent = properties
        .get("enable.idempotence")
        .and_then(|v| crate::kafka_props::as_read("enable.idempotence", v))
        .is_some_and(|v| v == "true");
    if !idempotent {
        overrides.insert("max.in.flight".to_string(), "1".to_string());
    }
    overrides
}

/// The sink the webhook uses: Kafka first, the spool as the fallback.
#[derive(Debug)]
pub struct Delivery<K> {
    kafka: Arc<K>,
    spool: Option<Arc<Spool>>,
    budget: SpoolBudget,
    metrics: Arc<Metrics>,
}

impl<K: Sink> Delivery<K> {
    pub fn new(kafka: Arc<K>, spool: Option<Arc<Spool>>, metrics: Arc<Metrics>) -> Delivery<K> {
        Delivery {
            kafka,
            spool,
            budget: SpoolBudget::Default,
            metrics,
        }
    }

    /// With `budget` kept back for the spool's write instead of the default.
    pub fn with_spool_budget(self, budget: SpoolBudget) -> Delivery<K> {
        Delivery { budget, ..self }
    }

    /// Appends `record` to the spool if its fsync finishes by `deadline`. An append that takes
    /// longer (a stalled disk) is answered 503 at the deadline but may still commit, and is then
    /// replayed: a duplicate with the sender's retry, never a loss. With `behind`, only while the
    /// spool still holds records of its conversation (`None` when it no longer does).
    async fn spool(
        &self,
        spool: &Spool,
        record: &Record<'_>,
        cause: &str,
        deadline: Instant,
        behind: bool,
    ) -> Option<Result<Delivered, ProduceError>> {
        // As without a spool: a body that took the whole ack timeout to arrive is not stored,
        // so the sender's retry is no duplicate.
        if Instant::now() >= deadline {
            return Some(Err(ProduceError::Timeout));
        }
        let record = SpooledRecord::from_record(record);
        let appending = async {
            if behind {
                spool.append_behind(record).await
            } else {
                Some(spool.append(record).await)
            }
        };
        let result = match tokio::time::timeout_at(deadline, appending).await {
            Ok(Some(result)) => result,
            Ok(None) => return None,
            Err(_) => {
                self.metrics.spool.late();
                return Some(Err(ProduceError::Unavailable(
                    "the spool's write did not finish before the deadline".into(),
                )));
            }
        };
        self.metrics.spool.append(&result);
        Some(match result {
            Ok(seq) => {
                tracing::debug!(seq, cause, "spooled");
                Ok(Delivered::Spooled { seq })
            }
            Err(SpoolError::Full { .. }) => Err(ProduceError::Unavailable("spool full".into())),
            Err(e @ SpoolError::Busy { .. }) => Err(ProduceError::Unavailable(e.to_string())),
            Err(SpoolError::Io(e)) => Err(ProduceError::Unavailable(format!(
                "spool write failed: {e}"
            ))),
        })
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
        // librdkafka would refuse it on every topic, so replay could never deliver it, and it
        // would hold back every later record of its conversation.
        if record.wire_size() > self.kafka.max_record_bytes() {
            self.kafka
                .count_refused(record.topic, &ProduceError::TooLarge);
            return Err(ProduceError::TooLarge);
        }
        if record
            .key
            .as_deref()
            .is_some_and(|k| spool.holds(record.topic, k))
        {
            let cause = "older records of this conversation are spooled";
            if let Some(spooled) = self.spool(spool, record, cause, deadline, true).await {
                return spooled;
            }
            // They were delivered meanwhile: nothing of its conversation is left to wait behind.
        }
        let now = Instant::now();
        let budget = self.budget.of(deadline.saturating_duration_since(now));
        match self.kafka.send(record, deadline - budget).await {
            Ok(d) => Ok(d),
            // Kafka late or away, or refusing the topic until an operator acts (replay holds the
            // topic until it is fixed): the record itself is fine, so it is kept.
            Err(e) if !e.is_record_fault() => {
                let cause = e.to_string();
                let spooled = self.spool(spool, record, &cause, deadline, false).await;
                spooled.unwrap_or(Err(e))
            }
            // Kafka refuses the record itself: retrying cannot help, and spooling it would block
            // its conversation forever.
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
