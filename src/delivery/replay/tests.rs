//! Replay unit tests with a fake Kafka: what leaves the spool, where it goes, what is counted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::delivery::tests::FakeKafka;
use crate::metrics::Metrics;
use crate::producer::spread::partition_of;
use crate::producer::{Delivered, ProduceError, Sink};
use crate::record::Record;
use crate::spool::{Spool, SpooledRecord};

/// Smaller than the default, so that tests of what crosses a batch's end spool a few hundred
/// records, not thousands.
/// What a fake Kafka answers for a record it takes.
const TAKEN: Delivered = Delivered::Kafka {
    partition: 0,
    offset: 0,
};

const SMALL: Batch = Batch {
    records: 256,
    bytes: 16 << 20,
    pace: None,
};

fn spooled(topic: &str) -> SpooledRecord {
    SpooledRecord {
        topic: topic.into(),
        key: Some("k".into()),
        value: b"{}".to_vec(),
        headers: vec![
            ("event".into(), "whatsapp:message:in".into()),
            ("request-id".into(), "r1".into()),
            ("body-sha256".into(), "44136fa3".into()),
        ],
        timestamp_ms: 1_700_000_000_000,
    }
}

/// A stop signal never sent.
fn running() -> tokio::sync::watch::Receiver<bool> {
    // Kept for good: a receiver whose sender is gone reads as stopped, as in the bridge once
    // `run` has ended.
    let (sender, receiver) = tokio::sync::watch::channel(false);
    std::mem::forget(sender);
    receiver
}

/// Spools a record for each topic, replays them into `kafka` for up to `wait` (paused
/// clock), and returns the spool and the metrics.
async fn replay_into(
    kafka: Arc<FakeKafka>,
    topics: &[&str],
    wait: Duration,
) -> (Arc<Spool>, Arc<Metrics>) {
    replay_records(kafka, topics.iter().map(|t| spooled(t)).collect(), wait).await
}

/// A replay task's metrics, its stop signal and the task.
type Replaying = (
    Arc<Metrics>,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
);

/// The replay task on `spool` into `kafka` (dead-letter topic `dlq`).
fn start_replay<K: Sink>(spool: &Arc<Spool>, kafka: Arc<K>) -> Replaying {
    start_replay_of(SMALL, spool, kafka)
}

/// [`start_replay`] in batches of `batch`.
fn start_replay_of<K: Sink>(batch: Batch, spool: &Arc<Spool>, kafka: Arc<K>) -> Replaying {
    let metrics = Arc::new(Metrics::new(&[]).expect("metrics"));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(replay(
        batch,
        spool.clone(),
        kafka,
        "dlq".into(),
        metrics.clone(),
        stop,
    ));
    (metrics, stop_tx, task)
}

/// Spools `records`, replays them into `kafka` for up to `wait`, and returns the spool and
/// the metrics.
async fn replay_records<K: Sink>(
    kafka: Arc<K>,
    records: Vec<SpooledRecord>,
    wait: Duration,
) -> (Arc<Spool>, Arc<Metrics>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 16 << 20, 1).expect("open");
    for record in records {
        spool.append(record).await.expect("append");
    }
    let (metrics, stop_tx, task) = start_replay(&spool, kafka);
    let _ = tokio::time::timeout(wait, async {
        while spool.records() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    stop_tx.send(true).expect("stop");
    task.await.expect("replay task");
    (spool, metrics)
}

#[tokio::test]
async fn a_spooled_record_its_topic_refuses_for_good_moves_to_the_dead_letter_topic() {
    let kafka = FakeKafka::refusing(&["refused"], ProduceError::TooLarge);
    let (spool, metrics) = replay_into(
        kafka.clone(),
        &["ok", "refused", "ok", "ok"],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(spool.records(), 0);
    assert!(!spool.holds_key("k"));
    assert_eq!(metrics.spool.replayed.get(), 3);
    assert_eq!(metrics.spool.deadlettered.get(), 1);
    assert_eq!(metrics.spool.replay_failures.get(), 0);
    let took = kafka.took.lock().expect("lock");
    let (_, key, headers) = took
        .iter()
        .find(|(t, ..)| t == "dlq")
        .expect("dead-lettered");
    // A dead-letter record of the consumer contract: no key, no event header, a reason.
    assert_eq!(key, &None);
    let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "request-id",
            "body-sha256",
            "deadletter-reason",
            "deadletter-topic"
        ]
    );
    assert_eq!(headers[3].1, "refused", "the topic to send it back to");
    assert_eq!(
        headers[2].1,
        "Kafka refused the record on topic refused: record exceeds Kafka's record size limit"
    );
}

/// A topic that bounds how old a record's time may be (`message.timestamp.before.max.ms`) refuses
/// a record spooled longer ago on every attempt: it moves to the dead-letter topic with the time
/// of the move, which that topic takes, instead of holding its topic for good.
#[tokio::test]
async fn a_spooled_record_refused_for_its_time_moves_to_the_dead_letter_topic_with_a_new_time() {
    let refused = ProduceError::from_kafka(&rdkafka::error::KafkaError::MessageProduction(
        rdkafka::types::RDKafkaErrorCode::InvalidTimestamp,
    ));
    assert!(refused.is_record_fault(), "{refused:?}");
    let kafka = FakeKafka::refusing(&["old"], refused);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let (spool, metrics) =
        replay_into(kafka.clone(), &["old", "ok"], Duration::from_secs(10)).await;
    assert_eq!(spool.records(), 0);
    assert_eq!(metrics.spool.deadlettered.get(), 1);
    let took = kafka.took.lock().expect("lock");
    let times = kafka.times.lock().expect("lock");
    let at = |topic: &str| {
        let i = took.iter().position(|(t, ..)| t == topic).expect(topic);
        times[i]
    };
    assert!(
        at("dlq") >= started,
        "moved with its old time {}",
        at("dlq")
    );
    assert_eq!(
        at("ok"),
        1_700_000_000_000,
        "a replayed record keeps its time"
    );
}

/// Only a refusal for its time gives a record the time of its move: one refused as invalid moves
/// with the time it was received at.
#[tokio::test]
async fn a_spooled_record_refused_as_invalid_moves_to_the_dead_letter_topic_with_its_own_time() {
    let kafka = FakeKafka::refusing(&["bad"], ProduceError::Rejected("InvalidRecord".into()));
    let (spool, metrics) = replay_into(kafka.clone(), &["bad"], Duration::from_secs(10)).await;
    assert_eq!(spool.records(), 0);
    assert_eq!(metrics.spool.deadlettered.get(), 1);
    let took = kafka.took.lock().expect("lock");
    assert_eq!(took.len(), 1);
    assert_eq!(took[0].0, "dlq");
    assert_eq!(*kafka.times.lock().expect("lock"), [1_700_000_000_000]);
}

/// Now by the wall clock, in ms since the epoch, as records' times are.
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// Whether a record's time is older than a day, the bound of the topics of the fakes below.
/// Appends a record to "statuses" for each of `values` (its body, one byte), with the key `key`
/// gives it and the current time.
async fn append_statuses(spool: &Spool, values: &[u8], key: impl Fn(u8) -> Option<String>) {
    for &n in values {
        let record = SpooledRecord {
            value: vec![n],
            key: key(n),
            timestamp_ms: wall_ms(),
            ..spooled("statuses")
        };
        spool.append(record).await.expect("append");
    }
}

/// The key of [`spooled`]'s records: one conversation.
fn one_conversation(_: u8) -> Option<String> {
    Some("k".into())
}

fn older_than_a_day(timestamp_ms: i64) -> bool {
    timestamp_ms < wall_ms() - 86_400_000
}

/// A record's refusal as librdkafka reports it with `code`.
fn refused_as(code: rdkafka::types::RDKafkaErrorCode) -> ProduceError {
    ProduceError::from_kafka(&rdkafka::error::KafkaError::MessageProduction(code))
}

/// Takes a record unless it is older than a day (`message.timestamp.before.max.ms` on every
/// topic), which it refuses for its time, as a broker does.
struct RefusingOld {
    /// What it took: topic, time and headers.
    took: Mutex<Vec<(String, i64, Headers)>>,
}

type Headers = Vec<(String, String)>;

impl Sink for RefusingOld {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        if older_than_a_day(record.timestamp_ms) {
            return Err(refused_as(
                rdkafka::types::RDKafkaErrorCode::InvalidTimestamp,
            ));
        }
        let headers = record
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut took = self.took.lock().expect("lock");
        took.push((record.topic.to_string(), record.timestamp_ms, headers));
        Ok(TAKEN)
    }
}

/// An invalid body spooled during an outage longer than the dead-letter topic lets a record's
/// time be old is refused there for its time on every attempt, as a record of any topic is. It
/// has no further topic to move to, but the time is all that is wrong with it: it goes to the
/// dead-letter topic with the time of the move (`received-at` keeps the original), as a record of
/// another topic refused for its time does, rather than stay spooled for good (retried every 5 s,
/// `spool_records` never 0, `QikchatBridgeSpoolNotDraining` firing, every drain at shutdown cut off).
#[tokio::test]
async fn a_dead_letter_record_refused_for_its_time_goes_to_the_dead_letter_topic_with_a_new_time() {
    let kafka = Arc::new(RefusingOld {
        took: Mutex::new(Vec::new()),
    });
    let invalid = SpooledRecord {
        topic: "dlq".into(),
        key: None,
        headers: vec![
            ("request-id".into(), "r1".into()),
            ("deadletter-reason".into(), "body is not valid JSON".into()),
        ],
        ..spooled("dlq")
    };
    let started = wall_ms();
    let records = vec![invalid, spooled("old")];
    let (spool, metrics) = replay_records(kafka.clone(), records, Duration::from_secs(10)).await;
    assert_eq!(spool.records(), 0, "left spooled for good");
    assert_eq!(metrics.spool.replay_failures.get(), 0);
    let took = kafka.took.lock().expect("lock");
    assert_eq!(took.len(), 2, "{took:?}");
    let (topic, at, headers) = &took[0];
    assert_eq!(topic, "dlq");
    assert!(*at >= started, "sent with its old time {at}");
    assert_eq!(
        *headers,
        [
            ("request-id".to_string(), "r1".to_string()),
            (
                "deadletter-reason".to_string(),
                "body is not valid JSON".to_string()
            ),
        ],
        "the dead-letter record as the bridge wrote it"
    );
    assert_eq!(took[1].0, "dlq", "the other moved as before");
}

/// A broker refusing old records as librdkafka 2.12 reports it (rdkafka_request.c,
/// `rd_kafka_msgbatch_handle_Produce_result_record_errors`): a ProduceRequest batch with one
/// record refused for its time fails that record with `InvalidTimestamp`; one with more than
/// one refused record (KIP-467 record errors) fails each of them with `InvalidRecord` instead.
/// Records in flight together are one batch here (a paused clock starts and ends their round
/// trip together).
struct RefusingOldInBatches {
    in_flight_old: std::sync::atomic::AtomicUsize,
    took: Mutex<Vec<(String, i64)>>,
}

impl Sink for RefusingOldInBatches {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        use std::sync::atomic::Ordering::SeqCst;
        if older_than_a_day(record.timestamp_ms) {
            self.in_flight_old.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let together = self.in_flight_old.load(SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.in_flight_old.fetch_sub(1, SeqCst);
            let code = if together > 1 {
                rdkafka::types::RDKafkaErrorCode::InvalidRecord
            } else {
                rdkafka::types::RDKafkaErrorCode::InvalidTimestamp
            };
            return Err(refused_as(code));
        }
        let mut took = self.took.lock().expect("lock");
        took.push((record.topic.to_string(), record.timestamp_ms));
        Ok(TAKEN)
    }
}

/// After a long outage every spooled record is old, so a batch holds several refused for their
/// time, and librdkafka reports each as `InvalidRecord`, not `InvalidTimestamp`. Invalid bodies
/// spooled for the dead-letter topic must still leave the spool (sent alone, then with a new time).
#[tokio::test(start_paused = true)]
async fn dead_letter_records_refused_for_their_time_in_one_batch_leave_the_spool() {
    let kafka = Arc::new(RefusingOldInBatches {
        in_flight_old: std::sync::atomic::AtomicUsize::new(0),
        took: Mutex::new(Vec::new()),
    });
    let invalid = || SpooledRecord {
        key: None,
        ..spooled("dlq")
    };
    let records = vec![invalid(), invalid()];
    let (spool, metrics) = replay_records(kafka.clone(), records, Duration::from_secs(10)).await;
    assert_eq!(
        spool.records(),
        0,
        "left spooled for good; replay failures {}",
        metrics.spool.replay_failures.get()
    );
    assert_eq!(kafka.took.lock().expect("lock").len(), 2);
}

/// A broker that names the records it refuses (KIP-467), as librdkafka 2.12 reports it: a batch
/// holding a record refused for its time fails that record with `InvalidTimestamp` and every
/// other record of the batch with `InvalidDifferentRecord`. Records in flight together are one
/// batch here (a paused clock starts and ends their round trip together).
#[derive(Default)]
struct RefusingOldWithCasualties {
    in_flight: std::sync::atomic::AtomicUsize,
    in_flight_old: std::sync::atomic::AtomicUsize,
    /// Each record's value as it was handed over, and how many were in flight then, itself
    /// included.
    handed: Mutex<Vec<(String, usize)>>,
    took: Mutex<Vec<String>>,
    /// Whether the dead-letter topic refuses every record (its authorization, say).
    dlq_refuses: bool,
}

impl Sink for RefusingOldWithCasualties {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.dlq_refuses && record.topic == "dlq" {
            return Err(refused_as(
                rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed,
            ));
        }
        let old = older_than_a_day(record.timestamp_ms);
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        let value = String::from_utf8_lossy(record.value).into_owned();
        self.handed.lock().expect("lock").push((value, now));
        if old {
            self.in_flight_old.fetch_add(1, SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let batch_refused = self.in_flight_old.load(SeqCst) > 0;
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.in_flight.fetch_sub(1, SeqCst);
        if old {
            self.in_flight_old.fetch_sub(1, SeqCst);
            return Err(refused_as(
                rdkafka::types::RDKafkaErrorCode::InvalidTimestamp,
            ));
        }
        if batch_refused {
            return Err(refused_as(
                rdkafka::types::RDKafkaErrorCode::InvalidDifferentRecord,
            ));
        }
        self.took
            .lock()
            .expect("lock")
            .push(record.topic.to_string());
        Ok(TAKEN)
    }
}

/// The records that shared a batch with one Kafka refused were failed for its fault alone: once
/// the refused one is moved to the dead-letter topic they go again in the same pass, together.
/// Left failed, they counted as Kafka unavailable (`spool_replay_failures_total`), held their
/// topic back for the rest of the pass, and waited out a retry pause.
#[tokio::test(start_paused = true)]
async fn records_failed_for_another_record_of_their_batch_are_sent_again_in_the_same_pass() {
    let (_dir, spool) = spool_of(&[]).await;
    // `spooled`'s time is long past: the old one, before fresh ones of its conversation (`k`),
    // after one of another (`a`); each body says where it was spooled.
    let numbered = |n: u8, key: &str, timestamp_ms| SpooledRecord {
        value: vec![b'0' + n],
        key: Some(key.into()),
        timestamp_ms,
        ..spooled("statuses")
    };
    let old = spooled("statuses").timestamp_ms;
    let now = wall_ms();
    for (n, key, at) in [(1, "a", now), (2, "k", old), (3, "k", now), (4, "k", now)] {
        spool.append(numbered(n, key, at)).await.expect("append");
    }
    let kafka = RefusingOldWithCasualties::default();
    let (ended, metrics) = fresh_pass(SMALL, &spool, &kafka).await;
    assert_eq!(ended, Pass::Clean);
    assert_eq!(spool.records(), 0);
    assert_eq!(metrics.spool.replayed.get(), 3);
    assert_eq!(metrics.spool.deadlettered.get(), 1);
    assert_eq!(
        *kafka.took.lock().expect("lock"),
        ["dlq", "statuses", "statuses", "statuses"],
        "the move first, then the three again"
    );
    let handed = kafka.handed.lock().expect("lock").clone();
    let at = |n: &str, in_flight| (n.to_string(), in_flight);
    assert_eq!(
        handed,
        [
            at("1", 1),
            at("2", 2),
            at("3", 3),
            at("4", 4),
            at("2", 1),
            at("2", 1),
            at("1", 1),
            at("3", 2),
            at("4", 3),
        ],
        "the batch, the refused one alone and its move, then the rest again together, in order"
    );
}

/// [`RefusingOldWithCasualties`] whose dead-letter topic takes a record only just within replay's
/// timeout, and which, as librdkafka does, delivers a record whose sender stopped waiting
/// (`message.timeout.ms` is replay's timeout, counted from the hand-over, not the caller's
/// deadline): the sender is told it timed out.
#[derive(Default)]
struct SlowDeadLetterTopic(RefusingOldWithCasualties);

impl Sink for SlowDeadLetterTopic {
    async fn send(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        if deadline <= Instant::now() {
            return Err(ProduceError::Timeout);
        }
        if record.topic == "dlq" {
            tokio::time::sleep_until(deadline - Duration::from_millis(10)).await;
            self.0.took.lock().expect("lock").push("dlq".into());
            return Ok(TAKEN);
        }
        let result = self.0.send(record, deadline).await;
        if Instant::now() > deadline {
            return Err(ProduceError::Timeout);
        }
        result
    }
}

/// The casualties are sent again with a whole replay timeout of their own: with what was left
/// of the dead-letter moves' (10 ms here), Kafka took them after replay stopped waiting, and they
/// stayed spooled, to be sent again (duplicates).
#[tokio::test(start_paused = true)]
async fn casualties_sent_again_get_a_whole_replay_timeout() {
    let (_dir, spool) = spool_of(&[]).await;
    let fresh = || SpooledRecord {
        timestamp_ms: wall_ms(),
        ..spooled("statuses")
    };
    // The first of another conversation: one of the old one's would wait behind it.
    let other = SpooledRecord {
        key: Some("a".into()),
        ..fresh()
    };
    for record in [other, spooled("statuses"), fresh(), fresh()] {
        spool.append(record).await.expect("append");
    }
    let kafka = SlowDeadLetterTopic::default();
    let (ended, _) = fresh_pass(SMALL, &spool, &kafka).await;
    let took = kafka.0.took.lock().expect("lock").clone();
    let taken = took.iter().filter(|t| *t == "statuses").count() as u64;
    assert_eq!(
        (taken, spool.records()),
        (3, 0),
        "taken by Kafka and still spooled: {ended:?}"
    );
}

/// A record its topic refuses that the dead-letter topic cannot take either stays spooled, and
/// the later records of its conversation, failed only for its fault in their batch, stay behind
/// it: sent again, they reached Kafka before it (a conversation out of spool order).
#[tokio::test(start_paused = true)]
async fn casualties_of_a_refused_record_that_stays_spooled_stay_behind_it() {
    let (_dir, spool) = spool_of(&[]).await;
    // One conversation (key `k`): the old record, then a fresh one.
    let fresh = SpooledRecord {
        timestamp_ms: wall_ms(),
        ..spooled("statuses")
    };
    for record in [spooled("statuses"), fresh] {
        spool.append(record).await.expect("append");
    }
    let kafka = RefusingOldWithCasualties {
        dlq_refuses: true,
        ..Default::default()
    };
    let (ended, _) = fresh_pass(SMALL, &spool, &kafka).await;
    assert_eq!(
        *kafka.took.lock().expect("lock"),
        Vec::<String>::new(),
        "the fresh record went ahead of the old one still spooled"
    );
    assert_eq!(spool.records(), 2);
    assert_eq!(ended, Pass::Failed(2));
}

#[tokio::test(start_paused = true)]
async fn a_spooled_record_refused_by_its_topic_and_the_dead_letter_topic_stays_spooled() {
    let kafka = FakeKafka::refusing(&["refused", "dlq"], ProduceError::TooLarge);
    let (spool, metrics) = replay_into(kafka, &["ok", "refused"], Duration::from_secs(30)).await;
    assert_eq!(spool.records(), 1);
    assert!(spool.holds_key("k"));
    assert_eq!(metrics.spool.replayed.get(), 1);
    assert_eq!(metrics.spool.deadlettered.get(), 0);
    assert!(metrics.spool.replay_failures.get() >= 2, "retried");
}

#[tokio::test(start_paused = true)]
async fn a_refusal_an_operator_can_fix_keeps_the_record_spooled_and_retried() {
    let denied = ProduceError::Refused("TopicAuthorizationFailed".into());
    let kafka = FakeKafka::refusing(&["denied"], denied);
    let (spool, metrics) =
        replay_into(kafka.clone(), &["denied", "ok"], Duration::from_secs(30)).await;
    assert_eq!(spool.records(), 1);
    assert_eq!(metrics.spool.replayed.get(), 1);
    assert_eq!(metrics.spool.deadlettered.get(), 0);
    assert!(metrics.spool.replay_failures.get() >= 2, "retried");
    let took = kafka.took.lock().expect("lock");
    assert!(
        took.iter().all(|(t, ..)| t == "ok"),
        "nothing dead-lettered"
    );
}

#[tokio::test(start_paused = true)]
async fn records_behind_more_than_a_batch_of_refused_ones_are_still_replayed() {
    let denied = ProduceError::Refused("TopicAuthorizationFailed".into());
    let kafka = FakeKafka::refusing(&["denied"], denied);
    let mut topics = vec!["denied"; 300];
    topics.push("ok");
    let (spool, metrics) = replay_into(kafka.clone(), &topics, Duration::from_secs(30)).await;
    assert_eq!(spool.records(), 300);
    assert_eq!(metrics.spool.replayed.get(), 1, "the record behind them");
    // The first pass sends a batch before the refusals come back; after that the topic is held
    // for the rest of each pass and its conversation (all these share key k) sends only its
    // first record: one failure a pass, not the whole spool each time.
    let failures = metrics.spool.replay_failures.get();
    assert!(
        failures > SMALL.records as u64,
        "retried: {failures} failures"
    );
    assert!(failures < 2 * SMALL.records as u64, "{failures} failures");
}

#[tokio::test(start_paused = true)]
async fn a_record_left_behind_is_not_overtaken_by_a_later_one_of_its_conversation() {
    let kafka = Arc::new(FakeKafka {
        refuses: vec!["dlq"],
        refuses_values: vec![b"too big"],
        error: ProduceError::TooLarge,
        took: Mutex::new(Vec::new()),
        times: Mutex::new(Vec::new()),
        max_record_bytes: usize::MAX,
    });
    let record = |topic: &str, key: &str, value: &[u8]| SpooledRecord {
        key: Some(key.into()),
        value: value.to_vec(),
        ..spooled(topic)
    };
    // The first record of conversation k on topic t stays spooled (its topic and the dead-letter
    // topic both refuse it); a later one of k on t comes more than a batch after it.
    let mut records = vec![record("t", "k", b"too big")];
    records.extend((0..300).map(|_| record("f", "other", b"{}")));
    records.push(record("t", "k", b"{}"));
    records.push(record("t", "k2", b"{}"));
    records.push(record("f", "k", b"{}"));
    let (spool, metrics) = replay_records(kafka.clone(), records, Duration::from_secs(30)).await;
    assert_eq!(spool.records(), 2, "k's two records on t");
    assert_eq!(metrics.spool.replayed.get(), 302);
    let took = kafka.took.lock().expect("lock");
    let keys_on_t: Vec<_> = took
        .iter()
        .filter(|(t, ..)| t == "t")
        .map(|(_, k, _)| k.as_deref())
        .collect();
    assert_eq!(keys_on_t, [Some("k2")]);
}

#[tokio::test(start_paused = true)]
async fn a_topic_kafka_cannot_take_now_does_not_hold_back_the_other_topics() {
    // A partition without a leader, or a topic deleted with auto-creation off: its records time
    // out or come back unavailable while the cluster takes the others.
    let kafka = FakeKafka::refusing(
        &["leaderless"],
        ProduceError::Unavailable("UnknownTopicOrPartition".into()),
    );
    let mut topics = vec!["leaderless"; 300];
    topics.push("ok");
    let (spool, metrics) = replay_into(kafka, &topics, Duration::from_secs(30)).await;
    assert_eq!(spool.records(), 300);
    assert_eq!(metrics.spool.replayed.get(), 1);
}

/// Kafka with a deadline: topic `slow` never answers (each of its records takes its whole
/// deadline, then times out), topic `refused` refuses every record for good, the rest is taken.
struct SlowAndRefusing {
    took: Mutex<Vec<String>>,
}

impl Sink for SlowAndRefusing {
    async fn send(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        if Instant::now() >= deadline {
            return Err(ProduceError::Timeout);
        }
        match record.topic {
            "slow" => {
                tokio::time::sleep_until(deadline).await;
                Err(ProduceError::Timeout)
            }
            "refused" => Err(ProduceError::Rejected("InvalidRecord".into())),
            topic => {
                self.took.lock().expect("lock").push(topic.to_string());
                Ok(TAKEN)
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_record_is_dead_lettered_even_when_its_batch_ran_out_its_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 16 << 20, 1).expect("open");
    let mut slow = spooled("slow");
    slow.key = Some("other".into());
    spool.append(slow).await.expect("append");
    spool.append(spooled("refused")).await.expect("append");
    let kafka = Arc::new(SlowAndRefusing {
        took: Mutex::new(Vec::new()),
    });
    let (metrics, stop_tx, task) = start_replay(&spool, kafka.clone());
    // The first pass ends once `slow` has timed out, 30 s in; the next would end 30 s later.
    let _ = tokio::time::timeout(Duration::from_secs(40), async {
        while metrics.spool.deadlettered.get() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    stop_tx.send(true).expect("stop");
    task.await.expect("replay task");
    assert_eq!(
        metrics.spool.deadlettered.get(),
        1,
        "moved in the first pass"
    );
    assert_eq!(*kafka.took.lock().expect("lock"), ["dlq"]);
    assert!(!spool.holds_key("k"), "its conversation is free");
}

/// Takes every record but those of topic `down` (unavailable), and spools a new record of topic
/// `ok` for each it is sent: webhooks arriving steadily while replay runs.
struct SteadyTraffic {
    spool: Arc<Spool>,
}

impl Sink for SteadyTraffic {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        self.spool.append(spooled("ok")).await.expect("append");
        if record.topic == "down" {
            return Err(ProduceError::Unavailable("NotLeaderForPartition".into()));
        }
        Ok(TAKEN)
    }
}

/// With `--replay-max-rate`, each batch is followed after its records' share of a second: 30
/// records in batches of 10 at 10 a second leave the spool 10 a second (unpaced, all at once).
#[tokio::test(start_paused = true)]
async fn a_paced_replay_sends_a_batch_then_waits_for_its_share_of_a_second() {
    for (pace, left) in [(10, [20, 10, 0]), (0, [0, 0, 0])] {
        let (_dir, spool) = spool_of_records(30).await;
        let began = tokio::time::Instant::now();
        let (_metrics, stop_tx, task) =
            start_replay_of(batches_of_ten(pace), &spool, acknowledging());
        let mut held = Vec::new();
        for tenths in [5, 15, 25] {
            tokio::time::sleep_until(began + Duration::from_millis(tenths * 100)).await;
            held.push(spool.records());
        }
        assert_eq!(
            held, left,
            "records left at 0.5, 1.5 and 2.5 s, pace {pace}"
        );
        stop_tx.send(true).expect("stop");
        task.await.expect("replay task");
    }
}

/// A record its topic refuses for good is sent three times: with its batch, alone, then to the
/// dead-letter topic: all count against the pace (10 records moved at 10 a second wait 3 s, not
/// 1).
#[tokio::test(start_paused = true)]
async fn a_paced_replay_counts_a_dead_letter_move_as_a_send() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 16 << 20, 1).expect("open");
    for _ in 0..20 {
        spool.append(spooled("refused")).await.expect("append");
    }
    let began = tokio::time::Instant::now();
    let kafka = FakeKafka::refusing(&["refused"], ProduceError::TooLarge);
    let (metrics, stop_tx, task) = start_replay_of(batches_of_ten(10), &spool, kafka);
    tokio::time::sleep_until(began + Duration::from_millis(2500)).await;
    assert_eq!(metrics.spool.deadlettered.get(), 10);
    assert_eq!(spool.records(), 10, "the second batch waits until 3 s");
    tokio::time::sleep_until(began + Duration::from_millis(3500)).await;
    assert_eq!(spool.records(), 0);
    stop_tx.send(true).expect("stop");
    task.await.expect("replay task");
}

/// A stop while replay waits out its pace ends it at once, not when the wait is over (at 1
/// record a second, batches of one record and a second between them), which would hold up the
/// bridge's shutdown.
#[tokio::test(start_paused = true)]
async fn a_stop_during_the_paces_wait_ends_replay_at_once() {
    let (_dir, spool) = spool_of_records(20).await;
    let (_metrics, stop_tx, task) = start_replay_of(batches_of_ten(1), &spool, acknowledging());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(spool.records(), 19, "the first batch, of one record, went");
    let stopped = tokio::time::Instant::now();
    stop_tx.send(true).expect("stop");
    task.await.expect("replay task");
    assert_eq!(stopped.elapsed(), Duration::ZERO);
    assert_eq!(
        spool.records(),
        19,
        "the next batch waits for the next start"
    );
}

/// A new spool holding `n` records of one topic, and the directory that holds it.
async fn spool_of_records(n: usize) -> (tempfile::TempDir, Arc<Spool>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 16 << 20, 1).expect("open");
    for _ in 0..n {
        spool.append(spooled("t")).await.expect("append");
    }
    (dir, spool)
}

/// Batches of 10 records (fewer when `pace` is less), at most `pace` records a second (0:
/// unpaced).
fn batches_of_ten(pace: u32) -> Batch {
    Batch {
        records: 10,
        ..SMALL
    }
    .paced(pace)
}

/// Kafka taking every record.
fn acknowledging() -> Arc<FakeKafka> {
    FakeKafka::refusing(&[], ProduceError::QueueFull)
}

// On the real clock: a pass that never ends keeps a blocking task running, which stops a paused
// clock from ever reaching the test's timeout.
#[tokio::test]
async fn a_pass_ends_at_the_record_that_was_newest_when_it_began_despite_steady_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 64 << 20, 1).expect("open");
    spool.append(spooled("down")).await.expect("append");
    spool.append(spooled("ok")).await.expect("append");
    let kafka = Arc::new(SteadyTraffic {
        spool: spool.clone(),
    });
    let (metrics, stop_tx, task) = start_replay(&spool, kafka);
    // A pass that ends counts its failure and waits before the next; one that read on to the
    // records each send appends would never end, nor count it.
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while metrics.spool.replay_failures.get() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    stop_tx.send(true).expect("stop");
    task.abort();
    let _ = task.await;
    assert!(
        metrics.spool.replay_failures.get() >= 2,
        "passes ended: {} failures counted",
        metrics.spool.replay_failures.get()
    );
    assert!(
        spool.holds("down", "k"),
        "the unavailable topic's record waits"
    );
}

/// A new spool of `topics`, one record each, each its own conversation (key `k<i>`), and the
/// directory that holds it.
async fn spool_of(topics: &[&str]) -> (tempfile::TempDir, Arc<Spool>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 16 << 20, 1).expect("open");
    for (i, topic) in topics.iter().enumerate() {
        let record = SpooledRecord {
            key: Some(format!("k{i}")),
            ..spooled(topic)
        };
        spool.append(record).await.expect("append");
    }
    (dir, spool)
}

/// One pass over `spool` into `kafka`, with nothing held and no stop: how it ended, and the
/// metrics it counted.
async fn fresh_pass<K: Sink>(limits: Batch, spool: &Arc<Spool>, kafka: &K) -> (Pass, Metrics) {
    pass_until(limits, spool, kafka, &running()).await
}

/// [`fresh_pass`], stopped by `stop`.
async fn pass_until<K: Sink>(
    limits: Batch,
    spool: &Arc<Spool>,
    kafka: &K,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> (Pass, Metrics) {
    let metrics = Metrics::new(&[]).expect("metrics");
    let mut held = Held::default();
    let ended = pass(limits, spool, kafka, "dlq", &metrics, &mut held, stop).await;
    (ended, metrics)
}

/// One pass over a new spool of `topics` (one record each, each its own conversation) into
/// `kafka`: how it ended, the last sequence number it read, and the topics Kafka took.
async fn one_pass(kafka: Arc<FakeKafka>, topics: &[&str]) -> (Pass, Option<u64>, Vec<String>) {
    let (_dir, spool) = spool_of(topics).await;
    let metrics = Metrics::new(&[]).expect("metrics");
    let mut held = Held::default();
    let ended = pass(
        SMALL,
        &spool,
        &*kafka,
        "dlq",
        &metrics,
        &mut held,
        &running(),
    )
    .await;
    let took = kafka.took.lock().expect("lock");
    (
        ended,
        held.reached(),
        took.iter().map(|(t, ..)| t.clone()).collect(),
    )
}

#[tokio::test]
async fn a_pass_over_a_spool_of_one_topic_kafka_cannot_take_stops_after_its_first_batch() {
    let kafka = FakeKafka::refusing(
        &["down"],
        ProduceError::Unavailable("AllBrokersDown".into()),
    );
    let (ended, reached, took) = one_pass(kafka, &["down"; 600]).await;
    assert_eq!(ended, Pass::Failed(SMALL.records as u64));
    // The other 344 records are of the held topic too: reading them would send nothing.
    assert_eq!(reached, Some(SMALL.records as u64 - 1));
    assert!(took.is_empty());
}

#[tokio::test]
async fn a_pass_stops_when_a_whole_batch_fails_on_two_topics_as_kafka_itself_seems_down() {
    let kafka = FakeKafka::refusing(&["a", "b"], ProduceError::Timeout);
    let mut topics: Vec<&str> = (0..300).map(|i| ["a", "b"][i % 2]).collect();
    topics.push("ok");
    let (ended, reached, took) = one_pass(kafka.clone(), &topics).await;
    assert_eq!(ended, Pass::Failed(SMALL.records as u64));
    assert_eq!(
        reached,
        Some(SMALL.records as u64 - 1),
        "stopped after one batch"
    );
    assert!(
        took.is_empty(),
        "the record of topic ok waits for the next pass"
    );
    // One topic failing a whole batch is not Kafka down: the pass goes on to the others.
    let kafka = FakeKafka::refusing(&["a"], ProduceError::Timeout);
    let mut topics = vec!["a"; 300];
    topics.push("ok");
    let (_, reached, took) = one_pass(kafka, &topics).await;
    assert_eq!(reached, Some(300));
    assert_eq!(took, ["ok"]);
}

/// A batch whose every record waits behind held topics sent nothing, which is no sign of Kafka
/// down: the pass goes on to the records of other topics after it.
#[tokio::test]
async fn a_batch_of_held_records_alone_does_not_stop_the_pass_before_other_topics() {
    let kafka = FakeKafka::refusing(&["a", "b"], ProduceError::Timeout);
    // The first batch fails on two topics but not whole; the second holds only their records.
    let mut topics: Vec<&str> = (0..SMALL.records)
        .map(|i| ["a", "b", "ok"][i % 3])
        .collect();
    topics.extend((0..SMALL.records).map(|i| ["a", "b"][i % 2]));
    topics.push("ok");
    let (_, reached, took) = one_pass(kafka, &topics).await;
    assert_eq!(reached, Some(topics.len() as u64 - 1));
    assert_eq!(took.len(), topics.iter().filter(|t| **t == "ok").count());
}

/// Two topics refusing a whole batch until an operator acts (no write authorization) are no sign
/// of Kafka down: Kafka answered. The pass goes on to the records of other topics after them, or
/// those would wait behind the two topics for as long as the operator does, pass after pass.
#[tokio::test]
async fn a_whole_batch_refused_on_two_topics_until_an_operator_acts_does_not_stop_the_pass() {
    let kafka = FakeKafka::refusing(
        &["a", "b"],
        ProduceError::Refused("TopicAuthorizationFailed".into()),
    );
    let mut topics: Vec<&str> = (0..300).map(|i| ["a", "b"][i % 2]).collect();
    topics.push("ok");
    let (ended, reached, took) = one_pass(kafka, &topics).await;
    assert_eq!(reached, Some(300), "read to the end of the pass");
    assert_eq!(took, ["ok"]);
    assert_eq!(ended, Pass::Failed(SMALL.records as u64));
}

#[tokio::test]
async fn records_spooled_during_a_pass_do_not_keep_it_reading_past_its_held_topics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 64 << 20, 1).expect("open");
    for i in 0..600 {
        let record = SpooledRecord {
            key: Some(format!("k{i}")),
            ..spooled("down")
        };
        spool.append(record).await.expect("append");
    }
    // Each send spools a record of topic ok, which this pass does not read.
    let kafka = SteadyTraffic {
        spool: spool.clone(),
    };
    let metrics = Metrics::new(&[]).expect("metrics");
    let mut held = Held::default();
    let ended = pass(
        SMALL,
        &spool,
        &kafka,
        "dlq",
        &metrics,
        &mut held,
        &running(),
    )
    .await;
    assert_eq!(ended, Pass::Failed(SMALL.records as u64));
    assert_eq!(held.reached(), Some(SMALL.records as u64 - 1));
}

/// Kafka with topics of 3 partitions, each keyed record placed by its key's murmur2 hash: the
/// partitions in `down` cannot take records now (they time out), the rest take every record.
/// A record without a key goes to partition 0, and one whose key begins with `moved-` two
/// partitions on from its hash's, as another partitioner would place it.
struct Partitioned {
    down: Vec<(&'static str, i32)>,
    took: Mutex<Vec<(String, Option<String>)>>,
    /// How many times replay asked for a partition count.
    asked: std::sync::atomic::AtomicUsize,
}

impl Partitioned {
    fn down(down: &[(&'static str, i32)]) -> Arc<Partitioned> {
        Arc::new(Partitioned {
            down: down.to_vec(),
            took: Mutex::new(Vec::new()),
            asked: std::sync::atomic::AtomicUsize::new(0),
        })
    }
}

impl Sink for Partitioned {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        let partition = record.key.as_deref().map_or(0, |key| {
            let hashed = partition_of(key.as_bytes(), 3);
            if key.starts_with("moved-") {
                (hashed + 2) % 3
            } else {
                hashed
            }
        });
        if self.down.contains(&(record.topic, partition)) {
            return Err(ProduceError::Timeout);
        }
        let key = record.key.as_deref().map(str::to_string);
        self.took
            .lock()
            .expect("lock")
            .push((record.topic.to_string(), key));
        Ok(Delivered::Kafka {
            partition,
            offset: 0,
        })
    }

    fn key_partitions(&self, _: &str) -> impl std::future::Future<Output = Option<u32>> + Send {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::ready(Some(3))
    }
}

/// `count` records of `topic`, each its own conversation, with keys on partition `partition`
/// of 3 (any partition but 0 for `None`), numbered from `from`.
fn on_partition(
    topic: &str,
    partition: Option<i32>,
    from: usize,
    count: usize,
) -> Vec<SpooledRecord> {
    (from..)
        .map(|i| format!("{topic}-k{i}"))
        .filter(|k| {
            let p = partition_of(k.as_bytes(), 3);
            partition.map_or(p != 0, |want| p == want)
        })
        .take(count)
        .map(|key| SpooledRecord {
            key: Some(key),
            ..spooled(topic)
        })
        .collect()
}

/// One pass over a new spool of `records` into `kafka`: how it ended, the last sequence number
/// it read, and the spool.
/// What [`one_pass_of`] ends with, as one value to compare: the pass, the last record it read
/// (the pass stops where reading on would send nothing) and the records left spooled.
async fn one_pass_left(
    kafka: &Partitioned,
    records: Vec<SpooledRecord>,
) -> (Pass, Option<u64>, u64) {
    let (ended, reached, spool) = one_pass_of(kafka, records).await;
    (ended, reached, spool.records())
}

async fn one_pass_of(
    kafka: &Partitioned,
    records: Vec<SpooledRecord>,
) -> (Pass, Option<u64>, Arc<Spool>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 64 << 20, 1).expect("open");
    for record in records {
        spool.append(record).await.expect("append");
    }
    let metrics = Metrics::new(&[]).expect("metrics");
    let mut held = Held::default();
    let ended = pass(SMALL, &spool, kafka, "dlq", &metrics, &mut held, &running()).await;
    (ended, held.reached(), spool)
}

#[tokio::test]
async fn a_partition_kafka_cannot_take_now_holds_back_its_own_records_not_its_topics() {
    // More than a batch of the leaderless partition's records first, then the others'.
    let kafka = Partitioned::down(&[("t", 0)]);
    let mut records = on_partition("t", Some(0), 0, 300);
    records.extend(on_partition("t", None, 0, 300));
    let (ended, _, spool) = one_pass_of(&kafka, records).await;
    assert_eq!(
        ended,
        Pass::Failed(SMALL.records as u64),
        "one batch sent in vain"
    );
    assert_eq!(
        kafka.took.lock().expect("lock").len(),
        300,
        "every other partition's"
    );
    assert_eq!(spool.records(), 300);
    assert_eq!(
        kafka.asked.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the partition count, once a pass"
    );
}

/// Asking a topic's partition count costs a metadata request (and up to 5 s): a pass asks it
/// once, however many of its batches meet a partition that cannot take records.
#[tokio::test]
async fn a_topics_partition_count_is_asked_once_a_pass_when_several_batches_fail_on_it() {
    let kafka = Partitioned::down(&[("t", 0), ("t", 1)]);
    // A batch of partition 0's records, then partition 1's in the next, then partition 2's.
    let mut records = on_partition("t", Some(0), 0, 300);
    records.extend(on_partition("t", Some(1), 0, 100));
    records.extend(on_partition("t", Some(2), 0, 10));
    let (_, reached, spool) = one_pass_of(&kafka, records).await;
    assert_eq!(reached, Some(409), "read to the end");
    assert_eq!(kafka.took.lock().expect("lock").len(), 10);
    assert_eq!(spool.records(), 400);
    assert_eq!(kafka.asked.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_whole_batch_failing_on_one_partition_of_two_topics_does_not_stop_the_pass() {
    let kafka = Partitioned::down(&[("a", 0), ("b", 0)]);
    let mut records: Vec<SpooledRecord> = on_partition("a", Some(0), 0, 150)
        .into_iter()
        .zip(on_partition("b", Some(0), 0, 150))
        .flat_map(|(a, b)| [a, b])
        .collect();
    records.extend(on_partition("a", None, 0, 10));
    records.extend(on_partition("ok", None, 0, 10));
    let (_, _, spool) = one_pass_of(&kafka, records).await;
    let took = kafka.took.lock().expect("lock");
    assert_eq!(
        took.len(),
        20,
        "a's other partitions and topic ok: {took:?}"
    );
    assert_eq!(spool.records(), 300);
}

#[tokio::test]
async fn a_topic_whose_every_partition_fails_is_held_whole_and_the_pass_stops() {
    let kafka = Partitioned::down(&[("t", 0), ("t", 1), ("t", 2)]);
    let records: Vec<SpooledRecord> = (0..600)
        .map(|i| SpooledRecord {
            key: Some(format!("k{i}")),
            ..spooled("t")
        })
        .collect();
    let (ended, reached, _) = one_pass_of(&kafka, records).await;
    assert_eq!(ended, Pass::Failed(SMALL.records as u64));
    // Reading the rest would send nothing.
    assert_eq!(reached, Some(SMALL.records as u64 - 1));
}

/// Where a topic's records do not go where their keys' murmur2 hash says (a producer with
/// another partitioner wrote the topic's layout, or partitions were added), a delivery to another
/// partition shows it, and a failing partition then holds back the whole topic: the hash would
/// name the wrong partition, and the records it let through would be sent in vain to the one
/// that cannot take them.
#[tokio::test]
async fn a_delivery_to_another_partition_than_its_keys_makes_a_failing_partition_hold_the_topic() {
    let kafka = Partitioned::down(&[("t", 0)]);
    let keyed = |hashed: i32, count: usize| -> Vec<SpooledRecord> {
        (0..)
            .map(|i| format!("moved-{i}"))
            .filter(|k| partition_of(k.as_bytes(), 3) == hashed)
            .take(count)
            .map(|key| SpooledRecord {
                key: Some(key),
                ..spooled("t")
            })
            .collect()
    };
    // The first batch: a record on partition 0, which fails, and the rest delivered to partition
    // 1, though their keys hash to partition 2. The next batch's keys hash to partition 1, which
    // took records, but they go to partition 0.
    let mut records = on_partition("t", Some(0), 0, 1);
    records.extend(keyed(2, SMALL.records - 1));
    records.extend(keyed(1, 300));
    let (ended, reached, spool) = one_pass_of(&kafka, records).await;
    assert_eq!(ended, Pass::Failed(1), "none sent in vain");
    assert_eq!(reached, Some(SMALL.records as u64 - 1));
    assert_eq!(spool.records(), 301);
}

#[tokio::test]
async fn a_topic_whose_waiting_records_are_all_on_failed_partitions_stops_the_pass() {
    // The brokers answer metadata but take no record; the keys waiting cover 2 partitions of 3.
    let kafka = Partitioned::down(&[("t", 0), ("t", 1), ("t", 2)]);
    let records: Vec<SpooledRecord> = on_partition("t", Some(0), 0, 300)
        .into_iter()
        .zip(on_partition("t", Some(1), 0, 300))
        .flat_map(|(a, b)| [a, b])
        .collect();
    assert_eq!(
        one_pass_left(&kafka, records).await,
        (
            Pass::Failed(SMALL.records as u64),
            Some(SMALL.records as u64 - 1),
            600
        ),
        "(the pass, the last record read: reading on sends nothing, records left)"
    );
}

/// Whether every waiting record of a topic is held is found again once a record of it was
/// delivered: the delivery that takes the last of its records off the failed partition leaves
/// only held ones, and the pass stops there rather than read the rest of the spool to send
/// nothing, in every pass for as long as the partition stays without a leader.
#[tokio::test]
async fn a_topic_whose_last_records_off_its_failed_partition_were_delivered_stops_the_pass() {
    let kafka = Partitioned::down(&[("t", 0)]);
    // The first batch: a record on partition 0, which fails, and others delivered. The second:
    // the last records off partition 0, delivered, and partition 0's, held.
    let mut records = on_partition("t", Some(0), 0, 1);
    records.extend(on_partition("t", Some(2), 0, SMALL.records - 1));
    records.extend(on_partition("t", Some(1), 0, 100));
    records.extend(on_partition("t", Some(0), 1, 300));
    assert_eq!(
        one_pass_left(&kafka, records).await,
        (Pass::Failed(1), Some(2 * SMALL.records as u64 - 1), 301),
        "(the pass, the last record read: reading on sends nothing, records left)"
    );
}

/// The same once a record of it was left behind: a later batch whose records fail on the
/// topic's last partition that took records leaves only held ones.
#[tokio::test]
async fn a_topic_whose_last_open_partition_fails_in_a_later_batch_stops_the_pass() {
    let kafka = Partitioned::down(&[("t", 0), ("t", 1)]);
    // The first batch: a record on partition 0, which fails, and partition 2's, delivered. The
    // second: records on partition 1, which fail, and partition 0's, held.
    let mut records = on_partition("t", Some(0), 0, 1);
    records.extend(on_partition("t", Some(2), 0, SMALL.records - 1));
    records.extend(on_partition("t", Some(1), 0, 10));
    records.extend(on_partition("t", Some(0), 1, 300));
    records.extend(on_partition("t", Some(1), 10, 300));
    assert_eq!(
        one_pass_left(&kafka, records).await,
        (Pass::Failed(11), Some(2 * SMALL.records as u64 - 1), 611),
        "(the pass, the last record read: reading on sends nothing, records left)"
    );
}

#[tokio::test]
async fn a_topic_whose_waiting_records_are_keyless_ones_held_stops_the_pass() {
    // Its keyed records go through; its keyless ones (on partition 0 here) cannot.
    let kafka = Partitioned::down(&[("t", 0)]);
    let mut records = on_partition("t", None, 0, 10);
    records.extend((0..600).map(|_| SpooledRecord {
        key: None,
        ..spooled("t")
    }));
    assert_eq!(
        one_pass_left(&kafka, records).await,
        (
            Pass::Failed(SMALL.records as u64 - 10),
            Some(SMALL.records as u64 - 1),
            600
        ),
        "(the pass, the last record read: reading on sends nothing, records left)"
    );
    // Records without a key are no partition's: their failures ask no partition count (a
    // metadata request, up to 5 s).
    assert_eq!(kafka.asked.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// Acknowledges every record after a broker round trip, counting how many wait at once.
#[derive(Default)]
struct Distant {
    waiting: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl Sink for Distant {
    async fn send(&self, _: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.waiting.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.waiting.fetch_sub(1, SeqCst);
        Ok(TAKEN)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_has_thousands_of_records_in_flight_so_a_distant_broker_does_not_bound_the_drain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 64 << 20, 1).expect("open");
    let records = batch::MOST.records + 100;
    // Concurrent appends share commits, so thousands are spooled in a moment.
    let writers: Vec<_> = (0..64)
        .map(|w| {
            let spool = spool.clone();
            tokio::spawn(async move {
                for i in (w..records).step_by(64) {
                    let record = SpooledRecord {
                        key: Some(format!("k{i}")),
                        ..spooled("t")
                    };
                    spool.append(record).await.expect("append");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let kafka = Distant::default();
    let (ended, _) = fresh_pass(batch::MOST, &spool, &kafka).await;
    assert_eq!(ended, Pass::Clean);
    assert_eq!(spool.records(), 0);
    // One round trip carries a whole batch: 256 at a time drained a spool at 5k records/s
    // through a 20 ms round trip.
    let most = kafka.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most >= 2048, "{most} records in flight at most");
}

/// Takes every record at once but those of topic `stuck`, which wait out their deadline.
struct Stuck;

impl Sink for Stuck {
    async fn send(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        if record.topic == "stuck" {
            tokio::time::sleep_until(deadline).await;
            return Err(ProduceError::Timeout);
        }
        Ok(TAKEN)
    }
}

/// Replay started on a spool of one record Kafka never takes and twenty it takes, all in one
/// batch.
async fn replaying_a_stuck_batch() -> (
    tempfile::TempDir,
    Arc<Spool>,
    (
        Arc<Metrics>,
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ),
) {
    let mut topics = vec!["stuck"];
    topics.extend(["ok"; 20]);
    let (dir, spool) = spool_of(&topics).await;
    let replaying = start_replay(&spool, Arc::new(Stuck));
    (dir, spool, replaying)
}

#[tokio::test(start_paused = true)]
async fn records_delivered_in_a_batch_leave_the_spool_while_a_record_of_it_still_waits() {
    let (_dir, spool, (metrics, stop_tx, task)) = replaying_a_stuck_batch().await;
    // The stuck record waits for replay's 30 s timeout; what Kafka took is gone long before,
    // counted as replayed, its conversations no longer held.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(spool.records(), 1);
    assert_eq!(metrics.spool.replayed.get(), 20);
    assert!(spool.holds_key("k0"));
    assert!(!spool.holds_key("k1"));
    let _ = stop_tx.send(true);
    task.await.expect("replay");
}

/// Refuses records of topic `acl` at once (its ACL revoked), and is otherwise [`Stuck`].
struct StuckAndRefusing;

impl Sink for StuckAndRefusing {
    async fn send(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        if record.topic == "acl" {
            return Err(ProduceError::Refused("TopicAuthorizationFailed".into()));
        }
        Stuck.send(record, deadline).await
    }
}

/// Only what Kafka took leaves the spool while its batch still waits: a record that failed at
/// once (a refusal an operator can fix) was answered 200 and must stay spooled to be retried,
/// not be deleted with the taken ones by the second's removal.
#[tokio::test(start_paused = true)]
async fn a_record_that_failed_while_its_batch_still_waits_stays_spooled() {
    let mut topics = vec!["stuck", "acl"];
    topics.extend(["ok"; 20]);
    let (_dir, spool) = spool_of(&topics).await;
    let (metrics, stop_tx, task) = start_replay(&spool, Arc::new(StuckAndRefusing));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(spool.records(), 2, "the stuck record and the refused one");
    assert!(spool.holds_key("k1"), "the refused record");
    assert_eq!(metrics.spool.replayed.get(), 20);
    let _ = stop_tx.send(true);
    task.await.expect("replay");
}

/// Records Kafka takes while others of their batch still wait leave the spool a second's worth at
/// a time, in one delete, not each as soon as it is taken.
#[tokio::test(start_paused = true)]
async fn records_taken_during_a_batch_leave_the_spool_a_second_at_a_time() {
    let (_dir, spool, (metrics, stop_tx, task)) = replaying_a_stuck_batch().await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        spool.records(),
        21,
        "deleted within the batch's first second"
    );
    assert_eq!(metrics.spool.replayed.get(), 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(spool.records(), 1);
    let _ = stop_tx.send(true);
    task.await.expect("replay");
}

/// What left the spool while its batch still waited is counted as replayed then, and not again
/// when the batch ends.
#[tokio::test(start_paused = true)]
async fn records_that_left_the_spool_during_their_batch_are_counted_as_replayed_once() {
    let (_dir, spool, (metrics, stop_tx, task)) = replaying_a_stuck_batch().await;
    // The batch ends once the stuck record has waited out replay's timeout: its pass failed.
    let waited = tokio::time::timeout(crate::delivery::REPLAY_TIMEOUT * 2, async {
        while metrics.spool.replay_failures.get() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the batch never ended");
    assert_eq!(spool.records(), 1);
    assert_eq!(metrics.spool.replayed.get(), 20);
    let _ = stop_tx.send(true);
    task.await.expect("replay");
}

/// Refuses every record of topic `refused` for good; takes the dead-letter topic's after a
/// broker round trip, counting how many wait at once.
#[derive(Default)]
struct RefusingDistant(Distant);

impl Sink for RefusingDistant {
    async fn send(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        if record.topic == "refused" {
            return Err(ProduceError::TooLarge);
        }
        self.0.send(record, deadline).await
    }
}

/// Kafka refuses a batch whole for one record in it: each refused record is tried again alone,
/// and its dead-letter copy sent alone, one at a time, so that neither is refused for another's
/// fault; each with a deadline of its own, so fifty of them are not cut short by the first's.
#[tokio::test(start_paused = true)]
async fn refused_records_are_tried_alone_and_moved_to_the_dead_letter_topic_one_at_a_time() {
    let (_dir, spool) = spool_of(&["refused"; 50]).await;
    let kafka = RefusingDistant::default();
    let (ended, metrics) = fresh_pass(SMALL, &spool, &kafka).await;
    assert_eq!(ended, Pass::Clean);
    assert_eq!(metrics.spool.deadlettered.get(), 50);
    assert_eq!(kafka.0.most.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Takes every record, and asks the bridge to stop at the first.
struct StopsAtFirst(tokio::sync::watch::Sender<bool>);

impl Sink for StopsAtFirst {
    async fn send(&self, _: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        self.0.send_replace(true);
        Ok(TAKEN)
    }
}

#[tokio::test]
async fn a_pass_ends_after_the_batch_it_is_sending_when_the_bridge_stops() {
    let (_dir, spool) = spool_of(&["t"; 600]).await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let kafka = StopsAtFirst(stop_tx);
    let (ended, metrics) = pass_until(SMALL, &spool, &kafka, &stop).await;
    // The batch it was sending is done and out of the spool; the rest waits for the next start.
    assert_eq!(ended, Pass::Clean);
    assert_eq!(metrics.spool.replayed.get(), SMALL.records as u64);
    assert_eq!(spool.records(), 600 - SMALL.records as u64);
}

/// Takes every record after a broker round trip, noting the order they were handed over in.
#[derive(Default)]
struct Noting(Mutex<Vec<String>>);

impl Sink for Noting {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        let key = record.key.as_deref().unwrap_or_default().to_string();
        self.0.lock().expect("lock").push(key);
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(TAKEN)
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_hands_its_records_to_kafka_in_spool_order() {
    // More than tokio's cooperative budget (128) of sends pending at once, so the batch's
    // first polls run over several rounds.
    let (_dir, spool) = spool_of(&["t"; 300]).await;
    let kafka = Noting::default();
    let (ended, _) = fresh_pass(batch::MOST, &spool, &kafka).await;
    assert_eq!(ended, Pass::Clean);
    let handed = kafka.0.lock().expect("lock").clone();
    let spooled: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    assert_eq!(handed, spooled);
}

/// Paced, a batch sends a second's worth of what it read and keeps the rest for the next, in
/// order: dropped, the rest would be sent only in the next pass, behind the records read after
/// it (a conversation's statuses out of order).
#[tokio::test(start_paused = true)]
async fn a_paced_pass_sends_each_record_once_in_spool_order_across_the_rest_of_its_reads() {
    let (_dir, spool) = spool_of(&["t"; 45]).await;
    let kafka = Noting::default();
    let limits = Batch {
        records: 30,
        ..SMALL
    }
    .paced(10);
    let (ended, metrics) = fresh_pass(limits, &spool, &kafka).await;
    assert_eq!(ended, Pass::Clean);
    assert_eq!(metrics.spool.replayed.get(), 45);
    let handed = kafka.0.lock().expect("lock").clone();
    let spooled: Vec<String> = (0..45).map(|i| format!("k{i}")).collect();
    assert_eq!(handed, spooled);
}

/// Refuses every record the first time it sees its key, as a broker refuses a whole batch for one
/// invalid record in it, and takes it alone the next time; a 10 ms round trip each.
#[derive(Default)]
struct RefusesFirstTries(Mutex<std::collections::HashSet<String>>);

impl Sink for RefusesFirstTries {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let key = record.key.as_deref().unwrap_or_default().to_string();
        if self.0.lock().expect("lock").insert(key) {
            return Err(ProduceError::Rejected("InvalidRecord".into()));
        }
        Ok(TAKEN)
    }
}

/// Each refused record is tried alone, one at a time: 200 of them take 2 s here, and a shutdown
/// must not wait for them all, nor leave those already taken in the spool, to be sent again.
#[tokio::test(start_paused = true)]
async fn the_records_of_a_batch_refused_whole_are_tried_alone_until_the_bridge_stops() {
    let (_dir, spool) = spool_of(&["t"; 200]).await;
    let kafka = RefusesFirstTries::default();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop_tx.send_replace(true);
    });
    let started = Instant::now();
    let (ended, metrics) = pass_until(SMALL, &spool, &kafka, &stop).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the pass went on {:?} after the stop",
        started.elapsed()
    );
    let replayed = metrics.spool.replayed.get();
    assert!(replayed > 0 && replayed < 200, "{replayed} replayed");
    assert_eq!(spool.records(), 200 - replayed, "taken ones left");
    assert_eq!(metrics.spool.deadlettered.get(), 0);
    assert!(
        matches!(ended, Pass::Failed(n) if n == 200 - replayed),
        "{ended:?}"
    );
}

/// Refuses each record of a batch as [`RefusesFirstTries`] does, asks the bridge to stop at the
/// first, and counts the records handed over.
struct RefusesAndStops {
    refusing: RefusesFirstTries,
    stop: tokio::sync::watch::Sender<bool>,
    sends: std::sync::atomic::AtomicUsize,
}

impl Sink for RefusesAndStops {
    async fn send(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        self.sends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.stop.send_replace(true);
        self.refusing.send(record, deadline).await
    }
}

/// Once the bridge is stopping, no refused record is handed over alone: librdkafka may deliver
/// it after the pass stopped waiting for it, and the next start would send it again. (Racing the
/// stop signal against the try would hand one over half of the time, hence the passes.)
#[tokio::test(start_paused = true)]
async fn no_record_is_tried_alone_once_the_bridge_is_stopping() {
    for _ in 0..16 {
        let (_dir, spool) = spool_of(&["t", "t"]).await;
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let kafka = RefusesAndStops {
            refusing: RefusesFirstTries::default(),
            stop: stop_tx,
            sends: std::sync::atomic::AtomicUsize::new(0),
        };
        let (ended, _metrics) = pass_until(SMALL, &spool, &kafka, &stop).await;
        assert_eq!(ended, Pass::Failed(2));
        assert_eq!(
            kafka.sends.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the batch only"
        );
        assert_eq!(spool.records(), 2);
    }
}

/// Waits out every deadline: Kafka gone quiet.
struct Quiet;

impl Sink for Quiet {
    async fn send(&self, _: &Record<'_>, deadline: Instant) -> Result<Delivered, ProduceError> {
        tokio::time::sleep_until(deadline).await;
        Err(ProduceError::Timeout)
    }
}

/// Refuses each record in the batch, then goes quiet.
#[derive(Default)]
struct RefusesThenQuiet(RefusesFirstTries);

impl Sink for RefusesThenQuiet {
    async fn send(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        match self.0.send(record, deadline).await {
            Ok(_) => Quiet.send(record, deadline).await,
            refused => refused,
        }
    }
}

/// Kafka going quiet while refused records are tried alone ends the tries at the first that
/// times out, not one replay timeout (30 s) for each of them.
#[tokio::test(start_paused = true)]
async fn tries_alone_end_at_the_first_that_kafka_fails() {
    let (_dir, spool) = spool_of(&["t"; 100]).await;
    let started = Instant::now();
    let (ended, _metrics) = fresh_pass(SMALL, &spool, &RefusesThenQuiet::default()).await;
    assert!(
        started.elapsed() <= crate::delivery::REPLAY_TIMEOUT + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ended, Pass::Failed(100));
    assert_eq!(spool.records(), 100);
}

/// Refuses every record the first time it sees its key, at once, as a broker refuses a whole
/// batch for one invalid record in it; answers a record tried alone after `round_trip` with
/// `alone(topic)`; takes the dead-letter topic's records. Counts the tries alone and the moves.
struct AloneAnswers {
    seen: Mutex<std::collections::HashSet<String>>,
    alone: fn(&str) -> Result<Delivered, ProduceError>,
    round_trip: Duration,
    tries_alone: std::sync::atomic::AtomicUsize,
    moved: std::sync::atomic::AtomicUsize,
}

impl AloneAnswers {
    fn new(round_trip: Duration, alone: fn(&str) -> Result<Delivered, ProduceError>) -> Self {
        AloneAnswers {
            seen: Mutex::default(),
            alone,
            round_trip,
            tries_alone: Default::default(),
            moved: Default::default(),
        }
    }

    fn tries_alone(&self) -> usize {
        self.tries_alone.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn moved(&self) -> usize {
        self.moved.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Sink for AloneAnswers {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        use std::sync::atomic::Ordering::SeqCst;
        if record.topic == "dlq" {
            self.moved.fetch_add(1, SeqCst);
            return Ok(TAKEN);
        }
        let key = record.key.as_deref().unwrap_or_default().to_string();
        if self.seen.lock().expect("lock").insert(key) {
            return Err(ProduceError::Rejected("InvalidRecord".into()));
        }
        self.tries_alone.fetch_add(1, SeqCst);
        tokio::time::sleep(self.round_trip).await;
        (self.alone)(record.topic)
    }
}

/// A record refused with its batch that Kafka then fails alone (away, not refusing it) is fine
/// in itself: it stays spooled rather than move to the dead-letter topic, and as Kafka is away,
/// the others refused with it are not tried alone in this pass.
#[tokio::test(start_paused = true)]
async fn a_refused_record_that_kafka_fails_alone_stays_spooled_and_ends_the_tries_alone() {
    let (_dir, spool) = spool_of(&["t"; 5]).await;
    let kafka = AloneAnswers::new(Duration::from_millis(10), |_| {
        Err(ProduceError::Unavailable("AllBrokersDown".into()))
    });
    let (ended, metrics) = fresh_pass(SMALL, &spool, &kafka).await;
    assert_eq!(ended, Pass::Failed(5));
    assert_eq!(kafka.tries_alone(), 1);
    assert_eq!(kafka.moved(), 0);
    assert_eq!(metrics.spool.deadlettered.get(), 0);
    assert_eq!(spool.records(), 5);
}

/// A record its topic refuses alone until an operator acts (authorization) stays spooled, and,
/// Kafka being up, the tries alone go on to the others refused with it.
#[tokio::test(start_paused = true)]
async fn a_record_its_topic_refuses_alone_until_an_operator_acts_does_not_end_the_tries_alone() {
    let (_dir, spool) = spool_of(&["denied", "t", "t"]).await;
    let kafka = AloneAnswers::new(Duration::from_millis(10), |topic| match topic {
        "denied" => Err(ProduceError::Refused("TopicAuthorizationFailed".into())),
        _ => Ok(TAKEN),
    });
    let (ended, metrics) = fresh_pass(SMALL, &spool, &kafka).await;
    assert_eq!(ended, Pass::Failed(1));
    assert_eq!(kafka.tries_alone(), 3);
    assert_eq!(metrics.spool.replayed.get(), 2);
    assert_eq!(spool.records(), 1);
    assert!(spool.holds_key("k0"));
}

/// Tries alone share one deadline, replay's timeout from the end of their batch: once it has
/// passed, the records not tried keep their batch's refusal for the next pass.
#[tokio::test(start_paused = true)]
async fn tries_alone_end_at_one_deadline_for_them_all() {
    let (_dir, spool) = spool_of(&["t"; 10]).await;
    let kafka = AloneAnswers::new(Duration::from_secs(10), |_| Ok(TAKEN));
    let started = Instant::now();
    let (ended, metrics) = fresh_pass(SMALL, &spool, &kafka).await;
    assert_eq!(started.elapsed(), crate::delivery::REPLAY_TIMEOUT);
    assert_eq!(kafka.tries_alone(), 3);
    assert_eq!(metrics.spool.replayed.get(), 3);
    assert_eq!(ended, Pass::Failed(7));
    assert_eq!(spool.records(), 7);
}

/// Refuses every record as Kafka does when it is down, unless `up`, noting when each was sent;
/// with `hold`, it holds the next record it takes until `release`.
#[derive(Default)]
struct Outage {
    up: std::sync::atomic::AtomicBool,
    hold: std::sync::atomic::AtomicBool,
    holding: tokio::sync::Notify,
    release: tokio::sync::Notify,
    sent: Mutex<Vec<Instant>>,
}

impl Outage {
    /// The pauses between its sends, in milliseconds, and forgets them.
    fn pauses(&self) -> Vec<u128> {
        let sent = std::mem::take(&mut *self.sent.lock().expect("lock"));
        sent.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect()
    }
}

impl Sink for Outage {
    async fn send(&self, _: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        use std::sync::atomic::Ordering::SeqCst;
        let sends = {
            let mut sent = self.sent.lock().expect("lock");
            sent.push(Instant::now());
            sent.len()
        };
        // A pause that shrank to nothing would keep the paused clock from ever moving: held
        // here, the task lets it move, and the test fails on the pauses instead of hanging.
        if sends > 32 {
            std::future::pending::<()>().await;
        }
        if !self.up.load(SeqCst) {
            return Err(ProduceError::Unavailable("AllBrokersDown".into()));
        }
        if self.hold.swap(false, SeqCst) {
            self.holding.notify_one();
            self.release.notified().await;
        }
        Ok(TAKEN)
    }
}

/// A down Kafka is tried again after a pause that doubles from 100 ms up to 5 s, so an outage
/// costs a few sends a second at first and one every 5 s after, not a loop; a clean pass sets
/// it back to 100 ms for the next outage, even when the spool never ran empty in between (under
/// steady traffic it does not).
#[tokio::test(start_paused = true)]
async fn passes_that_fail_are_retried_after_a_pause_doubling_from_100_ms_to_5_s() {
    use std::sync::atomic::Ordering::SeqCst;
    let (_dir, spool) = spool_of(&["t"]).await;
    let kafka = Arc::new(Outage::default());
    let (_metrics, stop_tx, task) = start_replay(&spool, kafka.clone());
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(
        kafka.pauses(),
        [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]
    );
    kafka.hold.store(true, SeqCst);
    kafka.up.store(true, SeqCst);
    kafka.holding.notified().await;
    // While the clean pass's record is in flight: another spooled, and Kafka down again.
    spool.append(spooled("t")).await.expect("append");
    kafka.up.store(false, SeqCst);
    kafka.pauses();
    kafka.release.notify_one();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(kafka.pauses(), [100, 200, 400], "after the clean pass");
    stop_tx.send(true).expect("stop");
    task.await.expect("replay task");
}

/// Kafka refusing a whole batch for one record in it it finds too large (KIP-467), as librdkafka
/// reports it: every record whose send overlaps the bad record's fails `TooLarge`. Each send
/// takes 1 ms; counts every send.
#[derive(Default)]
struct OneBadRecordRefusesItsBatch {
    sends: std::sync::atomic::AtomicUsize,
    bad: Mutex<Option<(Instant, Instant)>>,
}

impl Sink for OneBadRecordRefusesItsBatch {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        self.sends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let start = Instant::now();
        let end = start + Duration::from_millis(1);
        let is_bad = record.value == b"bad" && record.topic != "dlq";
        if is_bad {
            *self.bad.lock().expect("lock") = Some((start, end));
        }
        tokio::time::sleep_until(end).await;
        let overlaps = self
            .bad
            .lock()
            .expect("lock")
            .is_some_and(|(s, e)| start < e && s < end);
        if is_bad || (overlaps && record.topic != "dlq") {
            Err(ProduceError::TooLarge)
        } else {
            Ok(TAKEN)
        }
    }
}

/// Every send counts against the pace: a batch of ten that Kafka refused whole for one record in
/// it sends each of the ten again alone, and moves the bad one: 21 sends at 10 a second, which
/// must be followed after 2.1 s, not 1.1 s.
#[tokio::test(start_paused = true)]
async fn a_paced_replay_counts_the_records_sent_again_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 16 << 20, 1).expect("open");
    for i in 0..20 {
        let mut r = spooled("t");
        r.key = Some(format!("k{i}"));
        if i == 3 {
            r.value = b"bad".to_vec();
        }
        spool.append(r).await.expect("append");
    }
    let kafka = Arc::new(OneBadRecordRefusesItsBatch::default());
    let began = Instant::now();
    let (metrics, stop_tx, task) = start_replay_of(batches_of_ten(10), &spool, kafka.clone());
    tokio::time::sleep_until(began + Duration::from_millis(500)).await;
    assert_eq!(metrics.spool.deadlettered.get(), 1);
    assert_eq!(spool.records(), 10, "the first batch left the spool");
    let first = kafka.sends.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(first, 21, "10 together, 10 alone, 1 move");
    tokio::time::sleep_until(began + Duration::from_millis(2000)).await;
    let sends = kafka.sends.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        sends, first,
        "at 10 a second, 21 sends are followed by the next batch no sooner than 2.1 s"
    );
    stop_tx.send(true).expect("stop");
    task.await.expect("replay task");
}

/// The records sent again after a refused record of their batch was moved are sends too: ten
/// records, one of them refused for its time, are 21 sends (the batch, the refused one alone, its
/// move and the nine again), which at 10 a second are followed after 2.1 s, not 1.2 s.
#[tokio::test(start_paused = true)]
async fn a_paced_replay_counts_the_casualties_sent_again() {
    let (_dir, spool) = spool_of(&[]).await;
    let now = wall_ms();
    for i in 0..20 {
        let r = SpooledRecord {
            key: Some(format!("k{i}")),
            ..spooled("t")
        };
        // `spooled`'s time is long past: the first is refused, the others fail with it.
        let timestamp_ms = if i == 0 { r.timestamp_ms } else { now };
        spool
            .append(SpooledRecord { timestamp_ms, ..r })
            .await
            .expect("append");
    }
    let kafka = Arc::new(RefusingOldWithCasualties::default());
    let began = Instant::now();
    let (metrics, stop_tx, task) = start_replay_of(batches_of_ten(10), &spool, kafka.clone());
    let handed = || kafka.handed.lock().expect("lock").len();
    tokio::time::sleep_until(began + Duration::from_millis(500)).await;
    assert_eq!(metrics.spool.deadlettered.get(), 1);
    assert_eq!(spool.records(), 10, "the first batch left the spool");
    assert_eq!(handed(), 21, "10 together, 1 alone, 1 move, 9 again");
    tokio::time::sleep_until(began + Duration::from_millis(2000)).await;
    assert_eq!(
        handed(),
        21,
        "at 10 a second, 21 sends are followed by the next batch no sooner than 2.1 s"
    );
    stop_tx.send(true).expect("stop");
    task.await.expect("replay task");
}

/// A broker whose `max.message.bytes` a batch of several records passes refuses the whole
/// batch (`MessageSizeTooLarge` for each record: no casualties); alone, only the record whose body
/// is "2" is too large. The dead-letter topic refuses every record (its authorization).
#[derive(Default)]
struct RefusingLargeBatches {
    in_flight: std::sync::atomic::AtomicUsize,
    took: Mutex<Vec<String>>,
}

impl RefusingLargeBatches {
    /// Refused with its batch when another record is in flight beside it, or alone when
    /// `too_large` says so; taken otherwise.
    async fn batch_or_alone(
        &self,
        record: &Record<'_>,
        too_large: bool,
    ) -> Result<Delivered, ProduceError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.in_flight.fetch_add(1, SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let batch = self.in_flight.load(SeqCst) > 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.in_flight.fetch_sub(1, SeqCst);
        if batch || too_large {
            return Err(refused_as(
                rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge,
            ));
        }
        let value = String::from_utf8_lossy(record.value).into_owned();
        self.took.lock().expect("lock").push(value);
        Ok(TAKEN)
    }
}

impl Sink for RefusingLargeBatches {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        if record.topic == "dlq" {
            return Err(refused_as(
                rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed,
            ));
        }
        self.batch_or_alone(record, record.value == b"2").await
    }
}

/// Records of one conversation refused together and sent again alone: the second, too large for
/// its topic and refused by the dead-letter topic, stays spooled, and the third stays behind it,
/// as a casualty does (found by a review: it was sent alone and reached Kafka ahead of it).
#[tokio::test(start_paused = true)]
async fn a_refused_record_stays_behind_an_earlier_one_of_its_conversation_that_stays_spooled() {
    let (_dir, spool) = spool_of(&[]).await;
    append_statuses(&spool, b"123", one_conversation).await;
    let kafka = RefusingLargeBatches::default();
    let (ended, _) = fresh_pass(SMALL, &spool, &kafka).await;
    assert_eq!(
        *kafka.took.lock().expect("lock"),
        ["1"],
        "3 reached Kafka ahead of 2, still spooled: {ended:?}"
    );
}

/// Refuses every record older than a day, at once; the dead-letter topic takes each copy
/// after 10 s and, as librdkafka does (its `message.timeout.ms` counted from the hand-over), takes
/// it even when the sender stopped waiting first, which is then told it timed out.
#[derive(Default)]
struct SlowDeadLetterCopies {
    took: Mutex<Vec<String>>,
}

impl Sink for SlowDeadLetterCopies {
    async fn send(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        if record.topic != "dlq" {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return if older_than_a_day(record.timestamp_ms) {
                Err(refused_as(
                    rdkafka::types::RDKafkaErrorCode::InvalidTimestamp,
                ))
            } else {
                Ok(TAKEN)
            };
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        let value = String::from_utf8_lossy(record.value).into_owned();
        self.took.lock().expect("lock").push(value);
        if Instant::now() > deadline {
            return Err(ProduceError::Timeout);
        }
        Ok(TAKEN)
    }
}

/// A dead-letter copy handed over late in the moves' shared 30 s got only what was left of it,
/// while librdkafka waits its whole `message.timeout.ms`: taken after replay stopped waiting, the
/// record stayed spooled and was moved again by the next pass (a duplicate; found by a review).
/// Each record handed over is waited for a whole replay timeout.
#[tokio::test(start_paused = true)]
async fn a_dead_letter_copy_kafka_takes_late_in_the_moves_leaves_the_spool() {
    let (_dir, spool) = spool_of(&[]).await;
    for n in [b'1', b'2', b'3', b'4'] {
        let record = SpooledRecord {
            value: vec![n],
            key: Some(format!("k{n}")),
            ..spooled("statuses")
        };
        spool.append(record).await.expect("append");
    }
    let kafka = SlowDeadLetterCopies::default();
    let (ended, _) = fresh_pass(SMALL, &spool, &kafka).await;
    let took = kafka.took.lock().expect("lock").clone();
    assert_eq!(
        took.len() as u64 + spool.records(),
        4,
        "moved {took:?}, and {} still spooled: {ended:?}",
        spool.records()
    );
}

/// In a batch, the record whose body is "2" is refused (`InvalidRecord`) and every other record
/// fails as its casualty (`InvalidDifferentRecord`); each record after its first try is taken (as
/// when the refusal was its batch's, a second message set of the partition too large, say), and
/// so is each dead-letter copy. Notes the order its topic took them in.
#[derive(Default)]
struct CasualtyFirst {
    seen: Mutex<std::collections::HashSet<Vec<u8>>>,
    took: Mutex<Vec<String>>,
}

impl Sink for CasualtyFirst {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if record.topic != "dlq"
            && self
                .seen
                .lock()
                .expect("lock")
                .insert(record.value.to_vec())
        {
            return Err(if record.value == b"2" {
                ProduceError::Rejected("InvalidRecord".into())
            } else {
                refused_as(rdkafka::types::RDKafkaErrorCode::InvalidDifferentRecord)
            });
        }
        let value = String::from_utf8_lossy(record.value).into_owned();
        self.took.lock().expect("lock").push(value);
        Ok(TAKEN)
    }
}

/// A casualty earlier in the batch than a refused record of its conversation: the refused one,
/// taken alone, must not reach Kafka ahead of it (the casualty is sent again only after the tries
/// alone).
#[tokio::test(start_paused = true)]
async fn a_refused_record_sent_alone_does_not_overtake_an_earlier_casualty_of_its_conversation() {
    let (_dir, spool) = spool_of(&[]).await;
    append_statuses(&spool, b"12", one_conversation).await;
    let kafka = CasualtyFirst::default();
    let (ended, _) = fresh_pass(SMALL, &spool, &kafka).await;
    let took = kafka.took.lock().expect("lock").clone();
    let first = took.iter().position(|v| v == "1");
    let second = took.iter().position(|v| v == "2");
    assert!(
        second.is_none() || first.is_some_and(|f| Some(f) < second),
        "2 reached Kafka ahead of 1, the earlier record of its conversation: {took:?}, {ended:?}"
    );
}

/// Takes the records `taken` picks after 1 s, noting when each was handed over; refuses every
/// other one with `refusal`: at once in a batch, and after `alone(value)` when sent alone.
struct SlowRefusalsAlone {
    taken: fn(&Record<'_>) -> bool,
    refusal: fn() -> ProduceError,
    alone: fn(&[u8]) -> Duration,
    seen: Mutex<std::collections::HashSet<Vec<u8>>>,
    handed: Mutex<Vec<Instant>>,
}

impl SlowRefusalsAlone {
    /// "a" alone answers in 20 s, "b" (handed over alone at 21 s, within the moves' shared 30 s)
    /// in 29 s: after that deadline, though within a replay timeout of its own.
    fn a_in_20_s_b_in_29(taken: fn(&Record<'_>) -> bool, refusal: fn() -> ProduceError) -> Self {
        SlowRefusalsAlone {
            taken,
            refusal,
            alone: |value| Duration::from_secs(if value == b"a" { 20 } else { 29 }),
            seen: Mutex::default(),
            handed: Mutex::default(),
        }
    }
}

impl Sink for SlowRefusalsAlone {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        if (self.taken)(record) {
            self.handed.lock().expect("lock").push(Instant::now());
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Ok(TAKEN);
        }
        if !self
            .seen
            .lock()
            .expect("lock")
            .insert(record.value.to_vec())
        {
            tokio::time::sleep((self.alone)(record.value)).await;
        }
        Err((self.refusal)())
    }
}

/// The README: the second tries and the dead-letter copies are "handed over within one replay
/// timeout (30 s) for the batch's refused records together". A copy whose record's try alone was
/// handed over in time but answered after the shared deadline is handed over after it, so the
/// moves can last up to three replay timeouts (not the two `background.rs` counts).
#[tokio::test(start_paused = true)]
async fn dead_letter_copies_are_handed_over_within_the_moves_shared_deadline() {
    let (_dir, spool) = spool_a_and_b("statuses", |n| Some(format!("k{n}"))).await;
    // The dead-letter topic takes the copies; "statuses" refuses both records.
    let kafka = SlowRefusalsAlone::a_in_20_s_b_in_29(
        |record| record.topic == "dlq",
        || ProduceError::Rejected("InvalidRecord".into()),
    );
    let started = Instant::now();
    let (ended, _) = fresh_pass(SMALL, &spool, &kafka).await;
    let handed = handed_within_a_replay_timeout(started, &kafka.handed, &ended);
    assert!(!handed.is_empty(), "no copy was handed over: {ended:?}");
}

/// Spools a record of value `a`, then one of `b`, on `topic`, keyed by `key` of the letter.
async fn spool_a_and_b(
    topic: &str,
    key: fn(char) -> Option<String>,
) -> (tempfile::TempDir, Arc<Spool>) {
    let (dir, spool) = spool_of(&[]).await;
    for n in ['a', 'b'] {
        let record = SpooledRecord {
            value: vec![n as u8],
            key: key(n),
            ..spooled(topic)
        };
        spool.append(record).await.expect("append");
    }
    (dir, spool)
}

/// The hand-overs `noted` since `started` (the pass's start), each checked to be within one
/// replay timeout of it: the moves' shared deadline.
fn handed_within_a_replay_timeout(
    started: Instant,
    noted: &Mutex<Vec<Instant>>,
    ended: &Pass,
) -> Vec<Duration> {
    let handed: Vec<Duration> = noted
        .lock()
        .expect("lock")
        .iter()
        .map(|at| *at - started)
        .collect();
    assert!(
        handed
            .iter()
            .all(|at| *at <= crate::delivery::REPLAY_TIMEOUT),
        "handed over at {handed:?}, the pass lasted {:?}: {ended:?}",
        started.elapsed()
    );
    handed
}

/// A dead-letter record refused for its time alone is sent again with a new time only within
/// the moves' shared deadline, as a dead-letter copy is: handed over after it, the moves last up
/// to three replay timeouts, and hold up the pass (and a drain at shutdown) that long.
#[tokio::test(start_paused = true)]
async fn dead_letter_records_are_sent_again_with_a_new_time_within_the_moves_shared_deadline() {
    let (_dir, spool) = spool_a_and_b("dlq", |_| None).await;
    // The dead-letter topic refuses its own records for their time (older than a day) and takes
    // one sent again with a new time.
    let kafka = SlowRefusalsAlone::a_in_20_s_b_in_29(
        |record| !older_than_a_day(record.timestamp_ms),
        || refused_as(rdkafka::types::RDKafkaErrorCode::InvalidTimestamp),
    );
    let started = Instant::now();
    let (ended, _) = fresh_pass(SMALL, &spool, &kafka).await;
    let handed = handed_within_a_replay_timeout(started, &kafka.handed, &ended);
    assert_eq!(handed.len(), 1, "{handed:?}");
    assert_eq!(ended, Pass::Failed(1));
    assert_eq!(spool.records(), 1);
}

/// A casualty left behind an earlier record of its conversation that stays spooled holds back
/// only its conversation, not its whole topic: another conversation of the topic, in a later
/// batch of the pass, is still sent in this pass (the casualty kept `InvalidDifferentRecord`, an
/// `Unavailable`, and `left_behind` held the topic as if Kafka could not take it).
#[tokio::test(start_paused = true)]
async fn a_casualty_left_behind_does_not_hold_back_its_whole_topic() {
    let (_dir, spool) = spool_of(&[]).await;
    let fresh = |key: &str| SpooledRecord {
        timestamp_ms: wall_ms(),
        key: Some(key.into()),
        ..spooled("statuses")
    };
    for record in [spooled("statuses"), fresh("k"), fresh("other")] {
        spool.append(record).await.expect("append");
    }
    let kafka = RefusingOldWithCasualties {
        dlq_refuses: true,
        ..Default::default()
    };
    let two = Batch {
        records: 2,
        ..SMALL
    };
    let (ended, _) = fresh_pass(two, &spool, &kafka).await;
    assert_eq!(
        *kafka.took.lock().expect("lock"),
        ["statuses"],
        "the other conversation waited for the next pass: {ended:?}"
    );
}

/// On its topic, the records whose body is "2" or "4" are refused (`InvalidRecord`) on every
/// try; every other record fails as a casualty the first time it is seen, and is taken after.
/// The dead-letter topic takes every copy, or fails it with `dlq_fails`.
#[derive(Default)]
struct AlwaysRefusesTwo {
    seen: Mutex<std::collections::HashSet<Vec<u8>>>,
    took: Mutex<Vec<String>>,
    copies: Mutex<Vec<String>>,
    alone_tries: std::sync::atomic::AtomicUsize,
    copy_tries: std::sync::atomic::AtomicUsize,
    dlq_fails: Option<ProduceError>,
}

impl Sink for AlwaysRefusesTwo {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let value = String::from_utf8_lossy(record.value).into_owned();
        if record.topic == "dlq" {
            self.copy_tries
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if let Some(e) = &self.dlq_fails {
                return Err(e.clone());
            }
            self.copies.lock().expect("lock").push(value);
            return Ok(TAKEN);
        }
        let first = self
            .seen
            .lock()
            .expect("lock")
            .insert(record.value.to_vec());
        if record.value == b"2" || record.value == b"4" {
            if !first {
                self.alone_tries
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            return Err(ProduceError::Rejected("InvalidRecord".into()));
        }
        if first {
            return Err(refused_as(
                rdkafka::types::RDKafkaErrorCode::InvalidDifferentRecord,
            ));
        }
        self.took.lock().expect("lock").push(value);
        Ok(TAKEN)
    }
}

/// A conversation whose first record is a casualty and whose second is refused for good drains
/// over the passes that follow, in spool order, each pass making progress: the refused record
/// waits behind the casualty, then goes alone as the head of what was left behind.
#[tokio::test(start_paused = true)]
async fn a_casualty_then_a_refused_record_of_its_conversation_drain_in_order_over_passes() {
    let (_dir, spool) = spool_of(&[]).await;
    append_statuses(&spool, b"1235", one_conversation).await;
    let kafka = AlwaysRefusesTwo::default();
    let metrics = Metrics::new(&[]).expect("metrics");
    let mut held = Held::default();
    let mut passes = 0;
    while spool.records() > 0 && passes < 8 {
        pass(
            SMALL,
            &spool,
            &kafka,
            "dlq",
            &metrics,
            &mut held,
            &running(),
        )
        .await;
        held = std::mem::take(&mut held).next_pass();
        passes += 1;
    }
    assert_eq!(spool.records(), 0, "left after {passes} passes");
    assert_eq!(*kafka.took.lock().expect("lock"), ["1", "3", "5"]);
    assert_eq!(*kafka.copies.lock().expect("lock"), ["2"]);
    assert!(passes <= 3, "{passes} passes");
}

/// The dead-letter copies end at the first that Kafka itself fails: a copy the dead-letter topic
/// fails for Kafka's sake (its partition without a leader, say) ends them, rather than every
/// later refused record costing a copy bound to fail (found by a review: only a try alone ended
/// them). The next refused record is still tried alone (its batch may have been refused for
/// another's sake), and refused alone too it ends the moves without a copy.
#[tokio::test(start_paused = true)]
async fn a_dead_letter_copy_kafka_fails_ends_the_moves() {
    let (_dir, spool) = spool_of(&[]).await;
    append_statuses(&spool, b"24", |n| {
        Some(if n == b'2' { "a" } else { "b" }.into())
    })
    .await;
    let kafka = AlwaysRefusesTwo {
        dlq_fails: Some(ProduceError::Unavailable("LeaderNotAvailable".into())),
        ..Default::default()
    };
    let (ended, _) = fresh_pass(SMALL, &spool, &kafka).await;
    let tries = |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(tries(&kafka.alone_tries), 2, "{ended:?}");
    assert_eq!(
        tries(&kafka.copy_tries),
        1,
        "the second refused record was copied after the first's copy failed for Kafka's sake: {ended:?}"
    );
}

/// A dead-letter copy Kafka fails ends the moves for the rest of the pass, not only of its batch:
/// each later batch with a refused record otherwise sent it alone and waited on the topic that
/// had just failed again, up to a whole replay timeout a batch while it stayed down (found by a
/// re-read). What else the later batches hold still goes, and the next pass tries again.
#[tokio::test(start_paused = true)]
async fn a_dead_letter_copy_kafka_fails_ends_the_moves_for_the_rest_of_the_pass() {
    let (_dir, spool) = spool_of(&[]).await;
    append_statuses(&spool, b"245", |_| None).await;
    let kafka = AlwaysRefusesTwo {
        dlq_fails: Some(ProduceError::Timeout),
        ..Default::default()
    };
    let ones = Batch {
        records: 1,
        bytes: 16 << 20,
        pace: None,
    };
    let metrics = Metrics::new(&[]).expect("metrics");
    let mut held = Held::default();
    pass(ones, &spool, &kafka, "dlq", &metrics, &mut held, &running()).await;
    let copies = || kafka.copy_tries.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        copies(),
        1,
        "the second batch's refused record was copied after the first's copy failed"
    );
    assert_eq!(*kafka.took.lock().expect("lock"), ["5"], "the rest went");
    held = std::mem::take(&mut held).next_pass();
    pass(ones, &spool, &kafka, "dlq", &metrics, &mut held, &running()).await;
    assert_eq!(
        copies(),
        2,
        "the next pass tried the dead-letter topic again"
    );
    assert_eq!(spool.records(), 2, "the refused records stay spooled");
}

/// A batch of "statuses" records over the broker's `max.message.bytes` is refused whole
/// (`MessageSizeTooLarge` for each, no casualties); alone, each is taken. Topic "bad" refuses
/// every record for good; the dead-letter topic fails every copy for Kafka's sake.
#[derive(Default)]
struct LargeBatchesDeadLetterDown(RefusingLargeBatches);

impl Sink for LargeBatchesDeadLetterDown {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        if record.topic == "dlq" {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(ProduceError::Unavailable("LeaderNotAvailable".into()));
        }
        if record.topic == "bad" {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(ProduceError::Rejected("InvalidRecord".into()));
        }
        self.0.batch_or_alone(record, false).await
    }
}

/// The dead-letter topic down for the rest of a pass ends the moves, not the tries alone: a later
/// batch refused whole only for its size needs no dead-letter topic, and each of its records is
/// taken alone by its own topic. Skipped, they stayed spooled (and held their conversations) for
/// as long as the dead-letter topic was down, whenever a record it failed came first in the pass.
#[tokio::test(start_paused = true)]
async fn the_dead_letter_topic_down_does_not_keep_records_their_topic_takes_alone() {
    let (_dir, spool) = spool_of(&[]).await;
    append_fresh(
        &spool,
        &[
            ("bad", b'x', "a"),
            ("bad", b'y', "b"),
            ("statuses", b'3', "c"),
            ("statuses", b'4', "d"),
        ],
    )
    .await;
    three_passes_take_3_and_4(
        2,
        &spool,
        "records their own topic takes alone still waited on the dead-letter topic",
    )
    .await;
    assert_eq!(spool.records(), 2, "only the refused records stay");
}

/// Appends `records` (topic, body, key), each with the time now.
async fn append_fresh(spool: &Spool, records: &[(&str, u8, &str)]) {
    for &(topic, value, key) in records {
        let record = SpooledRecord {
            value: vec![value],
            key: Some(key.into()),
            timestamp_ms: wall_ms(),
            ..spooled(topic)
        };
        spool.append(record).await.expect("append");
    }
}

/// Three passes of batches of `records` over `spool` into [`LargeBatchesDeadLetterDown`], after
/// each of which records "3" and "4" must have been taken (`why` they were not, otherwise).
async fn three_passes_take_3_and_4(records: usize, spool: &Arc<Spool>, why: &str) {
    let kafka = LargeBatchesDeadLetterDown::default();
    let batch = Batch { records, ..SMALL };
    let metrics = Metrics::new(&[]).expect("metrics");
    let mut held = Held::default();
    for passes in 1..=3 {
        pass(batch, spool, &kafka, "dlq", &metrics, &mut held, &running()).await;
        held = std::mem::take(&mut held).next_pass();
        assert_eq!(
            *kafka.0.took.lock().expect("lock"),
            ["3", "4"],
            "after {passes} passes, {why}"
        );
    }
}

/// Appends, each of its own conversation, a record of topic "bad" ("x"), then two of "statuses"
/// ("3", "4"): one batch when a batch holds three.
async fn append_bad_then_statuses(spool: &Spool) {
    let records = [
        ("bad", b'x', "a"),
        ("statuses", b'3', "c"),
        ("statuses", b'4', "d"),
    ];
    append_fresh(spool, &records).await;
}

/// As above within one batch: a dead-letter copy that failed for Kafka's sake ended the moves of
/// its batch, so the records after it there that their own topic takes alone were never tried.
/// The batch is the same at every pass while the dead-letter topic stays down, so they stayed
/// spooled (and held their conversations) for as long as it did.
#[tokio::test(start_paused = true)]
async fn a_failed_dead_letter_copy_does_not_keep_the_rest_of_its_batch_from_going_alone() {
    let (_dir, spool) = spool_of(&[]).await;
    append_bad_then_statuses(&spool).await;
    let why = "the records after a failed dead-letter copy in its batch were not tried alone";
    three_passes_take_3_and_4(3, &spool, why).await;
    assert_eq!(spool.records(), 1, "only the refused record stays");
}

/// `inner`, but with the dead-letter topic down as librdkafka reports a partition without a
/// leader: each of its sends waits out its whole deadline (`message.timeout.ms`), then times out.
struct DeadLetterTimesOut<K>(K);

impl<K: Sink> Sink for DeadLetterTimesOut<K> {
    async fn send(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        if record.topic == "dlq" {
            tokio::time::sleep_until(deadline).await;
            return Err(ProduceError::Timeout);
        }
        self.0.send(record, deadline).await
    }
}

/// A dead-letter copy that times out has used up the tries' shared deadline: a later refused
/// record of its batch then cut the moves short as if Kafka were slow, and the casualties of a
/// healthy topic were no longer sent again (before 065d2de the failed copy ended the moves, and
/// they were). Left failed at every pass while the dead-letter topic stays down, a keyless one
/// holds its whole topic back.
#[tokio::test(start_paused = true)]
async fn a_dead_letter_copy_that_times_out_does_not_keep_the_casualties_from_going_again() {
    let (_dir, spool) = spool_of(&[]).await;
    append_statuses(&spool, b"234", |_| None).await;
    let kafka = DeadLetterTimesOut(AlwaysRefusesTwo::default());
    let (ended, _) = fresh_pass(SMALL, &spool, &kafka).await;
    assert_eq!(
        *kafka.0.took.lock().expect("lock"),
        ["3"],
        "the casualty was not sent again: {ended:?}"
    );
    assert_eq!(spool.records(), 2, "only the refused records stay");
}

/// As [`a_failed_dead_letter_copy_does_not_keep_the_rest_of_its_batch_from_going_alone`], with
/// the dead-letter topic late rather than away: the records after the failed copy that their own
/// topic takes alone are tried alone too, not cut off by the deadline the copy used up.
#[tokio::test(start_paused = true)]
async fn a_dead_letter_copy_that_times_out_does_not_keep_the_rest_of_its_batch_from_going_alone() {
    let (_dir, spool) = spool_of(&[]).await;
    append_bad_then_statuses(&spool).await;
    let kafka = DeadLetterTimesOut(LargeBatchesDeadLetterDown::default());
    let three = Batch {
        records: 3,
        ..SMALL
    };
    let (ended, _) = fresh_pass(three, &spool, &kafka).await;
    assert_eq!(
        *kafka.0 .0.took.lock().expect("lock"),
        ["3", "4"],
        "the records after a copy that timed out were not tried alone: {ended:?}"
    );
    assert_eq!(spool.records(), 1, "only the refused record stays");
}

/// A dead-letter topic that just failed one of its own records for Kafka's sake (late, away) is
/// as down as one that failed a copy: a later batch's refused record is not copied to it, to wait
/// a whole replay timeout more on it.
#[tokio::test(start_paused = true)]
async fn the_dead_letter_topic_failing_its_own_record_ends_the_moves_for_the_pass() {
    let (_dir, spool) = spool_of(&[]).await;
    for (topic, value) in [("dlq", "own"), ("statuses", "2")] {
        let record = SpooledRecord {
            key: None,
            value: value.into(),
            timestamp_ms: wall_ms(),
            ..spooled(topic)
        };
        spool.append(record).await.expect("append");
    }
    // "2" is refused for good; the dead-letter topic's own record times out.
    let kafka = AlwaysRefusesTwo {
        dlq_fails: Some(ProduceError::Timeout),
        ..Default::default()
    };
    let ones = Batch {
        records: 1,
        ..SMALL
    };
    let (ended, _) = fresh_pass(ones, &spool, &kafka).await;
    assert_eq!(
        kafka.copy_tries.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "beside its own record, a copy waited on the dead-letter topic that had just failed: \
         {ended:?}"
    );
}

/// On "statuses", the record whose body is "2" is refused (`InvalidRecord`) on every try, and
/// every other record sent while it is in flight fails as a casualty (`InvalidDifferentRecord`),
/// as a broker fails the rest of a refused record's batch; alone, they are taken. The
/// dead-letter topic is down: it fails every copy with `fails`.
struct RefusedTwoDeadLetterDown {
    two_in_flight: std::sync::atomic::AtomicUsize,
    took: Mutex<Vec<String>>,
    fails: ProduceError,
}

impl Sink for RefusedTwoDeadLetterDown {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        use std::sync::atomic::Ordering::SeqCst;
        if record.topic == "dlq" {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(self.fails.clone());
        }
        if record.value == b"2" {
            self.two_in_flight.fetch_add(1, SeqCst);
            // Still in flight when the others of its batch are answered.
            tokio::time::sleep(Duration::from_millis(21)).await;
            self.two_in_flight.fetch_sub(1, SeqCst);
            return Err(ProduceError::Rejected("InvalidRecord".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if self.two_in_flight.load(SeqCst) > 0 {
            return Err(refused_as(
                rdkafka::types::RDKafkaErrorCode::InvalidDifferentRecord,
            ));
        }
        self.took
            .lock()
            .expect("lock")
            .push(String::from_utf8_lossy(record.value).into_owned());
        Ok(TAKEN)
    }
}

/// With only the dead-letter topic down, a healthy topic's records that failed only for a
/// refused record of their batch are still sent again and taken, and the records after them go
/// in the same pass: the dead-letter topic's outage neither strands them (they would meet the
/// refused record in every later batch, and fail with it again) nor holds back their topic.
#[tokio::test(start_paused = true)]
async fn a_dead_letter_topic_down_does_not_strand_the_casualties_of_a_healthy_topic() {
    for fails in [
        ProduceError::Timeout,
        ProduceError::Unavailable("LeaderNotAvailable".into()),
    ] {
        let (_dir, spool) = spool_of(&[]).await;
        append_statuses(&spool, b"235", |_| None).await;
        let kafka = RefusedTwoDeadLetterDown {
            two_in_flight: Default::default(),
            took: Mutex::default(),
            fails: fails.clone(),
        };
        let twos = Batch {
            records: 2,
            bytes: 16 << 20,
            pace: None,
        };
        let metrics = Metrics::new(&[]).expect("metrics");
        let mut held = Held::default();
        pass(twos, &spool, &kafka, "dlq", &metrics, &mut held, &running()).await;
        assert_eq!(
            *kafka.took.lock().expect("lock"),
            ["3", "5"],
            "after one pass, the dead-letter topic failing with {fails:?}"
        );
        for _ in 0..4 {
            held = std::mem::take(&mut held).next_pass();
            pass(twos, &spool, &kafka, "dlq", &metrics, &mut held, &running()).await;
        }
        assert_eq!(
            spool.records(),
            1,
            "only the refused record stays ({fails:?})"
        );
    }
}

/// [`RefusingOldWithCasualties`] whose dead-letter topic goes quiet after `up_to` sends: every
/// later send of it is held until its deadline and fails as timed out, as librdkafka's
/// `message.timeout.ms` does with the topic's leader gone.
struct DeadLetterDownAfter {
    inner: RefusingOldWithCasualties,
    sends: std::sync::atomic::AtomicUsize,
    up_to: usize,
}

impl Sink for DeadLetterDownAfter {
    async fn send(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        let n = self.sends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n >= self.up_to && record.topic == "dlq" {
            tokio::time::sleep_until(deadline).await;
            return Err(ProduceError::Timeout);
        }
        self.inner.send(record, deadline).await
    }
}

/// The dead-letter topic's own records: an old one (refused for its time) and two fresh ones of
/// other conversations, failed for its refusal. Its re-send with a new time is the first send the
/// topic cannot take now: a failed re-send ends the moves, and the casualties, of that very
/// topic, are not sent again to wait out another replay timeout (at 9b1a6fe, the moves shared
/// one replay timeout and nothing was sent after them).
#[tokio::test(start_paused = true)]
async fn casualties_of_a_topic_whose_re_send_kafka_just_failed_are_not_sent_again() {
    let (_dir, spool) = spool_of(&[]).await;
    let fresh = |key: &str| SpooledRecord {
        key: Some(key.into()),
        timestamp_ms: wall_ms(),
        ..spooled("dlq")
    };
    for record in [spooled("dlq"), fresh("a"), fresh("b")] {
        spool.append(record).await.expect("append");
    }
    // The batch (3 sends) and the old one alone (1); the re-send with a new time is the 5th.
    let kafka = DeadLetterDownAfter {
        inner: RefusingOldWithCasualties::default(),
        sends: std::sync::atomic::AtomicUsize::new(0),
        up_to: 4,
    };
    let began = Instant::now();
    let (ended, _) = fresh_pass(SMALL, &spool, &kafka).await;
    let sends = kafka.sends.load(std::sync::atomic::Ordering::SeqCst);
    let took = began.elapsed();
    assert_eq!(spool.records(), 3, "{ended:?}");
    assert_eq!(
        (
            sends,
            took <= crate::delivery::REPLAY_TIMEOUT + Duration::from_secs(1)
        ),
        (5, true),
        "sends {sends}, the pass lasted {took:?}"
    );
}

/// [`RefusingOldWithCasualties`] for its first `answered` sends (the first batch), except for the
/// topics `down` from the start; then Kafka is down whole. Every send Kafka does not answer times
/// out at its deadline. Notes the topic of each send once down.
struct DownAfter {
    inner: RefusingOldWithCasualties,
    answered: usize,
    down: &'static [&'static str],
    sends: std::sync::atomic::AtomicUsize,
    late: Mutex<Vec<String>>,
}

impl Sink for DownAfter {
    async fn send(
        &self,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        use std::sync::atomic::Ordering::SeqCst;
        let late = self.sends.fetch_add(1, SeqCst) >= self.answered;
        if late {
            self.late.lock().expect("lock").push(record.topic.into());
        }
        if late || self.down.contains(&record.topic) {
            tokio::time::sleep_until(deadline).await;
            return Err(ProduceError::Timeout);
        }
        self.inner.send(record, deadline).await
    }
}

/// One pass, in batches of four, over a spool of `first` (topic, key, and whether the record is
/// older than its topics take) and then `more` topics of one record each, into a Kafka down after
/// its first batch but for `down`: the topics of the sends once Kafka was down, and how the pass
/// ended.
async fn pass_into_an_outage(
    first: &[(&str, Option<&str>, bool)],
    more: usize,
    down: &'static [&'static str],
) -> (Vec<String>, Pass) {
    let (_dir, spool) = spool_of(&[]).await;
    let now = wall_ms();
    let record = |topic: &str, key: Option<&str>, old: bool| SpooledRecord {
        key: key.map(Into::into),
        timestamp_ms: if old {
            spooled(topic).timestamp_ms
        } else {
            now
        },
        ..spooled(topic)
    };
    for &(topic, key, old) in first {
        spool.append(record(topic, key, old)).await.expect("append");
    }
    for i in 0..more {
        let other = record(&format!("t{i}"), Some("k"), false);
        spool.append(other).await.expect("append");
    }
    let kafka = DownAfter {
        inner: RefusingOldWithCasualties::default(),
        answered: 4,
        down,
        sends: Default::default(),
        late: Default::default(),
    };
    let fours = Batch {
        records: 4,
        ..SMALL
    };
    let (ended, _) = fresh_pass(fours, &spool, &kafka).await;
    (kafka.late.into_inner().expect("lock"), ended)
}

/// Kafka goes down just after answering a batch with refused records on two topics: the first
/// try alone times out and cuts the moves short, so the keyed casualty of the second topic is
/// not sent again. It holds only its conversation; counted as a Kafka failure of its topic, it
/// kept the "Kafka itself seems down" check (every topic that failed so is held) from passing,
/// and the pass went on sending a batch to every other topic of the spool, each waiting out a
/// whole replay timeout (found by a review).
#[tokio::test(start_paused = true)]
async fn a_casualty_left_behind_does_not_keep_a_pass_going_while_kafka_is_down() {
    let first = [
        ("a", Some("a1"), true),
        ("a", Some("a2"), false),
        ("b", Some("b1"), true),
        ("b", Some("b2"), false),
    ];
    let (late, ended) = pass_into_an_outage(&first, 16, &[]).await;
    // Down: the first try alone, then one whole batch of two topics or more (four here).
    assert_eq!(
        late.len(),
        5,
        "sends while Kafka was down; the pass ended {ended:?}"
    );
}

/// A batch where every record failed for Kafka's sake (two topics timing out, a refused record
/// whose try alone timed out) or only for that refused record's fault shows Kafka itself down:
/// the pass stops after it. A casualty left behind counted in the batch's size but not as a
/// failure, and the pass sent another whole batch into the outage (found by a review).
#[tokio::test(start_paused = true)]
async fn a_casualty_left_behind_by_an_outage_does_not_keep_the_pass_going() {
    let first = [
        ("a", Some("a1"), true),
        ("a", Some("a2"), false),
        ("x", Some("x1"), false),
        ("y", Some("y1"), false),
    ];
    let (late, ended) = pass_into_an_outage(&first, 8, &["x", "y"]).await;
    // Down: the try alone only; the batch itself showed Kafka down.
    assert_eq!(
        late.len(),
        1,
        "sends once Kafka was down; the pass ended {ended:?}"
    );
}

/// A keyless casualty is left behind only when the moves were cut short (a try alone Kafka
/// failed, their shared deadline, a stop) or its own topic is the dead-letter topic that just
/// failed a move: each a sign that Kafka cannot take records now. With no conversation to hold,
/// it holds its topic for the rest of the pass, as a failure of Kafka's would: the later keyless
/// records of that topic are not sent into the outage, each to wait out a replay timeout.
#[tokio::test(start_paused = true)]
async fn a_keyless_casualty_left_behind_holds_back_its_topic_for_the_rest_of_the_pass() {
    let first = [
        ("a", Some("a1"), true),
        ("b", None, false),
        ("c", Some("c1"), false),
        ("d", Some("d1"), false),
        ("b", None, false),
        ("b", None, false),
    ];
    let (late, ended) = pass_into_an_outage(&first, 8, &[]).await;
    // Down: the try alone, then what the next batch of four reads besides the two held records
    // of "b", which fails on two topics and so shows Kafka down.
    assert_eq!(late, ["a", "t0", "t1"], "the pass ended {ended:?}");
}

/// Refuses `x` for good; fails `y1` and `y2` with `InvalidDifferentRecord` in their batch, and
/// at their re-send refuses `y1` (its time ran out meanwhile, say) and fails `y2` again for it;
/// takes the rest.
#[derive(Default)]
struct RefusedAgainAtTheResend {
    sends: Mutex<std::collections::HashMap<String, usize>>,
    took: Mutex<Vec<String>>,
}

impl Sink for RefusedAgainAtTheResend {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        use rdkafka::types::RDKafkaErrorCode as C;
        let value = String::from_utf8_lossy(record.value).into_owned();
        let n = {
            let mut sends = self.sends.lock().expect("lock");
            let n = sends.entry(value.clone()).or_default();
            *n += 1;
            *n
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        if record.topic != "dlq" {
            match (value.as_str(), n) {
                ("x", _) | ("y1", 2) => return Err(refused_as(C::InvalidRecord)),
                ("y1" | "y2", 1) | ("y2", 2) => return Err(refused_as(C::InvalidDifferentRecord)),
                _ => {}
            }
        }
        self.took.lock().expect("lock").push(value);
        Ok(TAKEN)
    }
}

/// The moves ran whole and the dead-letter topic took its copy, but a keyless casualty failed
/// again at its re-send (another record of the re-sent batch refused there): it is left behind
/// with neither sign of Kafka unable to take records, and the rest of its topic still goes in
/// this pass.
#[tokio::test(start_paused = true)]
async fn a_keyless_casualty_failed_again_at_its_resend_does_not_hold_back_its_topic() {
    let (_dir, spool) = spool_of(&[]).await;
    for value in ["x", "y1", "y2", "z"] {
        let r = SpooledRecord {
            key: None,
            value: value.as_bytes().to_vec(),
            ..spooled("b")
        };
        spool.append(r).await.expect("append");
    }
    let kafka = RefusedAgainAtTheResend::default();
    let three = Batch {
        records: 3,
        ..SMALL
    };
    let _ = fresh_pass(three, &spool, &kafka).await;
    let took = kafka.took.lock().expect("lock").clone();
    assert!(
        took.contains(&"z".to_string()),
        "took in the pass: {took:?}"
    );
}
