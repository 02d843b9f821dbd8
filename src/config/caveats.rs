//! The caveats of librdkafka properties' values: said at start-up, and again when rotated Kafka
//! client files (`KAFKA_<NAME>_FILE`) give a property a value that earns a new one.

use std::time::Duration;

use crate::kafka_props::KafkaProperties;

/// What the properties are judged against (the bridge's wait for Kafka, its record room), and
/// the caveats last said, so a rotation repeats none of them.
#[derive(Debug, Clone)]
pub struct KafkaCaveats {
    wait: Duration,
    spooled: bool,
    room: usize,
    said: Vec<String>,
}

impl KafkaCaveats {
    /// For a bridge that waits `wait` for Kafka, spooling or not, with records of up to `room`
    /// bytes; the caveats of `properties`, said at start-up, count as said.
    pub(crate) fn new(
        wait: Duration,
        spooled: bool,
        room: usize,
        properties: &KafkaProperties,
    ) -> KafkaCaveats {
        let mut caveats = KafkaCaveats {
            wait,
            spooled,
            room,
            said: Vec::new(),
        };
        caveats.said = caveats.of(properties);
        caveats
    }

    /// The caveats said at start-up.
    pub(crate) fn said(&self) -> &[String] {
        &self.said
    }

    /// The caveats of `properties` not said before (logged by the caller); from now on those of
    /// `properties` count as said, so one that went away and comes back is said again.
    pub fn new_in(&mut self, properties: &KafkaProperties) -> Vec<String> {
        let now = self.of(properties);
        let new = now
            .iter()
            .filter(|c| !self.said.contains(c))
            .cloned()
            .collect();
        self.said = now;
        new
    }

    fn of(&self, properties: &KafkaProperties) -> Vec<String> {
        let mut caveats = Vec::new();
        if let Some(ms) = properties.number::<u128>("message.timeout.ms") {
            if ms == 0 {
                caveats.push(
                    "message.timeout.ms is 0, which librdkafka takes for no limit: a record \
                     answered 503 (or spooled) is retried from memory without end, so the \
                     sender's retry makes a duplicate"
                        .to_string(),
                );
            } else if ms > self.wait.as_millis() {
                caveats.push(format!(
                    "message.timeout.ms ({ms}) is longer than the bridge waits for Kafka ({} ms): \
                     a record answered 503{} can still be delivered afterwards, so the sender's \
                     retry makes a duplicate",
                    self.wait.as_millis(),
                    if self.spooled { " or spooled" } else { "" }
                ));
            }
        }
        if let Some(max) = properties.number::<usize>("message.max.bytes") {
            if max < self.room {
                caveats.push(format!(
                    "message.max.bytes ({max}) is below --max-body-bytes plus room for the key and \
                     headers ({}): bodies near the limit are answered 413",
                    self.room
                ));
            }
        }
        // The Kafka queue, broker and batch metrics come from librdkafka's statistics alone.
        match properties.number::<u64>("statistics.interval.ms") {
            Some(0) => caveats.push(
                "statistics.interval.ms is 0, which turns librdkafka's statistics off: the Kafka \
                 queue, broker and batch metrics stay empty, and the alerts \
                 QikchatBridgeKafkaQueueFilling and QikchatBridgeKafkaBrokerDown cannot fire"
                    .to_string(),
            ),
            Some(ms) if ms > 60_000 => caveats.push(format!(
                "statistics.interval.ms ({ms}) is over a minute: the Kafka queue, broker and \
                 batch metrics change only that often, and the alerts on them come as late"
            )),
            _ => {}
        }
        // As librdkafka reads it (`strtol`): `0x0`, `00` and `+0` are 0 too; `all` is -1.
        match properties.number::<i64>("acks") {
            Some(0) => caveats.push(
                "acks is 0: librdkafka reports a record delivered without any broker's \
                 acknowledgement, so a 200 means sent, not stored"
                    .to_string(),
            ),
            Some(1) => caveats.push(
                "acks is 1: a 200 means the partition leader stored the record; a leader lost \
                 before its followers copied it loses the record"
                    .to_string(),
            ),
            _ => {}
        }
        caveats
    }
}
