//! Sends seen from the sink's side: what a refused record wakes.

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
