//! Every metric the bridge exports, defined in one place, registered in one registry per app.
//!
//! Label sets are bounded by construction: outcomes, event types, auth reasons and topics are
//! enumerated at start-up (handles resolved then, so the request path does no label lookups),
//! and Kafka error kinds come from librdkafka's finite error enum.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::auth::AuthFailure;
use crate::error::Outcome;
use crate::kafka_stats::KafkaStats;
use crate::producer::ProducerRole;
use crate::topics::EventType;

mod log_lines;
#[cfg(target_os = "linux")]
mod process;
mod spool;
pub use spool::SpoolMetrics;

const PREFIX: &str = "qikchat_bridge";

/// Request latency buckets: fine at the low end where a healthy bridge answers, and around
/// Qikchat's 2 s limit where answers start to fail. To these [`latency_buckets`] adds the edge
/// QikchatBridgeResponsesNearTimeout's p99 compares with ([`near_timeout_edge`]: 1.3 s at the
/// default ack timeout). 1.6 and 1.8 keep the 503s written at the default 1.5 s ack deadline
/// apart from answers near the limit: in one bucket up to 2 s, a p99 of them read as 1.95 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 1.6, 1.8, 2.0, 5.0,
];

/// The bridge's default `--ack-timeout`, for metrics made outside the app (tests, examples).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_millis(1500);

/// The answer time QikchatBridgeResponsesNearTimeout warns of at p99: 13/15 of the ack timeout
/// (1.3 s at the default 1.5 s), which the rule computes from `ack_timeout_seconds` with the same
/// two float operations, so the two are equal to the bit. Below an ack timeout of 1.875 s it lies
/// above the time a webhook spooled while Kafka is down waits for Kafka (1.25 s by default): by
/// 50 ms at the default, and about 12% of the ack timeout below 1 s, so its answer stays under
/// the edge while the spool's commit takes less.
pub fn near_timeout_edge(ack_timeout: Duration) -> f64 {
    ack_timeout.as_secs_f64() * 13.0 / 15.0
}

/// [`LATENCY_BUCKETS`] with [`near_timeout_edge`] among them. An edge, because between two edges
/// histogram_quantile interpolates: with 1.0 and 1.5 around it, the p99 would cross 1.3 s only
/// once about 2.3% of answers took over 1 s, and at a 1 s ack timeout the webhooks spooled at
/// 0.75 s, all in the bucket up to 1 s, would read as a p99 of 0.995 s, over the 0.867 s edge.
/// Above an ack timeout of 2.5 s a last edge at twice it keeps a finite bucket above the near-
/// timeout edge: answers past the top edge are counted in `+Inf` only, where histogram_quantile
/// reads the top edge, so with the near-timeout edge on top (an ack timeout over 5.77 s) its
/// p99 could never pass it.
fn latency_buckets(ack_timeout: Duration) -> Vec<f64> {
    let mut buckets = LATENCY_BUCKETS.to_vec();
    buckets.push(near_timeout_edge(ack_timeout));
    let top = ack_timeout.as_secs_f64() * 2.0;
    if top > 5.0 {
        buckets.push(top);
    }
    buckets.sort_by(f64::total_cmp);
    buckets.dedup();
    buckets
}

#[derive(Debug)]
pub struct TopicMetrics {
    pub delivery_duration: Histogram,
    pub delivered: IntCounter,
    deliveries: IntCounterVec,
    topic: String,
}

impl TopicMetrics {
    /// Counts a failed delivery under its error kind (a bounded set).
    pub fn failed(&self, kind: &str) {
        self.deliveries
            .with_label_values(&[self.topic.as_str(), kind])
            .inc();
    }
}

/// How far past the ack timeout an answer must be to count as slow: the deadline's own 503 takes
/// a moment to be written, and a starved runtime shows as far more.
pub const LATE_BY: Duration = Duration::from_millis(100);

pub struct Metrics {
    pub registry: Registry,
    requests: Vec<IntCounter>,
    durations: Vec<Histogram>,
    events: Vec<IntCounter>,
    auth_failures: Vec<IntCounter>,
    pub slow_responses: IntCounter,
    cancelled: IntCounter,
    pub in_flight: IntGauge,
    pub body_bytes: Histogram,
    pub ready: IntGauge,
    /// Readiness's Kafka check alone, which a spool with room does not make the bridge unready
    /// over: a dead broker leaves no other trace while the webhooks go to the spool (librdkafka
    /// drops a broker it has no records for from its statistics' connected ones).
    pub kafka_reachable: IntGauge,
    /// By producer role: librdkafka declared the producer failed and the bridge made a new one.
    pub producers_replaced: IntCounterVec,
    /// By producer role and result: a file the producer reads changed and it was made again.
    kafka_reloads: IntCounterVec,
    /// By producer role: 1 while the producer's files changed and it could not be made from them.
    kafka_client_stale: IntGaugeVec,
    /// 1 while `--auth-file` cannot be used, so a credential removed from it still works.
    pub auth_file_stale: IntGauge,
    /// A handful of topics: a scan of short names beats hashing them on every request.
    topics: Vec<TopicMetrics>,
    /// `kafka_deliveries_total`, for topics not among `topics` (see [`Metrics::count_elsewhere`]).
    deliveries: IntCounterVec,
    pub kafka_stats: Arc<KafkaStats>,
    pub spool: SpoolMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn name(short: &str) -> String {
    format!("{PREFIX}_{short}")
}

/// The `kafka_deliveries_total` results shown at 0 from the start (see `Metrics::new`).
const DELIVERY_ERRORS: [&str; 4] = [
    "timeout",
    "queue_full",
    "msg_size_too_large",
    "producer_closed",
];

impl Metrics {
    /// With the default ack timeout's buckets and gauge.
    pub fn new(topics: &[String]) -> prometheus::Result<Metrics> {
        Self::with_ack_timeout(topics, DEFAULT_ACK_TIMEOUT)
    }

    pub fn with_ack_timeout(
        topics: &[String],
        ack_timeout: Duration,
    ) -> prometheus::Result<Metrics> {
        let buckets = latency_buckets(ack_timeout);
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c);

        let requests_vec = IntCounterVec::new(
            Opts::new(
                name("requests_total"),
                "Webhook requests answered, by outcome and HTTP status",
            ),
            &["outcome", "status"],
        )?;
        let durations_vec = HistogramVec::new(
            HistogramOpts::new(
                name("request_duration_seconds"),
                "Time from request to answer, by outcome",
            )
            .buckets(buckets.clone()),
            &["outcome"],
        )?;
        let events_vec = IntCounterVec::new(
            Opts::new(
                name("events_total"),
                "Authenticated webhook bodies, by event type",
            ),
            &["event_type"],
        )?;
        let auth_vec = IntCounterVec::new(
            Opts::new(
                name("auth_failures_total"),
                "Requests refused with 401, by reason",
            ),
            &["reason"],
        )?;
        let deliveries = IntCounterVec::new(
            Opts::new(
                name("kafka_deliveries_total"),
                "Records sent to Kafka, by topic and result (ok or the error kind)",
            ),
            &["topic", "result"],
        )?;
        let delivery_vec = HistogramVec::new(
            HistogramOpts::new(
                name("kafka_delivery_duration_seconds"),
                "Time from send to Kafka's delivery report, by topic",
            )
            .buckets(buckets),
            &["topic"],
        )?;
        let slow_responses = IntCounter::new(
            name("slow_responses_total"),
            "Webhook answers written more than 100 ms past the ack timeout (the bridge itself late; 503s at the deadline and 408s are not counted)",
        )?;
        let cancelled = IntCounter::new(
            name("requests_cancelled_total"),
            "Webhook requests cut off before their answer (an HTTP/2 stream reset, the end of the shutdown grace)",
        )?;
        let producers_replaced = IntCounterVec::new(
            Opts::new(
                name("kafka_producers_replaced_total"),
                "Producers replaced after a fatal librdkafka error, by role (webhooks or replay)",
            ),
            &["role"],
        )?;
        let kafka_reloads = IntCounterVec::new(
            Opts::new(
                name("kafka_client_reloads_total"),
                "Producers made again because a file they read changed (a rotated password or certificate), by role and result (rebuilt, or failed: the old producer stays)",
            ),
            &["role", "result"],
        )?;
        let kafka_client_stale = IntGaugeVec::new(
            Opts::new(
                name("kafka_client_files_stale"),
                "1 while a file the producer reads changed and the producer could not be made from it (it still runs on the old ones), by role",
            ),
            &["role"],
        )?;
        let auth_file_stale = IntGauge::new(
            name("auth_file_stale"),
            "1 while --auth-file cannot be used (unreadable, not a regular file, invalid, or holding no credential): the credentials it held last stay accepted, a removed one too",
        )?;
        let in_flight = IntGauge::new(
            name("requests_in_flight"),
            "Webhook requests being handled now",
        )?;
        let body_bytes = Histogram::with_opts(
            HistogramOpts::new(
                name("request_body_bytes"),
                "Size of authenticated request bodies",
            )
            .buckets(prometheus::exponential_buckets(256.0, 4.0, 8)?),
        )?;
        let ready = IntGauge::new(name("ready"), "1 when /readyz answers 200")?;
        // For the alert on answer times near it: a threshold written into the rules would hold
        // for one setting only.
        let ack_timeout_gauge = Gauge::new(
            name("ack_timeout_seconds"),
            "The configured --ack-timeout: the longest a webhook waits for Kafka's acknowledgement",
        )?;
        ack_timeout_gauge.set(ack_timeout.as_secs_f64());
        let kafka_reachable = IntGauge::new(
            name("kafka_reachable"),
            "1 when the webhook producer has not failed and a broker answered its last metadata request",
        )?;
        let build_info = IntGauge::with_opts(
            Opts::new(
                name("build_info"),
                "Always 1; the labels say which build runs",
            )
            .const_label("version", env!("CARGO_PKG_VERSION"))
            .const_label("commit", env!("QIKCHAT_BRIDGE_GIT_COMMIT")),
        )?;
        build_info.set(1);
        let kafka_stats = Arc::new(KafkaStats::new(PREFIX)?);
        for c in [
            Box::new(requests_vec.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(durations_vec.clone()),
            Box::new(events_vec.clone()),
            Box::new(auth_vec.clone()),
            Box::new(deliveries.clone()),
            Box::new(delivery_vec.clone()),
            Box::new(slow_responses.clone()),
            Box::new(cancelled.clone()),
            Box::new(producers_replaced.clone()),
            Box::new(kafka_reloads.clone()),
            Box::new(kafka_client_stale.clone()),
            Box::new(auth_file_stale.clone()),
            Box::new(in_flight.clone()),
            Box::new(body_bytes.clone()),
            Box::new(ready.clone()),
            Box::new(ack_timeout_gauge),
            Box::new(kafka_reachable.clone()),
            Box::new(build_info),
        ] {
            reg(c)?;
        }
        kafka_stats.register(&registry)?;
        reg(Box::new(log_lines::LogLinesDropped::new(name(
            "log_lines_dropped_total",
        ))?))?;
        let spool = SpoolMetrics::new(&registry)?;
        #[cfg(target_os = "linux")]
        reg(Box::new(process::Process::for_self()))?;

        // Resolving every label now makes each series visible (at 0) from the first scrape, so
        // rate() and alerts work before the first failure happens.
        let requests = Outcome::ALL
            .iter()
            .map(|o| requests_vec.with_label_values(&[o.label(), o.status().as_str()]))
            .collect();
        let durations = Outcome::ALL
            .iter()
            .map(|o| durations_vec.with_label_values(&[o.label()]))
            .collect();
        let events = EventType::ALL
            .iter()
            .map(|e| events_vec.with_label_values(&[e.as_str()]))
            .collect();
        for role in ProducerRole::ALL {
            producers_replaced.with_label_values(&[role.label()]);
            kafka_client_stale.with_label_values(&[role.label()]);
            for result in ["rebuilt", "failed"] {
                kafka_reloads.with_label_values(&[role.label(), result]);
            }
        }
        let auth_failures = AuthFailure::ALL
            .iter()
            .map(|r| auth_vec.with_label_values(&[r.as_str()]))
            .collect();
        // The results a healthy bridge meets first, resolved now as well: a series born at its
        // first failure already holds 1, which rate() cannot tell from its absence, so the
        // delivery-error alert would miss a short outage.
        for t in topics {
            for result in DELIVERY_ERRORS {
                deliveries.with_label_values(&[t.as_str(), result]);
            }
        }
        let topics = topics
            .iter()
            .map(|t| TopicMetrics {
                delivery_duration: delivery_vec.with_label_values(&[t.as_str()]),
                delivered: deliveries.with_label_values(&[t.as_str(), "ok"]),
                deliveries: deliveries.clone(),
                topic: t.clone(),
            })
            .collect();

        Ok(Metrics {
            registry,
            requests,
            durations,
            events,
            auth_failures,
            slow_responses,
            cancelled,
            in_flight,
            producers_replaced,
            kafka_reloads,
            kafka_client_stale,
            auth_file_stale,
            body_bytes,
            ready,
            kafka_reachable,
            deliveries,
            topics,
            kafka_stats,
            spool,
        })
    }

    /// Counts an answer given `elapsed` after the request arrived, which was `due` by then: the
    /// ack timeout, or the moment the sender's body arrived if that was later.
    pub fn answered(&self, outcome: Outcome, elapsed: Duration, due: Duration) {
        self.requests[outcome.index()].inc();
        self.durations[outcome.index()].observe(elapsed.as_secs_f64());
        // A 503 at the ack deadline is answered a moment after it by design, and a 408, or a
        // body that came after the deadline, waited on the sender: counting those made the alert
        // on this counter a copy of the error alerts, or the sender's. What is left is the bridge
        // itself answering late (a starved runtime, a blocked thread, a stalled disk).
        let late = elapsed > due + LATE_BY;
        if late && outcome != Outcome::BodyTimeout {
            self.slow_responses.inc();
        }
    }

    /// A request dropped before it was answered: it is in none of the answers' counts, and its
    /// record may be stored all the same.
    pub fn cancelled(&self) {
        self.cancelled.inc();
    }

    /// A producer made again from changed files (`rebuilt`), or not (`failed`).
    pub fn kafka_reloaded(&self, role: &str, rebuilt: bool) {
        let result = if rebuilt { "rebuilt" } else { "failed" };
        // The gauge first: a scrape in between sees the new state with the old count, never
        // a "rebuilt" still marked stale.
        self.kafka_client_stale
            .with_label_values(&[role])
            .set(i64::from(!rebuilt));
        self.kafka_reloads.with_label_values(&[role, result]).inc();
    }

    pub fn event(&self, event_type: EventType) {
        self.events[event_type.index()].inc();
    }

    pub fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures[reason as usize].inc();
    }

    /// Per-topic handles; every topic the bridge writes was registered at start-up.
    pub fn topic(&self, topic: &str) -> Option<&TopicMetrics> {
        self.topics.iter().find(|m| m.topic == topic)
    }

    /// Counts a delivery to a topic the configuration does not name: replay's of a record spooled
    /// under an earlier configuration, which routed it elsewhere. A handful at most (the topics
    /// of earlier configurations whose records outlived them), so the label stays bounded.
    pub fn count_elsewhere(&self, topic: &str, result: &str) {
        self.deliveries.with_label_values(&[topic, result]).inc();
    }

    /// The Prometheus text exposition of everything registered.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for I/O reasons; a family the encoder rejects is a bug.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests;
