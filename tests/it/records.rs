//! Each seed payload becomes exactly one record: right topic, the posted bytes, the key, headers.

use crate::common;

use std::time::Duration;

use crate::common::{TestApp, IMAGE, PASS, STATUS, TEXT, USER};
use sha2::Digest;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_text_message_becomes_an_exact_record_in_the_message_topic() {
    let app = TestApp::start(&[]).await;
    let response = app.post(TEXT).await;
    assert_eq!(response.status(), 200);
    let request_id = common::request_id(&response);
    assert_eq!(
        response.text().await.expect("body"),
        r#"{"status":"accepted"}"#
    );

    let got = app.records("whatsapp.message.in", 1, WAIT).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!(
        r.value, TEXT,
        "value must be the request body byte for byte"
    );
    assert_eq!(r.key.as_deref(), Some("9184XXXXXXX"));
    assert_eq!(r.headers["event"], "whatsapp:message:in");
    assert_eq!(r.headers["message-id"], "52JH6WmuSruAVyXvBBYemd0Ia");
    assert_eq!(r.headers["request-id"], request_id);
    assert_eq!(r.headers["content-type"], "application/json");
    let received = humantime::parse_rfc3339(&r.headers["received-at"]).expect("RFC 3339 time");
    let age = std::time::SystemTime::now()
        .duration_since(received)
        .expect("in the past");
    assert!(age < Duration::from_secs(60), "received-at {age:?} ago");
    assert!(r.headers["received-at"].ends_with('Z') && r.headers["received-at"].len() == 24);
    assert!(r.timestamp.is_some(), "record carries the receive time");
    let digest: String = sha2::Sha256::digest(TEXT)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(r.headers["body-sha256"], digest);
    assert_eq!(r.headers.len(), 6, "{:?}", r.headers);
    assert_eq!(app.total_records().await, 1, "one record, in one topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_image_message_goes_to_the_same_topic_unchanged() {
    let app = TestApp::start(&[]).await;
    assert_eq!(app.post(IMAGE).await.status(), 200);
    let got = app.records("whatsapp.message.in", 1, WAIT).await;
    assert_eq!(got[0].value, IMAGE);
    assert_eq!(got[0].key.as_deref(), Some("9184XXXXXXX"));
    // `records` stops at the number asked for: a duplicate shows only in the total.
    assert_eq!(app.total_records().await, 1, "one record, in one topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_goes_to_the_status_topic_keyed_by_the_customer_without_plus() {
    let app = TestApp::start(&[]).await;
    assert_eq!(app.post(STATUS).await.status(), 200);
    let got = app.records("whatsapp.message.status", 1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value, STATUS);
    assert_eq!(got[0].key.as_deref(), Some("91790XXXXXXX"));
    assert_eq!(got[0].headers["event"], "whatsapp:message:status");
    assert_eq!(app.total_records().await, 1, "one record, in one topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_and_its_statuses_land_on_one_partition_in_order() {
    let app = TestApp::start(&[]).await;
    let bodies: [&'static [u8]; 3] = [
        br#"{"event":"whatsapp:message:in","payload":{"id":"1","message":{"from":"919999000001"}}}"#,
        br#"{"event":"whatsapp:message:status","payload":{"id":"2","to":"+919999000001","status":"delivered"}}"#,
        br#"{"event":"whatsapp:message:status","payload":{"id":"2","to":"+919999000001","status":"read"}}"#,
    ];
    for body in bodies {
        assert_eq!(app.post(body).await.status(), 200);
    }
    let messages = app.records("whatsapp.message.in", 1, WAIT).await;
    let statuses = app.records("whatsapp.message.status", 2, WAIT).await;
    assert_eq!(statuses.len(), 2);
    // One conversation: one key, so one partition, whichever it is.
    let key = messages[0].key.as_deref();
    assert_eq!(key, Some("919999000001"));
    for status in &statuses {
        assert_eq!(status.key.as_deref(), key);
        assert_eq!(status.partition, messages[0].partition);
    }
    assert_eq!(statuses[0].value, bodies[1]);
    assert_eq!(statuses[1].value, bodies[2]);
    assert_eq!(app.total_records().await, 3, "each stored once");
}

/// Kafka's Java client (`Utils.murmur2`, and `toPositive(..) % partitions` for a keyed record).
fn java_partition(key: &[u8], partitions: i32) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ key.len() as u32;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    ((h & 0x7fff_ffff) % partitions as u32) as i32
}

/// A Java producer or Kafka Streams writing the same customer keys must find them on the same
/// partitions (librdkafka's own default partitioner hashes with CRC32 instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_land_on_the_partition_the_java_client_would_choose() {
    // The vectors Kafka's own tests give for murmur2.
    assert_eq!(java_partition(b"21", i32::MAX), -973932308i32 & 0x7fff_ffff);
    assert_eq!(
        java_partition(b"foobar", i32::MAX),
        -790332482i32 & 0x7fff_ffff
    );
    let app = TestApp::start(&[]).await;
    let customers = [
        "919999000001",
        "919999000002",
        "919999000003",
        "919999000004",
    ];
    for customer in customers {
        let body = format!(
            r#"{{"event":"whatsapp:message:in","payload":{{"id":"x","message":{{"from":"{customer}"}}}}}}"#
        );
        let body: &'static [u8] = Box::leak(body.into_bytes().into_boxed_slice());
        assert_eq!(app.post(body).await.status(), 200);
    }
    let got = app
        .records("whatsapp.message.in", customers.len(), WAIT)
        .await;
    assert_eq!(got.len(), customers.len());
    let spread: std::collections::BTreeSet<i32> = got.iter().map(|r| r.partition).collect();
    assert!(spread.len() > 1, "the keys were not spread: {spread:?}");
    for r in &got {
        let key = r.key.as_deref().expect("keyed");
        assert_eq!(
            r.partition,
            java_partition(key.as_bytes(), common::PARTITIONS),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_event_goes_to_the_fallback_topic_never_a_new_one() {
    let app = TestApp::start(&[]).await;
    let body: &'static [u8] = br#"{"event":"whatsapp:template:approved","payload":{"id":"t1"}}"#;
    assert_eq!(app.post(body).await.status(), 200);
    let got = app.records("whatsapp.unrouted", 1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value, body);
    assert_eq!(got[0].headers["event"], "whatsapp:template:approved");
    assert_eq!(got[0].key.as_deref(), Some("t1"));
    assert_eq!(app.total_records().await, 1, "in the fallback topic only");
    // The cluster creates a topic a producer names, so one named after the event would show.
    let configured: std::collections::BTreeSet<String> =
        app.config.topics.all_topics().into_iter().collect();
    assert_eq!(app.cluster_topics().await, configured);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_senders_request_id_is_kept_and_echoed() {
    let app = TestApp::start(&[]).await;
    let response = app
        .http
        .post(app.url())
        .basic_auth(USER, Some(PASS))
        .header("x-request-id", "qik-abc-123")
        .body(TEXT)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "qik-abc-123");
    let got = app.records("whatsapp.message.in", 1, WAIT).await;
    assert_eq!(got[0].headers["request-id"], "qik-abc-123");
    assert_eq!(
        got[0].headers["content-type"], "application/json",
        "absent content type is JSON"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_routes_prefix_and_key_strategy_apply() {
    let app = TestApp::start(&[
        "--topic-prefix",
        "prod.",
        "--topic",
        "whatsapp:message:status=statuses",
        "--key-strategy",
        "message-id",
    ])
    .await;
    assert_eq!(app.post(STATUS).await.status(), 200);
    let got = app.records("prod.statuses", 1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].key.as_deref(), Some("52JH6WmuSruAVyXvBBYemd0Ia"));
    assert_eq!(
        app.total_records().await,
        1,
        "one record, in the routed topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served_on_the_same_port() {
    let app = TestApp::start(&[]).await;
    let client = common::h2c_client();
    let response = client
        .post(app.url())
        .basic_auth(USER, Some(PASS))
        .body(STATUS)
        .send()
        .await
        .expect("h2c request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.records("whatsapp.message.status", 1, WAIT).await[0].value,
        STATUS
    );
    assert_eq!(app.total_records().await, 1, "one record, in one topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parallel_webhooks_are_each_acknowledged_and_stored_once() {
    let app = TestApp::start(&["--ack-timeout", "10s"]).await;
    let tasks: Vec<_> = (0..200).map(|_| app.spawn_post(STATUS)).collect();
    for t in tasks {
        assert_eq!(t.await.expect("task").status(), 200);
    }
    let got = app.records("whatsapp.message.status", 200, WAIT).await;
    assert_eq!(got.len(), 200);
    let ids: std::collections::HashSet<_> = got
        .iter()
        .map(|g| g.headers["request-id"].clone())
        .collect();
    assert_eq!(ids.len(), 200, "every request id once");
    // Reading stopped at 200: the topics' end offsets say no copy came after them.
    assert_eq!(app.total_records().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_mode_adds_ce_headers_and_keeps_the_value() {
    let app = TestApp::start(&["--cloudevents", "--cloudevents-source", "/qikchat/prod"]).await;
    let response = app.post(TEXT).await;
    assert_eq!(response.status(), 200);
    let got = app.records("whatsapp.message.in", 1, WAIT).await;
    let h = &got[0].headers;
    assert_eq!(got[0].value, TEXT);
    assert_eq!(h["ce_specversion"], "1.0");
    assert_eq!(h["ce_id"], h["body-sha256"]);
    assert_eq!(h["ce_source"], "/qikchat/prod");
    assert_eq!(h["ce_type"], "whatsapp:message:in");
    assert_eq!(h["ce_time"], h["received-at"]);
    assert_eq!(h["content-type"], "application/json");
}

/// librdkafka's own record limit (1,000,000 bytes) is below the default `--max-body-bytes`
/// (1 MiB): a body the bridge advertises as acceptable must fit the producer's limit too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_exactly_the_default_size_limit_is_accepted_and_stored_whole() {
    let app = TestApp::start(&["--ack-timeout", "10s"]).await;
    let text = std::str::from_utf8(TEXT).expect("utf-8");
    let padding = (1 << 20) - TEXT.len() + "I want this product".len();
    let body = text.replace("I want this product", &"x".repeat(padding));
    assert_eq!(body.len(), 1 << 20);
    let body: &'static [u8] = Box::leak(body.into_bytes().into_boxed_slice());
    let response = app.post(body).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let got = app.records("whatsapp.message.in", 1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert!(
        got[0].value == body,
        "the 1 MiB value arrives byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_fallback_and_dead_letter_topics_are_used_and_the_content_type_is_copied_exactly() {
    let app = TestApp::start(&[
        "--fallback-topic",
        "other.events",
        "--deadletter-topic",
        "broken.events",
    ])
    .await;
    let post = |body: &'static [u8]| {
        app.http
            .post(app.url())
            .basic_auth(USER, Some(PASS))
            .header(
                "content-type",
                "application/vnd.qikchat+json; charset=UTF-8",
            )
            .body(body)
            .send()
    };
    let unknown: &'static [u8] = br#"{"event":"whatsapp:template:approved","payload":{"id":"t1"}}"#;
    assert_eq!(post(unknown).await.expect("answer").status(), 200);
    assert_eq!(post(b"{oops").await.expect("answer").status(), 400);
    let fallback = app.records("other.events", 1, WAIT).await;
    assert_eq!(fallback.len(), 1);
    assert_eq!(fallback[0].value, unknown);
    assert_eq!(
        fallback[0].headers["content-type"],
        "application/vnd.qikchat+json; charset=UTF-8"
    );
    let dead = app.records("broken.events", 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value, b"{oops");
    assert_eq!(app.total_records().await, 2, "each stored once");
}
