//! `tail` reading through a broker that checks its SASL password, and saying so when refused.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::front::{Accepts, SaslFront};
use super::{cluster, BIN, KAFKA_PASSWORD, KAFKA_USER, TOPIC, WRONG_PASSWORD};
use crate::common::{self, TEXT};

/// `tail` run with `password` through `front` until it exits (killed after 40 s): (status code,
/// stdout, stderr, how long it ran).
fn tail_through(
    front: SocketAddr,
    password: &str,
    args: &[&str],
) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let mut child = common::KillOnDrop(
        Command::new(BIN)
            .arg("tail")
            .args(["--kafka-brokers", &front.to_string()])
            .args(args)
            .env_clear()
            .env("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
            .env("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
            .env("KAFKA_SASL_USERNAME", KAFKA_USER)
            .env("KAFKA_SASL_PASSWORD", password)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tail"),
    );
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if started.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    drop(child);
    (
        code,
        out.join().expect("stdout"),
        err.join().expect("stderr"),
        took,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_reads_through_sasl_and_says_so_when_the_password_is_refused() {
    let cluster = cluster();
    let front = SaslFront::start(
        &cluster.bootstrap_servers(),
        Accepts::user(KAFKA_USER, KAFKA_PASSWORD),
    )
    .await;
    // A record to read, produced straight to the mock.
    common::produce(&cluster.bootstrap_servers(), TOPIC, TEXT).await;
    let addr = front.addr;
    let (code, stdout, stderr, took) = tokio::task::spawn_blocking(move || {
        tail_through(
            addr,
            KAFKA_PASSWORD,
            &[
                "--from-beginning",
                "--count",
                "1",
                "--idle-timeout",
                "20s",
                TOPIC,
            ],
        )
    })
    .await
    .expect("tail");
    eprintln!("tail, right password: {code:?} in {took:?}");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("\"topic\":\"whatsapp.message.in\""),
        "{stdout}"
    );
    assert!(front.outcomes().iter().all(|(_, _, ok)| *ok));

    let (code, stdout, stderr, took) = tokio::task::spawn_blocking(move || {
        tail_through(
            addr,
            WRONG_PASSWORD,
            &["--from-beginning", "--idle-timeout", "5s", TOPIC],
        )
    })
    .await
    .expect("tail");
    eprintln!(
        "tail, wrong password: {code:?} in {took:?}\nstderr: {}",
        stderr.lines().take(8).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("Authentication failed"), "{stderr}");
    assert!(
        !format!("{stdout}{stderr}").contains(WRONG_PASSWORD),
        "{stdout}{stderr}"
    );
}
