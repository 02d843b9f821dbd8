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

/// QikchatBridgeResponsesNearTimeout compares the p99 of request_duration_seconds with a bucket
/// edge: between two edges histogram_quantile interpolates, and the alert would fire only once
/// well over 1% of the answers were past its threshold.
#[test]
fn the_near_timeout_alerts_threshold_is_a_latency_bucket_edge() {
    let rules = include_str!("../../deploy/prometheus/alerts.yaml");
    let rule = rules
        .split("- alert: ")
        .find(|r| r.starts_with("QikchatBridgeResponsesNearTimeout\n"))
        .expect("the alert QikchatBridgeResponsesNearTimeout");
    let threshold: f64 = rule
        .lines()
        .find_map(|l| l.trim().strip_prefix(") > "))
        .expect("its expression ends in `) > THRESHOLD`")
        .trim()
        .parse()
        .expect("a number");
    assert!(
        LATENCY_BUCKETS.contains(&threshold),
        "{threshold} is no edge of {LATENCY_BUCKETS:?}"
    );
}
