//! Producer health from librdkafka's statistics callback: queue depth, per broker the
//! connection state, round-trip time, transmit errors and produce requests, and per topic the
//! records per batch (how well `linger.ms` batches).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use rdkafka::statistics::Statistics;

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
}

/// A client's name, a broker's, and which total.
type TotalKey = (String, String, Total);

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
                    "Average broker round-trip time over the last statistics window",
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

    /// Applies one client's statistics. Counters add every client's traffic; the gauges (queue,
    /// brokers, batches) describe the `primary` client alone, the webhook producer whose queue
    /// and batching decide the answers, instead of flapping between two producers.
    pub fn update(&self, stats: &Statistics, primary: bool) {
        self.update_at(stats, primary, Instant::now());
    }

    fn update_at(&self, stats: &Statistics, primary: bool, now: Instant) {
        let mut last = self.last_totals.lock().unwrap_or_else(|p| p.into_inner());
        last.retain(|_, (_, seen)| now.saturating_duration_since(*seen) < STALE);
        let mut add = |counter: &IntCounterVec, broker: &str, kind: Total, total: u64| {
            let key = (stats.name.clone(), broker.to_string(), kind);
            let before = last.insert(key, (total, now)).map_or(0, |(t, _)| t);
            // Should a total ever go down, it counts from zero rather than underflowing.
            let delta = total.checked_sub(before).unwrap_or(total);
            counter.with_label_values(&[broker]).inc_by(delta);
        };
        // Bootstrap entries (node id -1) are placeholders, not brokers.
        for broker in stats.brokers.values().filter(|b| b.nodeid >= 0) {
            add(
                &self.broker_tx_errors,
                &broker.name,
                Total::TxErrors,
                broker.txerrs,
            );
            let produce = broker.req.get("Produce").copied().unwrap_or(0);
            add(
                &self.produce_requests,
                &broker.name,
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
        // A broker in INIT was never needed: librdkafka connects only to the leaders it writes
        // to (`enable.sparse.connections`), so on a larger cluster most stay there for good,
        // and reporting them as down would keep an alert firing for nothing.
        let known = stats
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && b.state != "INIT");
        for broker in known {
            let label = [broker.name.as_str()];
            self.broker_up
                .with_label_values(&label)
                .set(i64::from(broker.state == "UP"));
            if let Some(rtt) = &broker.rtt {
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

#[cfg(test)]
mod tests {
    use prometheus::core::Collector;
    use rdkafka::statistics::{Broker, Topic, Window};

    use super::*;

    fn stats(client: &str, produce_requests: i64, batches: i64, records: i64) -> Statistics {
        let broker = Broker {
            name: "b:9092/1".into(),
            nodeid: 1,
            state: "UP".into(),
            req: HashMap::from([("Produce".to_string(), produce_requests)]),
            ..Default::default()
        };
        let topic = Topic {
            topic: "t".into(),
            batchcnt: Window {
                cnt: batches,
                sum: records,
                ..Default::default()
            },
            ..Default::default()
        };
        Statistics {
            name: client.into(),
            msg_cnt: produce_requests as u64,
            brokers: HashMap::from([(broker.name.clone(), broker)]),
            topics: HashMap::from([("t".to_string(), topic)]),
            ..Default::default()
        }
    }

    fn figures(k: &KafkaStats) -> (u64, f64, i64) {
        (
            k.produce_requests.with_label_values(&["b:9092/1"]).get(),
            k.batch_records.with_label_values(&["t"]).get(),
            k.queue_messages.get(),
        )
    }

    #[test]
    fn produce_requests_count_up_from_librdkafka_totals_and_batches_average_per_window() {
        let k = KafkaStats::new("x").expect("metrics");
        k.update(&stats("a", 10, 10, 30), true);
        assert_eq!(figures(&k), (10, 3.0, 10));
        k.update(&stats("a", 25, 4, 10), true);
        assert_eq!(figures(&k), (25, 2.5, 25));
        // An idle window leaves the last average; a total that went down counts from zero.
        k.update(&stats("a", 5, 0, 0), true);
        assert_eq!(figures(&k), (30, 2.5, 5));
    }

    #[test]
    fn brokers_the_producer_never_connected_to_are_not_reported_down() {
        let k = KafkaStats::new("x").expect("metrics");
        let mut s = stats("a", 1, 1, 1);
        let idle = Broker {
            name: "c:9092/2".into(),
            nodeid: 2,
            state: "INIT".into(),
            ..Default::default()
        };
        let lost = Broker {
            name: "d:9092/3".into(),
            nodeid: 3,
            state: "TRY_CONNECT".into(),
            ..Default::default()
        };
        s.brokers.insert(idle.name.clone(), idle);
        s.brokers.insert(lost.name.clone(), lost);
        k.update(&s, true);
        let mut up: Vec<(String, i64)> = Collector::collect(&k.broker_up)
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|m| {
                let broker = m.get_label()[0].value().to_string();
                (broker, m.get_gauge().get_value() as i64)
            })
            .collect();
        up.sort();
        assert_eq!(
            up,
            [("b:9092/1".to_string(), 1), ("d:9092/3".to_string(), 0)]
        );
    }

    #[test]
    fn the_totals_of_a_client_gone_for_an_hour_are_forgotten() {
        let k = KafkaStats::new("x").expect("metrics");
        let start = Instant::now();
        for (i, client) in ["rdkafka#producer-1", "rdkafka#producer-2"]
            .iter()
            .enumerate()
        {
            k.update_at(&stats(client, 5, 1, 1), true, start + STALE * i as u32);
        }
        let clients = |k: &KafkaStats| {
            let last = k.last_totals.lock().unwrap();
            let mut names: Vec<String> = last.keys().map(|(c, _, _)| c.clone()).collect();
            names.sort();
            names.dedup();
            names
        };
        assert_eq!(clients(&k), ["rdkafka#producer-2"]);
        // Its traffic was counted before: 5 + 5.
        assert_eq!(figures(&k).0, 10);
    }

    #[test]
    fn a_second_client_adds_its_traffic_but_leaves_the_gauges_to_the_primary() {
        let k = KafkaStats::new("x").expect("metrics");
        k.update(&stats("webhooks", 100, 10, 50), true);
        k.update(&stats("replay", 7, 7, 7), false);
        assert_eq!(figures(&k), (107, 5.0, 100));
        k.update(&stats("webhooks", 150, 10, 40), true);
        k.update(&stats("replay", 9, 2, 2), false);
        assert_eq!(figures(&k), (159, 4.0, 150));
    }
}
