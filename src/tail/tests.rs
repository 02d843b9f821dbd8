use super::*;

#[test]
fn characters_a_terminal_acts_on_are_escaped_and_the_line_stays_the_same_json() {
    let value = serde_json::json!({
        "value": "a\u{9b}31mred\u{1b}[0m \u{202e}txt.exe\u{7f} \u{2028}ok \u{61c}\u{206a}\u{fff9} é 日本",
        "headers": {"request-id": "\u{9d}8;;http://x\u{9c}"},
    });
    let line = value.to_string();
    let safe = terminal_safe(&line);
    for c in [
        '\u{9b}', '\u{9d}', '\u{9c}', '\u{202e}', '\u{7f}', '\u{2028}', '\u{1b}', '\u{61c}',
        '\u{206a}', '\u{fff9}',
    ] {
        assert!(!safe.contains(c), "{c:?} in {safe}");
    }
    assert!(
        safe.contains("\\u009b") && safe.contains("é 日本"),
        "{safe}"
    );
    let back: serde_json::Value = serde_json::from_str(&safe).expect("still JSON");
    assert_eq!(back, value);
    let plain = r#"{"value":"plain"}"#;
    assert!(matches!(
        terminal_safe(plain),
        std::borrow::Cow::Borrowed(_)
    ));
}

type MockCluster =
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// A mock cluster whose topic `t` holds one record per value, each with a `request-id`
/// header of that value.
fn topic_holding(values: &[&str]) -> MockCluster {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("t", 1, 1).expect("topic");
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .expect("producer");
    for &value in values {
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "request-id",
            value: Some(value),
        });
        producer
            .send(
                rdkafka::producer::BaseRecord::<(), _>::to("t")
                    .payload(value)
                    .headers(headers),
            )
            .expect("send");
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).expect("flush");
    cluster
}

/// `tail -X PROPERTIES --from-beginning --count COUNT t` on `cluster`: what `run` returned
/// and the JSON lines it printed.
fn tail_t(
    cluster: &MockCluster,
    properties: &[&str],
    count: u64,
) -> (Result<u64, TailError>, Vec<serde_json::Value>) {
    use std::io::{Read, Seek};
    let args = TailArgs {
        topics: vec!["t".into()],
        kafka_brokers: cluster.bootstrap_servers(),
        kafka_properties: properties.iter().map(|p| p.to_string()).collect(),
        from_beginning: true,
        count: Some(count),
        // Reached only by a tail that read on past its count.
        idle_timeout: Some(Duration::from_secs(5)),
    };
    let mut out = tempfile::tempfile().expect("tempfile");
    let result = run(&args, std::iter::empty(), &mut out);
    let mut printed = String::new();
    out.rewind().expect("rewind");
    out.read_to_string(&mut printed).expect("read");
    let lines = printed
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (result, lines)
}

/// `--count 2` of a topic holding three records: the first two, each without the count of
/// unreadable header names (there are none), and tail ends there, not at its idle timeout.
#[test]
fn a_count_prints_that_many_records_and_no_more() {
    let cluster = topic_holding(&["r0", "r1", "r2"]);
    let (result, lines) = tail_t(&cluster, &[], 2);
    assert_eq!(result.expect("run"), 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, value) in lines.iter().zip(["r0", "r1"]) {
        assert_eq!(line["value"], value, "{line}");
        assert_eq!(line["headers"], serde_json::json!({"request-id": value}));
        assert!(line.get("headers_with_non_utf8_names").is_none(), "{line}");
    }
}

/// An operator whose credentials may describe only certain groups names one with -X: taken,
/// as is any other property; only an empty group is refused.
#[test]
fn a_group_named_with_x_is_taken() {
    let cluster = topic_holding(&["r0"]);
    let (result, lines) = tail_t(
        &cluster,
        &["group.id=ops-debugging", "client.id=ops-tail"],
        1,
    );
    assert_eq!(result.expect("run"), 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (result, lines) = tail_t(&cluster, &["group.id= "], 1);
    assert!(
        matches!(&result, Err(e) if e.is_usage() && e.to_string().contains("group.id")),
        "{result:?}"
    );
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn a_group_the_credentials_may_not_describe_is_no_reason_to_stop() {
    assert!(!refused_for_good(
        RDKafkaErrorCode::GroupAuthorizationFailed
    ));
    assert!(refused_for_good(RDKafkaErrorCode::TopicAuthorizationFailed));
}

/// A topic deleted under tail, or credentials or ACLs that no reconnect changes, end it with
/// status 1: read past, each left a script with no record and exit 0, as from an empty topic.
#[test]
fn refusals_no_reconnect_ends_are_each_refused_for_good() {
    use RDKafkaErrorCode as C;
    for code in [
        C::TopicAuthorizationFailed,
        C::ClusterAuthorizationFailed,
        C::SaslAuthenticationFailed,
        C::Authentication,
        C::UnknownTopicOrPartition,
        C::UnknownTopic,
    ] {
        assert!(refused_for_good(code), "{code:?}");
    }
    for code in [
        C::BrokerTransportFailure,
        C::AllBrokersDown,
        C::NotLeaderForPartition,
    ] {
        assert!(!refused_for_good(code), "{code:?}");
    }
}
