//! Unit tests of the record: its key and headers as the README documents them.

use super::*;
use crate::classify::classify;

#[test]
fn a_customer_number_written_as_a_json_number_keys_the_conversation_all_the_same() {
    let incoming = classify(br#"{"event":"whatsapp:message:in","payload":{"id":"a","message":{"from":"919000000001"}}}"#).expect("valid");
    let status =
        classify(br#"{"event":"whatsapp:message:status","payload":{"id":"b","to":919000000001}}"#)
            .expect("valid");
    assert_eq!(
        key(KeyStrategy::Conversation, &incoming),
        key(KeyStrategy::Conversation, &status)
    );
}

#[test]
fn a_number_behind_a_byte_order_mark_keys_the_same_customer() {
    let incoming = classify(
            "{\"event\":\"whatsapp:message:in\",\"payload\":{\"id\":\"a\",\"message\":{\"from\":\"\u{feff}+919000000070\u{feff}\"}}}"
                .as_bytes(),
        )
        .expect("valid");
    let status = classify(
        br#"{"event":"whatsapp:message:status","payload":{"id":"b","to":"+919000000070"}}"#,
    )
    .expect("valid");
    assert_eq!(
        key(KeyStrategy::Conversation, &incoming).as_deref(),
        Some("919000000070")
    );
    assert_eq!(
        key(KeyStrategy::Conversation, &incoming),
        key(KeyStrategy::Conversation, &status)
    );
}

#[test]
fn a_message_and_its_status_share_the_customers_key() {
    let incoming = classify(br#"{"event":"whatsapp:message:in","payload":{"id":"a","message":{"from":"919000000001"}}}"#).expect("valid");
    let status = classify(br#"{"event":"whatsapp:message:status","payload":{"id":"b","from":"91800","to":"+919000000001"}}"#).expect("valid");
    assert_eq!(
        key(KeyStrategy::Conversation, &incoming).as_deref(),
        Some("919000000001")
    );
    assert_eq!(
        key(KeyStrategy::Conversation, &status).as_deref(),
        Some("919000000001")
    );
}

#[test]
fn the_message_id_is_the_last_resort_and_a_strategy_of_its_own() {
    let e = classify(br#"{"event":"x","payload":{"id":"+abc"}}"#).expect("valid");
    assert_eq!(key(KeyStrategy::Conversation, &e).as_deref(), Some("abc"));
    assert_eq!(key(KeyStrategy::MessageId, &e).as_deref(), Some("+abc"));
    assert_eq!(key(KeyStrategy::None, &e), None);
}

#[test]
fn spaces_around_the_plus_do_not_change_the_key() {
    for to in [
        "+919000000001",
        " + 919000000001 ",
        "+ 919000000001",
        "\\t919000000001",
    ] {
        let body = format!(r#"{{"event":"x","payload":{{"to":"{to}"}}}}"#);
        let e = classify(body.as_bytes()).expect("valid");
        assert_eq!(
            key(KeyStrategy::Conversation, &e).as_deref(),
            Some("919000000001"),
            "{to:?}"
        );
    }
}

#[test]
fn no_usable_field_means_no_key() {
    let e = classify(br#"{"event":"x","payload":{"to":"+"}}"#).expect("valid");
    assert_eq!(key(KeyStrategy::Conversation, &e), None);
}

#[test]
fn the_first_field_present_decides_even_when_it_is_empty_once_trimmed() {
    // Falling through to `to` or the id would key one customer's records by another number.
    for from in ["\"\"", "\" + \"", "\"\\u00a0\""] {
        let body = format!(
            r#"{{"event":"x","payload":{{"id":"wamid.1","to":"+919000000001","message":{{"from":{from}}}}}}}"#
        );
        let e = classify(body.as_bytes()).expect("valid");
        assert_eq!(key(KeyStrategy::Conversation, &e), None, "{from}");
    }
    let e = classify(br#"{"event":"x","payload":{"id":"wamid.1","to":""}}"#).expect("valid");
    assert_eq!(key(KeyStrategy::Conversation, &e), None);
}

#[test]
fn absent_headers_are_left_out() {
    let h = Headers {
        event: None,
        message_id: Some("m"),
        request_id: "r",
        received_at: "t",
        content_type: "application/json",
        body_sha256: "ab",
        deadletter_reason: Some("why"),
        cloudevents_source: None,
    };
    let names: Vec<_> = h.iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "message-id",
            "request-id",
            "received-at",
            "content-type",
            "body-sha256",
            "deadletter-reason"
        ]
    );
}

#[test]
fn a_time_the_clock_could_not_write_leaves_out_the_time_headers() {
    let h = Headers {
        event: Some("e"),
        message_id: None,
        request_id: "r",
        received_at: "",
        content_type: "application/json",
        body_sha256: "ab",
        deadletter_reason: None,
        cloudevents_source: Some("/s"),
    };
    let names: Vec<_> = h.iter().map(|(n, _)| n).collect();
    assert!(!names.contains(&"received-at"), "{names:?}");
    assert!(!names.contains(&"ce_time"), "{names:?}");
    assert!(names.contains(&"ce_id"), "{names:?}");
}

/// An incoming message may carry a `payload.to` as well (the business's number, say): the key
/// is still the customer who wrote, `message.from`, which comes first, or the message and its
/// statuses would land on different partitions.
#[test]
fn the_sender_of_an_incoming_message_keys_it_even_when_the_payload_has_a_to() {
    let incoming = classify(br#"{"event":"whatsapp:message:in","payload":{"id":"a","to":"+91790000000","message":{"from":"919000000001"}}}"#).expect("valid");
    assert_eq!(
        key(KeyStrategy::Conversation, &incoming).as_deref(),
        Some("919000000001")
    );
}

/// CloudEvents headers are opt-in: without a source (`--cloudevents` off) an event's record
/// carries none of them, and a dead-letter record gets none even with one.
#[test]
fn ce_headers_need_both_the_cloudevents_source_and_an_event() {
    let headers = |event, cloudevents_source| Headers {
        event,
        message_id: None,
        request_id: "r",
        received_at: "2026-11-24T02:53:47.123Z",
        content_type: "application/json",
        body_sha256: "ab",
        deadletter_reason: None,
        cloudevents_source,
    };
    fn ce(h: Headers<'_>) -> Vec<&str> {
        h.iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with("ce_"))
            .collect()
    }
    assert_eq!(ce(headers(Some("e"), None)), Vec::<&str>::new());
    assert_eq!(ce(headers(None, Some("/s"))), Vec::<&str>::new());
    assert_eq!(
        ce(headers(Some("e"), Some("/s"))),
        ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"]
    );
}

/// Kafka's record time is ms since the epoch; a clock set before 1970 has none to give, and the
/// callers choose what stands in (0 for a webhook, the record's own time for a re-send).
#[test]
fn a_record_time_is_ms_since_the_epoch_and_none_before_it() {
    use std::time::{Duration, UNIX_EPOCH};
    let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_999);
    assert_eq!(timestamp_ms(at), Some(1_700_000_000_123));
    assert_eq!(timestamp_ms(UNIX_EPOCH), Some(0));
    assert_eq!(timestamp_ms(UNIX_EPOCH - Duration::from_millis(1)), None);
}
