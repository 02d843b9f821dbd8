//! Producer health from librdkafka's statistics callback: queue depth, per broker the
//! connection state, round-trip time, transmit errors and produce requests, and per topic the
//! records per batch (how well `linger.ms` batches).

use std::collections::HashMap;
use std::sync::Mutex;

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
    /// librdkafka reports totals; Prometheus counters only go up, so deltas are added.
    last_totals: Mutex<HashMap<(String, Total), u64>>,
}

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

    pub fn update(&self, stats: &Statistics) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.queue_messages.set(clamp(stats.msg_cnt));
        self.queue_bytes.set(clamp(stats.msg_size));
        self.queue_max_messages.set(clamp(stats.msg_max));
        self.queue_max_bytes.set(clamp(stats.msg_size_max));
        let mut last = self.last_totals.lock().unwrap_or_else(|p| p.into_inner());
        let mut add = |counter: &IntCounterVec, broker: &str, kind: Total, total: u64| {
            let before = last.insert((broker.to_string(), kind), total).unwrap_or(0);
            // A smaller total means librdkafka's counter restarted (a new connection object).
            let delta = total.checked_sub(before).unwrap_or(total);
            counter.with_label_values(&[broker]).inc_by(delta);
        };
        // Bootstrap entries (node id -1) are placeholders, not brokers.
        for broker in stats.brokers.values().filter(|b| b.nodeid >= 0) {
            let label = [broker.name.as_str()];
            self.broker_up
                .with_label_values(&label)
                .set(i64::from(broker.state == "UP"));
            if let Some(rtt) = &broker.rtt {
                self.broker_rtt
                    .with_label_values(&label)
                    .set(rtt.avg as f64 / 1e6);
            }
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
    use rdkafka::statistics::{Broker, Topic, Window};

    use super::*;

    fn stats(produce_requests: i64, batches: i64, records: i64) -> Statistics {
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
            brokers: HashMap::from([(broker.name.clone(), broker)]),
            topics: HashMap::from([("t".to_string(), topic)]),
            ..Default::default()
        }
    }

    #[test]
    fn produce_requests_count_up_from_librdkafka_totals_and_batches_average_per_window() {
        let k = KafkaStats::new("x").expect("metrics");
        let requests = || k.produce_requests.with_label_values(&["b:9092/1"]).get();
        let per_batch = || k.batch_records.with_label_values(&["t"]).get();

        k.update(&stats(10, 10, 30));
        assert_eq!((requests(), per_batch()), (10, 3.0));
        k.update(&stats(25, 4, 10));
        assert_eq!((requests(), per_batch()), (25, 2.5));
        // An idle window leaves the last average; a restarted total counts from zero.
        k.update(&stats(5, 0, 0));
        assert_eq!((requests(), per_batch()), (30, 2.5));
    }
}
