//! Unit tests of the classifier: the seed payloads, every refusal, and odd-but-valid shapes.

use super::*;

const TEXT: &[u8] = include_bytes!("../../tests/fixtures/message-in-text.json");
const IMAGE: &[u8] = include_bytes!("../../tests/fixtures/message-in-image.json");
const STATUS: &[u8] = include_bytes!("../../tests/fixtures/status-read.json");

#[test]
fn an_incoming_text_message_yields_event_id_and_sender() {
    let e = classify(TEXT).expect("valid");
    assert_eq!(e.event, "whatsapp:message:in");
    assert_eq!(e.message_id.as_deref(), Some("52JH6WmuSruAVyXvBBYemd0Ia"));
    assert_eq!(e.from.as_deref(), Some("9184XXXXXXX"));
    assert_eq!(e.to, None);
}

#[test]
fn an_incoming_image_message_is_read_the_same_way() {
    let e = classify(IMAGE).expect("valid");
    assert_eq!(e.event, "whatsapp:message:in");
    assert_eq!(e.from.as_deref(), Some("9184XXXXXXX"));
}

#[test]
fn a_status_yields_the_recipient() {
    let e = classify(STATUS).expect("valid");
    assert_eq!(e.event, "whatsapp:message:status");
    assert_eq!(e.to.as_deref(), Some("+91790XXXXXXX"));
    assert_eq!(
        e.from, None,
        "payload.from is the business, not payload.message.from"
    );
}

#[test]
fn fields_are_borrowed_from_the_body_when_unescaped() {
    let e = classify(TEXT).expect("valid");
    assert!(matches!(e.event, Cow::Borrowed(_)));
}

#[test]
fn escaped_strings_are_decoded() {
    let e = classify(br#"{"ev\u0065nt":"a\u003ab","payload":{"id":"x\u0079\"z"}}"#).expect("valid");
    assert_eq!(e.event, "a:b");
    assert_eq!(e.message_id.as_deref(), Some("xy\"z"));
}

#[test]
fn an_id_with_a_control_character_is_no_message_id_but_the_event_passes() {
    // It would be the `message-id` header (and perhaps the key): a CR LF there reaches every
    // consumer that forwards record headers. The body is stored as sent either way.
    for id in [
        r#""wamid.1\r\nX-Injected: 1""#,
        r#""a\u0000b""#,
        r#""a\u0085b""#,
    ] {
        let body =
            format!(r#"{{"event":"whatsapp:message:status","payload":{{"id":{id},"to":"+91"}}}}"#);
        let e = classify(body.as_bytes()).unwrap_or_else(|err| panic!("{id}: {err}"));
        assert_eq!(e.message_id, None, "{id}");
        assert_eq!(e.to.as_deref(), Some("+91"));
    }
}

#[test]
fn an_id_with_a_noncharacter_or_other_printable_oddity_is_still_the_message_id() {
    // Only control characters (Cc) keep an id out of the `message-id` header, as the README
    // says: the event's stricter rule (no noncharacters, for `ce_type`) must not reach the id.
    for (id, text) in [
        (r#""a\ufffeb""#, "a\u{fffe}b"),
        (r#""a\ufdd0b""#, "a\u{fdd0}b"),
        ("\"a\u{10ffff}b\"", "a\u{10ffff}b"),
        (r#""a\u00a0b""#, "a\u{a0}b"),
    ] {
        let body =
            format!(r#"{{"event":"whatsapp:message:status","payload":{{"id":{id},"to":"+91"}}}}"#);
        let e = classify(body.as_bytes()).unwrap_or_else(|err| panic!("{id}: {err}"));
        assert_eq!(e.message_id.as_deref(), Some(text), "{id}");
    }
}

#[test]
fn unexpected_payload_shapes_are_ignored_not_refused() {
    for body in [
        r#"{"event":"e","payload":null}"#,
        r#"{"event":"e","payload":[1,{"id":"x"}]}"#,
        r#"{"event":"e","payload":{"id":5,"to":{"n":1},"message":"text"}}"#,
        r#"{"event":"e","payload":{"message":{"from":["x"]}}}"#,
        r#"{"payload":{"id":"x"},"event":"e"}"#,
        // Numbers beyond f64 are valid JSON (where a string is expected: see below).
        r#"{"event":"e","payload":{"id":1e400,"to":-123456789012345678901234567890e999}}"#,
        r#"{"event":"e","payload":1e400}"#,
        r#"{"payload":-1e400,"event":"e"}"#,
        r#"{"event":"e","payload":{"message":1e400}}"#,
        // Valid JSON, but not text: of no use as a key, and no reason to refuse the event.
        r#"{"event":"e","payload":{"id":"\ud800","to":"\udc00x","message":{"from":"\ud83d"}}}"#,
    ] {
        let e = classify(body.as_bytes()).unwrap_or_else(|err| panic!("{body}: {err}"));
        assert_eq!(e.event, "e");
        assert_eq!(e.from, None);
    }
}

/// Valid JSON whose keys are not text (a lone surrogate escape) is no reason to refuse the event,
/// at any level the classifier reads, and the fields beside such a key are still found.
#[test]
fn keys_with_a_lone_surrogate_escape_are_skipped_like_any_other_unknown_key() {
    for body in [
        r#"{"\ud800":1,"event":"e","payload":{"to":"1","message":{"from":"2"}}}"#,
        r#"{"event":"e","payload":{"\udc00x":[1],"to":"1","message":{"from":"2"}}}"#,
        r#"{"event":"e","payload":{"to":"1","message":{"\ud83d":{},"from":"2"}}}"#,
        // Beside a number beyond f64, which sends the body through the careful pass.
        r#"{"event":"e","payload":{"\ud800":1e400,"to":"1","message":{"from":"2"}}}"#,
    ] {
        let e = classify(body.as_bytes()).unwrap_or_else(|err| panic!("{body}: {err}"));
        assert_eq!(
            (e.event.as_ref(), e.to.as_deref(), e.from.as_deref()),
            ("e", Some("1"), Some("2")),
            "{body}"
        );
    }
}

/// RFC 8259 wants control characters in strings escaped, and consumers' parsers refuse a body
/// with a raw one, keys included: the keys the classifier reads are no exception. The same
/// characters escaped are valid JSON, and taken.
#[test]
fn a_raw_control_character_in_a_key_is_refused_at_every_level_and_an_escaped_one_is_taken() {
    let shapes = [
        r#"{"K":1,"event":"e","payload":{"to":"1","message":{"from":"2"}}}"#,
        r#"{"event":"e","payload":{"K":1,"to":"1","message":{"from":"2"}}}"#,
        r#"{"event":"e","payload":{"to":"1","message":{"K":1,"from":"2"}}}"#,
        // Through the careful pass, which a number beyond f64 beside it asks for.
        r#"{"event":"e","payload":{"K":1e400,"to":"1","message":{"from":"2"}}}"#,
    ];
    for shape in shapes {
        for raw in ["no\x01te", "\n", "a\tb", "\x1f"] {
            let body = shape.replace('K', raw);
            assert!(
                matches!(classify(body.as_bytes()), Err(ClassifyError::NotJson(_))),
                "{body:?} was taken"
            );
        }
        for escaped in [r"no\u0001te", r"\n", r"a\tb", r"\u001F"] {
            let body = shape.replace('K', escaped);
            let e = classify(body.as_bytes()).unwrap_or_else(|err| panic!("{body}: {err}"));
            assert_eq!(
                (e.event.as_ref(), e.to.as_deref(), e.from.as_deref()),
                ("e", Some("1"), Some("2")),
                "{body}"
            );
        }
    }
}

#[test]
fn a_number_where_a_string_is_expected_is_taken_as_written() {
    let e = classify(
        br#"{"event":"e","payload":{"id":17,"to":919812345670,"message":{"from":1e400}}}"#,
    )
    .expect("valid");
    assert_eq!(
        (e.message_id.as_deref(), e.to.as_deref(), e.from.as_deref()),
        (Some("17"), Some("919812345670"), Some("1e400"))
    );
    // Not for the event: its name is a string.
    assert_eq!(
        classify(br#"{"event":5}"#).unwrap_err(),
        ClassifyError::EventNotString
    );
}

#[test]
fn fields_after_the_event_are_still_read() {
    let e =
        classify(br#"{"payload":{"message":{"x":1,"from":"1"},"to":"2","id":"3"},"event":"e"}"#)
            .expect("valid");
    assert_eq!(
        (e.from.as_deref(), e.to.as_deref(), e.message_id.as_deref()),
        (Some("1"), Some("2"), Some("3"))
    );
}

#[test]
fn refusals_name_the_reason() {
    let cases: &[(&[u8], ClassifyError)] = &[
        (b"[1,2]", ClassifyError::NotObject),
        (b"\"event\"", ClassifyError::NotObject),
        (b"42", ClassifyError::NotObject),
        (b"null", ClassifyError::NotObject),
        (b" 1e400 ", ClassifyError::NotObject),
        (b"{}", ClassifyError::MissingEvent),
        (br#"{"event":1}"#, ClassifyError::EventNotString),
        (br#"{"event":null}"#, ClassifyError::EventNotString),
        (br#"{"event":""}"#, ClassifyError::EmptyEvent),
        (br#"{"event":" \t\u0020"}"#, ClassifyError::EmptyEvent),
        (br#"{"event":"\ufeff \u00a0"}"#, ClassifyError::EmptyEvent),
        (
            br#"{"event":"a","event":"b"}"#,
            ClassifyError::DuplicateEvent,
        ),
        (
            br#"{"event":"a","payload":{"to":"1"},"payload":{"to":"2"}}"#,
            ClassifyError::DuplicatePayload,
        ),
        (
            br#"{"event":"whatsapp:message:in\n"}"#,
            ClassifyError::EventNotText,
        ),
        (br#"{"event":"a\u0000b"}"#, ClassifyError::EventNotText),
        (br#"{"event":"a\u007f"}"#, ClassifyError::EventNotText),
        (br#"{"event":"a\u0085"}"#, ClassifyError::EventNotText),
        (br#"{"event":"a\uffff"}"#, ClassifyError::EventNotText),
        (br#"{"event":"a\ufdd0"}"#, ClassifyError::EventNotText),
        (br#"{"event":"\ud83f\udffe"}"#, ClassifyError::EventNotText),
        (br#"{"event":"\ud83d"}"#, ClassifyError::EventNotText),
        (
            br#"{"event":"e","payload":{"to":"+911","to":"+912"}}"#,
            ClassifyError::DuplicateField("payload.to".into()),
        ),
        (
            br#"{"payload":{"id":"a","\u0069d":"b"},"event":"e"}"#,
            ClassifyError::DuplicateField("payload.id".into()),
        ),
        (
            br#"{"event":"e","payload":{"message":{"from":"1"},"message":{"from":"2"}}}"#,
            ClassifyError::DuplicateField("payload.message".into()),
        ),
        (
            br#"{"event":"e","payload":{"message":{"from":"1","from":"2"}}}"#,
            ClassifyError::DuplicateField("payload.message.from".into()),
        ),
        // Found by the careful pass too (a number beyond f64 sends the body there).
        (
            br#"{"event":"e","n":1e400,"payload":{"to":"1","to":"2"}}"#,
            ClassifyError::DuplicateField("payload.to".into()),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(
            classify(body).unwrap_err(),
            *want,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

/// The event is the record's `ce_type`, and CloudEvents' String type forbids every Unicode
/// noncharacter: both ends of U+FDD0..U+FDEF and the last two code points of every plane up to
/// U+10FFFF are refused, and their neighbours, which are text, are taken (found by mutation
/// testing: U+FDEF, the range's last, was never tried).
#[test]
fn every_noncharacter_in_the_event_is_refused_and_its_neighbours_are_taken() {
    let body = |c: u32| {
        let c = char::from_u32(c).expect("a scalar value");
        format!(r#"{{"event":"whatsapp:{c}"}}"#)
    };
    for c in [
        0xFDD0, 0xFDE7, 0xFDEF, 0xFFFE, 0xFFFF, 0x1FFFE, 0x1FFFF, 0x10FFFE, 0x10FFFF,
    ] {
        assert_eq!(
            classify(body(c).as_bytes()),
            Err(ClassifyError::EventNotText),
            "U+{c:04X}"
        );
    }
    for c in [0xFDCF, 0xFDF0, 0xFFFD, 0x1FFFD, 0x20000, 0x10FFFD] {
        let body = body(c);
        let got = classify(body.as_bytes()).unwrap_or_else(|e| panic!("U+{c:04X}: {e}"));
        assert!(got
            .event
            .ends_with(char::from_u32(c).expect("a scalar value")));
    }
}

/// Only keys spelled exactly `event`, `payload`, `id`, `to`, `message` and `from` are read: one
/// that differs in case or only begins with such a name is another field. Taken for `to` or
/// `from`, it would key the record by another number (a conversation's records split across
/// partitions); taken for `event`, it would refuse a real event as a duplicate (found by mutation
/// testing: a prefix or case-blind match passed every test). In both passes.
#[test]
fn keys_that_only_resemble_the_fields_read_are_other_fields() {
    let body = r#"{"Event":"x","events":"y","event":"e","eventType":"z","PAYLOAD":{"to":"8"},
        "payloads":{"to":"9"},"payload":{"identity":"i","ID":"I","total":"7","TO":"6","to":"1",
        "tos":"5","messages":{"from":"4"},"Message":{"from":"3"},
        "message":{"fromName":"2","FROM":"2","from":"0","from_me":"2"},"idx":"j"},"payload2":{}@}"#;
    // An escaped control character in a key sends the body down the careful pass.
    for tail in ["", r#","\u0001":0"#] {
        let body = body.replace('@', tail);
        let e = classify(body.as_bytes()).unwrap_or_else(|err| panic!("{body}: {err}"));
        assert_eq!(
            (
                e.event.as_ref(),
                e.message_id.as_deref(),
                e.to.as_deref(),
                e.from.as_deref()
            ),
            ("e", None, Some("1"), Some("0")),
            "{body}"
        );
    }
}

#[test]
fn invalid_utf8_in_a_field_the_bridge_skips_is_still_refused() {
    // A Latin-1 é in the customer's text: serde_json alone skips it without a check.
    let body = b"{\"event\":\"whatsapp:message:in\",\"payload\":{\"message\":{\"from\":\"9198\",\"text\":{\"body\":\"caf\xE9\"}}}}";
    assert_eq!(
        classify(body).unwrap_err(),
        ClassifyError::NotUtf8(body.len() - 6)
    );
    assert_eq!(
        classify(body).unwrap_err().to_string(),
        format!("body is not valid UTF-8 (at byte {})", body.len() - 6)
    );
    // UTF-16, with its byte order mark.
    assert_eq!(
        classify(b"\xff\xfe{\0}\0").unwrap_err(),
        ClassifyError::NotUtf8(0)
    );
}

#[test]
fn malformed_json_reports_a_position_but_never_the_content() {
    for body in [
        &b"{\"event\":\"e\""[..],
        b"{\"event\":\"e\",}",
        b"{\"event\":\"e\"} trailing",
        b"not json at all",
        b"{\"event\":\"secret-value\", \"x\": tru}",
    ] {
        let err = classify(body).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ClassifyError::NotJson(_)), "{text}");
        assert!(text.contains("line"), "{text}");
        assert!(
            !text.contains("secret") && !text.contains("trailing"),
            "{text}"
        );
    }
}

/// The 400's message and the dead-letter reason name the kind of fault, as the README shows.
#[test]
fn malformed_json_is_told_as_an_unexpected_end_or_a_syntax_error() {
    assert_eq!(
        classify(br#"{"event":"#).unwrap_err().to_string(),
        "body is not valid JSON (unexpected end at line 1 column 9)"
    );
    assert_eq!(
        classify(br#"{"event" 1}"#).unwrap_err().to_string(),
        "body is not valid JSON (syntax error at line 1 column 10)"
    );
}

/// A key with an escaped control character sends the body down the careful pass (serde_json
/// refuses to borrow it), and that pass must still take a `payload` or `payload.message` that
/// is a number beyond f64 raw rather than refuse the body (found by mutation testing: the
/// existing cases with `1e400` never reached the careful pass's conversion).
#[test]
fn the_careful_pass_takes_a_payload_beyond_f64_without_refusing_the_body() {
    let parsed = classify(br#"{"\u0001":0,"event":"e","payload":1e400}"#).expect("valid");
    assert_eq!(parsed.event, "e");
    let parsed = classify(br#"{"\u0001":0,"event":"e","payload":{"message":1e400,"to":"5"}}"#)
        .expect("valid");
    assert_eq!(parsed.to.as_deref(), Some("5"));
}

#[test]
fn invalid_json_after_a_valid_event_is_still_refused() {
    assert!(classify(br#"{"event":"e","payload":{"id":"1",}}"#).is_err());
}

#[test]
fn nesting_deeper_than_the_limit_is_refused_without_overflowing_the_stack() {
    let nest = |n: usize| {
        format!(
            "{{\"event\":\"e\",\"x\":{}{}}}",
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    assert!(classify(nest(MAX_DEPTH - 1).as_bytes()).is_ok());
    assert_eq!(
        classify(nest(MAX_DEPTH).as_bytes()),
        Err(ClassifyError::TooDeep)
    );
    assert_eq!(
        classify(nest(100_000).as_bytes()),
        Err(ClassifyError::TooDeep)
    );
}

/// How the classifier answered before its fast pass counted depth: the depth scan, then the
/// careful pass (the fast pass only ever spared it, giving the same answer).
fn careful_only(body: &str) -> Result<Envelope<'_>, ClassifyError> {
    check_depth(body.as_bytes())?;
    parse::<true>(body).map_err(structural)?
}

/// The fast pass counts nesting where it reads and where it skips; each place at the limit and
/// just past it, in valid and invalid bodies, is answered as the depth scan would.
#[test]
fn nesting_is_counted_alike_wherever_it_is() {
    let shapes = [
        r#"{"event":"e","x":V,"payload":{"id":"1"}}"#,
        r#"{"event":V,"payload":{"id":"1"}}"#,
        r#"{"event":"e","payload":V}"#,
        r#"{"event":"e","payload":[V]}"#,
        r#"{"event":"e","payload":{"id":V,"to":"1"}}"#,
        r#"{"event":"e","payload":{"x":V,"to":"1"}}"#,
        r#"{"event":"e","payload":{"message":V,"to":"1"}}"#,
        r#"{"event":"e","payload":{"message":[V],"to":"1"}}"#,
        r#"{"event":"e","payload":{"message":{"from":V,"x":V},"to":"1"}}"#,
        r#"[V]"#,
    ];
    for shape in shapes {
        for n in MAX_DEPTH - 4..=MAX_DEPTH + 1 {
            for inner in ["1", "{}", r#"{"a":[1e400]}"#, r#""\ud800""#, "[1,]", "tru"] {
                let nested = format!("{}{inner}{}", "[".repeat(n), "]".repeat(n));
                let objects = format!("{}{inner}{}", r#"{"k":"#.repeat(n), "}".repeat(n));
                for value in [nested, objects] {
                    for body in [shape.replace('V', &value), shape.replace('V', &value) + "x"] {
                        assert_eq!(classify(body.as_bytes()), careful_only(&body), "{body}");
                    }
                }
            }
        }
    }
}

#[test]
fn brackets_inside_strings_do_not_count_as_nesting() {
    let body = format!(
        r#"{{"event":"e","x":"{}\"{}"}}"#,
        "[".repeat(500),
        "{".repeat(500)
    );
    assert!(classify(body.as_bytes()).is_ok());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Arbitrary JSON values, nested a few levels.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".*".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(".*", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A JSON value kept as the text it is written with, so that numbers beyond f64 (which
    /// `serde_json::Value` cannot hold) and strings that are not Unicode text can be generated.
    #[derive(Debug, Clone)]
    enum Json {
        Null,
        Bool(bool),
        /// A number, as written.
        Number(String),
        Text(String),
        /// A string holding an unpaired surrogate escape: valid JSON, not Unicode text.
        LoneSurrogate,
        Array(Vec<Json>),
        /// Distinct keys, in the order written.
        Object(Vec<(String, Json)>),
    }

    impl Json {
        fn write(&self, out: &mut String) {
            let quoted = |s: &str| serde_json::to_string(s).expect("a string serializes");
            match self {
                Json::Null => out.push_str("null"),
                Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Json::Number(n) => out.push_str(n),
                Json::Text(s) => out.push_str(&quoted(s)),
                Json::LoneSurrogate => out.push_str(r#""\ud83d""#),
                Json::Array(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        item.write(out);
                    }
                    out.push(']');
                }
                Json::Object(fields) => {
                    out.push('{');
                    for (i, (key, value)) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&quoted(key));
                        out.push(':');
                        value.write(out);
                    }
                    out.push('}');
                }
            }
        }

        fn text(&self) -> String {
            let mut out = String::new();
            self.write(&mut out);
            out
        }

        /// The value of `key`, if this is an object that has it.
        fn get(&self, key: &str) -> Option<&Json> {
            match self {
                Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }

        /// What the classifier takes where it reads a field (`Lenient::text`): a string's text,
        /// or a number as written; nothing for any other value.
        fn as_field(&self) -> Option<&str> {
            match self {
                Json::Text(s) | Json::Number(s) => Some(s.as_str()),
                _ => None,
            }
        }
    }

    /// JSON numbers beyond f64 (valid JSON all the same): the fast pass refuses them where it
    /// converts a value (`payload`, `payload.message`), which sends the body to the careful pass.
    fn beyond_f64() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("1e400".to_string()),
            Just("-123456789012345678901234567890e999".to_string()),
            "-?[1-9][0-9]{0,3}(\\.[0-9]{1,5})?[eE]\\+?[1-9][0-9]{3}",
        ]
    }

    /// JSON numbers, among them ones beyond f64 and integers beyond 64 bits.
    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::to_string(&f).expect("finite")),
            Just("-123456789012345678901234567890".to_string()),
            "-?[1-9][0-9]{19,60}",
            "-?0\\.[0-9]{1,5}[eE]-[1-9][0-9]{3}",
            beyond_f64(),
        ]
    }

    /// A value the fast pass refuses to convert (a number beyond f64, a string that is not
    /// text), so that a body with it as `payload` or `payload.message` takes the careful pass.
    fn unconvertible() -> impl Strategy<Value = Json> {
        prop_oneof![
            3 => beyond_f64().prop_map(Json::Number),
            1 => Just(Json::LoneSurrogate),
        ]
    }

    /// Strings, often with control characters (C0, DEL, C1) or characters JSON escapes.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![".*", "[a-z0-9+\\x00-\\x1f\\x7f\\x{85}\"\\\\]{0,6}"]
    }

    fn leaf() -> impl Strategy<Value = Json> {
        prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            number().prop_map(Json::Number),
            text().prop_map(Json::Text),
            Just(Json::LoneSurrogate),
        ]
    }

    /// An object with these fields, in any order.
    fn object(fields: impl Strategy<Value = Vec<(String, Json)>>) -> impl Strategy<Value = Json> {
        fields.prop_shuffle().prop_map(Json::Object)
    }

    /// Fields with other names than `taken`.
    fn other_fields(
        taken: &'static [&'static str],
        values: impl Strategy<Value = Json>,
    ) -> impl Strategy<Value = Vec<(String, Json)>> {
        prop::collection::btree_map("[a-z]{1,8}", values, 0..4).prop_map(move |m| {
            m.into_iter()
                .filter(|(k, _)| !taken.contains(&k.as_str()))
                .collect()
        })
    }

    /// Any JSON value, nested a few levels.
    fn value() -> impl Strategy<Value = Json> {
        leaf().prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
                object(other_fields(&[], inner)),
            ]
        })
    }

    /// A value where the classifier reads a field: mostly a string or a number, else any value.
    fn field() -> impl Strategy<Value = Json> {
        prop_oneof![
            3 => text().prop_map(Json::Text),
            2 => number().prop_map(Json::Number),
            2 => value(),
        ]
    }

    /// Fields named `names`, each present or not, among others.
    fn with_fields(
        names: &'static [&'static str],
        named: impl Strategy<Value = Vec<Option<Json>>>,
    ) -> impl Strategy<Value = Json> {
        object(
            (named, other_fields(names, value())).prop_map(move |(named, mut fields)| {
                for (name, value) in names.iter().zip(named) {
                    if let Some(value) = value {
                        fields.push((name.to_string(), value));
                    }
                }
                fields
            }),
        )
    }

    /// `payload.message`: mostly an object, with or without `from`; else any value.
    fn message() -> impl Strategy<Value = Json> {
        prop_oneof![
            6 => with_fields(&["from"], prop::option::weighted(0.8, field()).prop_map(|f| vec![f])),
            2 => value(),
            2 => unconvertible(),
        ]
    }

    /// `payload`: mostly an object with some of `id`, `to` and `message`; else any value.
    fn payload() -> impl Strategy<Value = Json> {
        prop_oneof![
            4 => with_fields(
                &["id", "to", "message"],
                (
                    prop::option::weighted(0.8, field()),
                    prop::option::weighted(0.8, field()),
                    prop::option::weighted(0.8, message()),
                )
                    .prop_map(|(id, to, message)| vec![id, to, message]),
            ),
            1 => value(),
            1 => unconvertible(),
        ]
    }

    /// A body with a string `event` (its text), its `payload`, and other fields, in any order.
    fn event_body() -> impl Strategy<Value = (String, Json, String)> {
        (
            // Mostly names as Qikchat sends them, so that most bodies are events whose fields
            // the classifier reads; else any text, blank or with control characters among it.
            prop_oneof![3 => "[a-z]{1,10}(:[a-z]{1,10}){0,2}", 1 => ".*"],
            payload(),
            other_fields(&["event", "payload"], value()),
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
        )
            .prop_map(|(event, payload, mut fields, event_at, payload_at)| {
                let at = event_at.index(fields.len() + 1);
                fields.insert(at, ("event".into(), Json::Text(event.clone())));
                let at = payload_at.index(fields.len() + 1);
                fields.insert(at, ("payload".into(), payload.clone()));
                (event, payload, Json::Object(fields).text())
            })
    }

    /// One change to a body's text, at a position drawn as an index.
    #[derive(Debug, Clone)]
    enum Edit {
        Insert(prop::sample::Index, &'static str),
        Delete(prop::sample::Index),
        Replace(prop::sample::Index, &'static str),
        Truncate(prop::sample::Index),
    }

    /// What edits put into a body: JSON's punctuation, digits, escapes and multibyte characters.
    const PIECES: &[&str] = &[
        "{", "}", "[", "]", "\"", ":", ",", "\\", " ", "0", "1", "9", "e", "E", "+", "-", ".", "u",
        "\\u", "\\ud800", "\\u00", "é", "€", "😀", "\u{2028}", "null", "1e400",
    ];

    fn edits() -> impl Strategy<Value = Vec<Edit>> {
        let piece = || prop::sample::select(PIECES);
        let edit = prop_oneof![
            3 => (any::<prop::sample::Index>(), piece()).prop_map(|(at, p)| Edit::Insert(at, p)),
            3 => any::<prop::sample::Index>().prop_map(Edit::Delete),
            3 => (any::<prop::sample::Index>(), piece()).prop_map(|(at, p)| Edit::Replace(at, p)),
            1 => any::<prop::sample::Index>().prop_map(Edit::Truncate),
        ];
        prop::collection::vec(edit, 1..6)
    }

    /// The body with the edits applied, character by character: still UTF-8.
    fn edited(body: &str, edits: &[Edit]) -> String {
        let mut chars: Vec<char> = body.chars().collect();
        for edit in edits {
            let len = chars.len();
            match edit {
                Edit::Insert(at, piece) => {
                    let i = at.index(len + 1);
                    chars.splice(i..i, piece.chars());
                }
                Edit::Delete(at) if len > 0 => {
                    chars.remove(at.index(len));
                }
                Edit::Replace(at, piece) if len > 0 => {
                    let i = at.index(len);
                    chars.splice(i..=i, piece.chars());
                }
                Edit::Truncate(at) => chars.truncate(at.index(len + 1)),
                Edit::Delete(_) | Edit::Replace(..) => {}
            }
        }
        chars.into_iter().collect()
    }

    /// The plain byte-by-byte scan `check_depth` replaced: the reference it must agree with.
    fn depth_reference(body: &[u8], limit: usize) -> bool {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &b in body {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > limit {
                        return false;
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        true
    }

    proptest! {
        #[test]
        fn the_depth_scan_agrees_with_a_byte_by_byte_scan(
            body in prop::collection::vec(prop::sample::select(b"{}[]\"\\ax".to_vec()), 0..64),
            limit in 0usize..6,
        ) {
            prop_assert_eq!(depth_within(&body, limit), depth_reference(&body, limit));
        }

        /// Text gets past the UTF-8 check to the depth scan and the parser; drawn often from
        /// JSON's own characters, it reaches the parser's less travelled paths.
        #[test]
        fn arbitrary_text_never_panics(
            body in prop_oneof![
                "\\PC{0,512}",
                "[{}\\[\\]\":,\\\\ 0-9eE+.u\\-aé€😀]{0,128}",
            ],
        ) {
            let got = classify(body.as_bytes());
            prop_assert!(!matches!(got, Err(ClassifyError::NotUtf8(_))), "{:?}", got);
        }

        /// Bodies that were events, broken by edits that keep them UTF-8: malformed JSON (an
        /// unterminated string or escape, a stray bracket, a number cut short) reaches the depth
        /// scan, both parser passes and the field readers, and is refused, never accepted.
        #[test]
        fn edited_event_bodies_never_panic_and_are_accepted_only_while_still_json(
            (_, _, body) in event_body(),
            edits in edits(),
        ) {
            let body = edited(&body, &edits);
            let got = classify(body.as_bytes());
            prop_assert!(!matches!(got, Err(ClassifyError::NotUtf8(_))), "{:?}", got);
            if got.is_ok() {
                prop_assert!(
                    serde_json::from_str::<serde::de::IgnoredAny>(&body).is_ok(),
                    "accepted, but not JSON: {}",
                    body
                );
            }
        }

        /// The fast pass counts depth itself instead of the depth scan: it answers every body as
        /// the scan and the careful pass alone would, refusals (and their positions) included.
        #[test]
        fn the_fast_pass_answers_as_the_depth_scan_and_the_careful_pass(
            (_, _, body) in event_body(),
            edits in edits(),
            text in "[{}\\[\\]\":,\\\\ 0-9eE+.u\\-aé]{0,128}",
        ) {
            let body = edited(&body, &edits);
            prop_assert_eq!(classify(body.as_bytes()), careful_only(&body), "{}", body);
            prop_assert_eq!(classify(text.as_bytes()), careful_only(&text), "{}", text);
        }

        /// Bytes are almost never UTF-8: refused at the first byte that is not, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic_and_are_refused_where_they_stop_being_utf8(
            body in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let got = classify(&body);
            if let Err(e) = std::str::from_utf8(&body) {
                prop_assert_eq!(got.unwrap_err(), ClassifyError::NotUtf8(e.valid_up_to()));
            }
        }

        #[test]
        fn any_object_with_a_string_event_is_accepted_with_that_event_and_its_payload_fields_unless_the_event_is_blank_or_not_printable(
            (event, payload, body) in event_body(),
        ) {
            let got = classify(body.as_bytes());
            if event.chars().all(crate::record::is_space) {
                prop_assert_eq!(got.unwrap_err(), ClassifyError::EmptyEvent);
            } else if event.chars().any(char::is_control) {
                prop_assert_eq!(got.unwrap_err(), ClassifyError::EventNotText);
            } else {
                prop_assert!(got.is_ok(), "a real event refused: {:?}: {}", got, body);
                let got = got.expect("accepted");
                prop_assert_eq!(&got.event, &event);
                // Each field is taken when it is a string (its text) or a number (as written),
                // and is missing for any other value, or when its parent is absent or not an
                // object. The id (a header, perhaps the key) is also missing when it holds a
                // control character; `to` and `from` are taken as they are.
                fn field(v: Option<&Json>) -> Option<&str> {
                    v.and_then(Json::as_field)
                }
                let id = field(payload.get("id")).filter(|id| !id.chars().any(char::is_control));
                let to = field(payload.get("to"));
                let from = field(payload.get("message").and_then(|m| m.get("from")));
                prop_assert_eq!(got.message_id.as_deref(), id, "id in {}", body);
                prop_assert_eq!(got.to.as_deref(), to, "to in {}", body);
                prop_assert_eq!(got.from.as_deref(), from, "from in {}", body);
            }
        }

        #[test]
        fn any_json_that_is_not_an_object_is_refused(value in json()) {
            prop_assume!(!value.is_object());
            let body = serde_json::to_vec(&value).expect("serialize");
            prop_assert_eq!(classify(&body).unwrap_err(), ClassifyError::NotObject);
        }

        #[test]
        fn any_object_without_event_is_refused(fields in prop::collection::btree_map("[a-z]{1,8}", json(), 0..6)) {
            let object: serde_json::Map<String, serde_json::Value> =
                fields.into_iter().filter(|(k, _)| k != "event").collect();
            let body = serde_json::to_vec(&serde_json::Value::Object(object)).expect("serialize");
            prop_assert_eq!(classify(&body).unwrap_err(), ClassifyError::MissingEvent);
        }
    }
}
