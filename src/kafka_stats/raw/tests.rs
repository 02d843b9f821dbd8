//! Unit tests of reading librdkafka's statistics: made-up reports and librdkafka's own.

use super::*;

#[test]
fn a_client_id_json_cannot_hold_as_written_is_escaped_and_a_plain_one_left_as_it_is() {
    let report = |id: &str| {
        format!(
            "{{ \"name\": \"{id}#producer-1\", \"client_id\": \"{id}\", \"type\": \"producer\", \
                 \"ts\":1, \"brokers\":{{ }}, \"topics\":{{ }} }}"
        )
    };
    // One holding what follows the client.id (a review found it unread).
    for id in [
        "CORP\\svc",
        "a\"b",
        "svc\n",
        "tab\there",
        "a\", \"type\": \"b",
        "plain-id",
    ] {
        let raw = report(id);
        assert!(matches!(escaped(raw.as_bytes()), Cow::Owned(_)) != (id == "plain-id"));
        let json: serde_json::Value = serde_json::from_slice(&escaped(raw.as_bytes())).expect(id);
        assert_eq!(json["client_id"], id, "{raw}");
        assert_eq!(json["name"], format!("{id}#producer-1"));
        assert_eq!(json["type"], "producer");
    }
}

/// From librdkafka itself: a producer with such a client.id, its report read whole; and one
/// whose name librdkafka cut at 127 bytes inside a character (a review found it unread).
#[test]
fn librdkafkas_report_for_a_client_id_with_a_backslash_is_read() {
    for id in ["CORP\\svc\n", &format!("{}\u{e9}", "a".repeat(126))] {
        let raw = report_of(id);
        assert!(serde_json::from_slice::<Statistics>(&raw).is_err());
        let statistics = parse(&raw).expect("read");
        assert_eq!(statistics.client_id, id);
    }
}

/// A client.id holding the very text that follows it in the report, and one holding what
/// follows the name (a review found both unread).
#[test]
fn a_client_id_holding_what_follows_it_in_the_report_is_read_whole() {
    for id in [
        "svc\", \"type\": \"producer\", \"ts\":",
        "svc\", \"type\": \"producer\", \"ts\":1, \"x\": \"y",
        "svc\", \"client_id\": \"x",
        "a\", \"client_id\": \"b\", \"type\": \"producer\", \"ts\":1, \"c",
        &format!("{}\", \"client_id\": \"", "a".repeat(120)),
    ] {
        let raw = report_of(id);
        let statistics = parse(&raw).unwrap_or_else(|e| panic!("{id:?}: {e}"));
        assert_eq!(statistics.client_id, id);
        assert_eq!(statistics.client_type, "producer");
        let name = format!("{id}#producer-");
        assert!(
            name.starts_with(&statistics.name) || statistics.name.starts_with(&name),
            "{id:?}: {}",
            statistics.name
        );
    }
}

/// A `--kafka-brokers` host the bridge takes whose broker name librdkafka cuts at 255 bytes
/// inside a character (a review found every report unread while that broker was listed).
#[test]
fn a_broker_name_cut_inside_a_character_leaves_the_report_readable() {
    let host = "\u{e9}".repeat(128);
    let list = format!("127.0.0.1:1,{host}:9092");
    assert_eq!(
        crate::config::brokers::refusal(&list, "empty"),
        None,
        "taken"
    );
    let raw = report_with(&[("bootstrap.servers", &list)]);
    assert!(
        std::str::from_utf8(&raw).is_err(),
        "the name is cut inside a character"
    );
    let statistics = parse(&raw).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(statistics.brokers.len(), 2);
}

fn report_of(id: &str) -> Vec<u8> {
    report_with(&[("client.id", id)])
}

fn report_with(properties: &[(&str, &str)]) -> Vec<u8> {
    use rdkafka::client::ClientContext;
    use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Raw(Mutex<Option<Vec<u8>>>);
    impl ClientContext for Raw {
        fn stats_raw(&self, statistics: &[u8]) {
            *self.0.lock().unwrap() = Some(statistics.to_vec());
        }
    }
    impl ProducerContext for Raw {
        type DeliveryOpaque = ();
        fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
    }
    let mut config = rdkafka::ClientConfig::new();
    for (key, value) in properties {
        config.set(*key, *value);
    }
    let producer: BaseProducer<Raw> = config
        .set("statistics.interval.ms", "10")
        .create_with_context(Raw::default())
        .expect("producer");
    let raw = (0..500)
        .find_map(|_| {
            producer.poll(std::time::Duration::from_millis(10));
            producer.context().0.lock().unwrap().take()
        })
        .expect("a report");
    drop(producer.flush(std::time::Duration::ZERO));
    raw
}
