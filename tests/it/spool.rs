//! Fault suite for the durable spool: every request answered 200 reaches Kafka, through outages,
//! slow brokers, a full spool and a SIGKILL.

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common::{TestApp, PASS, USER};
use rdkafka::types::RDKafkaApiKey;
use rdkafka::types::RDKafkaRespErr;

const TOPIC: &str = "whatsapp.message.status";

/// A status body for customer `n`; `seq` orders statuses of the same customer.
fn status(n: u32, seq: u32) -> Vec<u8> {
    format!(r#"{{"event":"whatsapp:message:status","payload":{{"id":"m{n}-{seq}","to":"+9100{n:06}","status":"read","seq":{seq}}}}}"#)
        .into_bytes()
}

async fn post(app: &TestApp, body: Vec<u8>) -> (u16, String, Duration) {
    post_to(app.http.clone(), app.url(), body).await
}

/// Posts with the test credential: status, request id, and how long the answer took.
async fn post_to(http: reqwest::Client, url: String, body: Vec<u8>) -> (u16, String, Duration) {
    let (status, id, took, _) = post_answer(http, url, body).await;
    (status, id, took)
}

/// [`post_to`], plus the answer's `Retry-After`.
async fn post_answer(
    http: reqwest::Client,
    url: String,
    body: Vec<u8>,
) -> (u16, String, Duration, Option<String>) {
    let started = Instant::now();
    let r = http
        .post(url)
        .basic_auth(USER, Some(PASS))
        .body(body)
        .send()
        .await
        .expect("request");
    let id = common::request_id(&r);
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_string());
    (r.status().as_u16(), id, started.elapsed(), retry_after)
}

/// Posts `n` statuses at once; returns the request ids answered 200, the status and
/// `Retry-After` of every other answer, and the slowest answer.
async fn burst(app: &TestApp, n: u32) -> (Vec<String>, Vec<(u16, Option<String>)>, Duration) {
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(post_answer(app.http.clone(), app.url(), status(i, 0))))
        .collect();
    let (mut ok, mut refused, mut slowest) = (Vec::new(), Vec::new(), Duration::ZERO);
    for t in tasks {
        let (status, id, took, retry_after) = t.await.expect("task");
        slowest = slowest.max(took);
        if status == 200 {
            ok.push(id);
        } else {
            refused.push((status, retry_after));
        }
    }
    (ok, refused, slowest)
}

/// Waits until every id in `ids` is in `topic`; returns how many records carried each id.
async fn all_stored(app: &TestApp, ids: &[String], within: Duration) -> usize {
    let want: HashSet<&String> = ids.iter().collect();
    let deadline = Instant::now() + within;
    loop {
        let got = app.records(TOPIC, usize::MAX, Duration::from_secs(2)).await;
        let seen: HashSet<&String> = got
            .iter()
            .filter_map(|g| g.headers.get("request-id"))
            .collect();
        let missing = want.iter().filter(|id| !seen.contains(**id)).count();
        if missing == 0 {
            return got.len();
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} records answered 200 are not in Kafka",
            ids.len()
        );
    }
}

fn spool_flags(dir: &tempfile::TempDir) -> Vec<String> {
    vec![
        "--spool-dir".into(),
        dir.path().display().to_string(),
        "--ack-timeout".into(),
        "1s".into(),
    ]
}

fn flags(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_broker_outage_every_answer_is_200_inside_the_deadline_and_nothing_is_lost() {
    let dir = common::memory_tempdir();
    // With the CloudEvents headers, which replay must carry too.
    let mut with = spool_flags(&dir);
    with.push("--cloudevents".into());
    let app = TestApp::start(&flags(&with)).await;
    app.cluster.broker_down(1).expect("down");
    let (ok, refused, slowest) = burst(&app, 100).await;
    assert!(
        refused.is_empty(),
        "no 503 while the spool has room: {refused:?}"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "slowest answer {slowest:?}"
    );
    assert_eq!(
        app.admin_get("/readyz").await.0,
        200,
        "ready: the spool takes the records"
    );
    let (_, m) = app.admin_get("/metrics").await;
    assert!(
        has_line(&m, "qikchat_bridge_spool_appends_total{result=\"ok\"} 100"),
        "{m}"
    );
    // The gauges the spool alerts watch.
    assert!(has_line(&m, "qikchat_bridge_spool_records 100"), "{m}");
    assert!(
        has_line(&m, "qikchat_bridge_spool_max_bytes 1073741824"),
        "{m}"
    );
    for gauge in [
        "qikchat_bridge_spool_bytes",
        "qikchat_bridge_spool_oldest_age_seconds",
    ] {
        let value: f64 = m
            .lines()
            .find_map(|l| l.strip_prefix(gauge)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {gauge} in {m}"));
        assert!(value > 0.0, "{gauge} {value}");
    }

    app.cluster.broker_up(1).expect("up");
    all_stored(&app, &ok, Duration::from_secs(30)).await;
    // In Kafka by way of the spool: every one of them replayed, and none left behind.
    drained(&app, 100, "spool not drained").await;

    // A replayed record carries what one produced at once carries: the same headers (and, as
    // every record read checks, its received-at as its time).
    let (code, direct, _) = post(&app, status(1000, 0)).await;
    assert_eq!(code, 200);
    all_stored(&app, std::slice::from_ref(&direct), Duration::from_secs(30)).await;
    let got = app.records(TOPIC, usize::MAX, Duration::from_secs(2)).await;
    let find = |id: &String| {
        got.iter()
            .find(|g| g.headers.get("request-id") == Some(id))
            .expect("read back")
    };
    let want = find(&direct);
    let names = |g: &common::Got| g.headers.keys().cloned().collect::<Vec<_>>();
    for name in ["message-id", "ce_id", "ce_time", "ce_type"] {
        assert!(want.headers.contains_key(name), "{name}: {want:?}");
    }
    for id in &ok {
        let g = find(id);
        assert_eq!(names(g), names(want), "replayed record {id}");
        let body: serde_json::Value = serde_json::from_slice(&g.value).expect("json");
        for (name, value) in &g.headers {
            let what = format!("{name} of replayed record {id}");
            match name.as_str() {
                "request-id" => assert_eq!(value, id, "{what}"),
                "message-id" => assert_eq!(
                    Some(value.as_str()),
                    body["payload"]["id"].as_str(),
                    "{what}"
                ),
                // The body's digest, which every record read checks against its value.
                "ce_id" => assert_eq!(Some(value), g.headers.get("body-sha256"), "{what}"),
                "ce_time" => assert_eq!(Some(value), g.headers.get("received-at"), "{what}"),
                // Per request: the reads check it against the record's timestamp.
                "received-at" | "body-sha256" => {}
                _ => assert_eq!(Some(value), want.headers.get(name), "{what}"),
            }
        }
    }
}

/// Waits (at most 30 s) until the spool is empty after replaying exactly `replayed` records.
async fn drained(app: &TestApp, replayed: u32, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let replayed = format!("qikchat_bridge_spool_replayed_total {replayed}");
    loop {
        let (_, m) = app.admin_get("/metrics").await;
        if has_line(&m, "qikchat_bridge_spool_records 0") && has_line(&m, &replayed) {
            return;
        }
        assert!(Instant::now() < deadline, "{why}: {m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// True when the exposition has exactly this line (a metric and its value, not a prefix of one).
fn has_line(metrics: &str, line: &str) -> bool {
    metrics.lines().any(|l| l == line)
}

/// The value of `series` (a name with its labels, as exposed), which must be present.
fn value_of(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversations_new_record_goes_behind_its_spooled_ones_and_keeps_its_order() {
    let dir = common::memory_tempdir();
    let app = TestApp::start(&flags(&spool_flags(&dir))).await;
    app.cluster.broker_down(1).expect("down");
    for seq in 1..=3 {
        assert_eq!(post(&app, status(7, seq)).await.0, 200);
    }
    // Slow enough on its return that replay cannot drain the three before the fourth arrives.
    app.cluster
        .broker_round_trip_time(1, Duration::from_secs(3))
        .expect("rtt");
    app.cluster.broker_up(1).expect("up");
    let (_, before) = app.admin_get("/metrics").await;
    assert!(
        has_line(&before, "qikchat_bridge_spool_records 3"),
        "{before}"
    );
    assert_eq!(post(&app, status(7, 4)).await.0, 200);
    // The fourth went behind the other three in the spool without being offered to Kafka: an
    // offer would have counted a delivery, and a spool append after a missed deadline too.
    let (_, after) = app.admin_get("/metrics").await;
    assert!(
        has_line(
            &after,
            "qikchat_bridge_spool_appends_total{result=\"ok\"} 4"
        ),
        "{after}"
    );
    let deliveries = |m: &str| -> Vec<String> {
        m.lines()
            .filter(|l| l.starts_with("qikchat_bridge_kafka_deliveries_total"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(deliveries(&before), deliveries(&after));
    app.cluster
        .broker_round_trip_time(1, Duration::ZERO)
        .expect("rtt");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = app.records(TOPIC, usize::MAX, Duration::from_secs(2)).await;
        let seqs: Vec<u64> = got
            .iter()
            .filter(|g| g.key.as_deref() == Some("9100000007"))
            .map(|g| {
                serde_json::from_slice::<serde_json::Value>(&g.value).expect("json")["payload"]
                    ["seq"]
                    .as_u64()
                    .expect("seq")
            })
            .collect();
        if seqs.contains(&4) {
            // At least once: a repeat is allowed (and marked by body-sha256); the first
            // appearance of each record must follow the conversation's order.
            let mut first_seen = Vec::new();
            for s in &seqs {
                if !first_seen.contains(s) {
                    first_seen.push(*s);
                }
            }
            assert_eq!(
                first_seen,
                [1, 2, 3, 4],
                "order within the conversation: {seqs:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "records not delivered after the outage: {seqs:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_slower_than_the_deadline_is_answered_at_the_deadline_through_the_spool() {
    let dir = common::memory_tempdir();
    let app = TestApp::start(&flags(&spool_flags(&dir))).await;
    app.cluster
        .broker_round_trip_time(1, Duration::from_millis(1500))
        .expect("rtt");
    let (ok, refused, slowest) = burst(&app, 30).await;
    assert!(refused.is_empty(), "{refused:?}");
    assert!(slowest < Duration::from_secs(2), "slowest {slowest:?}");
    // Replay waits longer than the ack deadline, so the spool drains while the broker is still slow.
    drained(&app, 30, "spool did not drain while the broker was slow").await;
    // A consumer needs the broker at normal speed to read them back.
    app.cluster
        .broker_round_trip_time(1, Duration::ZERO)
        .expect("rtt");
    all_stored(&app, &ok, Duration::from_secs(30)).await;
}

/// `--spool-write-budget` is what the spool is promised of the ack deadline: a body that arrives
/// with less than that left is not offered to Kafka at all (which would leave the spool less
/// time than its disk was said to need) but spooled, answered 200 and replayed. With the
/// default budget (250 ms) the same request would be sent to this quick Kafka directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_arriving_with_less_than_the_spool_write_budget_left_goes_straight_to_the_spool() {
    let dir = common::memory_tempdir();
    let app = TestApp::start(&[
        "--spool-dir",
        &dir.path().display().to_string(),
        "--ack-timeout",
        "1900ms",
        "--spool-write-budget",
        "1600ms",
    ])
    .await;
    let body = status(1, 0);
    let (head, rest) = body.split_at(10);
    let mut s = common::raw_request(app.addr, body.len(), head).await;
    // Counted from when the bridge took the request (a loaded host may read the head late):
    // then at least 400 ms of the 1.9 s gone leaves less than the budget, however loaded.
    common::eventually("the request is in flight", async || {
        app.in_flight().await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    tokio::io::AsyncWriteExt::write_all(&mut s, rest)
        .await
        .expect("write the rest");
    let answer = common::read_answer(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let id = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("request id")
        .to_string();
    let (_, m) = app.admin_get("/metrics").await;
    assert!(
        has_line(&m, "qikchat_bridge_spool_appends_total{result=\"ok\"} 1"),
        "{m}"
    );
    drained(&app, 1, "the spooled record was not replayed").await;
    assert_eq!(all_stored(&app, &[id], Duration::from_secs(30)).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_body_is_spooled_when_kafka_is_late_and_reaches_the_dead_letter_topic() {
    let dir = common::memory_tempdir();
    let app = TestApp::start(&flags(&spool_flags(&dir))).await;
    app.cluster.broker_down(1).expect("down");
    let started = Instant::now();
    let r = app
        .http
        .post(app.url())
        .basic_auth(USER, Some(PASS))
        .body(b"{oops".to_vec())
        .send()
        .await
        .expect("request");
    let took = started.elapsed();
    let id = common::request_id(&r);
    // Refused, but only once its copy is stored: a 400 is not retried.
    assert_eq!(r.status(), 400);
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Where it is now: not in the topic yet, which a sender's operator may look for at once.
    let said: serde_json::Value =
        serde_json::from_slice(&r.bytes().await.expect("body")).expect("JSON error body");
    assert!(
        said["message"].as_str().expect("text").ends_with(
            "the body was kept in the spool, for the dead-letter topic once Kafka takes it"
        ),
        "{said}"
    );
    let (_, m) = app.admin_get("/metrics").await;
    assert!(
        has_line(&m, "qikchat_bridge_spool_appends_total{result=\"ok\"} 1"),
        "{m}"
    );
    app.cluster.broker_up(1).expect("up");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = app
            .records("whatsapp.deadletter", 1, Duration::from_secs(2))
            .await;
        if let Some(g) = got.first() {
            assert_eq!(g.headers.get("request-id"), Some(&id));
            assert_eq!(g.value, b"{oops");
            break;
        }
        assert!(Instant::now() < deadline, "not in the dead-letter topic");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_answers_503_loses_no_200_and_takes_records_again_once_drained() {
    let dir = common::memory_tempdir();
    let mut f = spool_flags(&dir);
    f.extend([
        "--spool-max-bytes".into(),
        "8192".into(),
        "--max-body-bytes".into(),
        "1024".into(),
    ]);
    let app = TestApp::start(&flags(&f)).await;
    app.cluster.broker_down(1).expect("down");
    let (ok, refused, _) = burst(&app, 40).await;
    assert!(!refused.is_empty(), "the spool must fill up");
    for answer in &refused {
        assert_eq!(
            *answer,
            (503, Some("1".to_string())),
            "a full spool is a retryable refusal: {refused:?}"
        );
    }
    assert!(!ok.is_empty());
    let (_, m) = app.admin_get("/metrics").await;
    let full = value_of(&m, "qikchat_bridge_spool_appends_total{result=\"full\"}");
    assert!(full >= 1.0, "full appends counted: {full}");
    // Readiness notices Kafka gone at its next metadata probe (every second).
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.admin_get("/readyz").await.0 != 503 {
        assert!(
            Instant::now() < deadline,
            "still ready with Kafka down and no room in the spool"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    app.cluster.broker_up(1).expect("up");
    all_stored(&app, &ok, Duration::from_secs(30)).await;
    common::eventually("the spool drains", async || {
        let (_, m) = app.admin_get("/metrics").await;
        has_line(&m, "qikchat_bridge_spool_records 0")
            && has_line(&m, "qikchat_bridge_spool_bytes 0")
    })
    .await;

    // Room again: with Kafka gone once more, only the spool can take a new record, so a 200
    // proves the drained spool accepts appends, not that Kafka took the record directly.
    let (_, m) = app.admin_get("/metrics").await;
    let appended = value_of(&m, "qikchat_bridge_spool_appends_total{result=\"ok\"}");
    app.cluster.broker_down(1).expect("down again");
    let (status, id, took) = post(&app, status(999, 0)).await;
    assert_eq!(status, 200, "no room in the spool after it drained");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let (_, m) = app.admin_get("/metrics").await;
    assert_eq!(
        value_of(&m, "qikchat_bridge_spool_appends_total{result=\"ok\"}"),
        appended + 1.0,
        "the 200 came through the spool"
    );
    app.cluster.broker_up(1).expect("up again");
    all_stored(&app, &[id], Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_produce_errors_are_retried_and_answered_200() {
    let app = TestApp::start(&["--ack-timeout", "10s"]).await;
    app.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    let (status, id, _) = post(&app, status(1, 0)).await;
    assert_eq!(status, 200);
    all_stored(&app, &[id], Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_authorization_failure_is_spooled_and_delivered_once_the_topic_takes_it() {
    let dir = common::memory_tempdir();
    let app = TestApp::start(&flags(&spool_flags(&dir))).await;
    // The topic's ACL revoked for one produce request, then granted again.
    app.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let (status, id, took) = post(&app, status(2, 0)).await;
    assert_eq!(status, 200, "kept in the spool, not refused for good");
    assert!(took < Duration::from_secs(2));
    let (_, m) = app.admin_get("/metrics").await;
    assert!(
        has_line(&m, "qikchat_bridge_spool_appends_total{result=\"ok\"} 1"),
        "spooled"
    );
    assert!(
        m.contains(r#"result="topic_authorization_failed""#),
        "error kind counted"
    );
    all_stored(&app, &[id], Duration::from_secs(30)).await;
}

/// Ten webhooks answered 200 through the spool while `stall` keeps Kafka from taking them, under
/// `--flush-timeout flush`, once replay's round for them has begun; and the spool's directory.
async fn ten_spooled_then_replaying(
    flush: &str,
    stall: impl FnOnce(&TestApp),
) -> (tempfile::TempDir, TestApp) {
    let dir = common::memory_tempdir();
    let mut f = spool_flags(&dir);
    f.extend(["--flush-timeout".into(), flush.into()]);
    let app = TestApp::start(&flags(&f)).await;
    app.wait_ready().await;
    stall(&app);
    let (ok, refused, _) = burst(&app, 10).await;
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(ok.len(), 10);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, m) = app.admin_get("/metrics").await;
    assert!(has_line(&m, "qikchat_bridge_spool_records 10"), "{m}");
    (dir, app)
}

/// Stops `app` and returns how long that took; the ten records must still be in the spool.
async fn stopped_keeping_ten(dir: tempfile::TempDir, mut app: TestApp) -> Duration {
    let asked = Instant::now();
    app.trigger_shutdown();
    app.wait_stopped(Duration::from_secs(60)).await;
    let took = asked.elapsed();
    drop(app);
    let spool = qikchat_bridge::spool::Spool::open(dir.path(), 1 << 30, 1).expect("reopen");
    assert_eq!(spool.records(), 10, "the records wait for the next start");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_records_still_spooled_is_bounded_and_keeps_them_for_the_next_start() {
    // A broker that answers but refuses every produce request with an error worth retrying:
    // its deliveries may still come, so the round is waited for, up to the flush timeout and
    // no longer (replay's own timeout is 30 s).
    let (dir, app) = ten_spooled_then_replaying("3s", |app| {
        app.cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 100_000],
        );
    })
    .await;
    let took = stopped_keeping_ten(dir, app).await;
    assert!(
        took >= Duration::from_secs(3),
        "the exit took {took:?}: a slow broker was taken for none"
    );
    assert!(took < Duration::from_secs(15), "the exit took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_broker_answering_shutdown_does_not_wait_out_the_flush_timeout_for_replay() {
    // Replay's round waits on deliveries no broker can acknowledge.
    let (dir, app) = ten_spooled_then_replaying("30s", |app| {
        app.cluster.broker_down(1).expect("down");
    })
    .await;
    let took = stopped_keeping_ten(dir, app).await;
    assert!(
        took < Duration::from_secs(15),
        "the exit took {took:?}: replay's round was waited for as if a broker could answer"
    );
}

/// Posts `body` as Qikchat does, again after each 503 (up to 10), and returns the request id
/// answered 200 and those answered 503. With the broker down each record reaches the spool only
/// in the last 250 ms of its 1 s deadline, which a spool writer held back that long outlasts (an
/// fsync behind other writers' dirty pages did on disk; on memory, only a machine too loaded to
/// run the writer): the 503 is the bridge's honest answer, and such a record may still be
/// committed and replayed (`Delivery::spool`), a duplicate beside the retry.
async fn post_until_200(
    http: reqwest::Client,
    url: String,
    body: Vec<u8>,
) -> (String, Vec<String>) {
    let mut refused = Vec::new();
    loop {
        let (code, id, _) = post_to(http.clone(), url.clone(), body.clone()).await;
        match code {
            200 => return (id, refused),
            503 if refused.len() < 10 => refused.push(id),
            _ => panic!("answered {code} after {} answers 503", refused.len()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The records waiting in the spool, by its gauge.
async fn spool_records(app: &TestApp) -> usize {
    let (_, m) = app.admin_get("/metrics").await;
    value_of(&m, "qikchat_bridge_spool_records") as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_without_a_leader_holds_back_only_its_own_spooled_records() {
    use qikchat_bridge::producer::spread::partition_of;
    let dir = common::memory_tempdir();
    // Replay's batch is half the producer queue: 256 records here, not thousands.
    let mut args = spool_flags(&dir);
    args.extend(["-X".into(), "queue.buffering.max.messages=512".into()]);
    let app = TestApp::start(&flags(&args)).await;
    // Customers (the key is their number without its `+`) whose records go to partition 0, and
    // others: more than one replay batch of the first, spooled before the others.
    let partitions = u32::try_from(common::PARTITIONS).expect("count");
    let on_0 = |n: &u32| partition_of(format!("9100{n:06}").as_bytes(), partitions) == 0;
    let held: Vec<u32> = (0..).filter(on_0).take(300).collect();
    let free: Vec<u32> = (0..).filter(|n| !on_0(n)).take(30).collect();
    app.cluster.broker_down(1).expect("down");
    let spooled = |customers: Vec<u32>| {
        let tasks: Vec<_> = customers
            .into_iter()
            .map(|n| tokio::spawn(post_until_200(app.http.clone(), app.url(), status(n, 0))))
            .collect();
        async move {
            let (mut ids, mut refused) = (Vec::new(), Vec::new());
            for task in tasks {
                let (id, r) = task.await.expect("task");
                ids.push(id);
                refused.extend(r);
            }
            (ids, refused)
        }
    };
    let (mut held_ids, mut refused) = (Vec::new(), Vec::new());
    for customers in held.chunks(100) {
        let (ids, r) = spooled(customers.to_vec()).await;
        held_ids.extend(ids);
        refused.extend(r);
    }
    // Exact counts despite the retries: nothing leaves the spool while the broker is down, and
    // every 503'd append was queued to the writer before its retry's, so once each retry is
    // answered 200 the gauge has counted those that committed late.
    let held_spooled = spool_records(&app).await;
    assert!(
        (300..=300 + refused.len()).contains(&held_spooled),
        "{held_spooled} spooled for 300 customers, {} answers 503",
        refused.len()
    );
    let held_refused = refused.len();
    let (free_ids, r) = spooled(free).await;
    refused.extend(r);
    let spooled_total = spool_records(&app).await;
    assert!(
        (held_spooled + 30..=held_spooled + 30 + refused.len() - held_refused)
            .contains(&spooled_total),
        "{spooled_total} spooled, {held_spooled} of them before the 30 others"
    );
    // Only lateness may be answered 503 here: the spool itself refused nothing.
    let (_, m) = app.admin_get("/metrics").await;
    for refusal in ["full", "error", "busy"] {
        let line = format!(r#"qikchat_bridge_spool_appends_total{{result="{refusal}"}} 0"#);
        assert!(has_line(&m, &line), "{m}");
    }
    if !refused.is_empty() {
        let late = value_of(&m, r#"qikchat_bridge_spool_appends_total{result="late"}"#);
        eprintln!(
            "{} answers 503 retried ({late} spool writes late); {} of them spooled all the same",
            refused.len(),
            spooled_total - 330
        );
    }
    // The webhook producer's own copies time out first (1 s): what reaches Kafka comes from
    // replay.
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.cluster
        .partition_leader(TOPIC, 0, None)
        .expect("no leader");
    app.cluster.broker_up(1).expect("up");
    // Replay's records for partition 0 time out after 30 s: the pass that began in the outage,
    // then the first batch of the next, before the others are sent.
    all_stored(&app, &free_ids, Duration::from_secs(120)).await;
    // Partition 0's records wait (the others leave the spool once Kafka took them).
    common::eventually("only partition 0's records spooled", async || {
        spool_records(&app).await == held_spooled
    })
    .await;
    app.cluster
        .partition_leader(TOPIC, 0, Some(1))
        .expect("leader");
    all_stored(&app, &held_ids, Duration::from_secs(60)).await;
    let replayed = u32::try_from(spooled_total).expect("count");
    drained(&app, replayed, "spool not drained").await;
    // Where librdkafka put each record is where replay expected it; besides the records answered
    // 200 only 503'd ones that committed late are there.
    let got = app
        .records(TOPIC, spooled_total, Duration::from_secs(10))
        .await;
    assert_eq!(got.len(), spooled_total, "every record read back");
    for got in got {
        let key = got.key.expect("keyed");
        assert_eq!(
            got.partition,
            partition_of(key.as_bytes(), partitions),
            "{key}"
        );
        let id = got.headers.get("request-id").expect("request-id");
        assert!(
            held_ids.contains(id) || free_ids.contains(id) || refused.contains(id),
            "{id} was never answered"
        );
    }
}

/// A bridge with `extra` flags and the broker down, one record spooled (its request id returned)
/// and the spool directory then deleted; the next record answered 503, not 200: the next start
/// would open a new, empty spool, so a record written to the removed file is not stored.
async fn spooled_then_removed(extra: &[&str]) -> (TestApp, String) {
    let dir = common::memory_tempdir();
    let mut args = spool_flags(&dir);
    args.extend(extra.iter().map(|a| a.to_string()));
    let app = TestApp::start(&flags(&args)).await;
    app.cluster.broker_down(1).expect("down");
    let (status_1, id, _) = post(&app, status(1, 0)).await;
    assert_eq!(status_1, 200, "spooled");
    std::fs::remove_dir_all(dir.path()).expect("remove the spool directory");
    let (status_2, _, took) = post(&app, status(2, 0)).await;
    assert_eq!(status_2, 503, "answered 200 into a removed file");
    assert!(took < Duration::from_secs(2), "{took:?}");
    (app, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_directory_deleted_while_running_answers_503_replays_what_it_held_then_stops() {
    let (mut app, id) = spooled_then_removed(&[]).await;
    let (_, m) = app.admin_get("/metrics").await;
    assert!(
        has_line(&m, "qikchat_bridge_spool_appends_total{result=\"error\"} 1"),
        "{m}"
    );
    common::eventually(
        "unready: Kafka down, no spool to take records",
        async || app.admin_get("/readyz").await.0 == 503,
    )
    .await;

    // What the removed file holds is replayed from it while the bridge runs, and the bridge
    // then stops so that its restart makes a new spool.
    app.cluster.broker_up(1).expect("up");
    all_stored(&app, &[id], Duration::from_secs(30)).await;
    // It stops by itself once the removed file is replayed, after the next scrape, or 5 s
    // (two scrapes this close together say nothing of a scrape interval): see `scrapes`.
    let _ = app.admin_get("/metrics").await;
    let error = app.wait_failed(Duration::from_secs(30)).await;
    assert!(error.contains("removed or replaced"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_that_leaves_records_in_a_removed_spool_file_ends_in_an_error() {
    let (mut app, _) = spooled_then_removed(&["--flush-timeout", "1s"]).await;

    // Stopped before Kafka is back: the first record, answered 200, goes with the file, and a
    // clean exit would hide that from whatever reads only the exit status.
    app.trigger_shutdown();
    let error = app.wait_failed(Duration::from_secs(30)).await;
    assert!(error.contains("lost with it"), "{error}");
}

/// The spool's writer looks at its file's path after each commit and after a second without one:
/// a file removed just before a shutdown is looked at again by the shutdown, which ends in an
/// error all the same. Kafka refuses the topic here, so the record is spooled at once and the
/// flush has nothing to wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_file_removed_just_before_a_shutdown_ends_it_in_an_error() {
    let dir = common::memory_tempdir();
    let mut app = TestApp::start(&flags(&spool_flags(&dir))).await;
    app.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 10_000],
    );
    let (status_1, _, _) = post(&app, status(1, 0)).await;
    assert_eq!(status_1, 200, "spooled");
    std::fs::remove_dir_all(dir.path()).expect("remove the spool directory");
    app.trigger_shutdown();
    let error = app.wait_failed(Duration::from_secs(30)).await;
    assert!(error.contains("lost with it"), "{error}");
}

/// Kafka refuses a whole batch for one record in it that it finds invalid, and librdkafka fails
/// every record of that batch alike: replay must not take that for each record's own refusal and
/// move records their topic would take to the dead-letter topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_replayed_in_a_batch_kafka_refused_whole_reach_their_own_topic() {
    let dir = common::memory_tempdir();
    let app = TestApp::start(&flags(&spool_flags(&dir))).await;
    app.cluster.broker_down(1).expect("down");
    // One conversation: one partition, so replay sends them together. A machine too loaded to
    // run the spool's writer in time answers 503 (see `post_until_200`); such a record may
    // still be spooled, which the gauge counts once every retry is answered.
    let (mut ids, mut refused) = (Vec::new(), Vec::new());
    for seq in 0..5 {
        let (id, r) = post_until_200(app.http.clone(), app.url(), status(7, seq)).await;
        ids.push(id);
        refused.extend(r);
    }
    let spooled = spool_records(&app).await;
    assert!(
        (5..=5 + refused.len()).contains(&spooled),
        "{spooled} spooled, {} answers 503",
        refused.len()
    );
    // Refused once, as a batch holding an invalid record would be; each alone is taken.
    app.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD],
    );
    app.cluster.broker_up(1).expect("up");
    let replayed = u32::try_from(spooled).expect("count");
    drained(&app, replayed, "all replayed to their own topic").await;
    assert_eq!(all_stored(&app, &ids, Duration::from_secs(30)).await, 5);
    let (_, m) = app.admin_get("/metrics").await;
    let refused = r#"qikchat_bridge_kafka_deliveries_total{result="invalid_record",topic="whatsapp.message.status"}"#;
    assert!(value_of(&m, refused) >= 1.0, "the refusal was met");
    assert!(
        has_line(&m, "qikchat_bridge_spool_deadlettered_total 0"),
        "{m}"
    );
    let dead = app
        .records("whatsapp.deadletter", usize::MAX, Duration::from_secs(2))
        .await;
    assert!(dead.is_empty(), "{} dead-lettered", dead.len());
}

/// `--replay-max-rate` reaches replay: ten records spooled in an outage drain at 2 a second, in
/// batches of two a second apart, so the spool is seen between full and empty (unpaced, the ten
/// leave it in one batch and one delete) and empties no sooner than 4 s after Kafka is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_max_rate_drains_a_backlog_at_that_pace() {
    let dir = common::memory_tempdir();
    let mut f = spool_flags(&dir);
    f.extend(["--replay-max-rate".into(), "2".into()]);
    let app = TestApp::start(&flags(&f)).await;
    app.wait_ready().await;
    app.cluster.broker_down(1).expect("down");
    let (ok, refused, _) = burst(&app, 10).await;
    assert!(refused.is_empty(), "{refused:?}");
    app.cluster.broker_up(1).expect("up");
    let back = Instant::now();
    let mut seen = Vec::new();
    loop {
        let (_, m) = app.admin_get("/metrics").await;
        let left = value_of(&m, "qikchat_bridge_spool_records");
        if seen.last() != Some(&left) {
            seen.push(left);
        }
        if left == 0.0 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(60), "{seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = back.elapsed();
    assert!(
        seen.iter().any(|&n| 0.0 < n && n < 10.0),
        "the spool went {seen:?}"
    );
    assert!(took >= Duration::from_secs(4), "drained in {took:?}");
    all_stored(&app, &ok, Duration::from_secs(30)).await;
}
