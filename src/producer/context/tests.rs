//! Tests of what librdkafka calls back into: logs, errors, statistics.

use super::*;
use std::time::Duration;

fn context() -> BridgeContext {
    let metrics = Arc::new(Metrics::new(&["t".to_string()]).expect("metrics"));
    let scrubber = Arc::new(Scrubber::new(
        &std::collections::BTreeMap::<String, String>::new(),
    ));
    BridgeContext::new(
        metrics,
        ProducerRole::Webhooks,
        Arc::new(Notify::new()),
        Arc::new(AtomicBool::new(false)),
        scrubber,
        Arc::new(LastError::default()),
    )
}

/// librdkafka's error texts may quote a secret of the properties (an OAUTHBEARER config it
/// cannot parse): the reason is scrubbed before it is logged and before it is kept as the last
/// error, which `/readyz` quotes to anyone who can reach the admin port.
#[test]
fn an_errors_reason_is_scrubbed_before_it_is_logged_or_kept() {
    let (kept, _guard) = crate::telemetry::Kept::on_this_thread();
    let secret = "principal=bridge secret=hunter2-hunter2";
    let metrics = Arc::new(Metrics::new(&["t".to_string()]).expect("metrics"));
    let scrubber = Arc::new(Scrubber::new(&std::collections::BTreeMap::from([(
        "sasl.oauthbearer.config".to_string(),
        secret.to_string(),
    )])));
    let last_error = Arc::new(LastError::default());
    let context = BridgeContext::new(
        metrics,
        ProducerRole::Webhooks,
        Arc::new(Notify::new()),
        Arc::new(AtomicBool::new(false)),
        scrubber,
        last_error.clone(),
    );
    context.error(
        KafkaError::Global(RDKafkaErrorCode::InvalidArgument),
        &format!("Failed to parse OAUTHBEARER config \"{secret}\""),
    );
    let quoted = last_error.cause(Instant::now());
    assert!(quoted.contains("Failed to parse"), "{quoted}");
    assert!(!quoted.contains("hunter2"), "{quoted}");
    let logged = kept.text();
    assert!(logged.contains("Failed to parse"), "{logged}");
    assert!(!logged.contains("hunter2"), "{logged}");
}

/// A refused TLS handshake alternates two texts, which librdkafka's own hold on identical
/// repeats misses: one line a window per broker, with the count of those held back; another
/// broker's, and other facilities', are not held back by them.
#[test]
fn a_brokers_connection_failures_are_logged_once_a_window_with_the_count_held_back() {
    let (kept, _guard) = crate::telemetry::Kept::on_this_thread();
    let context = context();
    let t0 = Instant::now();
    let b1 = "[thrd:ssl://k1:9093/1]: ssl://k1:9093/1";
    let texts = [
        "SSL handshake failed: certificate verify failed",
        "error:0A000086:SSL routines::certificate verify failed",
    ];
    for i in 0..20u32 {
        let at = t0 + Duration::from_millis(100 * u64::from(i));
        let text = format!("{b1}: {}", texts[i as usize % 2]);
        context.log_at(RDKafkaLogLevel::Error, "FAIL", &text, at);
    }
    let b2 = "[thrd:ssl://k2:9093/2]: ssl://k2:9093/2: Connect to ipv4#10.0.0.2:9093 failed";
    context.log_at(RDKafkaLogLevel::Error, "FAIL", b2, t0);
    context.log_at(RDKafkaLogLevel::Warning, "CONFWARN", "[thrd:app]: one", t0);
    context.log_at(RDKafkaLogLevel::Warning, "CONFWARN", "[thrd:app]: two", t0);
    let later = format!("{b1}: {}", texts[0]);
    context.log_at(RDKafkaLogLevel::Error, "FAIL", &later, t0 + WINDOW);
    let logged = kept.text();
    let lines: Vec<&str> = logged.lines().collect();
    assert_eq!(lines.len(), 5, "{logged}");
    assert!(
        lines[0].contains("ERROR") && lines[0].contains(texts[0]),
        "{logged}"
    );
    assert!(!lines[0].contains("more failures"), "{logged}");
    assert!(lines[1].contains("k2:9093"), "{logged}");
    assert!(
        lines[2].contains("one") && lines[3].contains("two"),
        "{logged}"
    );
    assert!(
        lines[4].contains(texts[0])
            && lines[4].contains("(19 more failures of this broker's connection"),
        "{logged}"
    );
}

/// With `log.thread.name=false` (a property the bridge passes on) librdkafka's lines carry no
/// `[thrd:…]` prefix: each broker's failures are still held back apart (found by review).
#[test]
fn without_thread_names_each_brokers_connection_failures_are_still_logged() {
    let (kept, _guard) = crate::telemetry::Kept::on_this_thread();
    let context = context();
    let t0 = Instant::now();
    let b1 = "ssl://k1:9093/bootstrap: SSL handshake failed: certificate verify failed";
    let b2 = "ssl://k2:9093/bootstrap: Connect to ipv4#10.0.0.2:9093 failed";
    context.log_at(RDKafkaLogLevel::Error, "FAIL", b1, t0);
    context.log_at(RDKafkaLogLevel::Error, "FAIL", b2, t0);
    context.log_at(RDKafkaLogLevel::Error, "FAIL", b1, t0);
    let logged = kept.text();
    assert_eq!(logged.lines().count(), 2, "{logged}");
    assert!(
        logged.contains("k1:9093") && logged.contains("k2:9093"),
        "{logged}"
    );
}

/// librdkafka's log lines quote the properties in places (an OAUTHBEARER config it cannot
/// parse, a token endpoint's URL, with `debug` set a property's value): they are scrubbed of
/// the producer's secrets before they reach the log, a held-back broker failure too (found by
/// mutation testing: every test of it went through the error callback).
#[test]
fn a_log_lines_text_is_scrubbed_of_the_producers_secrets() {
    let (kept, _guard) = crate::telemetry::Kept::on_this_thread();
    let context = BridgeContext::new(
        Arc::new(Metrics::new(&["t".to_string()]).expect("metrics")),
        ProducerRole::Webhooks,
        Arc::new(Notify::new()),
        Arc::new(AtomicBool::new(false)),
        Arc::new(Scrubber::new(&std::collections::BTreeMap::from([(
            "sasl.password".to_string(),
            "hunter2-hunter2".to_string(),
        )]))),
        Arc::new(LastError::default()),
    );
    let t0 = Instant::now();
    context.log_at(
        RDKafkaLogLevel::Warning,
        "CONF",
        "[thrd:app]: sasl.password = hunter2-hunter2",
        t0,
    );
    context.log_at(
        RDKafkaLogLevel::Error,
        "FAIL",
        "k1:9093/1: SASL authentication failed for hunter2-hunter2",
        t0,
    );
    let logged = kept.text();
    assert_eq!(logged.lines().count(), 2, "{logged}");
    assert!(logged.contains("<redacted>"), "{logged}");
    assert!(!logged.contains("hunter2"), "{logged}");
}

/// librdkafka's levels keep their weight: a warning is a warning in the log (an operator's
/// filter on WARN must see a `CONFWARN` of a property ignored), notices are info, its debug
/// lines stay out of an info log; and only a loud broker failure is held back, not a quiet
/// line of the same facility (found by mutation testing).
#[test]
fn librdkafkas_log_levels_keep_their_weight_and_only_loud_failures_are_held_back() {
    let (kept, _guard) = crate::telemetry::Kept::on_this_thread();
    let context = context();
    let t0 = Instant::now();
    context.log_at(
        RDKafkaLogLevel::Warning,
        "CONFWARN",
        "[thrd:app]: ignored",
        t0,
    );
    context.log_at(
        RDKafkaLogLevel::Notice,
        "FAIL",
        "k1:9093/1: Disconnected",
        t0,
    );
    context.log_at(
        RDKafkaLogLevel::Notice,
        "FAIL",
        "k1:9093/1: Disconnected",
        t0,
    );
    context.log_at(RDKafkaLogLevel::Debug, "BROKER", "[thrd:app]: chatter", t0);
    let logged = kept.text();
    let lines: Vec<&str> = logged.lines().collect();
    assert_eq!(lines.len(), 3, "{logged}");
    assert!(
        lines[0].contains(" WARN ") && lines[0].contains("ignored"),
        "{logged}"
    );
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(" INFO ") && l.contains("Disconnected")),
        "{logged}"
    );
}

/// A non-fatal error librdkafka repeats (per broker, per retry) is logged once a window, and
/// the next line says how many were held back meanwhile (found by mutation testing: the count
/// could be dropped unseen).
#[test]
fn a_repeated_error_is_logged_once_a_window_with_the_count_held_back() {
    let (kept, _guard) = crate::telemetry::Kept::on_this_thread();
    let context = context();
    let t0 = Instant::now();
    let refused = || KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
    let reason = "k1:9093/bootstrap: Connect to ipv4#10.0.0.1:9093 failed";
    for i in 0..3u64 {
        context.error_at(refused(), reason, t0 + Duration::from_secs(i));
    }
    context.error_at(refused(), reason, t0 + WINDOW);
    let logged = kept.text();
    let lines: Vec<&str> = logged.lines().collect();
    assert_eq!(lines.len(), 2, "{logged}");
    assert!(!lines[0].contains("more like it"), "{logged}");
    assert!(
        lines[1].contains("(2 more like it since the last one logged"),
        "{logged}"
    );
}
