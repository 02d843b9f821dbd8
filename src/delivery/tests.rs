//! Replay unit tests with a fake Kafka: what leaves the spool, where it goes, what is counted.

use std::sync::Mutex;

use super::*;

/// A record the fake took: topic, key and headers.
type Took = (String, Option<String>, Vec<(String, String)>);

/// Acknowledges every record but those for the topics in `refuses`, which get `error`, and
/// remembers what it took.
struct FakeKafka {
    refuses: Vec<&'static str>,
    error: ProduceError,
    took: Mutex<Vec<Took>>,
}

impl FakeKafka {
    fn refusing(refuses: &[&'static str], error: ProduceError) -> Arc<FakeKafka> {
        Arc::new(FakeKafka {
            refuses: refuses.to_vec(),
            error,
            took: Mutex::new(Vec::new()),
        })
    }
}

impl Sink for FakeKafka {
    async fn send(&self, record: &Record<'_>, _: Instant) -> Result<Delivered, ProduceError> {
        if self.refuses.contains(&record.topic) {
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
        Ok(Delivered::Kafka {
            partition: 0,
            offset: took.len() as i64,
        })
    }
}

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

/// Spools a record for each topic, replays them into `kafka` for up to `wait` (paused
/// clock), and returns the spool and the metrics.
async fn replay_into(
    kafka: Arc<FakeKafka>,
    topics: &[&str],
    wait: Duration,
) -> (Arc<Spool>, Arc<Metrics>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 1 << 20, 1).expect("open");
    for topic in topics {
        spool.append(spooled(topic)).await.expect("append");
    }
    let metrics = Arc::new(Metrics::new(&[]).expect("metrics"));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(replay(
        spool.clone(),
        kafka,
        "dlq".into(),
        metrics.clone(),
        stop,
    ));
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
    assert_eq!(names, ["request-id", "body-sha256", "deadletter-reason"]);
    assert_eq!(
        headers[2].1,
        "Kafka refused the record on topic refused: record exceeds the broker's size limit"
    );
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
    let denied = ProduceError::Rejected("TopicAuthorizationFailed".into());
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
