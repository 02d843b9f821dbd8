//! The bridge itself run as a process, as the README's run command starts it: with no Kafka
//! settings on its embedded Kafka with the seed credential, and ended by a signal with exit 0.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{ChildStderr, Command, Stdio};
use std::time::Duration;

use crate::common::{stop_with, KillOnDrop, Spawned, TEXT};

const BIN: &str = env!("CARGO_BIN_EXE_qikchat-bridge");

/// The bridge with no Kafka settings at all (embedded mode), on ports the kernel picks.
fn start_embedded() -> Spawned {
    start_embedded_with(&["--shutdown-delay", "0s"])
}

fn start_embedded_with(args: &[&str]) -> Spawned {
    Spawned::start(
        Command::new(BIN)
            .args(common::ANY_PORTS)
            .args(args)
            .env_clear()
            .env("RUST_LOG", common::LOG_FILTER)
            .stdout(Stdio::null()),
    )
}

/// Started in embedded mode without waiting for it, with its log at hand (`RUST_LOG=filter`).
fn start_reading_log(args: &[&str], filter: &str) -> (KillOnDrop, BufReader<ChildStderr>) {
    start_reading_log_in(&common::ANY_PORTS, args, filter)
}

/// [`start_reading_log`] with `ports_and_format` in place of [`common::ANY_PORTS`].
fn start_reading_log_in(
    ports_and_format: &[&str],
    args: &[&str],
    filter: &str,
) -> (KillOnDrop, BufReader<ChildStderr>) {
    let mut child = KillOnDrop(
        Command::new(BIN)
            .args(ports_and_format)
            .args(args)
            .env_clear()
            .env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the bridge"),
    );
    let log = BufReader::new(child.stderr.take().expect("stderr"));
    (child, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_settings_the_bridge_runs_on_its_embedded_kafka_and_takes_the_seed_credential() {
    let mut spawned = start_embedded();
    let (port, admin) = (spawned.port, spawned.admin);
    common::wait_ready_at(admin).await;
    let http = reqwest::Client::new();
    let post = |user: &'static str, pass: &'static str| {
        http.post(format!("http://127.0.0.1:{port}/webhook"))
            .basic_auth(user, Some(pass))
            .header("content-type", "application/json")
            .body(TEXT)
            .send()
    };
    let accepted = post("testuser", "testpass").await.expect("answer");
    assert_eq!(accepted.status(), 200, "the record reached its topic");
    let wrong = post("testuser", "not-the-password").await.expect("answer");
    assert_eq!(wrong.status(), 401);
    assert!(stop_with(&mut spawned.child, "-TERM").success());
    // Named by its user, without the password, even though that one is public.
    let log = spawned.log_to_end();
    assert!(
        log.lines()
            .any(|l| l.contains("example credential") && l.contains(r#""user":"testuser""#)),
        "{log}"
    );
    assert!(!log.contains("testpass"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_and_sighup_stop_the_bridge_as_sigterm_does_with_exit_0() {
    for signal in ["-INT", "-HUP"] {
        let mut bridge = start_embedded();
        common::wait_ready_at(bridge.admin).await;
        let status = stop_with(&mut bridge.child, signal);
        assert!(status.success(), "{signal}: {status}");
    }
}

/// In a container the bridge is PID 1, for which the kernel drops a signal that has no handler:
/// one installed only once the listener serves would lose a SIGTERM sent while the producer and
/// the spool start, and the pod would wait out its whole grace period. Outside a container the
/// same gap shows as the default action killing the process instead of a clean exit 0.
#[test]
fn sigterm_during_start_up_stops_the_bridge_with_exit_0() {
    for _ in 0..5 {
        // Not `Spawned`, which waits for the bridge to be up: the signal must come before.
        let (mut child, mut log) = start_reading_log(&[], "warn");
        // The first line (the embedded-mode warning) comes before the producer is made.
        let mut first = String::new();
        log.read_line(&mut first).expect("a log line");
        assert!(first.contains("EMBEDDED KAFKA"), "{first}");
        let status = stop_with(&mut child, "-TERM");
        assert!(
            status.success(),
            "a SIGTERM during start-up ended the bridge with {status}"
        );
    }
}

/// Text asked for a file or a pipe comes without colour codes: they belong to a terminal.
#[test]
fn text_logs_to_a_pipe_are_plain() {
    let ports = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let (mut child, mut log) = start_reading_log_in(&ports, &["--log-format", "text"], "warn");
    let mut first = String::new();
    log.read_line(&mut first).expect("a log line");
    assert!(stop_with(&mut child, "-TERM").success());
    assert!(
        first.contains("WARN") && first.contains("EMBEDDED KAFKA"),
        "{first:?}"
    );
    assert!(!first.contains('\x1b'), "colour codes in {first:?}");
}

/// By default a file or a pipe (a container's log) gets JSON lines, a terminal text: the
/// harness's processes all name `--log-format`, so nothing saw the default turn (found by
/// mutation testing).
#[test]
fn by_default_logs_to_a_pipe_are_json_lines() {
    let ports = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let (mut child, mut log) = start_reading_log_in(&ports, &[], "warn");
    let mut first = String::new();
    log.read_line(&mut first).expect("a log line");
    assert!(stop_with(&mut child, "-TERM").success());
    let line: serde_json::Value = serde_json::from_str(&first).expect("a JSON line");
    assert_eq!(line["level"], "WARN", "{first:?}");
}

/// A log reader that goes away (a closed pipe, `| head`) must cost log lines only: a write error
/// reported with `eprintln!` panicked in every log call. Where the SIGTERM handler's panicked the
/// bridge ran on deaf to SIGTERM; elsewhere it ended with a panic instead of exit 0.
#[test]
fn sigterm_still_stops_the_bridge_after_its_log_reader_has_gone() {
    let (mut child, mut log) = start_reading_log(&["--shutdown-delay", "0s"], common::LOG_FILTER);
    let mut line = String::new();
    while !line.contains("accepting webhooks") {
        line.clear();
        assert!(
            log.read_line(&mut line).expect("a log line") > 0,
            "the log ended"
        );
    }
    drop(log);
    let status = stop_with(&mut child, "-TERM");
    assert!(status.success(), "ended with {status}");
}

/// Under Kubernetes the drain ends by itself (or by SIGKILL after the grace period); run by hand,
/// a second Ctrl-C ends it without leaving SIGKILL as the only way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_cuts_an_hour_long_drain_short_with_exit_0() {
    let mut bridge = start_embedded_with(&["--shutdown-delay", "1h"]);
    common::wait_ready_at(bridge.admin).await;
    let sent = Command::new("kill")
        .args(["-TERM", &bridge.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let http = reqwest::Client::new();
    common::eventually("unready: the drain began", async || {
        let url = format!("http://127.0.0.1:{}/readyz", bridge.admin);
        http.get(url).send().await.is_ok_and(|r| r.status() == 503)
    })
    .await;
    assert!(stop_with(&mut bridge.child, "-TERM").success());
}

/// A limit the volume cannot hold would fill the volume first, which stops the bridge at each
/// write, where a full spool only answers 503: said at start-up, before any record is at stake.
#[test]
fn a_spool_limit_larger_than_its_volume_is_warned_of_at_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().display().to_string();
    // 1 EB: more than any volume here.
    let args = [
        "--spool-dir",
        &spool,
        "--spool-max-bytes",
        "1000000000000000000",
    ];
    let (mut child, log) = start_reading_log(&args, "info");
    let mut lines = Vec::new();
    for line in log.lines() {
        let line = line.expect("a log line");
        let serving = line.contains("accepting webhooks");
        lines.push(line);
        if serving {
            break;
        }
    }
    assert!(stop_with(&mut child, "-TERM").success());
    let warned = lines
        .iter()
        .find(|l| l.contains("too small for --spool-max-bytes"))
        .unwrap_or_else(|| panic!("no warning in {lines:#?}"));
    assert!(
        warned.contains(r#""level":"WARN""#)
            && warned.contains(r#""max_bytes":1000000000000000000"#),
        "{warned}"
    );
}

#[test]
fn a_port_in_use_stops_start_up_with_exit_1_naming_the_listener_that_could_not_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    for (flag, other) in [
        ("--listen", "--admin-listen"),
        ("--admin-listen", "--listen"),
    ] {
        let log =
            common::failed_start(&[flag, &addr, other, "127.0.0.1:0", "--log-format", "json"]);
        let line = log
            .lines()
            .find(|l| l.contains("cannot bind"))
            .unwrap_or_else(|| panic!("{log}"));
        assert!(line.contains(&format!("{flag} {addr}: ")), "{line}");
    }
}

/// At `--max-connections` accepting pauses and new clients wait in the kernel's queue: a queue
/// of 128 (`TcpListener::bind`'s) dropped the SYNs of the rest, which clients send again only a
/// second later.
#[test]
fn clients_beyond_max_connections_wait_in_a_long_accept_queue_instead_of_being_dropped() {
    let mut spawned = start_embedded_with(&["--shutdown-delay", "0s", "--max-connections", "1"]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], spawned.port));
    let connect = || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(800));
    let mut held = Vec::new();
    while held.len() < 400 {
        match connect() {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    let queued = held.len();
    drop(held);
    assert!(stop_with(&mut spawned.child, "-TERM").success());
    // The kernel caps the queue at net.core.somaxconn (4096 here, and since Linux 5.4).
    let cap: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("somaxconn")
        .trim()
        .parse()
        .expect("a number");
    assert!(
        queued >= cap.min(400),
        "{queued} connections queued before one was dropped (somaxconn {cap})"
    );
}
