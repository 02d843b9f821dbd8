//! The log's way to stderr: written by threads of their own, so that a log reader that falls
//! behind costs counted log lines, never a request's answer; warnings and errors in a queue apart.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

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
    queues: Vec<(NonBlocking, WorkerGuard, mpsc::Receiver<()>)>,
}

/// How long a dropped [`Guard`] waits for each queue's writer thread to write what it holds.
const LAST_LINES_WAIT: Duration = Duration::from_secs(1);

impl Drop for Guard {
    fn drop(&mut self) {
        for (mut queue, guard, written) in self.queues.drain(..) {
            // tracing-appender's guard waits 100 ms for room in a full queue (a reader that
            // stopped reading), then prints to stdout that it could not stop its thread: a line
            // that is not the log's, and a panic, so exit 101, where stdout is a closed pipe.
            // Room for an empty line is no room for its shutdown too (the empty line may take
            // the last), so its guard is dropped only once the writer has come to that line,
            // which says the lines before it are written; otherwise the exit ends the thread.
            let dropped = queue.error_counter();
            let before = dropped.dropped_lines();
            let _ = queue.write(b"");
            let reached =
                dropped.dropped_lines() == before && written.recv_timeout(LAST_LINES_WAIT).is_ok();
            if reached {
                // Its writer took every line up to the empty one: the queue has room again for
                // the shutdown, and the thread ends instead of waiting for lines forever.
                drop(guard);
            } else {
                std::mem::forget(guard);
            }
        }
    }
}

/// A queue's writer: says when it comes to the empty line a dropped [`Guard`] queued (a log
/// line is never empty), and writes the rest.
struct Marked<W> {
    inner: W,
    written: mpsc::Sender<()>,
}

impl<W: Write> Write for Marked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }

    fn write_all(&mut self, line: &[u8]) -> std::io::Result<()> {
        if line.is_empty() {
            let _ = self.written.send(());
            return Ok(());
        }
        self.inner.write_all(line)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `inner` as a queue's writer, and what tells when it came to a dropped [`Guard`]'s empty line.
fn marked<W: Write>(inner: W) -> (Marked<W>, mpsc::Receiver<()>) {
    let (written, at_mark) = mpsc::channel();
    (Marked { inner, written }, at_mark)
}

impl ByLevel {
    /// Queues over `loud` and `quiet`, and their drop counters.
    fn over<L, Q>(loud: L, quiet: Q) -> (ByLevel, Guard, [ErrorCounter; 2])
    where
        L: Write + Send + 'static,
        Q: Write + Send + 'static,
    {
        ByLevel::over_named(loud, quiet, "log-writer")
    }

    /// [`ByLevel::over`] with writer threads named after `prefix`.
    fn over_named<L, Q>(loud: L, quiet: Q, prefix: &str) -> (ByLevel, Guard, [ErrorCounter; 2])
    where
        L: Write + Send + 'static,
        Q: Write + Send + 'static,
    {
        let queue = |name: String| {
            NonBlockingBuilder::default()
                .lossy(true)
                .buffered_lines_limit(BUFFERED_LINES)
                .thread_name(&name)
        };
        let ((loud, loud_written), (quiet, quiet_written)) = (marked(loud), marked(quiet));
        let (loud, loud_guard) = queue(format!("{prefix}-warn")).finish(loud);
        let (quiet, quiet_guard) = queue(prefix.to_string()).finish(quiet);
        let counters = [loud.error_counter(), quiet.error_counter()];
        let guard = Guard {
            queues: vec![
                (loud.clone(), loud_guard, loud_written),
                (quiet.clone(), quiet_guard, quiet_written),
            ],
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
    use std::sync::Mutex;
    use std::time::Instant;

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

    /// A stderr nobody reads until `release` is dropped, that says when its writer thread began
    /// its first write.
    struct StalledAfter {
        release: Mutex<mpsc::Receiver<()>>,
        started: Option<mpsc::Sender<()>>,
        kept: Kept,
    }

    impl Write for StalledAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(started) = self.started.take() {
                let _ = started.send(());
            }
            let _ = self.release.lock().map(|r| r.recv());
            self.kept.write(buf)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A reader that resumes within the second still gets the last lines when its queue had
    /// room for one line only: the empty line that tries the queue took that room, and
    /// tracing-appender's guard, finding none for its shutdown, gave up after 100 ms and printed
    /// to stdout (a panic, exit 101, where stdout is a closed pipe).
    #[test]
    fn dropped_the_guard_of_a_stalled_queue_with_room_for_one_line_waits_for_its_lines() {
        let (release, stalled) = mpsc::channel();
        let (started, writing) = mpsc::channel();
        let kept = Kept::default();
        let stderr = StalledAfter {
            release: Mutex::new(stalled),
            started: Some(started),
            kept: kept.clone(),
        };
        let (writer, guard, [_, quiet]) = ByLevel::over(Kept::default(), stderr);
        let mut queue = writer.make_writer();
        queue
            .write_all(b"taken by the writer thread\n")
            .expect("queued");
        writing.recv().expect("the writer thread writes");
        for _ in 1..BUFFERED_LINES {
            queue.write_all(b"queued\n").expect("queued");
        }
        assert_eq!(quiet.dropped_lines(), 0, "room for one line is left");
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(release);
        });
        drop(guard);
        assert_eq!(kept.text().lines().count(), BUFFERED_LINES);
        reader.join().expect("reader");
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

    /// The writer threads named `prefix` in this process.
    fn writer_threads(prefix: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with(prefix))
            .count()
    }

    /// A dropped guard whose writers kept up ends their threads: forgotten every time, each guard
    /// left two threads waiting for lines for good (found by a review).
    #[test]
    fn a_dropped_guard_whose_writers_kept_up_ends_their_threads() {
        for _ in 0..20 {
            let (writer, guard, _) =
                ByLevel::over_named(Kept::default(), Kept::default(), "ends-writer");
            writer.make_writer().write_all(b"a line\n").expect("queued");
            drop(writer);
            drop(guard);
        }
        // A thread told to stop may take a moment to leave the task list.
        let began = Instant::now();
        while writer_threads("ends-writer") > 0 && began.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            writer_threads("ends-writer"),
            0,
            "writer threads left behind"
        );
    }
}
