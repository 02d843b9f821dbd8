//! Producer unit tests: error sorting, metric labels, and a deadline that has already passed.

use super::*;

#[test]
fn librdkafka_errors_sort_into_retryable_and_permanent() {
    let e = |c| ProduceError::from_kafka(&KafkaError::MessageProduction(c));
    assert_eq!(e(RDKafkaErrorCode::QueueFull), ProduceError::QueueFull);
    assert_eq!(
        e(RDKafkaErrorCode::MessageSizeTooLarge),
        ProduceError::TooLarge
    );
    assert!(matches!(
        e(RDKafkaErrorCode::TopicAuthorizationFailed),
        ProduceError::Rejected(_)
    ));
    assert!(matches!(
        e(RDKafkaErrorCode::MessageTimedOut),
        ProduceError::Unavailable(_)
    ));
    assert!(matches!(
        e(RDKafkaErrorCode::NotLeaderForPartition),
        ProduceError::Unavailable(_)
    ));
    // The producer failed, not the record: the replacement producer will take it.
    assert!(matches!(
        e(RDKafkaErrorCode::Fatal),
        ProduceError::Unavailable(_)
    ));
}

#[tokio::test]
async fn a_record_whose_deadline_has_passed_is_not_handed_to_librdkafka() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("t", 1, 1).expect("topic");
    let properties =
        BTreeMap::from([("bootstrap.servers".to_string(), cluster.bootstrap_servers())]);
    let metrics = Arc::new(Metrics::new(&["t".to_string()]).expect("metrics"));
    let sink = KafkaSink::new(&properties, metrics, ProducerRole::Webhooks).expect("producer");
    let record = Record {
        topic: "t",
        key: None,
        value: b"{}",
        timestamp_ms: 0,
        headers: crate::record::RecordHeaders::Raw(&[]),
    };
    let expired = sink.send(&record, Instant::now()).await;
    assert_eq!(expired, Err(ProduceError::Timeout));
    // Had the first been queued, it would hold offset 0 of the one partition.
    let next = sink
        .send(&record, Instant::now() + Duration::from_secs(30))
        .await;
    assert_eq!(
        next,
        Ok(Delivered::Kafka {
            partition: 0,
            offset: 0
        })
    );
}

#[test]
fn metric_kinds_are_snake_case_names() {
    let e = ProduceError::from_kafka(&KafkaError::MessageProduction(
        RDKafkaErrorCode::MessageTimedOut,
    ));
    assert_eq!(e.metric_kind(), "message_timed_out");
    assert_eq!(ProduceError::Timeout.metric_kind(), "timeout");
    assert_eq!(
        ProduceError::Unavailable("ProducerClosed".into()).metric_kind(),
        "producer_closed"
    );
    // Free text (a client error without a librdkafka code) never becomes a label value.
    let text = ProduceError::from_kafka(&KafkaError::Canceled);
    assert!(matches!(text, ProduceError::Unavailable(_)));
    assert_eq!(text.metric_kind(), "other");
}
