//! What operators see: exact counts on /metrics, and /readyz following the broker.

use std::time::{Duration, Instant};

use crate::common::{HeldOpening, TestApp, STATUS, TEXT};

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{metrics}"))
        .trim()
        .parse()
        .expect("number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_what_was_posted() {
    let app = TestApp::start(&["--ack-timeout", "10s"]).await;
    assert_eq!(app.post(TEXT).await.status(), 200);
    assert_eq!(app.post(STATUS).await.status(), 200);
    let bad_auth = app
        .http
        .post(app.url())
        .basic_auth("qikchat", Some("wrong"))
        .body(STATUS)
        .send()
        .await
        .expect("request");
    assert_eq!(bad_auth.status(), 401);
    assert_eq!(app.post(b"{not json").await.status(), 400);

    let (status, m) = app.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let checks: &[(&str, f64)] = &[
        (
            r#"qikchat_bridge_requests_total{outcome="accepted",status="200"}"#,
            2.0,
        ),
        (
            r#"qikchat_bridge_requests_total{outcome="unauthorized",status="401"}"#,
            1.0,
        ),
        (
            r#"qikchat_bridge_requests_total{outcome="invalid",status="400"}"#,
            1.0,
        ),
        (
            r#"qikchat_bridge_requests_total{outcome="unavailable",status="503"}"#,
            0.0,
        ),
        (
            r#"qikchat_bridge_events_total{event_type="message_in"}"#,
            1.0,
        ),
        (
            r#"qikchat_bridge_events_total{event_type="message_status"}"#,
            1.0,
        ),
        (r#"qikchat_bridge_events_total{event_type="invalid"}"#, 1.0),
        (r#"qikchat_bridge_events_total{event_type="unrouted"}"#, 0.0),
        (r#"qikchat_bridge_auth_failures_total{reason="wrong"}"#, 1.0),
        (
            r#"qikchat_bridge_auth_failures_total{reason="missing"}"#,
            0.0,
        ),
        (
            r#"qikchat_bridge_kafka_deliveries_total{result="ok",topic="whatsapp.message.in"}"#,
            1.0,
        ),
        (
            r#"qikchat_bridge_kafka_deliveries_total{result="ok",topic="whatsapp.message.status"}"#,
            1.0,
        ),
        (
            r#"qikchat_bridge_kafka_deliveries_total{result="ok",topic="whatsapp.deadletter"}"#,
            1.0,
        ),
        (
            r#"qikchat_bridge_request_duration_seconds_count{outcome="accepted"}"#,
            2.0,
        ),
        (
            r#"qikchat_bridge_kafka_delivery_duration_seconds_count{topic="whatsapp.message.in"}"#,
            1.0,
        ),
        (r#"qikchat_bridge_request_body_bytes_count"#, 3.0),
        ("qikchat_bridge_requests_in_flight", 0.0),
        ("qikchat_bridge_slow_responses_total", 0.0),
        ("qikchat_bridge_ready", 1.0),
        // What the alert on answers near the deadline compares with.
        ("qikchat_bridge_ack_timeout_seconds", 10.0),
    ];
    for (series, want) in checks {
        assert_eq!(value(&m, series), *want, "{series}");
    }
    assert!(
        m.contains("qikchat_bridge_build_info{commit="),
        "build info"
    );
    assert!(
        m.contains("process_resident_memory_bytes"),
        "process metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_statistics_show_up_as_queue_broker_and_batch_metrics() {
    // A client.id holding a backslash, which librdkafka writes into its statistics unescaped
    // (a review found the metrics then gone).
    let app = TestApp::start(&[
        "-X",
        "statistics.interval.ms=100",
        "-X",
        r"client.id=CORP\svc",
    ])
    .await;
    assert_eq!(app.post(STATUS).await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = app.admin_get("/metrics").await;
        if let Some(line) = m
            .lines()
            .find(|l| l.starts_with("qikchat_bridge_kafka_broker_up{"))
        {
            assert!(line.ends_with(" 1"), "{line}");
            assert!(
                m.contains("qikchat_bridge_kafka_queue_max_messages "),
                "{m}"
            );
            assert!(
                m.contains("qikchat_bridge_kafka_broker_rtt_seconds{"),
                "{m}"
            );
            // The one record went out in a produce request, as a batch of one.
            let value = |prefix: &str| {
                m.lines()
                    .find(|l| l.starts_with(prefix))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
            };
            let requests = value("qikchat_bridge_kafka_produce_requests_total{");
            let per_batch =
                value("qikchat_bridge_kafka_batch_records{topic=\"whatsapp.message.status\"}");
            if requests.is_some_and(|n| n >= 1.0) && per_batch.is_some() {
                assert_eq!(per_batch, Some(1.0), "{m}");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no broker and batch statistics within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_broker_down_and_up() {
    let app = TestApp::start(&[]).await;
    assert_eq!(app.admin_get("/readyz").await.0, 200);
    assert_eq!(app.admin_get("/livez").await.0, 200);

    app.cluster.broker_down(1).expect("down");
    let body = readyz_until(&app, 503).await;
    assert!(
        body.contains(
            "Kafka is unavailable: no broker answered a metadata request for whatsapp.message.in"
        ),
        "{body}"
    );
    assert_eq!(
        app.admin_get("/livez").await.0,
        200,
        "liveness does not depend on Kafka"
    );

    app.cluster.broker_up(1).expect("up");
    readyz_until(&app, 200).await;
}

async fn readyz_until(app: &TestApp, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = app.admin_get("/readyz").await;
        if status == want {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz never became {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_answers_only_its_three_endpoints_and_only_get_and_head() {
    let app = TestApp::start(&[]).await;
    assert_eq!(app.admin_get("/webhook").await.0, 404);
    // HEAD is answered like GET (probes and load balancers use it), without a body.
    for path in ["/livez", "/readyz", "/metrics"] {
        let r = app.admin_request(reqwest::Method::HEAD, path).await;
        assert_eq!(r.status(), 200, "HEAD {path}");
        assert!(r.bytes().await.expect("body").is_empty(), "HEAD {path}");
    }
    let r = app.admin_request(reqwest::Method::POST, "/metrics").await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
}

/// hyper leaves a `HEAD` answer's body out over HTTP/1 only; over HTTP/2 it was sent as DATA
/// frames, which clients refuse as a protocol error (curl: `PROTOCOL_ERROR`). Both ports serve
/// h2c: each answers a `HEAD` over it with the status and headers a `GET` gets, and no body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_over_http2_is_answered_with_headers_only_on_both_ports() {
    let app = TestApp::start(&[]).await;
    let head = |addr, path: &'static str| async move {
        let mut client = crate::common::h2_connection(addr).await;
        let request = http::Request::head(format!("http://{addr}{path}"))
            .body(())
            .expect("request");
        let (answer, _) = client.send_request(request, true).expect("send");
        let (parts, mut body) = answer.await.expect("an answer").into_parts();
        let mut received = 0;
        while let Some(data) = body.data().await {
            received += data.expect("no protocol error").len();
        }
        (parts, received)
    };
    for path in ["/livez", "/readyz", "/metrics"] {
        let (parts, received) = head(app.admin, path).await;
        assert_eq!((parts.status.as_u16(), received), (200, 0), "HEAD {path}");
        let length: usize = parts.headers["content-length"]
            .to_str()
            .expect("text")
            .parse()
            .expect("a length");
        assert!(length > 0, "HEAD {path}: the length a GET gets");
    }
    let (parts, received) = head(app.addr, "/webhook").await;
    assert_eq!((parts.status.as_u16(), received), (405, 0));
    assert_eq!(parts.headers["allow"], "POST");
}

/// The alert `QikchatBridgeKafkaUnreachable` reads `kafka_reachable`: a 0 while a large spool is
/// still recovered, before anything asked Kafka, would page for an outage that is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_reachable_says_whether_kafka_answers_while_the_spool_is_still_being_opened() {
    let dir = tempfile::tempdir().expect("dir");
    let held = HeldOpening::in_dir(dir.path());
    let spool = dir.path().to_str().expect("utf-8").to_string();
    let app = TestApp::spawn(&["--spool-dir", &spool], &[]).await;
    crate::common::eventually("kafka_reachable 1 before the spool is open", async || {
        let (status, body) = app.admin_get("/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (
                503,
                "not ready: starting: recovering the spool and making the producer\n"
            ),
            "the spool's opening is held"
        );
        let metrics = app.admin_get("/metrics").await.1;
        value(&metrics, "qikchat_bridge_kafka_reachable") == 1.0
    })
    .await;

    drop(held);
    app.wait_ready().await;
    app.cluster.broker_down(1).expect("down");
    readyz_until(&app, 200).await;
    crate::common::eventually("kafka_reachable 0 once the broker is down", async || {
        let metrics = app.admin_get("/metrics").await.1;
        value(&metrics, "qikchat_bridge_kafka_reachable") == 0.0
    })
    .await;
}
