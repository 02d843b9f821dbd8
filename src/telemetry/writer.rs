//! The log's way to stderr: written by threads of their own, so that a log reader that falls
//! behind costs counted log lines, never a request's answer; warnings and errors in a queue apart.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tracing::{Level, Metadata};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;

/// Lines each queue holds for a stderr that does not take them, about 0.5 MiB of JSON lines:
/// minutes of the bridge's usual logging at info, where refusals are held to 10 lines a second
/// for each kind.
const BUFFERED_LINES: usize = 2048;

/// What the queues dropped, and what their writes lost, once [`ByLevel::stderr`] made them.
static DROPPED: OnceLock<Dropped> = OnceLock::new();

/// Log lines dropped so far: not taken by stderr in time, or lost to a failed write.
pub fn lines_dropped() -> u64 {
    DROPPED.get().map_or(0, Dropped::count)
}

#[derive(Debug)]
struct Dropped {
    queues: [ErrorCounter; 2],
    lost: Arc<AtomicU64>,
}

impl Dropped {
    fn count(&self) -> u64 {
        let queued: u64 = self.queues.iter().map(|c| c.dropped_lines() as u64).sum();
        queued + self.lost.load(Ordering::Relaxed)
    }
}

/// Warnings and errors, the reason for an exit among them, go through a queue of their own: a
/// flood of lines at lower levels (`debug` under load) that fills its queue cannot crowd them
/// out. The two queues' lines can reach stderr out of order; their timestamps give it.
#[derive(Debug, Clone)]
pub struct ByLevel {
    loud: NonBlocking,
    quiet: NonBlocking,
}

/// Holds the writer threads; dropped, each writes the lines still queued for up to about a second.
#[derive(Debug)]
#[must_use = "dropping it stops the log writer"]
pub struct Guard {
    queues: Vec<(NonBlocking, WorkerGuard)>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for (mut queue, guard) in self.queues.drain(..) {
            // tracing-appender's guard waits 100 ms for room in a full queue (a reader that
            // stopped reading), then prints to stdout that it could not stop its thread: a line
            // that is not the log's, and a panic, so exit 101, where stdout is a closed pipe.
            // A queue with no room for an empty line is left to the exit, which ends its thread.
            let dropped = queue.error_counter();
            let before = dropped.dropped_lines();
            let _ = queue.write(b"");
            if dropped.dropped_lines() > before {
                std::mem::forget(guard);
            } else {
                drop(guard);
            }
        }
    }
}

impl ByLevel {
    /// Queues over `loud` and `quiet`, and their drop counters.
    fn over<L, Q>(loud: L, quiet: Q) -> (ByLevel, Guard, [ErrorCounter; 2])
    where
        L: Write + Send + 'static,
        Q: Write + Send + 'static,
    {
        let queue = |name: &str| {
            NonBlockingBuilder::default()
                .lossy(true)
                .buffered_lines_limit(BUFFERED_LINES)
                .thread_name(name)
        };
        let (loud, loud_guard) = queue("log-writer-warn").finish(loud);
        let (quiet, quiet_guard) = queue("log-writer").finish(quiet);
        let counters = [loud.error_counter(), quiet.error_counter()];
        let guard = Guard {
            queues: vec![(loud.clone(), loud_guard), (quiet.clone(), quiet_guard)],
        };
        (ByLevel { loud, quiet }, guard, counters)
    }

    /// Both queues to stderr, counted in [`lines_dropped`].
    pub fn stderr() -> (ByLevel, Guard) {
        let lost = Arc::new(AtomicU64::new(0));
        let stderr = || Stderr { lost: lost.clone() };
        let (writer, guard, queues) = ByLevel::over(stderr(), stderr());
        let _ = DROPPED.set(Dropped { queues, lost });
        (writer, guard)
    }
}

impl<'a> MakeWriter<'a> for ByLevel {
    type Writer = NonBlocking;

    fn make_writer(&'a self) -> NonBlocking {
        self.quiet.clone()
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> NonBlocking {
        if *meta.level() <= Level::WARN {
            self.loud.clone()
        } else {
            self.quiet.clone()
        }
    }
}

/// stderr, counting each line a failed write loses (a closed pipe): the writer thread has no one
/// else to tell, and a line that never arrived is dropped as surely as one never queued.
struct Stderr {
    lost: Arc<AtomicU64>,
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write(buf)
    }

    fn write_all(&mut self, line: &[u8]) -> std::io::Result<()> {
        std::io::stderr()
            .write_all(line)
            .inspect_err(|_| _ = self.lost.fetch_add(1, Ordering::Relaxed))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Kept;
    use std::sync::{mpsc, Mutex};
    use std::time::{Duration, Instant};

    /// A stderr nobody reads: every write waits until the test ends.
    struct Stalled(Mutex<mpsc::Receiver<()>>);

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.lock().map(|r| r.recv());
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A stderr that takes a while over each line.
    struct Slow(Kept);

    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_millis(5));
            self.0.write(buf)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The last lines, the reason for an exit among them, are written before the exit (found by
    /// mutation testing: a guard always forgotten went unnoticed).
    #[test]
    fn dropped_the_guard_waits_for_the_lines_still_queued() {
        let (loud, quiet) = (Kept::default(), Kept::default());
        let (writer, guard, _) = ByLevel::over(Slow(loud.clone()), Slow(quiet.clone()));
        let subscriber = tracing_subscriber::fmt().with_writer(writer).finish();
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..10 {
                tracing::warn!(i, "stopping");
                tracing::info!(i, "stopped");
            }
        });
        drop(guard);
        assert_eq!(loud.text().lines().count(), 10);
        assert_eq!(quiet.text().lines().count(), 10);
    }

    #[test]
    fn a_flood_of_debug_lines_that_fills_its_queue_cannot_crowd_out_an_error() {
        let (release, stalled) = mpsc::channel();
        let kept = Kept::default();
        let (writer, guard, [loud, quiet]) =
            ByLevel::over(kept.clone(), Stalled(Mutex::new(stalled)));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_writer(writer)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..3 * BUFFERED_LINES {
                tracing::debug!(i, "a request");
            }
            tracing::error!("stopping: the reason");
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !kept.text().contains("the reason") {
            assert!(Instant::now() < deadline, "the error line never came");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            quiet.dropped_lines() > BUFFERED_LINES,
            "debug lines dropped"
        );
        assert_eq!(loud.dropped_lines(), 0);
        drop(release);
        drop(guard);
    }
}
