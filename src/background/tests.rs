//! The shutdown of the background tasks: what is waited for, in which order, and for how long.

use super::*;

/// The watches share one wait: a hung secrets mount holds every file watch at once, and
/// each waited for in turn would add its own `WATCH_STOP_WAIT` to the pod's exit. Readiness
/// is waited for first, whole: its probe holds a handle of the producer destroyed next.
#[tokio::test(start_paused = true)]
async fn readiness_is_waited_for_then_stuck_watches_share_one_wait_not_one_each() {
    let (supervisor, _failures) = supervise::supervisor();
    let stuck = |name| named(&supervisor, name, std::future::pending());
    let background = Background {
        watches: vec![stuck("Kafka file watch"), stuck("auth file watch")],
        readiness: supervisor.spawn("readiness", tokio::time::sleep(Duration::from_secs(1))),
        replay: None,
        replay_sink: None,
        probe_topic: String::new(),
    };
    let (cut, _watching) = Cut::when(std::future::pending());
    let started = tokio::time::Instant::now();
    let replay_sink = background.stopped(Duration::ZERO, &cut).await;
    assert!(replay_sink.is_none());
    assert_eq!(started.elapsed(), Duration::from_secs(1) + WATCH_STOP_WAIT);
}

/// A cut (a second SIGTERM) ends the wait for replay's round at once, as it ends the drain's
/// other waits, not at `--flush-timeout`; the round is cancelled, its records stay spooled.
#[tokio::test(start_paused = true)]
async fn a_cut_ends_the_wait_for_replays_round_at_once() {
    let (supervisor, _failures) = supervise::supervisor();
    let (held, mut dropped) = tokio::sync::oneshot::channel::<()>();
    let background = Background {
        watches: Vec::new(),
        readiness: supervisor.spawn("readiness", async {}),
        replay: Some(supervisor.spawn("replay", async move {
            let _held = held;
            std::future::pending::<()>().await;
        })),
        replay_sink: None,
        probe_topic: String::new(),
    };
    let (cut, _watching) = Cut::when(async {});
    let started = tokio::time::Instant::now();
    let _ = background.stopped(Duration::from_secs(30), &cut).await;
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(
        dropped.try_recv(),
        Err(tokio::sync::oneshot::error::TryRecvError::Closed),
        "replay's round still runs"
    );
}

/// A replay round still running at shutdown is waited for, up to `replay_wait`: its records
/// leave the spool only once delivered, so a round cut at once would send them all again at the
/// next start. One that outlasts the wait is cancelled at its end, not waited out.
#[tokio::test(start_paused = true)]
async fn replays_round_is_waited_for_until_it_ends_or_the_wait_runs_out() {
    let (supervisor, _failures) = supervise::supervisor();
    let (cut, _watching) = Cut::when(std::future::pending());
    let (ended, mut finished) = tokio::sync::oneshot::channel::<()>();
    let background = Background {
        watches: Vec::new(),
        readiness: supervisor.spawn("readiness", async {}),
        replay: Some(supervisor.spawn("replay", async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = ended.send(());
        })),
        replay_sink: None,
        probe_topic: String::new(),
    };
    let started = tokio::time::Instant::now();
    let _ = background.stopped(Duration::from_secs(30), &cut).await;
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(finished.try_recv(), Ok(()), "the round was cut short");

    let background = Background {
        watches: Vec::new(),
        readiness: supervisor.spawn("readiness", async {}),
        replay: Some(supervisor.spawn("replay", std::future::pending())),
        replay_sink: None,
        probe_topic: String::new(),
    };
    let started = tokio::time::Instant::now();
    let _ = background.stopped(Duration::from_secs(30), &cut).await;
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

/// With no broker connected, no delivery can end replay's round: shutdown gives it up as soon as
/// a probe of replay's producer finds no broker, instead of holding the pod's exit for the whole
/// `replay_wait` while Kafka is down (its records stay spooled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_broker_connected_replays_round_is_not_waited_for() {
    let (supervisor, _failures) = supervise::supervisor();
    let (cut, _watching) = Cut::when(std::future::pending());
    let metrics = Arc::new(Metrics::new(&[]).expect("metrics"));
    // Nothing listens on port 9: no broker ever answers.
    let properties = BTreeMap::from([("bootstrap.servers".into(), "127.0.0.1:9".into())]);
    let sink = KafkaSink::new(&properties, metrics, ProducerRole::Replay).expect("producer");
    let background = Background {
        watches: Vec::new(),
        readiness: supervisor.spawn("readiness", async {}),
        replay: Some(supervisor.spawn("replay", std::future::pending())),
        replay_sink: Some(Arc::new(sink)),
        probe_topic: "whatsapp.message.status".into(),
    };
    let started = tokio::time::Instant::now();
    let replay_sink = background.stopped(Duration::from_secs(30), &cut).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?} for a round no broker could end",
        started.elapsed()
    );
    assert_eq!(
        replay_sink.map(|sink| Arc::strong_count(&sink)),
        Some(1),
        "the probe still holds replay's producer"
    );
}
