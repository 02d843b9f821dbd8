//! Readiness: the webhook producer's current instance has not failed and a broker answers its
//! metadata requests for the first topic; a rebuilt producer must pass the same metadata check.
//! And once the brokers answer, after start, the other topics: warned of when they are missing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};

use super::{BridgeContext, KafkaSink};

/// The last Kafka check readiness made: passed, or why not.
#[derive(Debug)]
pub struct KafkaCheck {
    ready: AtomicBool,
    why_not: Mutex<String>,
}

impl Default for KafkaCheck {
    fn default() -> KafkaCheck {
        KafkaCheck {
            ready: AtomicBool::new(false),
            why_not: Mutex::new("not checked yet".to_string()),
        }
    }
}

impl KafkaCheck {
    /// Records a check's outcome; whether the one before had passed.
    pub fn set(&self, outcome: Result<(), String>) -> bool {
        if let Err(why) = &outcome {
            *self.why_not.lock().unwrap_or_else(PoisonError::into_inner) = why.clone();
        }
        self.ready.swap(outcome.is_ok(), Ordering::SeqCst)
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Why the last check that failed failed.
    pub fn why_not(&self) -> String {
        self.why_not
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Keeps `check` passed while the producer has not failed and a broker answers its metadata
/// requests for `topic` without an error for it, checking every `interval` until `stop` turns
/// true; a failed check says which of these it was, for `/readyz`.
pub async fn watch_readiness(
    sink: Arc<KafkaSink>,
    topic: String,
    check: Arc<KafkaCheck>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // The first check is a change too: a bridge that never reached Kafka said nothing of it
    // itself, while QikchatBridgeKafkaUnreachable sends operators to this line.
    let mut first = true;
    loop {
        let probe = sink.clone();
        let t = topic.clone();
        let timeout = interval.max(Duration::from_millis(500));
        let ok = tokio::task::spawn_blocking(move || probe.readiness_check(&t, timeout))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        let was = check.set(ok.clone());
        match (&ok, was) {
            (Ok(()), false) => tracing::info!(topic, "Kafka answers metadata requests"),
            (Err(e), was) if was || first => {
                tracing::warn!(topic, error = %e, "Kafka check failed: not ready")
            }
            _ => {}
        }
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            () = crate::admin::stopped(&mut stop) => return,
        }
    }
}

/// How long the start-up topic check waits for the brokers' list of topics, and then before it
/// asks again.
const TOPIC_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
const TOPIC_CHECK_RETRY: Duration = Duration::from_secs(10);

/// Once the brokers answer, after start: a topic they do not offer refuses every record routed
/// to it (unless they create topics on first use), which readiness, probing one topic, does not
/// show; each is logged at `warn`. Asks again until an answer comes, or `stop`.
pub async fn warn_of_missing_topics(
    sink: Arc<KafkaSink>,
    topics: Vec<String>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let answer =
        missing_topics_once_answered(sink, topics, stop, TOPIC_CHECK_TIMEOUT, TOPIC_CHECK_RETRY);
    for (topic, reason) in answer.await.unwrap_or_default() {
        tracing::warn!(%topic, %reason, "the brokers do not offer this topic: unless they create topics on first use, records routed to it are answered 503, or spooled, until it exists and the bridge may write it");
    }
}

/// [`KafkaSink::missing_topics`], asked every `retry` (each ask waiting up to `timeout`) until a
/// broker answers; `None` when `stop` comes first.
pub(super) async fn missing_topics_once_answered(
    sink: Arc<KafkaSink>,
    topics: Vec<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    timeout: Duration,
    retry: Duration,
) -> Option<Vec<(String, String)>> {
    let topics = Arc::new(topics);
    loop {
        let (asking, wanted) = (sink.clone(), topics.clone());
        let answer =
            tokio::task::spawn_blocking(move || asking.missing_topics(&wanted, timeout)).await;
        match answer {
            Ok(Ok(missing)) => return Some(missing),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "topic check: no broker answered; asking again")
            }
            Err(_) => return None,
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            () = crate::admin::stopped(&mut stop) => return None,
        }
    }
}

impl KafkaSink {
    /// The topics among `topics` the brokers' metadata does not offer (one that does not exist,
    /// or that the bridge may not describe, or one with an error such as no leader yet), with
    /// why. Asked for all topics at once, which never makes a broker create one (a request naming
    /// a topic may). Blocking; call off the runtime.
    pub fn missing_topics(
        &self,
        topics: &[String],
        timeout: Duration,
    ) -> Result<Vec<(String, String)>, KafkaError> {
        let md = self.current().client().fetch_metadata(None, timeout)?;
        let missing = topics
            .iter()
            .filter_map(|t| {
                let reason = match md.topics().iter().find(|m| m.name() == t) {
                    None => "not in the brokers' metadata: it does not exist, or the bridge may \
                             not describe it"
                        .to_string(),
                    Some(m) => {
                        let code = rdkafka::error::RDKafkaErrorCode::from(m.error()?);
                        format!("{code} ({code:?})")
                    }
                };
                Some((t.clone(), reason))
            })
            .collect();
        Ok(missing)
    }

    /// The readiness test: the producer has not failed, and a broker answers `topic`'s metadata
    /// without an error for it; else which of these failed, for `/readyz`. Blocking; call off
    /// the runtime.
    pub fn readiness_check(&self, topic: &str, timeout: Duration) -> Result<(), String> {
        // Its metadata requests still work, but it refuses every record until replaced.
        if let Some(reason) = self.fatal_error() {
            return Err(format!("the producer has failed: {reason}"));
        }
        let last_error = self.last_error();
        match topic_metadata(&self.current(), topic, timeout) {
            Ok(_) => {
                last_error.clear();
                Ok(())
            }
            // Its error is the same whatever kept the brokers away; librdkafka's own says what.
            Err(TopicError::Unreachable(e)) => Err(format!(
                "no broker answered a metadata request for {topic} ({e}){}",
                last_error.cause(std::time::Instant::now())
            )),
            Err(TopicError::Refused(e)) => {
                let code = rdkafka::error::RDKafkaErrorCode::from(e);
                Err(format!(
                    "the brokers refuse topic {topic}: {code} ({code:?})"
                ))
            }
        }
    }
}

impl KafkaSink {
    /// False when a metadata request for `topic` found no broker to send it to within
    /// `timeout`: none is connected. A connected broker that is only slow to answer, or one
    /// that refuses the topic, counts as answering. Blocking; call off the runtime.
    pub fn brokers_answer(&self, topic: &str, timeout: Duration) -> bool {
        use rdkafka::types::RDKafkaErrorCode::{AllBrokersDown, BrokerTransportFailure};
        // librdkafka answers a metadata request that found no usable broker in time with a
        // transport error, and one sent but not answered in time with a timeout.
        !matches!(
            topic_metadata(&self.current(), topic, timeout),
            Err(TopicError::Unreachable(KafkaError::MetadataFetch(
                BrokerTransportFailure | AllBrokersDown
            )))
        )
    }
}

/// Why a producer could not use a topic: no broker answered, or one refused the topic.
#[derive(Debug)]
pub(super) enum TopicError {
    Unreachable(KafkaError),
    Refused(rdkafka::types::RDKafkaRespErr),
}

/// Asks a broker for `topic`'s metadata: it answered, and named no error for the topic
/// (authorization, unknown topic); how many partitions the topic has. Blocking.
pub(super) fn topic_metadata(
    producer: &FutureProducer<BridgeContext>,
    topic: &str,
    timeout: Duration,
) -> Result<usize, TopicError> {
    let md = producer
        .client()
        .fetch_metadata(Some(topic), timeout)
        .map_err(TopicError::Unreachable)?;
    let found = md.topics().first();
    match found.and_then(|t| t.error()) {
        Some(e) => Err(TopicError::Refused(e)),
        None => Ok(found.map_or(0, |t| t.partitions().len())),
    }
}
