//! Where a keyed record lands: under the murmur2 partitioners its partition follows from its
//! key and its topic's partition count alone, so replay can tell it before sending the record
//! and hold back one partition that cannot take records rather than its whole topic.

/// Whether `partitioner` (librdkafka's property) puts keyed records by the key's murmur2 hash,
/// as the Java client does: `murmur2` and `murmur2_random` (the bridge's default). librdkafka's
/// own default, `consistent_random`, hashes with CRC32 instead, which replay does not follow.
pub(super) fn hashes_keys(partitioner: Option<&str>) -> bool {
    matches!(
        partitioner.map(str::trim),
        Some("murmur2" | "murmur2_random")
    )
}

/// The partition librdkafka's murmur2 partitioners give `key` among `partitions` (which must
/// not be 0): the Java client's hash, with its seed, made positive, modulo the count.
pub fn partition_of(key: &[u8], partitions: u32) -> i32 {
    let hash = murmur2::murmur2(key, murmur2::KAFKA_SEED) & 0x7fff_ffff;
    // Below 2^31, so it always fits.
    i32::try_from(hash % partitions.max(1)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_to_the_partitions_the_java_client_gives_them() {
        // Kafka's own test vectors (`UtilsTest.testMurmur2`) for the raw hash, then the
        // partition the Java client's default partitioner gives these keys among 3.
        let raw = |s: &str| murmur2::murmur2(s.as_bytes(), murmur2::KAFKA_SEED) as i32;
        assert_eq!(raw("21"), -973932308);
        assert_eq!(raw("foobar"), -790332482);
        assert_eq!(raw("a-little-bit-long-string"), -985981536);
        assert_eq!(raw("a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            raw("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(raw("abc"), 479470107);
        assert_eq!(partition_of(b"21", 3), (-973932308i32 & 0x7fff_ffff) % 3);
    }

    #[test]
    fn only_the_murmur2_partitioners_are_followed() {
        assert!(hashes_keys(Some("murmur2_random")));
        assert!(hashes_keys(Some("murmur2")));
        assert!(!hashes_keys(Some("consistent_random")));
        assert!(!hashes_keys(Some("random")));
        assert!(
            !hashes_keys(None),
            "librdkafka's default is consistent_random"
        );
    }
}
