//! The Kafka side: an rdkafka producer whose every send waits for the delivery report within a
//! deadline, librdkafka's errors sorted into what the HTTP answer needs, and a readiness probe.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::kafka_props::{ClientError, Scrubber};
use crate::metrics::Metrics;
use crate::record::Record;

mod context;
mod last_error;
mod readiness;
mod reload;
mod replace;
pub mod spread;
pub use context::{clients_alive, BridgeContext, ProducerRole};
use last_error::LastError;
use readiness::{topic_metadata, TopicError};
pub use readiness::{warn_of_missing_topics, watch_readiness, KafkaCheck};
pub use reload::{retire, watch_kafka_files, ClientFiles, ProducerHandle, RebuildError, Rebuilt};
pub use replace::replace_on_fatal;

/// Where an accepted record is now: acknowledged by Kafka, or durably in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    Kafka { partition: i32, offset: i64 },
    Spooled { seq: u64 },
}

/// Why a record was not acknowledged. Every variant means "not stored".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProduceError {
    #[error("producer queue is full")]
    QueueFull,
    /// The bridge's deadline passed, or librdkafka's own `message.timeout.ms` (by default the
    /// same ack timeout): one failure, whichever timer fires first, so its logged cause and
    /// metric label do not depend on a race between them.
    #[error("no acknowledgement in time")]
    Timeout,
    #[error("record exceeds Kafka's record size limit")]
    TooLarge,
    /// Kafka refuses this record itself (invalid): retrying the same record cannot help.
    #[error("Kafka refused the record: {0}")]
    Rejected(String),
    /// The cluster or the bridge's settings refuse it until an operator acts (authorization, an
    /// unknown topic, credentials): the record is fine, so it is kept (spooled) or the sender is
    /// told to retry, never told that a retry cannot help.
    #[error("Kafka refused the record until its settings change: {0}")]
    Refused(String),
    /// The cluster could not take it now (brokers down, timeouts, leader moves), or librdkafka
    /// declared the producer failed: the record is fine, and the replacement producer takes it.
    #[error("Kafka is unavailable: {0}")]
    Unavailable(String),
}

impl ProduceError {
    pub(crate) fn from_kafka(error: &KafkaError) -> ProduceError {
        let Some(code) = error.rdkafka_error_code() else {
            return ProduceError::Unavailable(error.to_string());
        };
        use RDKafkaErrorCode as C;
        match code {
            C::QueueFull => ProduceError::QueueFull,
            C::MessageTimedOut => ProduceError::Timeout,
            C::MessageSizeTooLarge | C::InvalidMessageSize => ProduceError::TooLarge,
            // A timestamp outside the topic's bounds (`message.timestamp.before.max.ms`): a spooled
            // record older than that is refused on every attempt, and, held as unavailable, it
            // held its whole topic for good.
            C::InvalidRecord | C::InvalidMessage | C::InvalidTimestamp => {
                ProduceError::Rejected(format!("{code:?}"))
            }
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::UnknownTopic
            | C::InvalidTopic
            | C::Authentication => ProduceError::Refused(format!("{code:?}")),
            _ => ProduceError::Unavailable(format!("{code:?}")),
        }
    }

    /// Kafka failed this record only because another record of its produce request's batch was
    /// refused (`InvalidDifferentRecord`, from a broker that names the records it refuses):
    /// the same record sent again goes through.
    pub fn is_batch_casualty(&self) -> bool {
        matches!(self, ProduceError::Unavailable(code) if code == "InvalidDifferentRecord")
    }

    /// Kafka refuses this record itself, on any attempt (too large for the topic, invalid), as
    /// opposed to the cluster or its settings refusing it for now ([`ProduceError::Refused`]).
    pub fn is_record_fault(&self) -> bool {
        // Exhaustive, so that a new kind of error is sorted here on purpose: a record fault is
        // refused at once, anything else is spooled and retried until it goes through.
        match self {
            ProduceError::TooLarge | ProduceError::Rejected(_) => true,
            ProduceError::QueueFull
            | ProduceError::Timeout
            | ProduceError::Refused(_)
            | ProduceError::Unavailable(_) => false,
        }
    }

    /// Kafka could not take the record now for a reason of its partition's (no acknowledgement
    /// in time, no leader, too few in-sync replicas, its leader's storage or connection), as
    /// opposed to one of the producer's or the whole cluster's (`AllBrokersDown`, a fatal error,
    /// the producer closed): replay then holds back the partition rather than the topic.
    pub fn is_partition_failure(&self) -> bool {
        match self {
            ProduceError::Timeout => true,
            ProduceError::Unavailable(code) => matches!(
                code.as_str(),
                "LeaderNotAvailable"
                    | "NotLeaderForPartition"
                    | "PreferredLeaderNotAvailable"
                    | "RequestTimedOut"
                    | "NotEnoughReplicas"
                    | "NotEnoughReplicasAfterAppend"
                    | "KafkaStorageError"
                    | "BrokerNotAvailable"
                    | "BrokerTransportFailure"
            ),
            _ => false,
        }
    }

    /// The `result` label of `qikchat_bridge_kafka_deliveries_total`: bounded by librdkafka's
    /// error enum, whose names are the only texts that become labels; any other text is `other`.
    pub fn metric_kind(&self) -> String {
        match self {
            ProduceError::QueueFull => "queue_full".into(),
            ProduceError::Timeout => "timeout".into(),
            ProduceError::TooLarge => "msg_size_too_large".into(),
            ProduceError::Rejected(code)
            | ProduceError::Refused(code)
            | ProduceError::Unavailable(code)
                if !code.is_empty() && code.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                snake_case(code)
            }
            ProduceError::Rejected(_) | ProduceError::Refused(_) | ProduceError::Unavailable(_) => {
                "other".into()
            }
        }
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// What the webhook handler needs from Kafka; the real one is [`KafkaSink`], tests may fake it.
pub trait Sink: Send + Sync + 'static {
    /// Sends a record and waits for its acknowledgement until `deadline`.
    fn send(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> impl Future<Output = Result<Delivered, ProduceError>> + Send;

    /// The largest [`Record::wire_size`] it takes (librdkafka's `message.max.bytes`).
    fn max_record_bytes(&self) -> usize {
        usize::MAX
    }

    /// Counts a record refused before [`Sink::send`] as `send` counts its own refusals: with a
    /// spool the size check comes first, and librdkafka never sees the record.
    fn count_refused(&self, _topic: &str, _error: &ProduceError) {}

    /// How many partitions `topic` has, when a keyed record's partition follows from its key
    /// alone ([`spread::partition_of`]); `None` when it does not or the count is unknown. Replay
    /// then holds back a partition that cannot take records, not its whole topic.
    fn key_partitions(&self, _topic: &str) -> impl Future<Output = Option<u32>> + Send {
        std::future::ready(None)
    }
}

/// How long replay waits for a topic's partition count; without it, it holds the whole topic.
const KEY_PARTITIONS_TIMEOUT: Duration = Duration::from_secs(5);

pub struct KafkaSink {
    /// Swapped for a new one when librdkafka declares it failed (see `replace`); senders hold
    /// the read lock only while handing a record over, never across an await.
    producer: RwLock<FutureProducer<BridgeContext>>,
    /// What the current producer was made from. Held while a new producer is made and swapped
    /// in, so a replacement and a rebuild never interleave.
    config: Mutex<ClientConfig>,
    /// What the current producer's context shares with the sink, swapped with the producer.
    attached: Mutex<Attached>,
    role: ProducerRole,
    metrics: Arc<Metrics>,
    fatal: Arc<Notify>,
    /// `message.max.bytes`; set again when the producer is made from rotated files (a
    /// `KAFKA_MESSAGE_MAX_BYTES_FILE`).
    max_record_bytes: AtomicUsize,
    /// Whether the partitioner hashes keys with murmur2 ([`spread::hashes_keys`]); set again
    /// when the producer is made from rotated files.
    keys_hashed: AtomicBool,
}

/// What a producer's context shares with its sink, made with the producer and put in place with
/// it (one lock, so the three are never seen from two producers).
#[derive(Clone)]
pub(crate) struct Attached {
    /// The producer's "retired" flag (see `BridgeContext`), set when it is replaced.
    retired: Arc<AtomicBool>,
    /// What hides the secrets of its properties in librdkafka's texts.
    scrubber: Arc<Scrubber>,
    /// Its latest error, which a failed readiness check quotes: a rebuild's candidate keeps its
    /// own until it is put in place, so it never explains the working producer's failure.
    last_error: Arc<LastError>,
}

/// The largest record librdkafka takes under `message.max.bytes` (as it reads the value).
fn max_record_bytes(message_max_bytes: Option<&String>) -> usize {
    message_max_bytes
        .and_then(|v| crate::kafka_props::number("message.max.bytes", v))
        .unwrap_or(crate::kafka_props::LIBRDKAFKA_MAX_RECORD_BYTES)
}

fn client_config(properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink").finish_non_exhaustive()
    }
}

/// One producer to flush, whichever is current later (see [`KafkaSink::flushing`]).
pub struct Flushing(FutureProducer<BridgeContext>);

impl Flushing {
    /// Waits up to `timeout` for its queued records to be delivered. Blocking.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.0.flush(Timeout::After(timeout))
    }

    /// Its records whose delivery reports have not come yet.
    pub fn in_flight(&self) -> i32 {
        self.0.in_flight_count()
    }
}

impl std::fmt::Debug for Flushing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flushing").finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Creates the producer; librdkafka validates every property here, so a typo in `-X` or a
    /// `KAFKA_*` variable stops start-up with librdkafka's own message.
    pub fn new(
        properties: &BTreeMap<String, String>,
        metrics: Arc<Metrics>,
        role: ProducerRole,
    ) -> Result<KafkaSink, ClientError> {
        let config = client_config(properties);
        let fatal = Arc::new(Notify::new());
        let scrubber = Arc::new(Scrubber::new(properties));
        let made = ProducerHandle::make(&config, scrubber, &metrics, role, &fatal)?;
        // In place from the start.
        made.attached.retired.store(false, Ordering::Relaxed);
        let max_record_bytes =
            AtomicUsize::new(max_record_bytes(properties.get("message.max.bytes")));
        let keys_hashed = AtomicBool::new(spread::hashes_keys(
            properties.get("partitioner").map(String::as_str),
        ));
        Ok(KafkaSink {
            max_record_bytes,
            keys_hashed,
            producer: RwLock::new(made.producer),
            attached: Mutex::new(made.attached),
            config: Mutex::new(config),
            role,
            metrics,
            fatal,
        })
    }

    fn producer(&self) -> RwLockReadGuard<'_, FutureProducer<BridgeContext>> {
        // A writer only swaps the value, so a poisoned lock still holds a whole producer.
        self.producer.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A handle on the current producer for blocking calls: holding the lock through them would
    /// make a waiting replacement block every sender on the runtime's threads (std's `RwLock`
    /// queues new readers behind a waiting writer).
    fn current(&self) -> FutureProducer<BridgeContext> {
        self.producer().clone()
    }

    /// librdkafka's reason when it has declared the current producer failed.
    pub fn fatal_error(&self) -> Option<String> {
        let (code, reason) = self.producer().client().fatal_error()?;
        Some(format!("{code:?}: {}", self.scrubber().scrub(&reason)))
    }

    /// What the current producer's context shares with the sink.
    fn attached(&self) -> Attached {
        self.attached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current producer's latest error.
    fn last_error(&self) -> Arc<LastError> {
        self.attached().last_error
    }

    /// What hides the current producer's secrets.
    fn scrubber(&self) -> Arc<Scrubber> {
        self.attached().scrubber
    }

    /// Sorts a librdkafka error for the answer; a fatal one also wakes `replace_on_fatal`.
    fn sort_error(&self, error: &KafkaError) -> ProduceError {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            self.fatal.notify_one();
        }
        ProduceError::from_kafka(error)
    }

    /// Waits for queued records to be delivered. Blocking; call off the runtime.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.flushing().flush(timeout)
    }

    /// The current producer, to flush in slices: a producer rebuilt meanwhile (a rotated
    /// credential) holds none of the records queued before it, and flushing it instead would
    /// end the wait while they are still in the old one.
    pub fn flushing(&self) -> Flushing {
        Flushing(self.current())
    }

    pub fn in_flight(&self) -> i32 {
        self.producer().in_flight_count()
    }
    /// Hands the record to librdkafka and waits for its delivery report until `deadline`.
    async fn deliver(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        let headers =
            record
                .headers
                .iter()
                .fold(OwnedHeaders::new_with_capacity(6), |h, (key, value)| {
                    h.insert(Header {
                        key,
                        value: Some(value),
                    })
                });
        let mut out = FutureRecord::to(record.topic)
            .payload(record.value)
            .headers(headers)
            .timestamp(record.timestamp_ms);
        if let Some(key) = &record.key {
            out = out.key(key.as_bytes());
        }
        // The guard is dropped before the await: the delivery future does not borrow it.
        let sent = self.producer().send_result(out);
        match sent {
            Err((e, _)) => Err(self.sort_error(&e)),
            // On timeout the delivery future is dropped, but librdkafka keeps the record until
            // message.timeout.ms (by default the ack timeout), so it may still arrive: a duplicate
            // the sender's retry makes, never a loss.
            Ok(delivery) => match tokio::time::timeout_at(deadline, delivery).await {
                Err(_) => Err(ProduceError::Timeout),
                Ok(Err(_canceled)) => Err(ProduceError::Unavailable("ProducerClosed".into())),
                Ok(Ok(Err((e, _)))) => Err(self.sort_error(&e)),
                Ok(Ok(Ok(d))) => Ok(Delivered::Kafka {
                    partition: d.partition,
                    offset: d.offset,
                }),
            },
        }
    }
}

impl Sink for KafkaSink {
    async fn send(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        let started = Instant::now();
        // A body that took the whole ack timeout to arrive: handed over now, the record could
        // only be delivered after its request was answered 503, and arrive twice with the retry.
        // Nothing was sent, so `kafka_deliveries_total` does not count it: a slow sender is no
        // Kafka fault, and the delivery-error alert would page for one.
        if deadline <= started {
            return Err(ProduceError::Timeout);
        }
        let topic_metrics = self.metrics.topic(record.topic);
        let result = self.deliver(record, deadline).await;
        match (topic_metrics, &result) {
            (Some(m), Ok(_)) => {
                m.delivered.inc();
                // The webhooks' send-to-report time, which the answers wait on: replay's
                // sends wait up to 30 s behind a backlog, past the buckets, and would pin
                // its p99 there after every outage.
                if self.role == ProducerRole::Webhooks {
                    m.delivery_duration.observe(started.elapsed().as_secs_f64());
                }
            }
            (Some(m), Err(e)) => m.failed(&e.metric_kind()),
            (None, Ok(_)) => self.metrics.count_elsewhere(record.topic, "ok"),
            (None, Err(e)) => self.metrics.count_elsewhere(record.topic, &e.metric_kind()),
        }
        result
    }

    fn max_record_bytes(&self) -> usize {
        self.max_record_bytes.load(Ordering::Relaxed)
    }

    fn count_refused(&self, topic: &str, error: &ProduceError) {
        match self.metrics.topic(topic) {
            Some(m) => m.failed(&error.metric_kind()),
            None => self.metrics.count_elsewhere(topic, &error.metric_kind()),
        }
    }

    async fn key_partitions(&self, topic: &str) -> Option<u32> {
        if !self.keys_hashed.load(Ordering::Relaxed) {
            return None;
        }
        let producer = self.current();
        let topic = topic.to_owned();
        let asked = tokio::task::spawn_blocking(move || {
            topic_metadata(&producer, &topic, KEY_PARTITIONS_TIMEOUT)
        })
        .await;
        match asked {
            Ok(Ok(partitions)) => u32::try_from(partitions).ok().filter(|&n| n > 0),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
