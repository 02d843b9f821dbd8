//! While Kafka is down, librdkafka reports the outage at every failed connection attempt; the log
//! shows each kind of report once every 10 s, with how many were held back. Its own test binary:
//! it installs the process-wide subscriber.

mod common;

use std::time::Duration;

use common::{eventually, Captured, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_logged_once_every_ten_seconds_not_at_every_reconnect() {
    let captured = Captured::install("info");
    let app = TestApp::start(&[]).await;
    let start = captured.len();
    app.cluster.broker_down(1).expect("broker down");
    let down_lines = || {
        captured
            .text_from(start)
            .lines()
            .filter(|l| l.contains("AllBrokersDown"))
            .count()
    };
    eventually("the outage logged", async || down_lines() > 0).await;
    // Before, librdkafka's report of it came at every reconnect: 28 lines a second against one
    // stopped broker, so 2 s of it was dozens of lines.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = captured.text_from(start);
    for l in t.lines().filter(|l| !l.contains("AllBrokersDown")).take(30) {
        eprintln!("{}", &l[..l.len().min(250)]);
    }
    assert_eq!(down_lines(), 1);
    app.cluster.broker_up(1).expect("broker up");
}
