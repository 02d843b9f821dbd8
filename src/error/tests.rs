//! Unit tests of the table from request outcomes to HTTP answers.

use super::*;

#[test]
fn outcomes_index_their_own_position() {
    for (i, o) in Outcome::ALL.iter().enumerate() {
        assert_eq!(o.index(), i);
    }
}

#[test]
fn server_side_failures_are_opaque() {
    let err = WebhookError::Produce(ProduceError::Unavailable("BrokerTransportFailure".into()));
    assert_eq!(err.outcome().status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = String::from_utf8(err.body()).expect("utf-8");
    assert!(!body.contains("Broker"), "{body}");
    let err = WebhookError::Produce(ProduceError::Rejected("InvalidRecord".into()));
    assert_eq!(err.outcome().status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!String::from_utf8(err.body())
        .expect("utf-8")
        .contains("Invalid"));
    // One an operator can fix asks for the retry that will work once it is fixed.
    let err = WebhookError::Produce(ProduceError::Refused("TopicAuthorizationFailed".into()));
    assert_eq!(err.outcome().status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!String::from_utf8(err.body())
        .expect("utf-8")
        .contains("Topic"));
}

/// Over `--max-in-flight` the sender gets the same opaque 503 as when Kafka is away: the
/// README names its body `error` `unavailable` (only the metric label says `overloaded`),
/// and the bridge's limits are no business of a sender's.
#[test]
fn an_overloaded_answer_is_the_opaque_unavailable_one_but_for_its_metric() {
    let err = WebhookError::Overloaded("requests", 64);
    assert_eq!(err.outcome(), Outcome::Overloaded);
    assert_eq!(err.outcome().label(), "overloaded");
    assert_eq!(err.outcome().status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_slice(&err.body()).expect("json");
    assert_eq!(
        body,
        serde_json::json!({
            "error": "unavailable",
            "message": "the event was not stored; retry later"
        })
    );
}

/// A 401 says only that credentials are required, never which check failed (missing,
/// malformed, wrong): a stranger guessing credentials learns nothing from it. And a 500 never
/// asks for the retry it says cannot help.
#[test]
fn a_401_does_not_say_why_and_a_500_does_not_ask_for_a_retry() {
    for why in [
        AuthFailure::Missing,
        AuthFailure::Malformed,
        AuthFailure::Wrong,
    ] {
        let body: serde_json::Value =
            serde_json::from_slice(&WebhookError::Unauthorized(why).body()).expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "error": "unauthorized",
                "message": "valid Basic credentials are required"
            }),
            "{why:?}"
        );
    }
    let err = WebhookError::Produce(ProduceError::Rejected("InvalidRecord".into()));
    let body: serde_json::Value = serde_json::from_slice(&err.body()).expect("json");
    assert_eq!(
        body,
        serde_json::json!({ "error": "internal_error", "message": "the event was not stored" })
    );
}

/// A body that came after the ack deadline is the sender's lateness: 408 `body_timeout`, the
/// same code and label as a body that never came, never Kafka's `unavailable`.
#[test]
fn a_late_body_is_a_body_timeout_in_its_code_status_and_label() {
    let err = WebhookError::LateBody(std::time::Duration::from_secs(2));
    assert_eq!(err.outcome().status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(err.outcome().label(), "body_timeout");
    let body: serde_json::Value = serde_json::from_slice(&err.body()).expect("json");
    assert_eq!(body["error"], "body_timeout");
}

#[test]
fn client_errors_explain_themselves() {
    let err = WebhookError::Invalid(ClassifyError::MissingEvent, KeptIn::DeadLetterTopic);
    assert_eq!(err.outcome().status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = serde_json::from_slice(&err.body()).expect("json");
    assert_eq!(body["error"], "invalid_payload");
    assert!(body["message"]
        .as_str()
        .expect("text")
        .contains("`event` is missing"));
    assert_eq!(
        WebhookError::TooLarge { limit: 10 }.outcome().status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        WebhookError::Produce(ProduceError::TooLarge)
            .outcome()
            .status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
}
