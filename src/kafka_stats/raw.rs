//! librdkafka's statistics read from its raw JSON, whose first two strings it writes unescaped.

use std::borrow::Cow;

use rdkafka::statistics::Statistics;

/// The statistics in `raw`. librdkafka writes the client's name and `client.id` into them as
/// they are (`rdkafka.c`: `"name": "%s", "client_id": "%s"`), so a client.id holding `"`, `\`
/// or a control character (`CORP\svc`, the line end a YAML block leaves) made every report no
/// JSON: the metrics read from them stopped, and the alerts on those with them.
pub fn parse(raw: &[u8]) -> serde_json::Result<Statistics> {
    serde_json::from_slice(&escaped(raw))
}

/// `raw` with its name and client.id escaped; borrowed when they need nothing.
fn escaped(raw: &[u8]) -> Cow<'_, [u8]> {
    const HEAD: &[u8] = b"{ \"name\": \"";
    const MIDDLE: &[u8] = b"\", \"client_id\": \"";
    const TYPE: &[u8] = b"\", \"type\": \"";
    // With what follows it, which a client.id holding `", "type": "` does not end in.
    const TYPES: [&[u8]; 2] = [
        b"\", \"type\": \"producer\", \"ts\":",
        b"\", \"type\": \"consumer\", \"ts\":",
    ];
    let Some(rest) = raw.strip_prefix(HEAD) else {
        return Cow::Borrowed(raw);
    };
    let Some(m) = find(rest, MIDDLE) else {
        return Cow::Borrowed(raw);
    };
    let (name, after) = (&rest[..m], &rest[m + MIDDLE.len()..]);
    let Some(t) = TYPES.iter().filter_map(|t| find(after, t)).min() else {
        return Cow::Borrowed(raw);
    };
    let (client_id, tail) = (&after[..t], &after[t + TYPE.len()..]);
    // librdkafka cuts the name at 127 bytes, which may split a character in two.
    let plain = |s: &[u8]| {
        std::str::from_utf8(s).is_ok() && !s.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20)
    };
    if plain(name) && plain(client_id) {
        return Cow::Borrowed(raw);
    }
    let json = |s: &[u8]| serde_json::to_vec(&String::from_utf8_lossy(s)).unwrap_or_default();
    let mut out = Vec::with_capacity(raw.len() + 16);
    out.extend_from_slice(b"{ \"name\": ");
    out.extend(json(name));
    out.extend_from_slice(b", \"client_id\": ");
    out.extend(json(client_id));
    out.extend_from_slice(b", \"type\": \"");
    out.extend_from_slice(tail);
    Cow::Owned(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
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
            let json: serde_json::Value =
                serde_json::from_slice(&escaped(raw.as_bytes())).expect(id);
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

    fn report_of(id: &str) -> Vec<u8> {
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
        let producer: BaseProducer<Raw> = rdkafka::ClientConfig::new()
            .set("client.id", id)
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
}
