//! Cutting the drain short: once asked (a second SIGTERM or SIGINT), each of shutdown's waits
//! (the unready delay, the in-flight requests' grace, the producer's flush, replay's round) ends
//! at once, for an operator who would rather not wait and would otherwise reach for SIGKILL.
//!
//! Nothing answered 2xx is lost by it: those records are in Kafka or the spool already. Open
//! requests go unanswered (their senders retry) and records still queued, theirs and those of
//! requests answered with an error, are dropped; one already sent may be stored all the same,
//! and the sender's retry then duplicates it.

use std::future::Future;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::producer::Flushing;

/// How often a flush looks whether it was cut short.
const FLUSH_SLICE: Duration = Duration::from_millis(100);

/// Whether the drain was asked to end at once; cheap to clone into each step.
#[derive(Debug, Clone)]
pub struct Cut(watch::Receiver<bool>);

impl Cut {
    /// A cut that comes when `asked` resolves, watched for as long as the [`Watching`] lives.
    pub fn when(asked: impl Future<Output = ()> + Send + 'static) -> (Cut, Watching) {
        let (tx, rx) = watch::channel(false);
        let watching = tokio::spawn(async move {
            asked.await;
            tracing::warn!(
                "cutting the drain short: open requests are closed unanswered (their senders \
                 retry; a record already sent to Kafka may be stored all the same, and the retry \
                 then duplicates it) and records still queued are dropped; answered records are \
                 safe"
            );
            let _ = tx.send(true);
            // Kept, so that the receivers never see the sender gone as a cut.
            std::future::pending::<()>().await;
        });
        (Cut(rx), Watching(watching))
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the cut comes; never without one.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|cut| *cut).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// What `step` gives, or `None` once the cut comes (at once when it came before): a start-up
    /// step that hangs (a spool on a hung volume, the integrity check of a large one) must not
    /// outlast the signal that asked for an exit now.
    pub async fn unless_cut<T>(&self, step: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            () = self.wait() => None,
            out = step => Some(out),
        }
    }
}

/// The task that waits for the cut; it ends when this is dropped, however `run` ends.
#[derive(Debug)]
pub struct Watching(JoinHandle<()>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Flushes `producer` (see [`crate::producer::KafkaSink::flushing`]) within `timeout`, or until the cut; blocks,
/// so call it on a blocking thread.
pub fn flush(producer: &Flushing, timeout: Duration, cut: &Cut) -> Result<(), KafkaError> {
    let until = Instant::now() + timeout;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match producer.flush(left.min(FLUSH_SLICE)) {
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                if left > FLUSH_SLICE && !cut.is_set() => {}
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_step_is_given_up_once_the_cut_comes_and_left_alone_without_one() {
        let (asked, ask) = tokio::sync::oneshot::channel::<()>();
        let (cut, _watching) = Cut::when(async move {
            let _ = ask.await;
        });
        assert_eq!(cut.unless_cut(async { 7 }).await, Some(7));
        let hung = cut.unless_cut(std::future::pending::<()>());
        let _ = asked.send(());
        assert_eq!(hung.await, None, "the hung step gave way to the cut");
        assert_eq!(
            cut.unless_cut(async { 7 }).await,
            None,
            "after the cut, no step begins"
        );
    }

    /// The watch ends with `run` (which holds the `Watching`): a task left waiting for a cut no
    /// drain is left for would hold what its future holds (a signal's) and, once it came, warn
    /// of cutting a drain that is over.
    #[tokio::test(start_paused = true)]
    async fn the_wait_for_the_cut_ends_when_its_watching_is_dropped() {
        let (held, mut dropped) = tokio::sync::oneshot::channel::<()>();
        let (_cut, watching) = Cut::when(async move {
            let _held = held;
            std::future::pending::<()>().await;
        });
        drop(watching);
        let ended = tokio::time::timeout(Duration::from_secs(1), &mut dropped).await;
        assert!(
            matches!(ended, Ok(Err(_))),
            "the watch still runs: {ended:?}"
        );
    }
}
