//! The bridge's producer defaults that follow what the operator set (idempotence after `acks`,
//! `retries` and `max.in.flight`, the queue after `message.max.bytes`, the metadata wait after
//! `message.timeout.ms`, the reconnect cap after the first backoff), as they follow the bridge's
//! own settings.

use std::collections::BTreeMap;

use super::{number, queue_kbytes, Defaults};

/// Defaults that follow what the operator set, as they follow the bridge's own settings: otherwise
/// setting one property refused the start over another the operator never set, or left a default
/// out of step with the value it is made from. Numbers are read as librdkafka reads them.
pub(super) fn follow(
    props: &mut BTreeMap<String, String>,
    set: &BTreeMap<String, String>,
    limits: Defaults,
) {
    let read = |key: &str| set.get(key).and_then(|v| number::<i64>(key, v));
    // Idempotence needs acks=all, retries and at most 5 requests in flight: an operator who
    // trades one of them away gets a producer without it, rather than librdkafka's refusal to
    // start over a default they never set (as Kafka's Java producer does).
    // `ALL`, `-01` and `-0x1` are `all` too.
    let weaker_acks = set.contains_key("acks") && read("acks") != Some(-1);
    let no_retries = read("retries") == Some(0);
    let more_in_flight = read("max.in.flight").is_some_and(|n| n > 5);
    if (weaker_acks || no_retries || more_in_flight) && !set.contains_key("enable.idempotence") {
        props.insert("enable.idempotence".into(), "false".into());
    }
    // The queue follows a `message.max.bytes` the operator raised, as it follows
    // `--max-body-bytes`.
    if let (None, Some(record)) = (
        set.get("queue.buffering.max.kbytes"),
        set.get("message.max.bytes")
            .and_then(|v| number::<u64>("message.max.bytes", v)),
    ) {
        let kbytes = queue_kbytes(limits.max_body_bytes) as u64;
        props.insert(
            "queue.buffering.max.kbytes".into(),
            kbytes.max(record.div_ceil(1024)).to_string(),
        );
    }
    // A third of an operator's `message.timeout.ms` shorter than the bridge's wait: with the
    // wait's, records of a missing topic failed as a timeout. A longer one (or 0, none) keeps the
    // wait's: the answer is due at the wait whatever librdkafka would do after it.
    let wait = i64::try_from(limits.wait.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    if let (None, Some(timeout @ 1..)) = (
        set.get("topic.metadata.propagation.max.ms"),
        read("message.timeout.ms"),
    ) {
        props.insert(
            "topic.metadata.propagation.max.ms".into(),
            (timeout.min(wait) / 3).max(1).to_string(),
        );
    }
    if let Some(cap) = backoff_cap(set, RECONNECT_BACKOFF_MAX_MS) {
        props.insert("reconnect.backoff.max.ms".into(), cap);
    }
}

/// The bridge's `reconnect.backoff.max.ms`: back to accepting within a second of a broker's return.
pub(super) const RECONNECT_BACKOFF_MAX_MS: i64 = 1000;

/// librdkafka's own `reconnect.backoff.max.ms`, which `tail`'s consumer keeps.
pub const LIBRDKAFKA_RECONNECT_BACKOFF_MAX_MS: i64 = 10_000;

/// The `reconnect.backoff.max.ms` to set when the operator's `reconnect.backoff.ms` is above
/// `cap` and they set no cap: that backoff, rather than librdkafka's refusal to start over a
/// cap they never set. `None` when nothing needs raising.
pub fn backoff_cap(set: &BTreeMap<String, String>, cap: i64) -> Option<String> {
    if set.contains_key("reconnect.backoff.max.ms") {
        return None;
    }
    let backoff = set
        .get("reconnect.backoff.ms")
        .and_then(|v| number::<i64>("reconnect.backoff.ms", v))?;
    (backoff > cap).then(|| backoff.to_string())
}
