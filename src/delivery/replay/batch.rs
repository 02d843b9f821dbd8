//! How much of the spool one replay batch reads and sends together, and how soon the next may
//! follow.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use tokio::time::Instant;

/// At most `records`, and past the first record at most `bytes` of stored records, so replay
/// holds little of a spool of large bodies at once; with a `pace`, at most that many records a
/// second on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    pub(super) records: usize,
    pub(super) bytes: u64,
    pub(super) pace: Option<NonZeroU32>,
}

/// A batch waits for its slowest acknowledgement before the next is read, so the records it
/// holds are what one broker round trip carries: 256 records drained 14–15k records/s through a
/// 5 ms round trip and 5k through 20 ms; 2048 drain 39–41k and 16–20k (`examples/replay_throughput`).
/// The bytes bound the memory: replay raised the process's peak by about five times them (the
/// decoded records, librdkafka's copy and its produce requests): 38–41 MiB with 2 KiB to 1 MB
/// bodies. 4096 records and 16 MiB, measured too, drained 23–29k records/s through 20 ms for
/// 53–57 MiB with 2 KiB bodies.
pub(super) const MOST: Batch = Batch {
    records: 2048,
    bytes: 8 << 20,
    pace: None,
};

impl Batch {
    /// The largest batch within half of the replay producer's queue limits (librdkafka's
    /// `queue.buffering.max.messages`, 0 for none, and `queue.buffering.max.kbytes`). A batch
    /// that filled the queue would see records refused as queue full while later ones of their
    /// conversation were taken: delivered out of order, and held back for the rest of the pass.
    /// Its dead-letter moves go through the same queue after it. The limits are read back from
    /// librdkafka as it took `properties` (it reads `0x200`, `0400` and `512 ` as numbers too,
    /// and has the defaults); a configuration it refuses leaves the smallest batch, though the
    /// producer made from it fails first.
    pub fn for_queue(properties: &BTreeMap<String, String>) -> Batch {
        let mut config = rdkafka::ClientConfig::new();
        for (name, value) in properties {
            config.set(name, value);
        }
        let native = config.create_native_config().ok();
        let limit = |name: &str| {
            native
                .as_ref()
                .and_then(|n| n.get(name).ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(2)
        };
        let records = match limit("queue.buffering.max.messages") {
            0 => MOST.records,
            n => usize::try_from(n / 2)
                .unwrap_or(usize::MAX)
                .clamp(1, MOST.records),
        };
        let bytes =
            (limit("queue.buffering.max.kbytes").saturating_mul(1024) / 2).clamp(1, MOST.bytes);
        Batch {
            records,
            bytes,
            pace: None,
        }
    }

    /// These batches, sent at most `per_second` records a second (`--replay-max-rate`; 0: as
    /// fast as Kafka takes them).
    pub fn paced(self, per_second: u32) -> Batch {
        Batch {
            pace: NonZeroU32::new(per_second),
            ..self
        }
    }

    /// How many of the records read one batch sends at most: a second's worth at the pace, as
    /// 2048 at once and then a wait of 20 s at 100 a second would be no pace to the broker. The
    /// read stays whole, so records held back cost no more reads paced than unpaced.
    pub(super) fn sends(&self) -> usize {
        self.pace.map_or(self.records, |p| {
            self.records
                .min(usize::try_from(p.get()).unwrap_or(usize::MAX))
        })
    }

    /// When the batch after one that began at `began` and sent `sent` records may begin, if it
    /// must wait: `sent` records' share of a second at the pace. Each batch is timed from its own
    /// beginning, so a quiet spool saves up no burst, and a batch slower than its share (a slow
    /// or absent Kafka) adds no wait at all.
    pub(super) fn next_after(&self, began: Instant, sent: usize) -> Option<Instant> {
        let per_second = u128::from(self.pace?.get());
        let nanos = (sent as u128).saturating_mul(1_000_000_000) / per_second;
        let wait = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        (sent > 0).then(|| began + wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pairs: &[(&str, &str)]) -> Batch {
        let props = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Batch::for_queue(&props)
    }

    #[test]
    fn the_queues_defaults_leave_the_largest_batch() {
        assert_eq!(batch(&[]), MOST);
        assert_eq!(batch(&[("queue.buffering.max.kbytes", "65536")]), MOST);
        assert_eq!(batch(&[("queue.buffering.max.messages", "0")]), MOST);
    }

    #[test]
    fn a_smaller_queue_makes_a_batch_of_half_of_it() {
        let small = batch(&[
            ("queue.buffering.max.messages", "512"),
            ("queue.buffering.max.kbytes", "8192"),
        ]);
        assert_eq!(
            small,
            Batch {
                records: 256,
                bytes: 4 << 20,
                pace: None,
            }
        );
        assert_eq!(batch(&[("queue.buffering.max.messages", "1")]).records, 1);
        assert_eq!(batch(&[("queue.buffering.max.kbytes", "1")]).bytes, 512);
    }

    #[test]
    fn the_queue_is_read_as_librdkafka_reads_it() {
        // strtol with base 0: hexadecimal and octal are numbers to librdkafka.
        assert_eq!(
            batch(&[("queue.buffering.max.messages", "0x200")]).records,
            256
        );
        assert_eq!(
            batch(&[("queue.buffering.max.messages", "0400")]).records,
            128
        );
        assert_eq!(
            batch(&[("queue.buffering.max.messages", " 512")]).records,
            256
        );
    }

    /// A batch is followed after its records' share of a second at the pace, timed from its
    /// beginning: none without a pace or when it sent nothing (all of it held back). It sends
    /// at most a second's worth of what it read.
    #[test]
    fn a_paced_batch_is_followed_after_its_records_share_of_a_second() {
        let began = Instant::now();
        let paced = MOST.paced(1000);
        assert_eq!(
            paced.next_after(began, 250),
            Some(began + Duration::from_millis(250))
        );
        assert_eq!(
            MOST.paced(3).next_after(began, 1),
            Some(began + Duration::from_nanos(333_333_333))
        );
        assert_eq!(paced.next_after(began, 0), None, "nothing sent");
        assert_eq!(MOST.next_after(began, 250), None, "unpaced");
        assert_eq!(MOST.paced(0), MOST, "0 is unpaced");
        assert_eq!(MOST.paced(100).sends(), 100, "a second's worth at most");
        assert_eq!(MOST.paced(100).records, MOST.records, "read whole");
        assert_eq!(MOST.paced(u32::MAX).sends(), MOST.records);
        assert_eq!(MOST.sends(), MOST.records);
    }
}
