//! Producer health from librdkafka's statistics callback: queue depth, per broker the
//! connection state, round-trip time, transmit errors and produce requests, and per topic the
//! records per batch (how well `linger.ms` batches).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use rdkafka::statistics::{Broker, Statistics};

pub struct KafkaStats {
    queue_messages: IntGauge,
    queue_bytes: IntGauge,
    queue_max_messages: IntGauge,
    queue_max_bytes: IntGauge,
    broker_up: IntGaugeVec,
    broker_rtt: GaugeVec,
    broker_tx_errors: IntCounterVec,
    produce_requests: IntCounterVec,
    batch_records: GaugeVec,
    /// librdkafka reports totals per client; Prometheus counters only go up, so each client's
    /// deltas are added (the spool's replay producer is a second client on the same brokers).
    /// With when each was last reported: a replaced producer's entries are dropped once stale.
    last_totals: Mutex<HashMap<TotalKey, (u64, Instant)>>,
    /// The next [`KafkaStats::client`] number.
    clients: AtomicU64,
    /// The brokers the per-broker gauges show now, so one that leaves is removed from them.
    shown: Mutex<HashSet<String>>,
}

/// A client (its [`KafkaStats::client`] number, not the name in its statistics: librdkafka cuts
/// that at 127 bytes, so with a long client.id the webhook and replay producers, made from the
/// same properties, report the same name, and each one's totals were taken for deltas of the
/// other's), a broker's node id, and which total. By node id, not name: librdkafka
/// renames a broker in place when its node moves to another host, with its totals carrying on,
/// and keyed by name the whole history would be added again under the new one.
type TotalKey = (u64, i32, Total);

/// How long a client's totals are kept after its last report: far longer than any sensible
/// statistics interval (5 s by default), so only producers that are gone (replaced, or rebuilt
/// after a rotation) lose theirs.
const STALE: Duration = Duration::from_secs(3600);

/// The librdkafka totals turned into counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Total {
    TxErrors,
    ProduceRequests,
}

impl std::fmt::Debug for KafkaStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStats").finish_non_exhaustive()
    }
}

impl KafkaStats {
    pub fn new(prefix: &str) -> prometheus::Result<KafkaStats> {
        let n = |s: &str| format!("{prefix}_{s}");
        Ok(KafkaStats {
            queue_messages: IntGauge::new(
                n("kafka_queue_messages"),
                "Records waiting in the producer queue",
            )?,
            queue_bytes: IntGauge::new(
                n("kafka_queue_bytes"),
                "Bytes waiting in the producer queue",
            )?,
            queue_max_messages: IntGauge::new(
                n("kafka_queue_max_messages"),
                "Producer queue capacity in records",
            )?,
            queue_max_bytes: IntGauge::new(
                n("kafka_queue_max_bytes"),
                "Producer queue capacity in bytes",
            )?,
            broker_up: IntGaugeVec::new(
                Opts::new(
                    n("kafka_broker_up"),
                    "1 when the connection to the broker is up",
                ),
                &["broker"],
            )?,
            broker_rtt: GaugeVec::new(
                Opts::new(
                    n("kafka_broker_rtt_seconds"),
                    "Average broker round-trip time in the last statistics window that had an answer",
                ),
                &["broker"],
            )?,
            broker_tx_errors: IntCounterVec::new(
                Opts::new(
                    n("kafka_broker_tx_errors_total"),
                    "Transmit errors towards the broker",
                ),
                &["broker"],
            )?,
            produce_requests: IntCounterVec::new(
                Opts::new(
                    n("kafka_produce_requests_total"),
                    "Produce requests sent to the broker (one carries a batch per partition)",
                ),
                &["broker"],
            )?,
            batch_records: GaugeVec::new(
                Opts::new(
                    n("kafka_batch_records"),
                    "Average records per batch (one partition's share of a produce request) in \
                     the last statistics window that sent any",
                ),
                &["topic"],
            )?,
            last_totals: Mutex::new(HashMap::new()),
            clients: AtomicU64::new(0),
            shown: Mutex::new(HashSet::new()),
        })
    }

    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.queue_messages.clone()))?;
        registry.register(Box::new(self.queue_bytes.clone()))?;
        registry.register(Box::new(self.queue_max_messages.clone()))?;
        registry.register(Box::new(self.queue_max_bytes.clone()))?;
        registry.register(Box::new(self.broker_up.clone()))?;
        registry.register(Box::new(self.broker_rtt.clone()))?;
        registry.register(Box::new(self.broker_tx_errors.clone()))?;
        registry.register(Box::new(self.produce_requests.clone()))?;
        registry.register(Box::new(self.batch_records.clone()))?;
        Ok(())
    }

    /// A number for a new client, which passes it with each of its statistics to [`update`].
    ///
    /// [`update`]: KafkaStats::update
    pub fn client(&self) -> u64 {
        self.clients.fetch_add(1, Ordering::Relaxed)
    }

    /// Applies the statistics of `client` (see [`KafkaStats::client`]). Counters add every
    /// client's traffic; the gauges (queue, brokers, batches) describe the `primary` client
    /// alone, the webhook producer whose queue and batching decide the answers, instead of
    /// flapping between two producers.
    pub fn update(&self, client: u64, stats: &Statistics, primary: bool) {
        self.update_at(client, stats, primary, Instant::now());
    }

    fn update_at(&self, client: u64, stats: &Statistics, primary: bool, now: Instant) {
        let mut last = self.last_totals.lock().unwrap_or_else(|p| p.into_inner());
        last.retain(|_, (_, seen)| now.saturating_duration_since(*seen) < STALE);
        let mut add = |counter: &IntCounterVec, broker: &Broker, kind: Total, total: u64| {
            let key = (client, broker.nodeid, kind);
            let before = last.insert(key, (total, now)).map_or(0, |(t, _)| t);
            // Should a total ever go down, it counts from zero rather than underflowing.
            let delta = total.checked_sub(before).unwrap_or(total);
            counter
                .with_label_values(&[broker.name.as_str()])
                .inc_by(delta);
        };
        // Bootstrap entries (node id -1) are placeholders, not brokers.
        for broker in stats.brokers.values().filter(|b| b.nodeid >= 0) {
            add(
                &self.broker_tx_errors,
                broker,
                Total::TxErrors,
                broker.txerrs,
            );
            let produce = broker.req.get("Produce").copied().unwrap_or(0);
            add(
                &self.produce_requests,
                broker,
                Total::ProduceRequests,
                u64::try_from(produce).unwrap_or(0),
            );
        }
        if !primary {
            return;
        }
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.queue_messages.set(clamp(stats.msg_cnt));
        self.queue_bytes.set(clamp(stats.msg_size));
        self.queue_max_messages.set(clamp(stats.msg_max));
        self.queue_max_bytes.set(clamp(stats.msg_size_max));
        // A broker in INIT is not needed: librdkafka connects only to the leaders it writes to
        // (`enable.sparse.connections`), so on a larger cluster most stay there for good, and one
        // that is no longer needed goes back there (even after it was lost). Reporting them as
        // down would keep an alert firing for nothing, so they leave the gauges, as do brokers
        // gone from the cluster.
        let known: Vec<_> = stats
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && b.state != "INIT")
            .collect();
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        let now_shown: HashSet<String> = known.iter().map(|b| b.name.clone()).collect();
        for gone in shown.difference(&now_shown) {
            let _ = self.broker_up.remove_label_values(&[gone.as_str()]);
            let _ = self.broker_rtt.remove_label_values(&[gone.as_str()]);
        }
        *shown = now_shown;
        for broker in known {
            let label = [broker.name.as_str()];
            self.broker_up
                .with_label_values(&label)
                .set(i64::from(broker.state == "UP"));
            // A window without an answer averages 0: that would show a broker that stopped
            // answering as the fastest. It keeps the last figure instead.
            if let Some(rtt) = broker.rtt.as_ref().filter(|rtt| rtt.cnt > 0) {
                self.broker_rtt
                    .with_label_values(&label)
                    .set(rtt.avg as f64 / 1e6);
            }
        }
        for (name, topic) in &stats.topics {
            // An idle window keeps the last figure: "no batches" is not "batches of zero".
            if topic.batchcnt.cnt > 0 {
                self.batch_records
                    .with_label_values(&[name.as_str()])
                    .set(topic.batchcnt.sum as f64 / topic.batchcnt.cnt as f64);
            }
        }
    }
}

pub mod raw;

#[cfg(test)]
mod tests;
