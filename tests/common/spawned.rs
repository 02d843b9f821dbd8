//! A bridge started as a process, on ports the kernel picks as the bridge binds them and read back
//! from its "accepting webhooks" log line: a port found free beforehand can be taken by another
//! process before the child binds it. Its log is kept for asserts.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Flags that let the kernel pick both ports, with the log in a form the harness reads.
pub const ANY_PORTS: [&str; 6] = [
    "--listen",
    "127.0.0.1:0",
    "--admin-listen",
    "127.0.0.1:0",
    "--log-format",
    "json",
];

/// `RUST_LOG` for a spawned bridge: warnings, and the start-up line that names its ports.
pub const LOG_FILTER: &str = "warn,qikchat_bridge=info";

pub struct Spawned {
    /// Killed when the `Spawned` is dropped: a test that fails must not leave its bridge running.
    pub child: KillOnDrop,
    pub port: u16,
    pub admin: u16,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Spawned {
    /// Starts `command`, which must pass [`ANY_PORTS`] and [`LOG_FILTER`], with its stderr read
    /// by a thread; returns once the bridge has named its ports (within 30 s, or panics with its
    /// log).
    pub fn start(command: &mut Command) -> Spawned {
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the bridge");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let kept = log.clone();
        let reader = std::thread::spawn(move || {
            // Split on bytes: a line that is not UTF-8 must not end the capture.
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line);
                if let Some(ports) = ports_in(&line) {
                    let _ = tx.send(ports);
                }
                let mut kept = kept.lock().expect("log");
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((port, admin)) => Spawned {
                child: KillOnDrop(child),
                port,
                admin,
                log,
                reader: Some(reader),
            },
            Err(e) => {
                let _ = child.kill();
                let _ = reader.join();
                panic!(
                    "the bridge named no ports ({e}); its log:\n{}",
                    log.lock().expect("log")
                );
            }
        }
    }

    /// What the bridge has logged so far, while it runs.
    #[allow(dead_code)] // not every test binary uses it
    pub fn log_so_far(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// Everything the bridge logged, once it has exited and closed its stderr.
    pub fn log_to_end(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("log reader");
        }
        self.log.lock().expect("log").clone()
    }
}

/// A child process killed and reaped when dropped, so a failed assert leaves no process running.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The webhook and admin ports in the bridge's "accepting webhooks" line.
pub fn ports_in(line: &str) -> Option<(u16, u16)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["message"] != "accepting webhooks" {
        return None;
    }
    let port = |k: &str| Some(v[k].as_str()?.parse::<SocketAddr>().ok()?.port());
    Some((port("listen")?, port("admin")?))
}
