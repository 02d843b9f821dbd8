//! A producer replaced by a rebuild is retired: left to deliver what it holds before it is
//! dropped, since dropping it purges its queue.

use super::*;

/// A record handed to a producer just before a rebuild replaced it may take most of that
/// producer's `message.timeout.ms` to be acknowledged (a slow broker): `retire` waits that long,
/// and a second more, before dropping it. Dropped sooner, the record would be purged although
/// Kafka was about to take it, and its sender told it failed (or its spooled copy sent again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_producer_is_kept_until_a_slow_acknowledgement_within_its_message_timeout() {
    let delivered = retired_with_a_record_acknowledged_after_2_2_s("3000").await;
    assert!(
        delivered.is_ok(),
        "the record was purged with the retired producer: {delivered:?}"
    );
}

/// `message.timeout.ms` 0 is no limit to librdkafka: a retired producer is kept while a slow
/// broker takes its records, not dropped after the second that a wait of 0 plus one gave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_producer_without_a_message_timeout_is_kept_for_a_slow_acknowledgement() {
    let delivered = retired_with_a_record_acknowledged_after_2_2_s("0").await;
    assert!(
        delivered.is_ok(),
        "the record was purged with the retired producer: {delivered:?}"
    );
}

/// Retires a producer with `message.timeout.ms` set to `ms`, holding a record the broker
/// acknowledges 2.2 s after its request; its delivery report.
async fn retired_with_a_record_acknowledged_after_2_2_s(
    ms: &str,
) -> rdkafka::producer::future_producer::OwnedDeliveryResult {
    let (cluster, mut properties, sink) = one_topic_sink();
    properties.insert("message.timeout.ms".into(), ms.into());
    let mut old = another_producer(&sink, &properties);
    // As `rebuild` sets it when it puts the new producer in place.
    old.message_timeout = reload::message_timeout(Some(ms));
    let to_t = || FutureRecord::<(), [u8]>::to("t").payload(b"{}");
    // Connected first: only the next produce request is slowed down.
    old.producer
        .send(to_t(), Duration::from_secs(30))
        .await
        .expect("connected");
    // Each answer now comes 2.2 s after its request: later than a 3 s message timeout less a
    // second, and within it with 0.8 s to spare for a loaded machine (librdkafka fails the record
    // itself 3 to 4 s after it was queued).
    cluster
        .broker_round_trip_time(1, Duration::from_millis(2200))
        .expect("rtt");
    let delivery = old
        .producer
        .send_result(to_t())
        .map_err(|(e, _)| e)
        .expect("queued");
    tokio::task::spawn_blocking(move || reload::retire(old))
        .await
        .expect("task");
    delivery.await.expect("a delivery report")
}

/// The producer a rebuild replaced keeps its own `message.timeout.ms` for its wait: its records
/// were queued under it. A rotation that lowers the value must not cut the wait of the records the
/// old producer still holds (they would be purged while a slow broker was about to take them);
/// one that raises it must not keep a producer whose old credentials are refused for longer.
#[tokio::test]
async fn a_rebuild_retires_the_replaced_producer_with_its_own_message_timeout() {
    let (_cluster, mut properties, sink) = one_topic_sink();
    properties.insert("message.timeout.ms".into(), "45000".into());
    let first = rebuild(&sink, properties.clone(), Duration::from_secs(10), false).await;
    drop(first.expect("made with a 45 s message timeout"));
    let mut rotated = properties.clone();
    rotated.insert("message.timeout.ms".into(), "5000".into());
    let old = rebuild(&sink, rotated, Duration::from_secs(10), false)
        .await
        .expect("made with a 5 s message timeout");
    assert_eq!(old.message_timeout, Duration::from_secs(45));
}
