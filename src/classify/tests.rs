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

        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = classify(&body);
        }

        #[test]
        fn any_object_with_a_string_event_is_accepted_with_that_event_unless_blank_or_not_printable(
            event in ".*",
            fields in prop::collection::btree_map("[a-z]{1,8}", json(), 0..6),
            payload in json(),
        ) {
            let mut object: serde_json::Map<String, serde_json::Value> =
                fields.into_iter().filter(|(k, _)| k != "event" && k != "payload").collect();
            object.insert("event".into(), event.clone().into());
            object.insert("payload".into(), payload);
            let body = serde_json::to_vec(&serde_json::Value::Object(object)).expect("serialize");
            if event.trim().is_empty() {
                prop_assert_eq!(classify(&body).unwrap_err(), ClassifyError::EmptyEvent);
            } else if event.chars().any(char::is_control) {
                prop_assert_eq!(classify(&body).unwrap_err(), ClassifyError::EventNotText);
            } else {
                let got = classify(&body).expect("valid event body");
                prop_assert_eq!(got.event, event);
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
