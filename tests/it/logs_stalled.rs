//! A log reader that stops reading (a container runtime whose pipe is full) costs log lines,
//! counted, never the answer of a request: the bridge writes stderr from a thread of its own.

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::process::{ChildStderr, Command, Stdio};
use std::time::Duration;

use crate::common::{stop_with, KillOnDrop, STATUS};

const BIN: &str = env!("CARGO_BIN_EXE_qikchat-bridge");

/// Enough "accepted" lines at debug to fill a pipe (64 KiB) and the writer's buffer several times.
const REQUESTS: usize = 6000;

/// The bridge in embedded mode with a debug line for each accepted request, its log read up to
/// the line that names its ports; returns it, its unread log and those ports. Its stdout is a
/// closed pipe: serving writes nothing there, and a write would fail.
async fn started() -> (KillOnDrop, BufReader<ChildStderr>, u16, u16) {
    let mut bridge = KillOnDrop(
        Command::new(BIN)
            .args(common::ANY_PORTS)
            .args(["--shutdown-delay", "0s"])
            .env_clear()
            // A line for each accepted request.
            .env("RUST_LOG", "warn,qikchat_bridge=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the bridge"),
    );
    drop(bridge.stdout.take());
    let mut log = BufReader::new(bridge.stderr.take().expect("stderr"));
    let (port, admin) = loop {
        let mut line = String::new();
        assert!(log.read_line(&mut line).expect("a log line") > 0, "ended");
        if let Some(ports) = common::ports_in(&line) {
            break ports;
        }
    };
    common::wait_ready_at(admin).await;

    (bridge, log, port, admin)
}

/// `log_lines_dropped_total` as the bridge's admin port at `admin` shows it now.
async fn dropped_lines(admin: u16) -> f64 {
    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("qikchat_bridge_log_lines_dropped_total "))
        .expect("the counter")
        .parse()
        .expect("a number");
    dropped
}

/// [`REQUESTS`] webhooks from 8 connections, each answered 200 within 10 s.
async fn flood(port: u16) {
    let url = format!("http://127.0.0.1:{port}/webhook");
    let http = reqwest::Client::new();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (http, url) = (http.clone(), url.clone());
        senders.spawn(async move {
            for _ in 0..REQUESTS / 8 {
                let answer = http
                    .post(&url)
                    .basic_auth("testuser", Some("testpass"))
                    .body(STATUS)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .expect("an answer while the log is not read");
                assert_eq!(answer.status(), 200);
            }
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent.expect("sender");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_reader_that_stops_reading_costs_counted_log_lines_and_no_answer() {
    let (mut bridge, mut log, port, admin) = started().await;
    // From here on nobody reads the log.
    flood(port).await;
    let dropped = dropped_lines(admin).await;
    assert!(dropped > 0.0, "{dropped}");
    assert!(dropped < REQUESTS as f64, "most lines wait for the reader");

    // Read again: what was kept comes out in whole lines, and so does the shutdown.
    let reader = std::thread::spawn(move || {
        let mut rest = Vec::new();
        log.read_to_end(&mut rest).expect("the rest of the log");
        rest
    });
    assert!(stop_with(&mut bridge, "-TERM").success());
    let rest = String::from_utf8(reader.join().expect("reader")).expect("UTF-8");
    for line in rest.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("a whole JSON line");
    }
    assert!(rest.contains(r#""message":"stopped""#), "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_pipe_left_full_does_not_hold_up_the_exit() {
    let (mut bridge, log, port, _) = started().await;
    flood(port).await;
    // Nobody reads: the lines still buffered get about a second at exit, then are given up.
    let signalled = std::time::Instant::now();
    assert!(stop_with(&mut bridge, "-TERM").success());
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "{:?}",
        signalled.elapsed()
    );
    drop(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_lost_to_a_closed_stderr_are_counted_as_dropped() {
    let (mut bridge, log, port, admin) = started().await;
    drop(log);
    flood(port).await;
    // The writer threads lose each line to EPIPE: some may still be on their way.
    common::eventually("lost lines counted", async || {
        dropped_lines(admin).await >= REQUESTS as f64 / 2.0
    })
    .await;
    assert!(stop_with(&mut bridge, "-TERM").success());
}
