//! Sends seen from the sink's side: what a refused record wakes, the count of records librdkafka
//! still holds, and the partition count replay is told.

use super::*;

/// A record librdkafka refuses for itself (larger than `message.max.bytes`) says nothing of the
/// producer: only a fatal error wakes the replacement task, which would otherwise look again for
/// nothing after every such record.
#[tokio::test]
async fn a_record_librdkafka_refuses_for_its_size_does_not_wake_the_replacement_task() {
    // librdkafka's smallest limit, so that a small record exceeds it.
    let (_cluster, _properties, sink) = one_topic_sink_with(&[("message.max.bytes", "1000")]);
    let value = vec![b'x'; 2000];
    let large = Record {
        value: &value,
        ..record()
    };
    let refused = sink
        .send(&large, Instant::now() + Duration::from_secs(30))
        .await;
    assert_eq!(refused, Err(ProduceError::TooLarge));
    assert!(
        !fatal_woken(&sink),
        "a record too large is no failure of the producer"
    );
}

/// The shutdown's flush, when it ends with records undelivered, logs how many are left: the
/// records handed to librdkafka whose delivery reports have not come yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_counts_the_records_handed_over_until_their_reports_come() {
    let (cluster, _properties, sink) = one_topic_sink();
    assert_eq!(sink.in_flight(), 0, "nothing sent yet");
    let waiting = two_waiting_for_a_broker(&cluster, &sink).await;
    until_counted(2, "both records waiting", || sink.in_flight()).await;
    delivered_once_it_is_back(&cluster, waiting).await;
    until_counted(0, "none left once both were delivered", || sink.in_flight()).await;
}

/// A topic the brokers name without an error but with no partitions has no partition a key
/// could be placed on: replay is told no count, and holds the whole topic back when it fails,
/// rather than count 0, with which every key would seem to fall on partition 0.
#[tokio::test]
async fn a_topic_named_with_no_partitions_gives_replay_no_partition_count() {
    let (cluster, _properties, sink) = one_topic_sink_with(&[("partitioner", "murmur2_random")]);
    cluster.create_topic("empty", 0, 1).expect("topic");
    // The same sink tells the count of a topic that has partitions: it follows the keys.
    assert_eq!(sink.key_partitions("t").await, Some(1));
    assert_eq!(sink.key_partitions("empty").await, None);
}

/// The shutdown's flush logs how many records it left in the producer it flushed: a credential
/// rotated meanwhile puts a new, empty producer in place, whose count would say none were left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_being_flushed_counts_its_own_records_after_another_takes_its_place() {
    let (cluster, properties, sink) = one_topic_sink();
    let deadline = Instant::now() + Duration::from_secs(60);
    sink.send(&record(), deadline).await.expect("connected");
    let waiting = two_waiting_for_a_broker(&cluster, &sink).await;
    until_counted(2, "records waiting", || sink.in_flight()).await;
    let flushing = sink.flushing();
    let _old = sink.put(another_producer(&sink, &properties));
    // The sink now counts the new producer's queue, none of these records.
    until_counted(2, "the flushed producer's records", || flushing.in_flight()).await;
    delivered_once_it_is_back(&cluster, waiting).await;
}

/// Two records sent through `sink` in the background with its broker down: they wait in
/// librdkafka's queue, handed to the producer current now (each send is polled once here, which
/// hands it over, before it is spawned: a spawned task could start only after the producer was
/// replaced, a race a loaded machine lost).
async fn two_waiting_for_a_broker(
    cluster: &MockCluster,
    sink: &Arc<KafkaSink>,
) -> Vec<tokio::task::JoinHandle<Result<Delivered, ProduceError>>> {
    use std::future::Future;
    cluster.broker_down(1).expect("down");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let sink = sink.clone();
        let mut send = Box::pin(async move { sink.send(&record(), deadline).await });
        std::future::poll_fn(|cx| {
            assert!(
                send.as_mut().poll(cx).is_pending(),
                "delivered with its broker down"
            );
            std::task::Poll::Ready(())
        })
        .await;
        waiting.push(tokio::spawn(send));
    }
    waiting
}

/// Waits, 10 s at most, until `count` gives `wanted`: librdkafka's count of what is in flight
/// also counts the events waiting for its poll thread (errors about a broker that is down),
/// which come and go, so it is waited for, not read once.
async fn until_counted(wanted: i32, what: &str, count: impl Fn() -> i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() != wanted {
        assert!(Instant::now() < deadline, "{what}: {}", count());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Brings the broker back and waits for each of `waiting` to be delivered to Kafka.
async fn delivered_once_it_is_back(
    cluster: &MockCluster,
    waiting: Vec<tokio::task::JoinHandle<Result<Delivered, ProduceError>>>,
) {
    cluster.broker_up(1).expect("up");
    for w in waiting {
        let delivered = w.await.expect("task");
        assert!(
            matches!(delivered, Ok(Delivered::Kafka { .. })),
            "{delivered:?}"
        );
    }
}

/// A deadline that is exactly now has passed too: handed over, the record could only be
/// acknowledged after its request was answered 503, and the sender's retry would store it twice;
/// and a timeout counted for it would page for a slow sender as for a Kafka fault. Paused clock:
/// the send starts at the very instant of its deadline.
#[tokio::test(start_paused = true)]
async fn a_record_whose_deadline_is_this_instant_is_not_handed_to_librdkafka() {
    let (_cluster, _, sink) = one_topic_sink();
    let sent = sink.send(&record(), Instant::now()).await;
    assert_eq!(sent, Err(ProduceError::Timeout));
    let text = String::from_utf8(sink.metrics.render()).expect("utf-8");
    assert!(
        text.contains(r#"kafka_deliveries_total{result="timeout",topic="t"} 0"#),
        "a record never sent counted as a Kafka timeout: {text}"
    );
}
