//! Metrics unit tests: what the alerts read is counted under the documented names and labels.

use super::*;
use crate::spool::SpoolError;

fn shown(metrics: &Metrics) -> String {
    String::from_utf8(metrics.render()).expect("utf-8")
}

#[test]
fn an_answer_well_past_its_due_time_is_counted_as_slow_but_the_deadlines_own_503_is_not() {
    let metrics = Metrics::new(&[]).expect("metrics");
    let ack = Duration::from_millis(1500);
    metrics.answered(Outcome::Accepted, Duration::from_millis(1500), ack);
    // The 503 written when the deadline passes, and a 408 that waited on the sender's body.
    metrics.answered(Outcome::Unavailable, ack + LATE_BY, ack);
    metrics.answered(Outcome::BodyTimeout, Duration::from_secs(5), ack);
    // A body that arrived 3 s after the request, answered at once: due when it arrived.
    let body_read = Duration::from_secs(3);
    metrics.answered(Outcome::Unavailable, body_read + LATE_BY / 2, body_read);
    assert!(shown(&metrics).contains("qikchat_bridge_slow_responses_total 0"));
    metrics.answered(Outcome::Unavailable, ack + LATE_BY * 2, ack);
    let text = shown(&metrics);
    assert!(
        text.contains("qikchat_bridge_slow_responses_total 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"qikchat_bridge_requests_total{outcome="unavailable",status="503"} 3"#),
        "{text}"
    );
}

/// A series born at its first failure already holds 1, which rate() cannot tell from its
/// absence: the delivery-error alert would miss the first failures of each kind.
#[test]
fn the_common_delivery_errors_of_each_topic_are_shown_at_0_before_any_happens() {
    let metrics = Metrics::new(&["a".to_string(), "b".to_string()]).expect("metrics");
    let text = shown(&metrics);
    for topic in ["a", "b"] {
        for result in [
            "ok",
            "timeout",
            "queue_full",
            "msg_size_too_large",
            "producer_closed",
        ] {
            let series = format!(
                "qikchat_bridge_kafka_deliveries_total{{result=\"{result}\",topic=\"{topic}\"}} 0"
            );
            assert!(text.contains(&series), "{series} missing:\n{text}");
        }
    }
}

#[test]
fn each_spool_write_result_has_its_label() {
    let metrics = Metrics::new(&[]).expect("metrics");
    metrics.spool.append(&Ok(1));
    metrics.spool.append(&Err(SpoolError::Full { max: 1 }));
    metrics.spool.append(&Err(SpoolError::Io("disk".into())));
    metrics.spool.append(&Err(SpoolError::Busy { waiting: 1 }));
    metrics.spool.late();
    let text = shown(&metrics);
    for result in ["ok", "full", "error", "busy", "late"] {
        let line = format!(r#"qikchat_bridge_spool_appends_total{{result="{result}"}} 1"#);
        assert!(text.contains(&line), "no {line} in {text}");
    }
}

/// `log_lines_dropped_total` is built by hand, not by the prometheus crate: it must still be
/// shown as a counter with its one value, or `rate()` and the log-loss alert see nothing.
#[test]
fn log_lines_dropped_is_shown_as_a_counter_with_the_log_writers_value() {
    let metrics = Metrics::new(&[]).expect("metrics");
    let text = shown(&metrics);
    let name = "qikchat_bridge_log_lines_dropped_total";
    assert!(text.contains(&format!("# TYPE {name} counter\n")), "{text}");
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    let value: f64 = value.parse().expect("a number");
    assert!(value <= crate::telemetry::lines_dropped() as f64);
}

/// QikchatBridgeResponsesNearTimeout compares the p99 of request_duration_seconds with 13/15 of
/// `ack_timeout_seconds`, computed as `near_timeout_edge` computes the bucket edge: between two
/// edges histogram_quantile interpolates, and the alert would fire only once well over 1% of the
/// answers were past its threshold, or at once for answers all below it.
#[test]
fn the_near_timeout_alert_compares_with_the_bucket_edge_the_bridge_adds_for_its_ack_timeout() {
    let rules = include_str!("../../deploy/prometheus/alerts.yaml");
    let rule = rules
        .split("- alert: ")
        .find(|r| r.starts_with("QikchatBridgeResponsesNearTimeout\n"))
        .expect("the alert QikchatBridgeResponsesNearTimeout");
    let threshold: Vec<&str> = rule
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != ") > (")
        .take_while(|l| *l != ")")
        .collect();
    // PromQL evaluates `*` and `/` left to right, as Rust does `ack * 13.0 / 15.0`; a bridge
    // built before the gauge existed is held to its default buckets' edge.
    assert_eq!(
        threshold,
        [
            ") > (",
            "max by (job, namespace) (qikchat_bridge_ack_timeout_seconds) * 13 / 15",
            "or max by (job, namespace) (qikchat_bridge_build_info) * 1.3",
        ]
    );
    assert_eq!(near_timeout_edge(DEFAULT_ACK_TIMEOUT), 1.3);
    // What the spool's commit has at the default before a spooled answer passes the edge.
    let spooled =
        crate::delivery::kafka_wait(DEFAULT_ACK_TIMEOUT, Some(Default::default())).as_secs_f64();
    assert!((1.3 - spooled - 0.05).abs() < 1e-9, "{spooled}");
    for ms in [10, 800, 1000, 1500, 1870, 2500, 2600, 5770, 6000, 60_000] {
        let ack = Duration::from_millis(ms);
        let edge = near_timeout_edge(ack);
        let buckets = latency_buckets(ack);
        assert!(buckets.contains(&edge), "{edge} is no edge of {buckets:?}");
        assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{buckets:?}");
        // An answer at the deadline must land in a finite bucket above the edge: in +Inf,
        // histogram_quantile reads the top edge, which the p99 would then never pass.
        let deadline = ack.as_secs_f64() + LATE_BY.as_secs_f64();
        assert!(
            buckets.iter().any(|&b| b >= deadline),
            "{ack:?}: no edge at or past {deadline} in {buckets:?}"
        );
        // A webhook spooled while Kafka is down is answered after the spool's wait for Kafka.
        if ms < 1875 {
            let spooled = crate::delivery::kafka_wait(ack, Some(Default::default())).as_secs_f64();
            assert!(
                spooled <= edge,
                "{ack:?}: spooled at {spooled} s, over {edge}"
            );
        }
    }
}

/// The series .ci/lib/alerts.test.yaml feeds the alert for a 1 s ack timeout are the bridge's.
#[test]
fn the_ack_timeout_and_its_bucket_edge_are_exported_as_the_alert_tests_write_them() {
    let metrics = Metrics::with_ack_timeout(&[], Duration::from_secs(1)).expect("metrics");
    metrics.answered(
        Outcome::Accepted,
        Duration::from_millis(750),
        Duration::from_secs(1),
    );
    let text = shown(&metrics);
    for line in [
        "qikchat_bridge_ack_timeout_seconds 1\n",
        r#"qikchat_bridge_request_duration_seconds_bucket{outcome="accepted",le="0.8666666666666667"} 1"#,
        r#"qikchat_bridge_request_duration_seconds_bucket{outcome="accepted",le="0.5"} 0"#,
    ] {
        assert!(text.contains(line), "no {line} in {text}");
    }
    let tests = include_str!("../../.ci/lib/alerts.test.yaml");
    assert!(tests.contains(r#"le="0.8666666666666667""#));
}

/// README: "above a 2.5 s one a last bucket at twice it is added". The top finite edge is what
/// histogram_quantile reads for answers past it, so where it lies is what a long ack timeout's
/// dashboards show (found by mutation testing: an edge at the ack timeout plus 2 s went
/// unnoticed).
#[test]
fn above_an_ack_timeout_of_2_5_s_the_last_bucket_edge_is_twice_the_ack_timeout() {
    for (ms, top) in [
        (1500, 5.0),
        (2500, 5.0),
        (2600, 5.2),
        (6000, 12.0),
        (60_000, 120.0),
    ] {
        let buckets = latency_buckets(Duration::from_millis(ms));
        assert_eq!(buckets.last(), Some(&top), "{ms} ms: {buckets:?}");
    }
}

/// Up to an ack timeout of 2.5 s the edges are the fixed ones and the near-timeout edge, nothing
/// more: an edge at twice a short ack timeout (3 s at the default) would be a bucket no dashboard
/// or alert reads, in every histogram series.
#[test]
fn at_the_default_ack_timeout_the_only_added_edge_is_the_near_timeout_one() {
    let mut want = LATENCY_BUCKETS.to_vec();
    want.push(near_timeout_edge(DEFAULT_ACK_TIMEOUT));
    want.sort_by(f64::total_cmp);
    assert_eq!(latency_buckets(DEFAULT_ACK_TIMEOUT), want);
}
