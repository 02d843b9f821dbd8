//! Runs of the binary that end: a process that hangs is killed and fails its test, where
//! `Command::output` would wait for it (and CI for the test) for ever.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a run of the binary that ends by itself may take: far above the slowest (a `tail`
/// that waits out a 20 s idle timeout on a loaded machine), far below CI's patience.
pub const EXIT_LIMIT: Duration = Duration::from_secs(60);

/// [`Command::output`] with a bound.
pub trait OutputWithin {
    /// The process's status, stdout and stderr once it exits (its stdin closed, as `output`
    /// does). One still running after `limit` is killed, and the test fails with its stderr.
    fn output_within(&mut self, limit: Duration) -> Output;
}

impl OutputWithin for Command {
    fn output_within(&mut self, limit: Duration) -> Output {
        let mut child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the binary");
        let stdout = read_all(child.stdout.take().expect("stdout"));
        let stderr = read_all(child.stderr.take().expect("stderr"));
        let Some(status) = exited_within(&mut child, limit) else {
            let _ = child.kill();
            let _ = child.wait();
            // Whatever a child it left behind still holding the pipe may write later is not
            // waited for.
            let stderr = stderr
                .recv_timeout(Duration::from_secs(1))
                .unwrap_or_default();
            panic!(
                "still running after {limit:?}:\n{}",
                String::from_utf8_lossy(&stderr)
            )
        };
        Output {
            status,
            stdout: stdout.recv().expect("stdout"),
            stderr: stderr.recv().expect("stderr"),
        }
    }
}

/// All of `pipe`, read on a thread of its own so that a child filling one pipe cannot block on
/// it while the other is read.
fn read_all(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = sender.send(bytes);
    });
    receiver
}

/// The process's exit status once it exits, if it does within `within`.
pub fn exited_within(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
