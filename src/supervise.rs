//! The bridge's background tasks (replay, producer replacement, readiness, file watches): a panic
//! in one stops the bridge, whose restart starts it again, instead of leaving it serving without
//! it (a dead readiness task would keep `/readyz` at its last answer, a dead replay would leave
//! answered records in the spool until the next restart).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Spawns watched tasks.
#[derive(Clone, Debug)]
pub struct Supervisor(mpsc::UnboundedSender<String>);

/// Where the first panic of a watched task is reported.
#[derive(Debug)]
pub struct Failures(mpsc::UnboundedReceiver<String>);

pub fn supervisor() -> (Supervisor, Failures) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Supervisor(tx), Failures(rx))
}

impl Supervisor {
    /// Spawns `task`; if it panics, [`Failures::first`] says which and why. Aborting the handle
    /// cancels the task, as for a plain spawn.
    pub fn spawn<F>(&self, name: &'static str, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let failures = self.0.clone();
        tokio::spawn(async move {
            if let Err(panic) = AssertUnwindSafe(task).catch_unwind().await {
                let _ = failures.send(format!("the {name} task panicked: {}", message(&*panic)));
            }
        })
    }
}

impl Failures {
    /// Resolves with the first panic of a watched task; never while none panics.
    pub async fn first(&mut self) -> String {
        match self.0.recv().await {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }

    /// A panic reported already, without waiting: at the end of shutdown, one that came during
    /// the drain, when no one waited for [`Failures::first`] any more.
    pub fn reported(&mut self) -> Option<String> {
        self.0.try_recv().ok()
    }
}

/// Why a task told to stop is cancelled before it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// It did not stop in time: worth a warning.
    Late,
    /// For a reason the caller has logged already (no broker connected to deliver replay's
    /// round, say): a warning after it would call an expected cut a fault.
    Explained,
}

/// Waits for a task told to stop until `deadline`; then cancels it and waits for it to drop
/// what it holds (the spool's handle, say). A file watch blocked in a read (a hung secrets
/// mount) would otherwise hold shutdown until the pod is killed.
pub async fn join_by(task: JoinHandle<()>, deadline: Instant, name: &str) {
    let late = async move {
        tokio::time::sleep_until(deadline).await;
        GiveUp::Late
    };
    join_until(task, late, name).await;
}

/// [`join_by`], giving up when `give_up` resolves.
pub async fn join_until(
    mut task: JoinHandle<()>,
    give_up: impl Future<Output = GiveUp>,
    name: &str,
) {
    tokio::select! {
        biased;
        _ = &mut task => {}
        why = give_up => {
            match why {
                GiveUp::Late => tracing::warn!(
                    task = name,
                    "a background task did not stop in time; cancelled"
                ),
                GiveUp::Explained => tracing::debug!(task = name, "a background task cancelled"),
            }
            task.abort();
            let _ = task.await;
        }
    }
}

/// A panic's message, when it has one.
pub(crate) fn message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_task_that_does_not_stop_in_time_is_cancelled() {
        let (supervisor, _failures) = supervisor();
        let (dropped_tx, dropped) = tokio::sync::oneshot::channel::<()>();
        let stuck = supervisor.spawn("auth file watch", async move {
            let _guard = dropped_tx;
            std::future::pending::<()>().await;
        });
        let started = Instant::now();
        let deadline = started + Duration::from_secs(2);
        join_by(stuck, deadline, "auth file watch").await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // Cancelled: the task's future was dropped with what it held.
        assert!(dropped.await.is_err());
        // One that stops is waited for, not cut short.
        let quick = supervisor.spawn("readiness", tokio::time::sleep(Duration::from_millis(300)));
        let started = Instant::now();
        join_by(quick, started + Duration::from_secs(2), "readiness").await;
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        // Several share one deadline: a second stuck task adds no wait once it has passed.
        let stuck = supervisor.spawn("Kafka producers", std::future::pending());
        let started = Instant::now();
        join_by(stuck, deadline, "Kafka producers").await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    /// Shutdown closes the spool right after: a cancelled task must have dropped what it held
    /// (the spool's handle, say) by the time `join_by` returns, not at the runtime's next turn.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_task_has_dropped_what_it_held_when_the_join_returns() {
        let (supervisor, _failures) = supervisor();
        let (held, mut dropped) = tokio::sync::oneshot::channel::<()>();
        let stuck = supervisor.spawn("auth file watch", async move {
            let _held = held;
            std::future::pending::<()>().await;
        });
        join_by(stuck, Instant::now(), "auth file watch").await;
        assert_eq!(
            dropped.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed),
            "still held after the join returned"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_the_caller_explained_is_no_warning_and_a_late_task_is() {
        // The test's runtime has one thread, so the thread's default covers its tasks.
        let (kept, _default) = crate::telemetry::Kept::on_this_thread();
        let (supervisor, _failures) = supervisor();

        let stuck = supervisor.spawn("replay", std::future::pending());
        join_until(stuck, async { GiveUp::Explained }, "replay").await;
        assert_eq!(
            kept.text(),
            "",
            "an explained cut is logged by its caller only"
        );

        let stuck = supervisor.spawn("replay", std::future::pending());
        join_until(stuck, async { GiveUp::Late }, "replay").await;
        let warned = kept.text();
        assert!(
            warned.contains("WARN") && warned.contains("did not stop in time"),
            "{warned}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_is_reported_with_its_name_and_message() {
        let (supervisor, mut failures) = supervisor();
        let quiet = supervisor.spawn("quiet", async {});
        quiet.await.expect("ended");
        let waiting = tokio::time::timeout(Duration::from_secs(60), failures.first()).await;
        assert!(waiting.is_err(), "a task that returns is no failure");

        let id = 7;
        let task = supervisor.spawn("replay", async move { panic!("record {id} vanished") });
        task.await.expect("the panic was caught");
        assert_eq!(
            failures.first().await,
            "the replay task panicked: record 7 vanished"
        );
        drop(supervisor.spawn("readiness", async { panic!("static") }));
        assert_eq!(
            failures.first().await,
            "the readiness task panicked: static"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_no_one_waited_for_is_still_reported_afterwards() {
        let (supervisor, mut failures) = supervisor();
        supervisor.spawn("quiet", async {}).await.expect("ended");
        assert_eq!(failures.reported(), None);
        let task = supervisor.spawn("replay", async { panic!("in the drain") });
        task.await.expect("the panic was caught");
        assert_eq!(
            failures.reported().as_deref(),
            Some("the replay task panicked: in the drain")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_aborted_task_is_cancelled_and_no_failure() {
        let (supervisor, mut failures) = supervisor();
        let task = supervisor.spawn("replay", std::future::pending());
        task.abort();
        assert!(task.await.expect_err("aborted").is_cancelled());
        let waiting = tokio::time::timeout(Duration::from_secs(60), failures.first()).await;
        assert!(waiting.is_err());
    }
}
