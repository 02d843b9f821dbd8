//! Delivery unit tests: Kafka first, then the spool within the deadline; and the fake Kafka that
//! replay's tests share.

use std::sync::Mutex;

use super::*;
use crate::record::RecordHeaders;

/// A record the fake took: topic, key and headers.
pub(super) type Took = (String, Option<String>, Vec<(String, String)>);

/// Acknowledges every record but those for the topics in `refuses` or with a value in
/// `refuses_values`, which get `error`, and remembers what it took.
pub(super) struct FakeKafka {
    pub(super) refuses: Vec<&'static str>,
    pub(super) refuses_values: Vec<&'static [u8]>,
    pub(super) error: ProduceError,
    pub(super) took: Mutex<Vec<Took>>,
    /// The timestamps of what it took, in the same order.
    pub(super) times: Mutex<Vec<i64>>,
    /// Its `message.max.bytes`.
    pub(super) max_record_bytes: usize,
}

impl FakeKafka {
    pub(super) fn refusing(refuses: &[&'static str], error: ProduceError) -> Arc<FakeKafka> {
        Arc::new(FakeKafka {
            refuses: refuses.to_vec(),
            refuses_values: Vec::new(),
            error,
            took: Mutex::new(Vec::new()),
            times: Mutex::new(Vec::new()),
            max_record_bytes: usize::MAX,
        })
    }
}

impl Sink for FakeKafka {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        if self.refuses.contains(&record.topic) || self.refuses_values.contains(&record.value) {
            return Err(self.error.clone());
        }
        let headers = record
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let key = record.key.as_deref().map(str::to_string);
        let mut took = self.took.lock().expect("lock");
        took.push((record.topic.to_string(), key, headers));
        self.times.lock().expect("lock").push(record.timestamp_ms);
        Ok(Delivered::Kafka {
            partition: 0,
            offset: took.len() as i64,
        })
    }

    fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }
}

/// A `Delivery` with a spool in a new directory, over a Kafka that never acknowledges in time.
fn slow_kafka_with_spool() -> (Delivery<FakeKafka>, Arc<Spool>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 1 << 20, 1).expect("open");
    let metrics = Arc::new(Metrics::new(&[]).expect("metrics"));
    let kafka = FakeKafka::refusing(&["t"], ProduceError::Timeout);
    (
        Delivery::new(kafka, Some(spool.clone()), metrics),
        spool,
        dir,
    )
}

fn webhook_record() -> Record<'static> {
    Record {
        topic: "t",
        key: Some(std::borrow::Cow::Borrowed("k")),
        value: b"{}",
        timestamp_ms: 0,
        headers: RecordHeaders::Raw(&[]),
    }
}

// Not on the paused clock: the spool's writer thread takes real time, during which a paused
// clock would jump to the deadline.
#[tokio::test]
async fn a_body_that_took_the_whole_ack_timeout_is_not_spooled() {
    let (delivery, spool, _dir) = slow_kafka_with_spool();
    let sent = delivery.send(&webhook_record(), Instant::now()).await;
    assert_eq!(sent, Err(ProduceError::Timeout));
    assert_eq!(spool.records(), 0);
    assert!(!spool.holds_key("k"));
    // With time left, the same record is spooled.
    let sent = delivery
        .send(&webhook_record(), Instant::now() + Duration::from_secs(30))
        .await;
    assert!(matches!(sent, Ok(Delivered::Spooled { .. })), "{sent:?}");
}

/// The deadline itself leaves no time: a body complete exactly at it is not spooled either, where
/// an append begun would be answered 503 at once and might still commit, to be delivered beside
/// the sender's retry. (On the paused clock, the only one where "exactly" can be met.)
#[tokio::test(start_paused = true)]
async fn a_body_complete_exactly_at_the_deadline_is_not_spooled() {
    let (delivery, spool, _dir) = slow_kafka_with_spool();
    let sent = delivery.send(&webhook_record(), Instant::now()).await;
    assert_eq!(sent, Err(ProduceError::Timeout));
    // The writer's queued appends are committed before close returns: none was queued.
    spool.close();
    assert_eq!(spool.records(), 0);
    let metrics = String::from_utf8(delivery.metrics.render()).expect("utf-8");
    assert!(
        metrics.contains(r#"qikchat_bridge_spool_appends_total{result="late"} 0"#),
        "{metrics}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_spool_write_that_outlasts_the_deadline_is_answered_at_the_deadline() {
    let (delivery, spool, _dir) = slow_kafka_with_spool();
    let stalled = spool.stall_writes();
    let started = Instant::now();
    let deadline = started + Duration::from_millis(1500);
    let sent = delivery.send(&webhook_record(), deadline).await;
    assert!(
        matches!(sent, Err(ProduceError::Unavailable(_))),
        "{sent:?}"
    );
    assert_eq!(
        Instant::now(),
        deadline,
        "answered at the deadline, not later"
    );
    let metrics = String::from_utf8(delivery.metrics.render()).expect("utf-8");
    assert!(
        metrics.contains(r#"qikchat_bridge_spool_appends_total{result="late"} 1"#),
        "{metrics}"
    );
    // The write itself goes on once the disk moves: a duplicate with the retry, never a loss.
    drop(stalled);
    let waiting = std::time::Instant::now();
    while spool.records() == 0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(5),
            "never committed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(spool.holds_key("k"));
}

#[tokio::test]
async fn a_record_kafka_would_refuse_for_its_size_gets_413_and_is_never_spooled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 1 << 20, 1).expect("open");
    let metrics = Arc::new(Metrics::new(&[]).expect("metrics"));
    let record = webhook_record();
    let kafka = Arc::new(FakeKafka {
        refuses: vec!["t"],
        refuses_values: Vec::new(),
        error: ProduceError::Timeout,
        took: Mutex::new(Vec::new()),
        times: Mutex::new(Vec::new()),
        max_record_bytes: record.wire_size() - 1,
    });
    let delivery = Delivery::new(kafka, Some(spool.clone()), metrics);
    let deadline = Instant::now() + Duration::from_secs(30);
    // Kafka slow, and then with older records of its conversation spooled: both paths that
    // spool without handing the record to librdkafka, whose own size check never runs.
    assert_eq!(
        delivery.send(&record, deadline).await,
        Err(ProduceError::TooLarge)
    );
    let older = SpooledRecord::from_record(&webhook_record());
    spool.append(older).await.expect("spooled");
    assert!(spool.holds_key("k"));
    assert_eq!(
        delivery.send(&record, deadline).await,
        Err(ProduceError::TooLarge)
    );
    assert_eq!(spool.records(), 1, "only the older record");
}

/// A spool in `dir` and metrics, for a `Delivery` over a fake Kafka.
fn spool_in(dir: &tempfile::TempDir) -> (Arc<Spool>, Arc<Metrics>) {
    let spool = Spool::open(dir.path(), 1 << 20, 1).expect("open");
    (spool, Arc::new(Metrics::new(&[]).expect("metrics")))
}

fn in_30s() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

// Real clock: the spool's writer thread (see above).
#[tokio::test]
async fn a_refusal_an_operator_can_fix_is_spooled_and_one_of_the_record_itself_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool, metrics) = spool_in(&dir);
    let denied = FakeKafka::refusing(
        &["t"],
        ProduceError::Refused("TopicAuthorizationFailed".into()),
    );
    let delivery = Delivery::new(denied, Some(spool.clone()), metrics.clone());
    let sent = delivery.send(&webhook_record(), in_30s()).await;
    assert!(matches!(sent, Ok(Delivered::Spooled { .. })), "{sent:?}");
    assert_eq!(spool.records(), 1);

    let mut invalid = webhook_record();
    invalid.key = None;
    let refused = ProduceError::Rejected("InvalidRecord".into());
    let delivery = Delivery::new(
        FakeKafka::refusing(&["t"], refused.clone()),
        Some(spool.clone()),
        metrics,
    );
    assert_eq!(delivery.send(&invalid, in_30s()).await, Err(refused));
    assert_eq!(
        spool.records(),
        1,
        "not spooled: replay could never deliver it"
    );
}

// Real clock: the spool's writer thread (see above).
#[tokio::test]
async fn a_customers_record_on_another_topic_does_not_wait_behind_their_spooled_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool, metrics) = spool_in(&dir);
    let kafka = FakeKafka::refusing(&["t"], ProduceError::Refused("UnknownTopic".into()));
    let delivery = Delivery::new(kafka.clone(), Some(spool.clone()), metrics);
    let sent = delivery.send(&webhook_record(), in_30s()).await;
    assert!(matches!(sent, Ok(Delivered::Spooled { .. })), "{sent:?}");
    assert!(spool.holds("t", "k"));
    // Key k on topic "other": its own conversation, nothing of it spooled.
    let mut other = webhook_record();
    other.topic = "other";
    let sent = delivery.send(&other, in_30s()).await;
    assert!(matches!(sent, Ok(Delivered::Kafka { .. })), "{sent:?}");
    assert_eq!(spool.records(), 1);
    assert_eq!(kafka.took.lock().expect("lock")[0].0, "other");
}

/// Without the idempotent producer's sequence numbers, a retried produce request can land behind
/// a later one of the same conversation: replay then keeps one request in flight per broker.
#[test]
fn the_replay_producer_keeps_one_request_in_flight_without_idempotence() {
    let props = |idempotence: &str| {
        std::collections::BTreeMap::from([
            ("enable.idempotence".to_string(), idempotence.to_string()),
            ("acks".to_string(), "1".to_string()),
        ])
    };
    let with = replay_overrides(&props("true"));
    assert_eq!(with.get("max.in.flight"), None);
    assert_eq!(
        with.get("client.id").map(String::as_str),
        Some("qikchat-bridge-replay")
    );
    // librdkafka's other spellings of true: they were taken for false, which cost replay its
    // pipelining.
    for spelled in ["1", "t", "TRUE"] {
        let with = replay_overrides(&props(spelled));
        assert_eq!(with.get("max.in.flight"), None, "{spelled}");
    }
    let without = replay_overrides(&props("false"));
    assert_eq!(without.get("max.in.flight").map(String::as_str), Some("1"));
    assert_eq!(
        without.get("message.timeout.ms").map(String::as_str),
        Some("30000")
    );
}

/// A conversation with records in the spool keeps its order: its next record goes to the spool
/// too, and when the spool cannot take it, it is answered 503 without being offered to Kafka,
/// where it would overtake the older ones (replay sends those later).
// Real clock: the spool's writer thread (see above).
#[tokio::test]
async fn a_record_the_spool_cannot_take_behind_its_conversation_is_refused_not_sent_ahead() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 1000, 1).expect("open");
    let metrics = Arc::new(Metrics::new(&[]).expect("metrics"));
    let away = FakeKafka::refusing(&["t"], ProduceError::Timeout);
    let delivery = Delivery::new(away, Some(spool.clone()), metrics.clone());
    let sent = delivery.send(&webhook_record(), in_30s()).await;
    assert!(matches!(sent, Ok(Delivered::Spooled { .. })), "{sent:?}");
    // Kafka is back; the conversation's next record does not fit in the spool.
    let kafka = FakeKafka::refusing(&[], ProduceError::Timeout);
    let delivery = Delivery::new(kafka.clone(), Some(spool.clone()), metrics);
    let body = vec![b' '; 2000];
    let next = Record {
        topic: "t",
        key: Some(std::borrow::Cow::Borrowed("k")),
        value: &body,
        timestamp_ms: 1,
        headers: RecordHeaders::Raw(&[]),
    };
    let sent = delivery.send(&next, in_30s()).await;
    assert!(
        matches!(sent, Err(ProduceError::Unavailable(_))),
        "{sent:?}"
    );
    assert!(
        kafka.took.lock().expect("lock").is_empty(),
        "offered to Kafka ahead of its conversation's spooled record"
    );
    assert_eq!(spool.records(), 1);
}

/// Refuses every record as invalid (so nothing is spooled), remembering each deadline it was
/// given.
#[derive(Default)]
struct Deadlines(Mutex<Vec<Instant>>);

impl Sink for Deadlines {
    async fn send(&self, _: &Record<'_>, deadline: Instant) -> Result<Delivered, ProduceError> {
        self.0.lock().expect("lock").push(deadline);
        Err(ProduceError::Rejected("InvalidRecord".into()))
    }
}

/// With a spool, Kafka must answer early enough to leave the spool's fsync time before the ack
/// deadline: a quarter of the time left, at most 250 ms.
#[tokio::test(start_paused = true)]
async fn with_a_spool_kafka_gets_the_deadline_less_a_quarter_of_the_time_left_at_most_250_ms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool, metrics) = spool_in(&dir);
    let kafka = Arc::new(Deadlines::default());
    let delivery = Delivery::new(kafka.clone(), Some(spool), metrics);
    let now = Instant::now();
    for left in [Duration::from_secs(30), Duration::from_millis(400)] {
        let sent = delivery.send(&webhook_record(), now + left).await;
        assert!(matches!(sent, Err(ProduceError::Rejected(_))), "{sent:?}");
    }
    assert_eq!(
        *kafka.0.lock().expect("lock"),
        [
            now + Duration::from_secs(30) - Duration::from_millis(250),
            now + Duration::from_millis(400) - Duration::from_millis(100),
        ]
    );
}

/// `--spool-write-budget` is kept whole for the spool while that much is left, so an operator
/// whose disk syncs slowly gets the time asked for; with less left, all of it, and Kafka none.
#[tokio::test(start_paused = true)]
async fn with_a_spool_write_budget_kafka_gets_the_deadline_less_that_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool, metrics) = spool_in(&dir);
    let kafka = Arc::new(Deadlines::default());
    let delivery = Delivery::new(kafka.clone(), Some(spool), metrics)
        .with_spool_budget(SpoolBudget::Set(Duration::from_millis(600)));
    let now = Instant::now();
    for left in [
        Duration::from_secs(30),
        Duration::from_millis(800),
        Duration::from_millis(400),
    ] {
        let sent = delivery.send(&webhook_record(), now + left).await;
        assert!(matches!(sent, Err(ProduceError::Rejected(_))), "{sent:?}");
    }
    assert_eq!(
        *kafka.0.lock().expect("lock"),
        [
            now + Duration::from_secs(30) - Duration::from_millis(600),
            now + Duration::from_millis(200),
            now,
        ]
    );
}

/// A spool whose disk is stalled with writes already waiting refuses the next one as busy: the
/// record is fine and a retry may be stored, so the answer is Kafka unavailable (503 with
/// `Retry-After`), never the 500 that tells the sender the record itself is refused.
// Real clock: the spool's writer thread (see above).
#[tokio::test]
async fn a_record_a_stalled_spool_is_too_busy_to_take_is_unavailable_not_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 1 << 30, 1).expect("open");
    let metrics = Arc::new(Metrics::new(&[]).expect("metrics"));
    let kafka = FakeKafka::refusing(&["t"], ProduceError::Timeout);
    let delivery = Delivery::new(kafka, Some(spool.clone()), metrics);
    let stalled = spool.stall_writes();
    // A write that waits for the disk, its caller gone (answered at its deadline).
    let waiting = spool.append(SpooledRecord::from_record(&webhook_record()));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), waiting)
            .await
            .is_err(),
        "committed while stalled"
    );
    // With that one waiting, a record past the bound of waiting writes is refused at once.
    let value = vec![b'x'; crate::spool::MAX_WAITING_BYTES as usize + 1];
    let record = Record {
        value: &value,
        ..webhook_record()
    };
    let sent = delivery.send(&record, in_30s()).await;
    assert!(
        matches!(&sent, Err(e @ ProduceError::Unavailable(_)) if !e.is_record_fault()),
        "{sent:?}"
    );
    drop(stalled);
    spool.close();
}

/// Without a spool nothing needs time after Kafka's answer: Kafka gets the whole ack deadline,
/// and a record acknowledged in its last 250 ms is a 200, not a 503 whose retry is a duplicate.
#[tokio::test(start_paused = true)]
async fn without_a_spool_kafka_gets_the_whole_ack_deadline() {
    let kafka = Arc::new(Deadlines::default());
    let metrics = Arc::new(Metrics::new(&[]).expect("metrics"));
    let delivery = Delivery::new(kafka.clone(), None, metrics);
    let deadline = Instant::now() + Duration::from_secs(2);
    let sent = delivery.send(&webhook_record(), deadline).await;
    assert!(matches!(sent, Err(ProduceError::Rejected(_))), "{sent:?}");
    assert_eq!(*kafka.0.lock().expect("lock"), [deadline]);
}

/// librdkafka takes a record of exactly `message.max.bytes`
/// (`producer::tests::wire_size_is_the_size_librdkafka_weighs_against_message_max_bytes`), so
/// the bridge's own check before the spool must too.
#[tokio::test]
async fn with_a_spool_a_record_of_exactly_the_largest_size_kafka_takes_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool, metrics) = spool_in(&dir);
    let record = webhook_record();
    let kafka = Arc::new(FakeKafka {
        refuses: Vec::new(),
        refuses_values: Vec::new(),
        error: ProduceError::Timeout,
        took: Mutex::new(Vec::new()),
        times: Mutex::new(Vec::new()),
        max_record_bytes: record.wire_size(),
    });
    let delivery = Delivery::new(kafka.clone(), Some(spool.clone()), metrics);
    let sent = delivery.send(&record, in_30s()).await;
    assert!(matches!(sent, Ok(Delivered::Kafka { .. })), "{sent:?}");
    assert_eq!(kafka.took.lock().expect("lock").len(), 1);
    assert_eq!(spool.records(), 0);
}
