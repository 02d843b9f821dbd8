//! A producer made again from rotated files: checked to reach a broker and the topic before it
//! takes over, the one it replaced left to deliver what it holds, and one found unusable dropped
//! without holding up the verdict.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::util::Timeout;

use super::super::{client_config, topic_metadata, BridgeContext, KafkaSink, TopicError};
use super::RebuildError;
use crate::kafka_props::Scrubber;

impl KafkaSink {
    /// Makes a producer from `properties`, checks that it reaches a broker and reads `topic`'s
    /// metadata (so credentials the brokers refuse never replace working ones), and puts it in
    /// place unless `cancel` was set meanwhile. Returns the replaced producer, for [`retire`].
    /// Blocking: call off the runtime.
    pub fn rebuild(
        &self,
        properties: &BTreeMap<String, String>,
        topic: &str,
        warm_up: Duration,
        cancel: &AtomicBool,
    ) -> Result<ProducerHandle, RebuildError> {
        let fresh = client_config(properties);
        // From the new properties: rotated secrets are hidden from the new producer's texts.
        let scrubber = Arc::new(Scrubber::new(properties));
        let candidate = self
            .make(&fresh, scrubber.clone())
            .map_err(|e| RebuildError::Refused(e.to_string()))?;
        if let Err(e) = usable(&candidate, &scrubber, topic, warm_up) {
            discard(candidate);
            return Err(e);
        }
        let mut config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        if cancel.load(Ordering::SeqCst) {
            return Err(RebuildError::Cancelled);
        }
        let mut old = self.put(candidate);
        old.message_timeout = message_timeout(config.get("message.timeout.ms"));
        let keys_hashed = super::super::spread::hashes_keys(fresh.get("partitioner"));
        self.keys_hashed.store(keys_hashed, Ordering::Relaxed);
        let largest = super::super::max_record_bytes(properties.get("message.max.bytes"));
        self.max_record_bytes.store(largest, Ordering::Relaxed);
        *config = fresh;
        Ok(old)
    }

    /// The property `key` of the current producer (for tests).
    pub fn property(&self, key: &str) -> Option<String> {
        let config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        config.get(key).map(str::to_string)
    }
}

/// Whether a new producer reached a broker that let it read `topic`'s metadata within `warm_up`,
/// and was not declared failed just after. Blocking.
fn usable(
    candidate: &ProducerHandle,
    scrubber: &Scrubber,
    topic: &str,
    warm_up: Duration,
) -> Result<(), RebuildError> {
    match topic_metadata(&candidate.producer, topic, warm_up) {
        Ok(_) => {}
        // Which of those its own error does not say; librdkafka's last one does (scrubbed).
        Err(TopicError::Unreachable(e)) => {
            return Err(RebuildError::Unreachable(format!(
                "{}{}",
                scrubber.scrub(&e.to_string()),
                candidate
                    .attached
                    .last_error
                    .cause(std::time::Instant::now())
            )))
        }
        Err(TopicError::Refused(e)) => {
            return Err(RebuildError::TopicRefused(format!(
                "{:?}",
                RDKafkaErrorCode::from(e)
            )))
        }
    }
    // Whatever spelling of `enable.idempotence` (librdkafka also takes `1` and `t`): a
    // producer without idempotence never goes fatal, so the check costs it one second.
    settled(&candidate.producer, SETTLE.min(warm_up), scrubber)
}

/// Drops a producer that was not put in place on a thread of its own: librdkafka's destroy joins
/// its threads, and one waiting for a token from an identity provider that does not answer holds
/// it for curl's 20 s timeout, which delayed the failed rotation's log line and metric by as
/// much. The exit skips what a client still running would crash (see `clients_alive`).
fn discard(candidate: ProducerHandle) {
    let dropping = std::thread::Builder::new()
        .name("discard-producer".into())
        .spawn(move || drop(candidate));
    if let Err(e) = dropping {
        tracing::warn!(error = %e, "no thread to drop a producer on: dropped here");
    }
}

/// How long a new idempotent producer is watched, once it read the topic's metadata, for a
/// refused producer id: librdkafka asks for one as soon as it reaches a broker, so the answer
/// takes a round trip or two; long enough for a distant cluster, short for a rotation.
const SETTLE: Duration = Duration::from_secs(1);

/// Whether `producer` was declared failed within `within`. Blocking.
/// Its reason is shown without the secrets `scrubber` hides.
fn settled(
    producer: &FutureProducer<BridgeContext>,
    within: Duration,
    scrubber: &Scrubber,
) -> Result<(), RebuildError> {
    let until = std::time::Instant::now() + within;
    loop {
        if let Some((code, reason)) = producer.client().fatal_error() {
            let reason = scrubber.scrub(&reason);
            return Err(RebuildError::Failed(format!("{code:?}: {reason}")));
        }
        if std::time::Instant::now() >= until {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long a retired producer's records may still wait: librdkafka's `message.timeout.ms`, or
/// its default, 300 s, for 0, which librdkafka takes for no limit. A wait of 0 dropped the
/// producer a second after its replacement, purging records a slow broker was about to take; no
/// limit would keep one whose old credentials the brokers refuse, retrying for ever, at every
/// rotation. Its webhooks were answered by then, and replay sends a purged record again.
pub(in crate::producer) fn message_timeout(ms: Option<&str>) -> Duration {
    ms.and_then(|ms| crate::kafka_props::number::<u64>("message.timeout.ms", ms))
        .filter(|&ms| ms > 0)
        .map_or(Duration::from_secs(300), Duration::from_millis)
}

/// A producer with its "retired" flag; once replaced (flag set, its statistics off the gauges),
/// also how long its records may still wait.
pub struct ProducerHandle {
    pub(in crate::producer) producer: FutureProducer<BridgeContext>,
    /// Its retired flag, the scrubber of the properties it was made from and its latest error.
    pub(in crate::producer) attached: super::super::Attached,
    pub(in crate::producer) message_timeout: Duration,
}

impl std::fmt::Debug for ProducerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerHandle").finish_non_exhaustive()
    }
}

/// Lets a replaced producer deliver what it holds before it is dropped (dropping purges its
/// queue): for as long as its records may wait, its own `message.timeout.ms`. Blocking.
pub fn retire(old: ProducerHandle) {
    let producer = old.producer;
    let wait = old.message_timeout + Duration::from_secs(1);
    if let Err(e) = producer.flush(Timeout::After(wait)) {
        tracing::warn!(error = %e, left = producer.in_flight_count(), "the replaced producer's records were not all delivered");
    }
}
