//! Handler tests with a fake sink: how each producer failure is answered.

use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::HeaderMap;

use super::*;
use crate::config::Config;
use crate::error::MediaRefusal;
use crate::producer::ProduceError;

/// Topic, key and value of each record sent.
type Sent = (String, Option<String>, Vec<u8>);

struct FakeSink {
    result: Result<Delivered, ProduceError>,
    seen: Mutex<Vec<Sent>>,
}

impl Sink for FakeSink {
    async fn send(
        &self,
        record: &Record<'_>,
        _deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        let key = record.key.as_deref().map(str::to_string);
        self.seen.lock().expect("lock").push((
            record.topic.to_string(),
            key,
            record.value.to_vec(),
        ));
        self.result.clone()
    }
}

fn webhook(result: Result<Delivered, ProduceError>) -> (Webhook<FakeSink>, Arc<FakeSink>) {
    let (hook, sink, _) = webhook_with_metrics(result);
    (hook, sink)
}

fn webhook_with_metrics(
    result: Result<Delivered, ProduceError>,
) -> (Webhook<FakeSink>, Arc<FakeSink>, Arc<Metrics>) {
    webhook_of(
        &Config::for_brokers("k:9092", "u:p").expect("config"),
        result,
    )
}

/// A webhook of `config` whose sink answers `result`, the sink and the metrics.
fn webhook_of(
    config: &Config,
    result: Result<Delivered, ProduceError>,
) -> (Webhook<FakeSink>, Arc<FakeSink>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new(&config.topics.all_topics()).expect("metrics"));
    let sink = Arc::new(FakeSink {
        result,
        seen: Mutex::new(Vec::new()),
    });
    (
        Webhook::new(config, sink.clone(), metrics.clone()),
        sink,
        metrics,
    )
}

/// What the fake Kafka answers for a record it takes.
const TAKEN: Result<Delivered, ProduceError> = Ok(Delivered::Kafka {
    partition: 0,
    offset: 0,
});
/// A webhook request to `path` whose body is `STATUS`, whole `after` the request began, or never.
fn streamed(
    path: &str,
    after: Option<Duration>,
) -> Request<impl Body<Data = Bytes, Error = std::io::Error>> {
    use futures_util::StreamExt;
    let body = futures_util::stream::once(async move {
        match after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
        Ok(hyper::body::Frame::data(Bytes::from_static(STATUS)))
    });
    Request::post(path)
        .header(http::header::HOST, "bridge")
        .header(AUTHORIZATION, "Basic dTpw")
        .body(http_body_util::StreamBody::new(body.boxed()))
        .expect("request")
}

fn post(body: &'static [u8]) -> Request<Full<Bytes>> {
    Request::post("/webhook")
        .header(http::header::HOST, "bridge")
        .header(AUTHORIZATION, "Basic dTpw")
        .body(Full::new(Bytes::from_static(body)))
        .expect("request")
}

const STATUS: &[u8] = br#"{"event":"whatsapp:message:status","payload":{"id":"m","to":"+1"}}"#;

#[tokio::test]
async fn an_acknowledged_record_is_answered_200_with_the_record_passed_through() {
    let (hook, sink) = webhook(Ok(Delivered::Kafka {
        partition: 0,
        offset: 7,
    }));
    let response = hook.handle(post(STATUS)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key(X_REQUEST_ID));
    let seen = sink.seen.lock().expect("lock");
    assert_eq!(
        seen[0],
        (
            "whatsapp.message.status".to_string(),
            Some("1".to_string()),
            STATUS.to_vec()
        )
    );
}

#[tokio::test]
async fn a_full_queue_or_a_missed_deadline_is_503_with_retry_after() {
    for err in [
        ProduceError::QueueFull,
        ProduceError::Timeout,
        ProduceError::Unavailable("x".into()),
    ] {
        let (hook, _) = webhook(Err(err.clone()));
        let response = hook.handle(post(STATUS)).await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{err:?}"
        );
        assert_eq!(response.headers()[RETRY_AFTER], "1");
    }
}

#[tokio::test]
async fn a_permanent_refusal_is_500_a_fixable_one_503_and_a_too_large_record_413() {
    let (hook, _) = webhook(Err(ProduceError::Rejected("InvalidRecord".into())));
    assert_eq!(
        hook.handle(post(STATUS)).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let (hook, _) = webhook(Err(ProduceError::Refused(
        "TopicAuthorizationFailed".into(),
    )));
    let answer = hook.handle(post(STATUS)).await;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers()[RETRY_AFTER], "1");
    let (hook, _) = webhook(Err(ProduceError::TooLarge));
    assert_eq!(
        hook.handle(post(STATUS)).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test]
async fn an_invalid_body_whose_dead_letter_write_fails_is_503_so_the_sender_retries() {
    let (hook, sink) = webhook(Err(ProduceError::Timeout));
    let response = hook.handle(post(b"{oops")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(sink.seen.lock().expect("lock")[0].0, "whatsapp.deadletter");
}

#[tokio::test]
async fn refusals_before_the_body_never_reach_the_sink() {
    let (hook, sink) = webhook(Ok(Delivered::Kafka {
        partition: 0,
        offset: 0,
    }));
    let no_auth = Request::post("/webhook")
        .header(http::header::HOST, "bridge")
        .body(Full::new(Bytes::from_static(STATUS)))
        .expect("request");
    assert_eq!(
        hook.handle(no_auth).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Two different credentials are none (which did a proxy in front check?); the same one
    // twice is still that one.
    let two = |second: &'static str| {
        Request::post("/webhook")
            .header(http::header::HOST, "bridge")
            .header(AUTHORIZATION, "Basic dTpw")
            .header(AUTHORIZATION, second)
            .body(Full::new(Bytes::from_static(STATUS)))
            .expect("request")
    };
    assert_eq!(
        hook.handle(two("Basic eDp5")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(sink.seen.lock().expect("lock").is_empty());
    assert_eq!(
        hook.handle(two("Basic dTpw")).await.status(),
        StatusCode::OK
    );
    sink.seen.lock().expect("lock").clear();
    let wrong_type = Request::post("/webhook")
        .header(http::header::HOST, "bridge")
        .header(AUTHORIZATION, "Basic dTpw")
        .header(CONTENT_TYPE, "application/xml")
        .body(Full::new(Bytes::from_static(STATUS)))
        .expect("request");
    let refused = hook.handle(wrong_type).await;
    assert_eq!(refused.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // The sender learns what to send.
    let body = refused.into_body().into_inner().expect("full body");
    assert!(
        String::from_utf8_lossy(&body).contains("must be application/json (or application/*+json)"),
        "{body:?}"
    );
    assert!(sink.seen.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn a_compressed_body_is_refused_415_naming_what_is_accepted_and_never_reaches_the_sink() {
    let (hook, sink) = webhook(Ok(Delivered::Kafka {
        partition: 0,
        offset: 0,
    }));
    let with_encoding = |coding: &'static str| {
        Request::post("/webhook")
            .header(http::header::HOST, "bridge")
            .header(AUTHORIZATION, "Basic dTpw")
            .header(CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_ENCODING, coding)
            .body(Full::new(Bytes::from_static(STATUS)))
            .expect("request")
    };
    // A value that is not text names no coding anyone can check (found by mutation testing:
    // one read as `identity` passed every test).
    for coding in ["gzip", "br", "identity, gzip", "GZIP", "identit\u{e9}"] {
        let response = hook.handle(with_encoding(coding)).await;
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{coding}"
        );
        assert_eq!(response.headers()["accept-encoding"], "identity");
        let body = response.into_body().into_inner().expect("full body");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("uncompressed"), "{coding}: {text}");
    }
    assert!(sink.seen.lock().expect("lock").is_empty());
    // A list's members are trimmed: `identity , identity` says nothing else.
    for coding in ["identity", "Identity", "", "identity , identity"] {
        let response = hook.handle(with_encoding(coding)).await;
        assert_eq!(response.status(), StatusCode::OK, "{coding:?}");
    }
}

#[test]
fn json_content_types_are_recognised() {
    let check = |v: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
        content_type(&h).is_ok()
    };
    assert!(check("application/json"));
    assert!(check("application/json; charset=utf-8"));
    assert!(check("application/vnd.qikchat+json"));
    assert!(check("Application/JSON"));
    assert!(check("application/Vnd.Qikchat+JSON; charset=utf-8"));
    assert!(!check("application/son"));
    assert!(!check("text/json"));
    assert!(!check("application/jsonp"));
    assert!(!check("multipart/form-data"));
    assert!(
        !check("application/+json"),
        "a suffix needs a name before it"
    );
    assert!(
        !check("application/cloudevents+json"),
        "would make CloudEvents readers take the body for a structured event"
    );
    assert!(!check("Application/CloudEvents-Batch+JSON; charset=utf-8"));
    assert!(check("application/json; charset=UTF-8"));
    assert!(check("application/json;charset=\"utf-8\""));
    assert!(check("application/json; charset=utf8; profile=x"));
    assert!(check(
        "application/json; profile=\"a b,c=d\"; charset=utf-8"
    ));
    assert!(check("application/json;"));
    assert!(
        !check("application/json; charset=iso-8859-1"),
        "JSON is UTF-8: a record saying otherwise would be decoded wrongly"
    );
    assert!(!check("application/json; CHARSET=\"UTF-16\""));
    assert!(!check("application/json; profile=x; charset=latin1"));
    assert!(!check("application/json; charset="));
    // An unterminated quote is no media type at all.
    assert!(!check(r#"application/json; charset="utf-8"#));
    let long: &'static str = format!("application/json; x={}", "y".repeat(300)).leak();
    assert!(!check(long), "copied into every record: kept short");
    // RFC 9110's grammar, and none of what readers part ways on, so that no reader finds a
    // charset this check does not. Python's email parser reads `latin1` in each of these: it
    // counts quotes (the first two, found by fuzzing and by review) and joins RFC 2231's
    // numbered parameters; Python's `requests` splits at every `;`, quoted or not.
    assert!(!check(r#"application/json;";b=";charset=latin1;""#));
    assert!(!check(r#"application/json; a="x\\"; b=";charset=latin1;""#));
    assert!(!check("application/json; charset*0=latin1"));
    assert!(!check("application/json; charset=utf-8; charset*0=latin1"));
    assert!(!check("application/json; charset*0*=iso-8859-1''x"));
    assert!(!check("application/json; charset*=''latin1"));
    assert!(!check(
        "application/json; profile=\"a;charset=latin1\"; charset=utf-8"
    ));
    assert!(!check(r#"application/json; charset="utf\-8""#));
    // An empty quoted value is a value.
    assert!(check(r#"application/json; x="""#));
    assert!(!check(r#"application/json; charset="""#));
    // 256 bytes is the limit, not over it.
    let at_limit: &'static str = format!("application/json; x={}", "y".repeat(236)).leak();
    assert_eq!(at_limit.len(), 256);
    assert!(check(at_limit));
    let over: &'static str = format!("application/json; x={}", "y".repeat(237)).leak();
    assert!(!check(over));
    assert!(!check("application/x/y+json"));
    assert!(!check("application/a b+json"));
    assert!(!check("application/json; profile"));
    assert!(!check("application/json; =x"));
    assert!(!check("application/json; a=\"x\"y"));
    assert!(!check("application/json; a=x y"));
    assert!(check(
        "application/json ;charset=utf-8 ;; profile=\"a b\" ;"
    ));
    assert!(check("application/json;;charset=utf-8;"));
}

#[test]
fn each_refused_content_type_is_told_what_was_wrong_with_it() {
    let why = |v: &[u8]| {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_bytes(v).expect("header"));
        match content_type(&h) {
            Ok(_) => None,
            Err(WebhookError::UnsupportedMediaType(r)) => Some(r),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(why(b"application/json; charset=utf-8"), None);
    assert_eq!(why(b"text/plain"), Some(MediaRefusal::NotJson));
    assert_eq!(why(b"json"), Some(MediaRefusal::NotJson));
    assert_eq!(
        why(b"application/cloudevents+json"),
        Some(MediaRefusal::CloudEvents)
    );
    assert_eq!(
        why(b"application/json; charset=latin1"),
        Some(MediaRefusal::Charset)
    );
    assert_eq!(
        why(br#"application/json; charset="utf-8"#),
        Some(MediaRefusal::Malformed)
    );
    assert_eq!(
        why(b"application/json; x=\xff"),
        Some(MediaRefusal::Malformed)
    );
    assert_eq!(
        why(br#"application/json;";b=";charset=latin1;""#),
        Some(MediaRefusal::Malformed)
    );
    assert_eq!(
        why(b"application/json; charset*=''latin1"),
        Some(MediaRefusal::Malformed)
    );
    assert_eq!(
        why(b"application/json; charset=\"latin1\""),
        Some(MediaRefusal::Charset)
    );
    assert_eq!(why(b"application/x/y+json"), Some(MediaRefusal::Malformed));
    // A type or subtype left out is no media type at all, not one other than JSON (found by
    // mutation testing: an empty token passed every test).
    assert_eq!(why(b"/json"), Some(MediaRefusal::Malformed));
    assert_eq!(why(b"application/"), Some(MediaRefusal::Malformed));
    // A parameter without a value, and two with no `;` between them (found by mutation testing:
    // both were taken unnoticed).
    assert_eq!(why(b"application/json; a="), Some(MediaRefusal::Malformed));
    assert_eq!(
        why(b"application/json; a=b c=d"),
        Some(MediaRefusal::Malformed)
    );
    let long = format!("application/json; x={}", "y".repeat(300));
    assert_eq!(why(long.as_bytes()), Some(MediaRefusal::Malformed));
    let mut twice = HeaderMap::new();
    twice.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    twice.append(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    assert!(matches!(
        content_type(&twice),
        Err(WebhookError::UnsupportedMediaType(MediaRefusal::Malformed))
    ));
    let mut same_twice = HeaderMap::new();
    same_twice.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    same_twice.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    assert!(content_type(&same_twice).is_ok());
}

/// HTTP/1's parser drops the white space around a field's value; HTTP/2 passes it on (RFC 9113
/// calls such a field malformed). The record's `content-type` is the same either way.
#[test]
fn the_copied_content_type_has_no_white_space_around_it() {
    let mut h = HeaderMap::new();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(" \tapplication/json; charset=utf-8 \t"),
    );
    assert_eq!(
        content_type(&h).ok(),
        Some("application/json; charset=utf-8")
    );
}

#[test]
fn only_one_chunked_transfer_coding_passes() {
    let with = |values: &[&'static str]| {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(http::header::TRANSFER_ENCODING, HeaderValue::from_static(v));
        }
        chunked_only(&h).is_ok()
    };
    assert!(with(&[]));
    assert!(with(&["chunked"]));
    assert!(with(&["Chunked"]));
    // hyper undoes one chunked layer and no other coding: what is left would reach Kafka.
    assert!(!with(&["gzip, chunked"]));
    // Alone too, though hyper's HTTP/1 parser refuses it first (found by mutation testing).
    assert!(!with(&["gzip"]));
    assert!(!with(&["chunked, chunked"]));
    assert!(!with(&["chunked", "chunked"]));
    // Four different answers, none telling the sender to send what it sent.
    let messages: std::collections::BTreeSet<_> = [
        MediaRefusal::NotJson,
        MediaRefusal::CloudEvents,
        MediaRefusal::Charset,
        MediaRefusal::Malformed,
    ]
    .map(MediaRefusal::message)
    .into();
    assert_eq!(messages.len(), 4);
    assert!(messages.iter().all(|m| m.contains("application/json")));
}

#[test]
fn received_at_is_rfc3339_utc_with_milliseconds() {
    let at = |ms: u64| {
        Rfc3339Millis::new(UNIX_EPOCH + Duration::from_millis(ms))
            .as_str()
            .to_owned()
    };
    assert_eq!(at(1_764_010_837_123), "2025-11-24T19:00:37.123Z");
    assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(at(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    // A clock out of that range gets an empty value; humantime would panic on both.
    assert_eq!(at(253_402_300_800_000), "");
    let before_1970 = Rfc3339Millis::new(UNIX_EPOCH - Duration::from_secs(1));
    assert_eq!(before_1970.as_str(), "");
}

#[test]
fn only_sane_request_ids_are_kept() {
    let with = |v: &'static str| {
        let req = Request::post("/")
            .header(X_REQUEST_ID, v)
            .body(())
            .expect("request");
        request_id(&req)
    };
    assert_eq!(with("abc-123"), "abc-123");
    assert_ne!(with("has space"), "has space");
    assert_ne!(with(""), "");
    assert_eq!(
        with(Box::leak("x".repeat(200).into_boxed_str())).len(),
        36,
        "too long: a UUID instead"
    );
    // 128 bytes are kept, 129 are not (found by mutation testing: only 200 was tried).
    let longest: &'static str = Box::leak("x".repeat(128).into_boxed_str());
    assert_eq!(with(longest), longest);
    assert_eq!(with(Box::leak("x".repeat(129).into_boxed_str())).len(), 36);
}

#[tokio::test]
async fn a_body_in_several_frames_is_joined_byte_for_byte_and_trailers_are_skipped() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b"{\"event\":"))),
        Ok(Frame::data(Bytes::new())),
        Ok(Frame::data(Bytes::from_static(b"\"x\""))),
        Ok(Frame::data(Bytes::from_static(b"}"))),
        Ok(Frame::trailers(HeaderMap::new())),
    ];
    let body = StreamBody::new(futures_util::stream::iter(frames));
    assert_eq!(concat(body).await.expect("body"), &b"{\"event\":\"x\"}"[..]);
}

#[tokio::test]
async fn a_body_in_many_frames_holds_no_more_memory_than_its_size() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    // 65 frames of 16 KiB, as an HTTP/2 or chunked body may come: grown by doubling, the buffer
    // would end at 2 MiB for 1 MiB and change, against what the in-flight bytes count.
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..65)
        .map(|_| Ok(Frame::data(Bytes::from(vec![b' '; 16 * 1024]))))
        .collect();
    let body = concat(StreamBody::new(futures_util::stream::iter(frames)))
        .await
        .expect("body");
    assert_eq!(body.len(), 65 * 16 * 1024);
    let held = body.try_into_mut().expect("sole owner").capacity();
    assert!(held <= 65 * 16 * 1024 * 9 / 8, "{held} bytes held");
}

#[tokio::test]
async fn a_body_in_one_frame_is_passed_on_without_a_copy() {
    let frame = Bytes::from_static(b"{\"event\":\"x\"}");
    let body = concat(Full::new(frame.clone())).await.expect("body");
    assert_eq!(body.as_ptr(), frame.as_ptr(), "the same buffer, not a copy");
    assert!(concat(http_body_util::Empty::<Bytes>::new())
        .await
        .expect("empty")
        .is_empty());
}

/// A Kafka that never answers.
struct Never;

impl Sink for Never {
    async fn send(&self, _: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_dropped_before_its_answer_is_counted_as_cancelled_and_an_answered_one_is_not() {
    let config = Config::for_brokers("k:9092", "u:p").expect("config");
    let metrics = Arc::new(Metrics::new(&config.topics.all_topics()).expect("metrics"));
    let hook = Webhook::new(&config, Arc::new(Never), metrics.clone());
    let cancelled = || {
        String::from_utf8(metrics.render())
            .expect("utf-8")
            .lines()
            .find_map(|l| l.strip_prefix("qikchat_bridge_requests_cancelled_total "))
            .map(str::to_owned)
    };
    // An HTTP/2 stream reset drops the handler's future just like this.
    let cut = tokio::time::timeout(Duration::from_millis(100), hook.handle(post(STATUS))).await;
    assert!(cut.is_err(), "still waiting for Kafka");
    assert_eq!(cancelled().as_deref(), Some("1"));
    let refused = Request::post("/elsewhere")
        .header(http::header::HOST, "bridge")
        .body(Full::new(Bytes::from_static(STATUS)))
        .expect("request");
    assert_eq!(hook.handle(refused).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        cancelled().as_deref(),
        Some("1"),
        "an answer is no cancellation"
    );
}

/// Fails unless `metrics` still count no slow response.
fn assert_no_slow_response(metrics: &Metrics) {
    let shown = String::from_utf8(metrics.render()).expect("utf-8");
    assert!(
        shown.contains("qikchat_bridge_slow_responses_total 0"),
        "{shown}"
    );
}

/// With an ack timeout under the second a refused body may take to be read and dropped, the
/// refusal is answered when that body ends, and its sender was the slow one: counted as a slow
/// response, it would fire the alert meant for the bridge itself answering late (found by
/// mutation testing: the answer could be held to the ack timeout alone).
#[tokio::test(start_paused = true)]
async fn a_refusal_answered_when_its_late_body_ended_is_no_slow_response() {
    let mut config = Config::for_brokers("k:9092", "u:p").expect("config");
    config.ack_timeout = Duration::from_millis(300);
    let metrics = Arc::new(Metrics::new(&config.topics.all_topics()).expect("metrics"));
    let hook = Webhook::new(&config, Arc::new(Never), metrics.clone());
    let elsewhere = streamed("/elsewhere", Some(Duration::from_millis(700)));
    let answer = hook.handle(elsewhere).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    assert_eq!(answer.headers().get(CONNECTION), None, "read whole");
    assert_no_slow_response(&metrics);
}

/// A Kafka that acknowledges within the ack timeout, however close to it, leaves the answer on
/// time: counted as a slow response, every ordinary Kafka latency over 100 ms would fire the
/// alert meant for the bridge itself answering late (found by mutation testing: an answer held
/// due as soon as its body was read passed every test).
#[tokio::test(start_paused = true)]
async fn an_answer_waiting_on_kafka_within_the_ack_timeout_is_no_slow_response() {
    /// A Kafka that acknowledges half a second later.
    struct Slow;
    impl Sink for Slow {
        async fn send(&self, _: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(Delivered::Kafka {
                partition: 0,
                offset: 0,
            })
        }
    }
    let config = Config::for_brokers("k:9092", "u:p").expect("config");
    let metrics = Arc::new(Metrics::new(&config.topics.all_topics()).expect("metrics"));
    let hook = Webhook::new(&config, Arc::new(Slow), metrics.clone());
    assert_eq!(hook.handle(post(STATUS)).await.status(), StatusCode::OK);
    assert_no_slow_response(&metrics);
}

/// A body still coming at the ack deadline can no longer be stored in time: it is answered 408
/// then, not whenever it ends (waiting only held its `--max-in-flight` place and connection),
/// and the answer names the ack timeout that cut it off, not the longer body read timeout the
/// sender kept to (found by mutation testing: neither the time nor the message was checked).
#[tokio::test(start_paused = true)]
async fn a_body_still_coming_at_the_ack_deadline_is_answered_408_then_naming_the_ack_timeout() {
    let mut config = Config::for_brokers("k:9092", "u:p").expect("config");
    config.ack_timeout = Duration::from_secs(2);
    config.body_read_timeout = Duration::from_secs(5);
    let (hook, sink, _) = webhook_of(&config, TAKEN);
    let request = streamed("/webhook", Some(Duration::from_secs(3)));
    let started = Instant::now();
    let answer = hook.handle(request).await;
    assert_eq!(
        started.elapsed(),
        config.ack_timeout,
        "answered at the deadline"
    );
    assert_eq!(answer.status(), StatusCode::REQUEST_TIMEOUT);
    let body = answer.into_body().into_inner().expect("full body");
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("ack timeout"), "{text}");
    assert!(sink.seen.lock().expect("lock").is_empty(), "nothing stored");
}

/// A body whose last byte came at the ack deadline is too late to be stored before its answer
/// is due: it is answered 408 and never handed to the sink, whose own check (the deadline passed
/// before it began) would blame Kafka for it in the log and the metrics (found by mutation
/// testing: without the handler's check every test still passed).
#[tokio::test(start_paused = true)]
async fn a_body_whole_only_at_the_ack_deadline_is_408_and_never_reaches_the_sink() {
    let (hook, sink) = webhook(Ok(Delivered::Kafka {
        partition: 0,
        offset: 0,
    }));
    let request = streamed("/webhook", Some(hook.ack_timeout));
    let answer = hook.handle(request).await;
    assert_eq!(answer.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(sink.seen.lock().expect("lock").is_empty(), "nothing stored");
}

/// Kafka is waited for until the ack deadline counted from the request's start, as the ack
/// timeout is: a body that took half a second to arrive leaves Kafka half a second less, or the
/// answer would come after the 2 s Qikchat waits for it (found by mutation testing: a deadline
/// counted from the body's end passed every test).
#[tokio::test(start_paused = true)]
async fn kafka_is_waited_for_until_the_ack_deadline_counted_from_the_requests_start() {
    /// A Kafka that acknowledges at once, and notes the deadline it was given.
    struct Until(Mutex<Option<Instant>>);
    impl Sink for Until {
        async fn send(&self, _: &Record<'_>, deadline: Instant) -> Result<Delivered, ProduceError> {
            *self.0.lock().expect("lock") = Some(deadline);
            Ok(Delivered::Kafka {
                partition: 0,
                offset: 0,
            })
        }
    }
    let config = Config::for_brokers("k:9092", "u:p").expect("config");
    let metrics = Arc::new(Metrics::new(&config.topics.all_topics()).expect("metrics"));
    let sink = Arc::new(Until(Mutex::new(None)));
    let hook = Webhook::new(&config, sink.clone(), metrics);
    let request = streamed("/webhook", Some(Duration::from_millis(500)));
    let started = Instant::now();
    assert_eq!(hook.handle(request).await.status(), StatusCode::OK);
    assert_eq!(
        *sink.0.lock().expect("lock"),
        Some(started + config.ack_timeout)
    );
}

/// A sender that asks for `100 Continue` waits for it before it sends its body, and hyper sends
/// none on HTTP/2 (nor on HTTP/1.1 once the request is refused): a refusal is answered at once,
/// not after the second its body may take to be read and dropped; and an empty body needs no
/// waiting, so the HTTP/1 connection carries on (found by mutation testing: neither was tried).
#[tokio::test(start_paused = true)]
async fn a_refused_sender_waiting_for_100_continue_is_answered_at_once() {
    use futures_util::StreamExt;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let (hook, _) = webhook(Ok(Delivered::Kafka {
        partition: 0,
        offset: 0,
    }));
    let waiting = |version: Version| {
        let never = futures_util::stream::pending::<Result<Frame<Bytes>, std::io::Error>>();
        Request::post("/elsewhere")
            .version(version)
            .header(http::header::HOST, "bridge")
            .header(AUTHORIZATION, "Basic dTpw")
            .header(EXPECT, "100-continue")
            .body(StreamBody::new(never.boxed()))
            .expect("request")
    };
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let asked = Instant::now();
        let answer = hook.handle(waiting(version)).await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{version:?}");
        assert_eq!(asked.elapsed(), Duration::ZERO, "{version:?}");
    }
    let empty = Request::post("/elsewhere")
        .header(http::header::HOST, "bridge")
        .header(AUTHORIZATION, "Basic dTpw")
        .header(EXPECT, "100-continue")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let answer = hook.handle(empty).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        answer.headers().get(CONNECTION),
        None,
        "nothing left unread"
    );
}

/// A refused body is waited for at most a second, or `--body-read-timeout` if that is shorter:
/// the refusal is answered within Qikchat's 2 s however slowly its body comes (by default the
/// body timeout is 5 s), and a sender whose accepted body would be cut off sooner is not waited
/// for longer once refused (found by mutation testing: neither bound was tried).
#[tokio::test(start_paused = true)]
async fn a_refused_body_is_waited_for_a_second_at_most_or_the_body_read_timeout_if_shorter() {
    for (body_read_timeout, answered_after) in [
        (Duration::from_secs(5), Duration::from_secs(1)),
        (Duration::from_millis(200), Duration::from_millis(200)),
    ] {
        let mut config = Config::for_brokers("k:9092", "u:p").expect("config");
        config.body_read_timeout = body_read_timeout;
        let metrics = Arc::new(Metrics::new(&config.topics.all_topics()).expect("metrics"));
        let hook = Webhook::new(&config, Arc::new(Never), metrics);
        let elsewhere = streamed("/elsewhere", None);
        let asked = Instant::now();
        assert_eq!(hook.handle(elsewhere).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(asked.elapsed(), answered_after, "{body_read_timeout:?}");
    }
}

mod refusals;
mod versions;

#[test]
fn a_host_is_a_name_or_address_with_an_optional_port() {
    use super::parts::valid_host;
    for good in [
        "",
        "bridge",
        "bridge.ns.svc.cluster.local:8080",
        "10.0.0.1:80",
        "[::1]",
        "[2001:db8::1]:8443",
        "[v1.fe80::a+en1]",
        // RFC 3986's grammar is case-insensitive, its `v` too (found by mutation testing).
        "[V1.fe80::a+en1]",
        "under_score~tilde",
        "caf%C3%A9.example",
        "host:",
    ] {
        assert!(valid_host(good.as_bytes()), "{good:?} refused");
    }
    for bad in [
        "a b",
        "x/y",
        "user@host",
        "[::1",
        "[::1]x",
        "[zz::1]",
        "[v.x]",
        "host:port",
        "a:1:2",
        "caf%C",
        "caf%zz",
        "caf\u{e9}",
        "a?b",
        "a#b",
        "\"q\"",
        // An IPvFuture needs hex digits, a dot and something after it; a %-escape two hex
        // digits (found by mutation testing: none of these was tried).
        "[v1.]",
        "[vG.x]",
        "%G1",
    ] {
        assert!(!valid_host(bad.as_bytes()), "{bad:?} taken");
    }
}

/// A webhook whose `--max-body-bytes` is the size of [`STATUS`].
fn taking_at_most_a_status() -> Webhook<FakeSink> {
    let mut config = Config::for_brokers("k:9092", "u:p").expect("config");
    config.max_body_bytes = STATUS.len();
    webhook_of(&config, TAKEN).0
}

/// A body as large as `--max-body-bytes` is no larger than the bridge takes: refused by its
/// head, it is read and dropped like a smaller one, and the HTTP/1 connection carries on (found
/// by mutation testing: only bodies well under or well over the limit were refused so).
#[tokio::test]
async fn a_refused_body_of_exactly_the_largest_size_is_read_and_the_connection_carries_on() {
    let hook = taking_at_most_a_status();
    let elsewhere = Request::post("/elsewhere")
        .header(http::header::HOST, "bridge")
        .header(AUTHORIZATION, "Basic dTpw")
        .header(CONTENT_LENGTH, STATUS.len())
        .body(Full::new(Bytes::from_static(STATUS)))
        .expect("request");
    let answer = hook.handle(elsewhere).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    assert_eq!(answer.headers().get(CONNECTION), None, "read whole");
}

/// A refused body is read and dropped only when it ends within `--max-body-bytes` and its time:
/// one larger without a declared length, one that stalls and one that breaks are left unread,
/// and the HTTP/1 answer says the connection ends (found by mutation testing: only bodies that
/// ended were refused so).
#[tokio::test(start_paused = true)]
async fn a_refused_body_too_large_stalled_or_broken_is_left_unread_and_the_answer_says_close() {
    use futures_util::StreamExt;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    type Frames = futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, std::io::Error>>;
    let hook = taking_at_most_a_status();
    let status = || Ok(Frame::data(Bytes::from_static(STATUS)));
    let refused = |frames: Frames| {
        Request::post("/elsewhere")
            .header(http::header::HOST, "bridge")
            .header(AUTHORIZATION, "Basic dTpw")
            .body(StreamBody::new(frames))
            .expect("request")
    };
    let whole: Frames = futures_util::stream::iter([status()]).boxed();
    let larger: Frames =
        futures_util::stream::iter([status(), Ok(Frame::data(Bytes::from_static(b" ")))]).boxed();
    let stalled: Frames = futures_util::stream::iter([status()])
        .chain(futures_util::stream::pending())
        .boxed();
    let broken: Frames =
        futures_util::stream::iter([status(), Err(std::io::Error::other("connection reset"))])
            .boxed();
    let answer = hook.handle(refused(whole)).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    assert_eq!(answer.headers().get(CONNECTION), None, "read whole");
    for (what, frames) in [("larger", larger), ("stalled", stalled), ("broken", broken)] {
        let answer = hook.handle(refused(frames)).await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{what}");
        assert_eq!(
            answer.headers().get(CONNECTION).map(HeaderValue::as_bytes),
            Some(&b"close"[..]),
            "{what}"
        );
    }
}
