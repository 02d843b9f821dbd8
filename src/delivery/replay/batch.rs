//! How much of the spool one replay batch reads and sends together.

use std::collections::BTreeMap;

/// At most `records`, and past the first record at most `bytes` of stored records, so replay
/// holds little of a spool of large bodies at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    pub(super) records: usize,
    pub(super) bytes: u64,
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
        Batch { records, bytes }
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
                bytes: 4 << 20
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
}
