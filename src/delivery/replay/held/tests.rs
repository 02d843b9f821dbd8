//! What a replay pass holds back and carries to the next one.

use super::*;
use crate::producer::spread::partition_of;

fn record(topic: &str, key: &str) -> SpooledRecord {
    SpooledRecord {
        topic: topic.into(),
        key: Some(key.into()),
        value: b"{}".to_vec(),
        headers: Vec::new(),
        timestamp_ms: 0,
    }
}

/// A conversation whose record 10 was left behind in an earlier pass.
fn carrying_10() -> Held {
    let mut held = Held::default();
    assert!(!held.holds(10, &record("t", "k")));
    held.left_behind(10, &record("t", "k"), &ProduceError::TooLarge);
    held.next_pass()
}

#[test]
fn a_record_left_behind_is_sent_alone_and_later_ones_of_its_conversation_wait() {
    let mut held = carrying_10();
    assert!(!held.holds(10, &record("t", "k")), "sent again, alone");
    assert!(held.holds(11, &record("t", "k")), "behind it");
    assert!(
        !held.holds(12, &record("t", "other")),
        "another conversation"
    );
    assert!(
        !held.holds(13, &record("u", "k")),
        "the same key on another topic"
    );
    // Sent and delivered: nothing is carried further.
    assert!(held.next_pass().before.is_empty());
}

#[test]
fn a_record_left_behind_is_carried_until_a_pass_sends_it() {
    // A pass that stopped before reaching it (Kafka down) carries it on.
    let mut held = carrying_10();
    assert!(!held.holds(3, &record("x", "a")));
    let mut held = held.next_pass();
    assert_eq!(held.before.get(&("t".into(), "k".into())), Some(&10));
    // A pass that held its whole topic carries it on too.
    held.left_behind(4, &record("t", "b"), &ProduceError::Timeout);
    assert!(held.holds(10, &record("t", "k")), "its topic is held");
    let held = held.next_pass();
    assert_eq!(held.before.get(&("t".into(), "k".into())), Some(&10));
    assert_eq!(held.before.get(&("t".into(), "b".into())), Some(&4));
}

#[test]
fn a_record_left_behind_that_left_the_spool_no_longer_holds_its_conversation() {
    // Read past without finding it: set aside as unreadable, say.
    let mut held = carrying_10();
    assert!(!held.holds(9, &record("x", "a")));
    assert!(!held.holds(11, &record("x", "a")));
    let mut held = held.next_pass();
    assert!(held.before.is_empty());
    assert!(!held.holds(12, &record("t", "k")));
}

#[test]
fn refusals_an_operator_can_fix_and_kafka_failures_hold_the_topic_but_record_faults_do_not() {
    let mut held = Held::default();
    held.left_behind(1, &record("big", "a"), &ProduceError::TooLarge);
    held.left_behind(
        2,
        &record("acl", "a"),
        &ProduceError::Refused("TopicAuthorizationFailed".into()),
    );
    held.left_behind(
        3,
        &record("down", "a"),
        &ProduceError::Unavailable("NotLeaderForPartition".into()),
    );
    assert!(!held.holds(4, &record("big", "b")));
    assert!(held.holds(5, &record("acl", "b")));
    assert!(held.holds(6, &record("down", "b")));
}

/// The `n`th key (from 0) that topic `t`'s 3 partitions give to `partition`.
fn key_on(partition: i32, n: usize) -> String {
    (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| partition_of(k.as_bytes(), 3) == partition)
        .nth(n)
        .expect("a key")
}

/// A pass that knows topic `t`'s keyed records spread over 3 partitions.
fn spread_over_3() -> Held {
    let mut held = Held::default();
    held.set_spread("t", Some(3));
    held
}

#[test]
fn a_keyed_record_kafka_cannot_take_now_holds_back_its_partition_only() {
    let mut held = spread_over_3();
    held.left_behind(1, &record("t", &key_on(0, 0)), &ProduceError::Timeout);
    assert!(held.holds(2, &record("t", &key_on(0, 1))), "its partition");
    assert!(!held.holds(3, &record("t", &key_on(1, 0))));
    assert!(!held.holds(4, &record("t", &key_on(2, 0))));
    assert!(!held.holds_topic("t"));
    // Every partition failing is the topic failing.
    let unavailable = ProduceError::Unavailable("NotLeaderForPartition".into());
    held.left_behind(5, &record("t", &key_on(1, 1)), &unavailable);
    assert!(!held.holds_topic("t"));
    held.left_behind(6, &record("t", &key_on(2, 1)), &ProduceError::Timeout);
    assert!(held.holds_topic("t"));
    // The next pass tries every partition again (after the ones left behind).
    let mut held = held.next_pass();
    assert!(!held.holds(7, &record("t", &key_on(0, 2))));
    // What fails whatever the partition holds back the whole topic.
    let mut held = spread_over_3();
    let refused = ProduceError::Refused("TopicAuthorizationFailed".into());
    held.left_behind(1, &record("t", &key_on(0, 0)), &refused);
    assert!(held.holds(2, &record("t", &key_on(1, 0))));
    let mut held = spread_over_3();
    held.left_behind(1, &record("t", &key_on(0, 0)), &ProduceError::QueueFull);
    assert!(held.holds(2, &record("t", &key_on(1, 0))));
    // So does the producer's or the whole cluster's failure.
    let mut held = spread_over_3();
    let all_down = ProduceError::Unavailable("AllBrokersDown".into());
    held.left_behind(1, &record("t", &key_on(0, 0)), &all_down);
    assert!(held.holds(2, &record("t", &key_on(1, 0))));
}

#[test]
fn a_delivery_to_another_partition_than_its_keys_makes_a_held_partition_hold_the_topic() {
    let mut held = spread_over_3();
    held.left_behind(1, &record("t", &key_on(0, 0)), &ProduceError::Timeout);
    assert!(!held.holds(2, &record("t", &key_on(1, 0))));
    held.delivered(&record("t", &key_on(1, 1)), 1);
    assert!(
        !held.holds(3, &record("t", &key_on(1, 2))),
        "as its key says"
    );
    held.delivered(&record("t", &key_on(1, 3)), 2);
    assert!(held.holds(4, &record("t", &key_on(1, 4))));
    assert!(held.holds_topic("t"));
    // Learnt before any failure: the first failure holds the topic.
    let mut held = spread_over_3();
    held.delivered(&record("t", &key_on(1, 0)), 0);
    assert!(!held.holds_topic("t"));
    held.left_behind(2, &record("t", &key_on(0, 0)), &ProduceError::Timeout);
    assert!(held.holds_topic("t"));
}

#[test]
fn a_keyless_record_that_fails_while_its_topic_takes_others_holds_back_only_keyless_ones() {
    let keyless = SpooledRecord {
        key: None,
        ..record("t", "")
    };
    // Nothing of its topic taken in the pass: the topic waits.
    let mut held = spread_over_3();
    held.left_behind(1, &keyless, &ProduceError::Timeout);
    assert!(held.holds_topic("t"));
    // librdkafka put it on a partition at random: the keyed records follow their partitions.
    let mut held = spread_over_3();
    held.delivered(&record("t", &key_on(0, 0)), 0);
    held.left_behind(2, &keyless, &ProduceError::Timeout);
    assert!(!held.holds_topic("t"));
    assert!(held.holds(3, &keyless));
    assert!(!held.holds(4, &record("t", &key_on(1, 0))));
}
