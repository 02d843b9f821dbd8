//! Unit tests of replacing a producer that librdkafka has declared failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::*;

/// A sink whose producer fails when told to, and which notes when it was replaced.
#[derive(Default)]
struct Fake {
    signal: Notify,
    failed: AtomicBool,
    /// How many replacements fail before one works.
    failing_replacements: std::sync::atomic::AtomicUsize,
    replaced_at: Mutex<Vec<Duration>>,
    start: Mutex<Option<Instant>>,
}

impl Fake {
    fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        self.signal.notify_one();
    }

    fn replaced_at(&self) -> Vec<Duration> {
        self.replaced_at.lock().unwrap().clone()
    }
}

impl Replaceable for Fake {
    fn fatal_signal(&self) -> &Notify {
        &self.signal
    }

    fn failure(&self) -> Option<String> {
        self.failed
            .load(Ordering::SeqCst)
            .then(|| "a sequence gap".to_string())
    }

    fn role_label(&self) -> &'static str {
        "webhooks"
    }

    async fn replace(self: Arc<Self>) -> Result<(), String> {
        let start = self.start.lock().unwrap().expect("started");
        self.replaced_at.lock().unwrap().push(start.elapsed());
        if self
            .failing_replacements
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err("rd_kafka_new failed".into());
        }
        self.failed.store(false, Ordering::SeqCst);
        Ok(())
    }
}

fn millis(ms: &[u64]) -> Vec<Duration> {
    ms.iter().map(|&ms| Duration::from_millis(ms)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_producer_that_keeps_failing_is_replaced_at_once_then_twice_as_late_each_time_up_to_a_minute(
) {
    let fake = Arc::new(Fake::default());
    *fake.start.lock().unwrap() = Some(Instant::now());
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(replace_on_fatal(fake.clone(), stop));
    // Each new producer fails as soon as it is in place.
    for _ in 0..9 {
        fake.fail();
        while fake.failed.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Pauses of 1, 2, 4, ... 32 s, then 60 s rather than 64.
    assert_eq!(
        fake.replaced_at(),
        millis(&[0, 1_000, 3_000, 7_000, 15_000, 31_000, 63_000, 123_000, 183_000])
    );
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_replacement_that_failed_is_tried_again_without_another_wake_up() {
    let fake = Arc::new(Fake::default());
    *fake.start.lock().unwrap() = Some(Instant::now());
    fake.failing_replacements.store(2, Ordering::SeqCst);
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(replace_on_fatal(fake.clone(), stop));
    // One fatal error, and nothing more: no traffic reaches an unready pod.
    fake.fail();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(fake.replaced_at(), millis(&[0, 1_000, 3_000]));
    assert!(fake.failure().is_none(), "replaced in the end");
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn after_a_quiet_while_a_failure_is_replaced_at_once_and_the_pace_starts_over() {
    let fake = Arc::new(Fake::default());
    *fake.start.lock().unwrap() = Some(Instant::now());
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(replace_on_fatal(fake.clone(), stop));
    let settle = || tokio::time::sleep(Duration::from_millis(10));
    fake.fail();
    settle().await;
    fake.fail();
    // Quiet for longer than twice the longest pause.
    tokio::time::sleep(Duration::from_secs(200)).await;
    fake.fail();
    settle().await;
    fake.fail();
    while fake.failed.load(Ordering::SeqCst) {
        settle().await;
    }
    // Without the fresh start, the fourth would have waited 4 s, until 204.01.
    assert_eq!(fake.replaced_at(), millis(&[0, 1_000, 200_010, 201_010]));
    // A wake-up without a failure (the replaced producer's last records) replaces nothing.
    fake.signal.notify_one();
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(fake.replaced_at().len(), 4);
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

/// A failure that nothing announces (librdkafka's error callback names a fatal error by its cause,
/// and no log line or delivery report may come) is found by the task's own look, within a second.
#[tokio::test(start_paused = true)]
async fn a_failure_nothing_announces_is_found_within_a_second() {
    let fake = Arc::new(Fake::default());
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(replace_on_fatal(fake.clone(), stop));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    *fake.start.lock().unwrap() = Some(Instant::now());
    fake.failed.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.replaced_at(), millis(&[500]));
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

/// Shutdown stops the task in its pause after a replacement too, which lasts up to a minute:
/// otherwise it is cancelled only when the watches' shared wait runs out, holding the pod's exit
/// that long and warning that a task did not stop in time.
#[tokio::test(start_paused = true)]
async fn a_stop_during_the_pause_after_a_replacement_ends_the_task_at_once() {
    let fake = Arc::new(Fake::default());
    *fake.start.lock().unwrap() = Some(Instant::now());
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(replace_on_fatal(fake.clone(), stop));
    fake.fail();
    while fake.failed.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Within the 1 s pause after the replacement.
    let stopped_at = Instant::now();
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(stopped_at.elapsed(), Duration::ZERO);
}
