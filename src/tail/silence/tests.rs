use super::*;

/// A broker: its name, node id, state, rxidle and stateage (µs).
type B<'a> = (&'a str, i32, &'a str, i64, i64);

/// Statistics with these brokers, and partitions of `t` fetched from these node ids (-1: none).
fn stats(brokers: &[B], partitions: &[i32]) -> Statistics {
    use rdkafka::statistics::{Broker, Partition, Topic};
    let brokers = brokers
        .iter()
        .map(|&(name, nodeid, state, rxidle, stateage)| {
            let broker = Broker {
                name: name.into(),
                nodeid,
                state: state.into(),
                rxidle,
                stateage,
                ..Broker::default()
            };
            (name.to_string(), broker)
        })
        .collect();
    let partition = |partition, broker, desired| Partition {
        partition,
        broker,
        leader: broker,
        desired,
        fetch_state: "active".into(),
        ..Partition::default()
    };
    let mut parts: HashMap<i32, Partition> = partitions
        .iter()
        .enumerate()
        .map(|(p, &broker)| (p as i32, partition(p as i32, broker, true)))
        .collect();
    // librdkafka's partition for records not yet partitioned, and one tail does not read.
    parts.insert(-1, partition(-1, -1, false));
    parts.insert(99, partition(99, -1, false));
    let topic = Topic {
        topic: "t".into(),
        partitions: parts,
        ..Topic::default()
    };
    Statistics {
        brokers,
        topics: [("t".to_string(), topic)].into_iter().collect(),
        ..Statistics::default()
    }
}

const S: i64 = 1_000_000;

/// fetch.wait.max.ms 500 and an idle timeout of 3 s: answering within 1.5 s, given up at 5.5.
fn silence() -> Silence {
    Silence::new(Duration::from_millis(500), Duration::from_secs(3))
}

#[test]
fn brokers_heard_from_within_a_fetch_wait_are_answering_and_others_do_not_count() {
    let silence = silence();
    let at = Instant::now();
    assert_eq!(silence.verdict(at), Verdict::Unsure, "no statistics yet");
    let brokers = [
        ("a:1/1", 1, "UP", S / 2, 9 * S),
        ("b:1/2", 2, "UP", S / 100, 9 * S),
        // A bootstrap connection and a broker nothing is read from, long quiet or down.
        ("a:1/bootstrap", -1, "UP", 60 * S, 60 * S),
        ("c:1/3", 3, "DOWN", -1, 60 * S),
    ];
    silence.record(&stats(&brokers, &[1, 2, 1]), at);
    assert_eq!(silence.verdict(at), Verdict::Answering);
    // Counted to now: statistics a second old are no news of the last second.
    assert_eq!(
        silence.verdict(at + Duration::from_millis(1_100)),
        Verdict::Unsure
    );
}

#[test]
fn a_broker_quiet_past_a_fetch_wait_is_waited_for_then_named_once_silent_in_two_statistics() {
    let silence = silence();
    let t0 = Instant::now();
    let brokers = |b| {
        [
            ("a:1/1", 1, "UP", S / 10, 9 * S),
            ("b:1/2", 2, "UP", b, 9 * S),
        ]
    };
    // Seen fetching from both long enough for b's silence to count whole.
    silence.record(&stats(&brokers(S / 10), &[1, 2]), t0);
    let at = t0 + Duration::from_secs(10);
    silence.record(&stats(&brokers(2 * S), &[1, 2]), at);
    assert_eq!(silence.verdict(at), Verdict::Unsure);
    // Late statistics are no silence of a broker's, only no news of it.
    assert_eq!(
        silence.verdict(at + Duration::from_secs(60)),
        Verdict::Unsure
    );
    silence.record(&stats(&brokers(5_499_999), &[1, 2]), at);
    silence.record(&stats(&brokers(5_500_000), &[1, 2]), at);
    assert_eq!(silence.verdict(at), Verdict::Unsure, "once is not enough");
    silence.record(&stats(&brokers(6 * S), &[1, 2]), at);
    // As the statistics found it, whenever asked: their age is no silence of the broker's.
    for now in [at, at + Duration::from_secs(1)] {
        assert_eq!(
            silence.verdict(now),
            Verdict::Silent(
                "broker b:1/2 has answered nothing".into(),
                Duration::from_secs(6)
            )
        );
    }
    // An answer ends the streak.
    silence.record(&stats(&brokers(S / 10), &[1, 2]), at);
    silence.record(&stats(&brokers(7 * S), &[1, 2]), at);
    assert_eq!(silence.verdict(at), Verdict::Unsure);
}

#[test]
fn a_broker_asked_nothing_before_it_became_a_partitions_leader_is_silent_only_since_then() {
    let silence = silence();
    let t0 = Instant::now();
    let brokers = |b| {
        [
            ("a:1/1", 1, "UP", S / 10, 9 * S),
            ("b:1/2", 2, "UP", b, 9 * S),
        ]
    };
    silence.record(&stats(&brokers(30 * S), &[1, 1]), t0);
    // The leader of partition 1 moves back to b, quiet for 30 s because nothing was asked of it.
    for s in 1..=5 {
        let at = t0 + Duration::from_secs(s);
        silence.record(&stats(&brokers((30 + s as i64) * S), &[1, 2]), at);
        assert_eq!(silence.verdict(at), Verdict::Unsure, "{s} s after the move");
    }
    for s in 6..=8 {
        let at = t0 + Duration::from_secs(s);
        silence.record(&stats(&brokers((30 + s as i64) * S), &[1, 2]), at);
    }
    let at = t0 + Duration::from_secs(8);
    assert_eq!(
        silence.verdict(at),
        Verdict::Silent(
            "broker b:1/2 has answered nothing".into(),
            Duration::from_secs(7)
        )
    );
}

#[test]
fn a_partition_without_a_leader_or_on_a_broker_not_connected_is_never_answering() {
    let t0 = Instant::now();
    for (brokers, partitions, what) in [
        (
            vec![("a:1/1", 1, "UP", S / 10, 9 * S)],
            vec![1, -1],
            "partition t/1 has no leader",
        ),
        (
            vec![
                ("a:1/1", 1, "UP", S / 10, 9 * S),
                ("b:1/2", 2, "DOWN", -1, 60 * S),
            ],
            vec![1, 2],
            "broker b:1/2 is not connected (DOWN)",
        ),
        // Never past its first request (frozen before tail started), or never seen at all.
        (
            vec![
                ("a:1/1", 1, "UP", S / 10, 9 * S),
                ("b:1/2", 2, "APIVERSION_QUERY", -1, 60 * S),
            ],
            vec![1, 2],
            "broker b:1/2 is not connected (APIVERSION_QUERY)",
        ),
        (
            vec![("a:1/1", 1, "UP", S / 10, 9 * S)],
            vec![1, 2],
            "partition t/1 has no leader",
        ),
        // librdkafka's bootstrap connection (node id -1, as a partition without a leader has)
        // asks for metadata and is answered: that is no leader heard from (found by mutation
        // testing: taken for one, it made such a partition answering, or silent never).
        (
            vec![
                ("a:1/1", 1, "UP", S / 10, 9 * S),
                ("a:1/bootstrap", -1, "UP", S / 10, 9 * S),
            ],
            vec![1, -1],
            "partition t/1 has no leader",
        ),
    ] {
        let silence = silence();
        silence.record(&stats(&brokers, &partitions), t0);
        assert_eq!(silence.verdict(t0), Verdict::Unsure, "{what}");
        for s in [6, 7] {
            silence.record(&stats(&brokers, &partitions), t0 + Duration::from_secs(s));
        }
        assert_eq!(
            silence.verdict(t0 + Duration::from_secs(7)),
            Verdict::Silent(what.into(), Duration::from_secs(7)),
        );
    }
}

#[test]
fn a_broker_connected_but_never_heard_from_is_silent_since_it_took_the_partition() {
    let silence = silence();
    let t0 = Instant::now();
    let brokers = |age| [("a:1/1", 1, "UP", -1, age)];
    silence.record(&stats(&brokers(S / 5), &[1]), t0);
    assert_eq!(silence.verdict(t0), Verdict::Unsure, "not heard from yet");
    for s in [9, 10] {
        silence.record(&stats(&brokers(7 * S), &[1]), t0 + Duration::from_secs(s));
    }
    assert_eq!(
        silence.verdict(t0 + Duration::from_secs(10)),
        Verdict::Silent(
            "broker a:1/1 has answered nothing".into(),
            Duration::from_secs(10)
        )
    );
}

/// A broker that accepts connections and answers none goes through its connection's states
/// again and again (ApiVersion timed out, down, backoff, connect), each younger than ten seconds:
/// its silence is counted from when it was last heard, across them (a third look found a tail
/// with a 10 s idle timeout waiting for good).
#[test]
fn a_broker_that_keeps_reconnecting_without_answering_is_silent_since_it_was_last_heard() {
    let silence = Silence::new(Duration::from_millis(500), Duration::from_secs(20));
    let t0 = Instant::now();
    silence.record(&stats(&[("a:1/1", 1, "UP", S / 10, 60 * S)], &[1]), t0);
    let states = ["APIVERSION_QUERY", "DOWN", "TRY_CONNECT", "CONNECT"];
    for (n, state) in states.iter().cycle().take(22).enumerate() {
        let at = t0 + Duration::from_secs(1 + n as u64);
        silence.record(&stats(&[("a:1/1", 1, state, -1, S)], &[1]), at);
    }
    assert_eq!(
        silence.verdict(t0 + Duration::from_secs(22)),
        Verdict::Silent(
            "broker a:1/1 is not connected (DOWN)".into(),
            Duration::from_secs(22)
        )
    );
}

/// A broker that answers the connection's handshake (ApiVersion, a SASL step) and then nothing,
/// reconnecting again and again, has answered no fetch: the bytes of a handshake, which
/// librdkafka's `rxidle` counts in those states, are not a broker heard from, or an idle timeout
/// would wait on it for good.
#[test]
fn a_broker_that_answers_only_its_handshake_on_each_reconnection_is_silent_since_it_was_up() {
    let silence = Silence::new(Duration::from_millis(500), Duration::from_secs(20));
    let t0 = Instant::now();
    silence.record(&stats(&[("a:1/1", 1, "UP", S / 10, 60 * S)], &[1]), t0);
    let states = [
        ("APIVERSION_QUERY", S / 10),
        ("AUTH_HANDSHAKE", S / 10),
        ("AUTH_REQ", S / 10),
        ("DOWN", -1),
    ];
    for (n, (state, rxidle)) in states.iter().cycle().take(22).enumerate() {
        let at = t0 + Duration::from_secs(1 + n as u64);
        silence.record(&stats(&[("a:1/1", 1, state, *rxidle, S)], &[1]), at);
        // Nor is it answering meanwhile, which would end tail as if no records were left (found
        // by mutation testing: only the final verdict was checked).
        assert_ne!(silence.verdict(at), Verdict::Answering, "{state}");
    }
    assert_eq!(
        silence.verdict(t0 + Duration::from_secs(22)),
        Verdict::Silent(
            "broker a:1/1 is not connected (AUTH_HANDSHAKE)".into(),
            Duration::from_secs(22)
        )
    );
}

/// A broker may answer every fetch of a partition with an error librdkafka retries without
/// telling (not the leader, after a partition moved): it is heard from, but the partition is not
/// read (a third look found tail then ended with 0, nothing read).
#[test]
fn a_partition_not_fetched_to_its_end_is_waited_for_then_named() {
    use rdkafka::statistics::Statistics;
    let at_end = |stats: &mut Statistics, next_offset, ls_offset, state: &str| {
        let partition = stats
            .topics
            .get_mut("t")
            .and_then(|t| t.partitions.get_mut(&1))
            .expect("partition 1");
        partition.next_offset = next_offset;
        partition.ls_offset = ls_offset;
        partition.fetch_state = state.into();
    };
    let silence = silence();
    let t0 = Instant::now();
    let brokers = [("a:1/1", 1, "UP", S / 10, 60 * S)];
    for (next, ls, state) in [
        (5, 7, "active"),
        (-1001, -1001, "active"),
        (0, 0, "offset-query"),
    ] {
        let mut behind = stats(&brokers, &[1, 1]);
        at_end(&mut behind, next, ls, state);
        silence.record(&behind, t0);
        assert_eq!(silence.verdict(t0), Verdict::Unsure, "{next} {ls} {state}");
    }
    // Past open transactions, read_committed (librdkafka's default) reads up to the last
    // stable offset, not the high watermark; without them, on to it.
    for (next, ls) in [(7, 7), (9, 7)] {
        let mut fetched = stats(&brokers, &[1, 1]);
        at_end(&mut fetched, next, ls, "active");
        silence.record(&fetched, t0);
        assert_eq!(silence.verdict(t0), Verdict::Answering, "{next} {ls}");
    }
    for s in [1, 6, 7] {
        let mut behind = stats(&brokers, &[1, 1]);
        at_end(&mut behind, 5, 7, "active");
        silence.record(&behind, t0 + Duration::from_secs(s));
    }
    assert_eq!(
        silence.verdict(t0 + Duration::from_secs(7)),
        Verdict::Silent(
            "partition t/1 has not been fetched to its end (fetch state active)".into(),
            Duration::from_secs(7)
        )
    );
}

#[test]
fn statistics_without_a_partition_read_conclude_nothing_against_the_idle_timeout() {
    let silence = silence();
    let at = Instant::now();
    silence.record(&stats(&[("a:1/1", 1, "UP", 60 * S, 60 * S)], &[]), at);
    assert_eq!(silence.verdict(at), Verdict::Answering);
}

/// Statistics that came but could not be read judge nothing, and say so.
#[test]
fn unreadable_statistics_are_said_to_be_unreadable_until_one_is_read() {
    let silence = silence();
    let at = Instant::now();
    silence.unreadable();
    assert_eq!(silence.verdict(at), Verdict::Unreadable);
    silence.record(&stats(&[("a:1/1", 1, "UP", S / 10, 9 * S)], &[1]), at);
    assert_eq!(silence.verdict(at), Verdict::Answering);
}

/// A partition behind whose broker then stops answering past the give-up is blamed on the
/// broker, for as long as it has been silent, not on the partition for as long as it was behind.
#[test]
fn a_partition_behind_on_a_broker_that_then_goes_silent_past_the_give_up_names_the_broker() {
    let silence = silence();
    let t0 = Instant::now();
    let behind = |broker: B| {
        let mut stats = stats(&[broker], &[1, 1]);
        let partition = stats
            .topics
            .get_mut("t")
            .and_then(|t| t.partitions.get_mut(&1))
            .expect("partition 1");
        (partition.next_offset, partition.ls_offset) = (5, 7);
        stats
    };
    silence.record(&behind(("a:1/1", 1, "UP", S / 10, 60 * S)), t0);
    // Last heard 2.9 s in; down since.
    let at = t0 + Duration::from_secs(3);
    silence.record(&behind(("a:1/1", 1, "UP", S / 10, 60 * S)), at);
    for s in [9, 10] {
        let at = t0 + Duration::from_secs(s);
        silence.record(&behind(("a:1/1", 1, "DOWN", -1, S)), at);
    }
    assert_eq!(
        silence.verdict(t0 + Duration::from_secs(10)),
        Verdict::Silent(
            "broker a:1/1 is not connected (DOWN)".into(),
            Duration::from_millis(7_100)
        )
    );
}
