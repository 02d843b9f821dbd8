//! Producer health from librdkafka's statistics callback: queue depth, and per broker the
//! connection state, round-trip time and transmit errors.

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
    /// librdkafka reports totals; Prometheus counters only go up, so deltas are added.
    last_tx_errors: Mutex<HashMap<String, u64>>,
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
            last_tx_errors: Mutex::new(HashMap::new()),
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
        Ok(())
    }

    pub fn update(&self, stats: &Statistics) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.queue_messages.set(clamp(stats.msg_cnt));
        self.queue_bytes.set(clamp(stats.msg_size));
        self.queue_max_messages.set(clamp(stats.msg_max));
        self.queue_max_bytes.set(clamp(stats.msg_size_max));
        let mut last = self
            .last_tx_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
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
            let before = last.insert(broker.name.clone(), broker.txerrs).unwrap_or(0);
            let delta = broker.txerrs.checked_sub(before).unwrap_or(broker.txerrs);
            self.broker_tx_errors
                .with_label_values(&label)
                .inc_by(delta);
        }
    }
}
