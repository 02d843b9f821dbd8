//! What a replay pass holds back and carries to the next one.

use super::*;

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
