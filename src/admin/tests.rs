//! Unit tests of the admin listener: probes, metrics scrapes and their answers.

use super::*;

/// A read that panics (redb does on a damaged page) is answered 500, and the next scrape is
/// read, not refused as if the first still waited for the disk.
#[tokio::test]
async fn a_scrape_whose_read_panicked_does_not_hold_back_the_next() {
    let scraping = Arc::new(tokio::sync::Mutex::new(()));
    let timeout = Duration::from_secs(5);
    let failed = one_read(&scraping, timeout, || panic!("a damaged page")).await;
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let next = one_read(&scraping, timeout, || text(StatusCode::OK, "metrics\n")).await;
    assert_eq!(next.status(), StatusCode::OK);
}

/// Scrapers often come together (a Prometheus pair, a person with curl): a scrape that comes
/// while another's read runs waits its turn and is answered, not refused as if the disk had
/// stalled.
#[tokio::test]
async fn a_scrape_that_comes_while_another_reads_waits_its_turn() {
    let scraping = Arc::new(tokio::sync::Mutex::new(()));
    let timeout = Duration::from_secs(30);
    let (release, held) = std::sync::mpsc::channel::<()>();
    let first = tokio::spawn({
        let scraping = scraping.clone();
        async move {
            let read = move || {
                held.recv().expect("released");
                text(StatusCode::OK, "first\n")
            };
            one_read(&scraping, timeout, read).await
        }
    });
    // Bounded: a read that never takes the lock fails the test instead of hanging it.
    let taken = tokio::time::timeout(Duration::from_secs(10), async {
        while scraping.try_lock().is_ok() {
            tokio::task::yield_now().await;
        }
    });
    taken.await.expect("the first read holds the lock");
    let second = one_read(&scraping, timeout, || text(StatusCode::OK, "second\n"));
    tokio::pin!(second);
    tokio::select! {
        biased;
        refused = &mut second => panic!("answered while the first read ran: {refused:?}"),
        () = tokio::task::yield_now() => {}
    }
    release.send(()).expect("the first read waits");
    let first = first.await.expect("task");
    for (answer, body) in [(first, "first\n"), (second.await, "second\n")] {
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.into_body().into_inner().expect("full body"), body);
    }
}

/// A scrape that waited for another's read has only what is left of its timeout for its own: a
/// second full timeout would hold its connection twice as long as a scraper waits on a stalled
/// disk.
#[tokio::test(start_paused = true)]
async fn a_scrape_that_waited_its_turn_reads_within_what_is_left_of_its_timeout() {
    let scraping = Arc::new(tokio::sync::Mutex::new(()));
    let timeout = Duration::from_secs(5);
    let (release_first, first_held) = std::sync::mpsc::channel::<()>();
    let (release_second, second_held) = std::sync::mpsc::channel::<()>();
    // A scrape whose read holds until `held` is released or dropped.
    let scrape = |held: std::sync::mpsc::Receiver<()>| {
        let scraping = scraping.clone();
        tokio::spawn(async move {
            let read = move || {
                let _ = held.recv();
                text(StatusCode::OK, "read\n")
            };
            one_read(&scraping, timeout, read).await
        })
    };
    let first = scrape(first_held);
    while scraping.try_lock().is_ok() {
        tokio::task::yield_now().await;
    }
    let second = scrape(second_held);
    // Its clock starts once it runs.
    tokio::task::yield_now().await;
    tokio::time::advance(Duration::from_secs(4)).await;
    release_first.send(()).expect("the first read waits");
    assert_eq!(first.await.expect("task").status(), StatusCode::OK);
    // The second's read now runs, stuck; its timeout, counted from its arrival, passes.
    tokio::time::advance(Duration::from_secs(2)).await;
    for _ in 0..100 {
        if second.is_finished() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let finished = second.is_finished();
    drop(release_second);
    assert!(
        finished,
        "still reading 6 s after a scrape with a 5 s timeout came"
    );
    assert_eq!(
        second.await.expect("task").status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// A 405 for anything but GET and HEAD, saying which are allowed (RFC 9110, 15.5.6).
#[test]
fn only_get_and_head_are_answered_and_a_405_says_which_are_allowed() {
    let (health, metrics) = (Health::default(), Metrics::new(&[]).expect("metrics"));
    let ask = |method: Method| {
        let req = Request::builder().method(method).uri("/livez").body(());
        answer(&req.expect("request"), &health, &metrics)
    };
    for method in [Method::GET, Method::HEAD] {
        assert_eq!(ask(method.clone()).status(), StatusCode::OK, "{method}");
    }
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let refused = ask(method.clone());
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(refused.headers()[http::header::ALLOW], "GET, HEAD");
    }
}

/// Only a GET of `/metrics` answered 200 is a scrape, which a stop after a failed spool write
/// waits for: a HEAD shows no counters, and a probe is no scraper.
#[tokio::test]
async fn only_a_get_of_the_metrics_answered_is_counted_as_a_scrape() {
    let metrics = Arc::new(Metrics::new(&[]).expect("metrics"));
    for (method, path, status, counted) in [
        (Method::HEAD, "/metrics", StatusCode::OK, false),
        (
            Method::GET,
            "/readyz",
            StatusCode::SERVICE_UNAVAILABLE,
            false,
        ),
        (Method::GET, "/metrics", StatusCode::OK, true),
    ] {
        let health = Arc::new(Health::default());
        let req = Request::builder().method(method.clone()).uri(path).body(());
        let timeout = Duration::from_secs(5);
        let answered = respond(
            req.expect("request"),
            health.clone(),
            metrics.clone(),
            timeout,
        );
        assert_eq!(answered.await.status(), status, "{method} {path}");
        assert_eq!(
            health.scrapes.patience().is_some(),
            counted,
            "{method} {path}"
        );
    }
}

#[test]
fn readiness_waits_for_the_start_then_follows_kafka_and_ends_with_the_drain() {
    let health = Health::default();
    assert_eq!(
        health.readiness(),
        Err("starting: recovering the spool and making the producer".into())
    );
    health.kafka.set(Ok(()));
    assert!(health.readiness().is_err(), "not before the start is done");
    health.started.store(true, Ordering::SeqCst);
    assert_eq!(health.readiness(), Ok(()));
    health.kafka.set(Err(
        "the brokers refuse topic t: UnknownTopicOrPartition".into()
    ));
    assert_eq!(
        health.readiness(),
        Err("Kafka is unavailable: the brokers refuse topic t: UnknownTopicOrPartition".into()),
        "with the reason of the check that failed"
    );
    health.draining.store(true, Ordering::SeqCst);
    assert_eq!(health.readiness(), Err("shutting down".into()));
}

/// A keyless record of topic `t` with this body.
fn spooled(value: &[u8]) -> crate::spool::SpooledRecord {
    crate::spool::SpooledRecord {
        topic: "t".into(),
        key: None,
        value: value.to_vec(),
        headers: Vec::new(),
        timestamp_ms: 0,
    }
}

fn get(path: &str, health: &Health, metrics: &Metrics) -> (StatusCode, String) {
    let req = Request::get(path).body(()).expect("request");
    let response = answer(&req, health, metrics);
    let status = response.status();
    let body = response.into_body().into_inner().expect("full body");
    (status, String::from_utf8(body.to_vec()).expect("utf-8"))
}

/// Prometheus picks its parser by the scrape's `Content-Type`: the text exposition format is
/// `text/plain; version=0.0.4`, and a probe's answer is plain text.
#[test]
fn a_scrape_is_typed_as_the_prometheus_text_format_and_a_probe_as_plain_text() {
    let (health, metrics) = (Health::default(), Metrics::new(&[]).expect("metrics"));
    let typed = |path: &str| {
        let req = Request::get(path).body(()).expect("request");
        answer(&req, &health, &metrics).headers()[CONTENT_TYPE].clone()
    };
    assert_eq!(
        typed("/metrics"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    for probe in ["/livez", "/readyz"] {
        assert_eq!(typed(probe), "text/plain; charset=utf-8", "{probe}");
    }
}

#[test]
fn while_starting_the_process_is_live_but_not_ready_and_the_gauge_says_so() {
    let (health, metrics) = (Health::default(), Metrics::new(&[]).expect("metrics"));
    assert_eq!(
        get("/livez", &health, &metrics),
        (StatusCode::OK, "ok\n".into())
    );
    let (status, body) = get("/readyz", &health, &metrics);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.starts_with("not ready: starting"), "{body}");
    let (_, shown) = get("/metrics", &health, &metrics);
    assert!(shown.contains("qikchat_bridge_ready 0"), "{shown}");
    health.started.store(true, Ordering::SeqCst);
    health.kafka.set(Ok(()));
    // A scrape alone (no probe in between) brings the gauge up to date, both ways.
    let (_, shown) = get("/metrics", &health, &metrics);
    assert!(shown.contains("qikchat_bridge_ready 1"), "{shown}");
    health.draining.store(true, Ordering::SeqCst);
    let (_, shown) = get("/metrics", &health, &metrics);
    assert!(shown.contains("qikchat_bridge_ready 0"), "{shown}");
    health.draining.store(false, Ordering::SeqCst);
    assert_eq!(
        get("/readyz", &health, &metrics),
        (StatusCode::OK, "ready\n".into())
    );
    assert_eq!(metrics.ready.get(), 1);
}

#[tokio::test]
async fn without_kafka_a_spool_with_room_keeps_the_bridge_ready_until_it_is_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 64, 32).expect("open");
    let health = Health::default();
    health.started.store(true, Ordering::SeqCst);
    let _ = health.spool.set(spool.clone());
    assert_eq!(health.readiness(), Ok(()));
    let record = spooled(&[b'x'; 40]);
    spool.append(record).await.expect("append");
    assert_eq!(
        health.readiness(),
        Err(
            "Kafka is unavailable (not checked yet) and the spool is full, its disk has stalled \
                 or its file was removed"
                .into()
        )
    );
    health.kafka.set(Ok(()));
    assert_eq!(health.readiness(), Ok(()));
}

/// With a spool the bridge stays ready without Kafka: the scrape still says Kafka does not
/// answer, which nothing else showed once librdkafka stopped listing the dead broker.
#[test]
fn the_scrape_shows_kafka_unreachable_while_a_spool_keeps_the_bridge_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 1 << 20, 32).expect("open");
    let (health, metrics) = (Health::default(), Metrics::new(&[]).expect("metrics"));
    health.started.store(true, Ordering::SeqCst);
    let _ = health.spool.set(spool);
    health.kafka.set(Err("no broker answered".into()));
    let (status, text) = get("/metrics", &health, &metrics);
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("\nqikchat_bridge_ready 1\n"), "{text}");
    assert!(
        text.contains("\nqikchat_bridge_kafka_reachable 0\n"),
        "{text}"
    );
    health.kafka.set(Ok(()));
    let (_, text) = get("/metrics", &health, &metrics);
    assert!(
        text.contains("\nqikchat_bridge_kafka_reachable 1\n"),
        "{text}"
    );
}

// Real clock: the spool's writer is a thread blocked on the disk.
#[tokio::test]
async fn without_kafka_a_spool_whose_disk_has_stalled_makes_the_bridge_unready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 1 << 20, 32).expect("open");
    let health = Health::default();
    health.started.store(true, Ordering::SeqCst);
    let _ = health.spool.set(spool.clone());
    let stalled = spool.stall_writes();
    let record = spooled(b"{}");
    let appending = tokio::spawn({
        let spool = spool.clone();
        async move { spool.append(record).await }
    });
    // The writer thread must first reach the held transaction: on a busy runner that may
    // take more than a moment.
    let waiting = std::time::Instant::now();
    while spool.write_stalled_for() < Duration::from_millis(200) {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "the append never reached the stalled commit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(health.readiness(), Ok(()), "a slow fsync is no stall yet");
    tokio::time::sleep(SPOOL_STALLED).await;
    assert!(health.readiness().is_err(), "room, but nothing is stored");
    drop(stalled);
    appending
        .await
        .expect("task")
        .expect("committed once the disk is back");
    assert_eq!(spool.write_stalled_for(), Duration::ZERO);
    assert_eq!(health.readiness(), Ok(()));
}

// Real clock: the scrape's read is a blocking thread waiting on the storage.
#[tokio::test]
async fn a_scrape_stuck_on_a_stalled_disk_is_answered_503_and_the_probes_at_once() {
    let (spool, reads) = crate::spool::test_storage::spool_over_faulty_reads();
    let record = spooled(b"{}");
    spool.append(record).await.expect("append");
    let health = Arc::new(Health::default());
    health.started.store(true, Ordering::SeqCst);
    health.kafka.set(Ok(()));
    let _ = health.spool.set(spool.clone());
    let metrics = Arc::new(Metrics::new(&[]).expect("metrics"));
    let ask = |path: &str| {
        let req = Request::get(path).body(()).expect("request");
        respond(
            req,
            health.clone(),
            metrics.clone(),
            Duration::from_millis(300),
        )
    };
    reads.stall.store(true, Ordering::SeqCst);
    // Should an assertion below fail, the read ends, so the runtime's exit does not wait on
    // its blocking thread for ever: a regression fails the test rather than hanging it.
    struct Unstall(Arc<crate::spool::test_storage::Reads>);
    impl Drop for Unstall {
        fn drop(&mut self) {
            self.0.stall.store(false, Ordering::SeqCst);
        }
    }
    let _unstall = Unstall(reads.clone());
    let bounded = async |path| {
        tokio::time::timeout(Duration::from_secs(5), ask(path))
            .await
            .expect("answered within 5 s while the disk is stalled")
    };
    let asked = std::time::Instant::now();
    let scrape = bounded("/metrics").await;
    assert_eq!(scrape.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The stuck read is not joined by another.
    let again = bounded("/metrics").await;
    assert_eq!(again.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = again.into_body().into_inner().expect("full body");
    assert!(body.starts_with(b"metrics: an earlier scrape"), "{body:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(ask("/livez").await.status(), StatusCode::OK);
    assert_eq!(ask("/readyz").await.status(), StatusCode::OK);
    reads.stall.store(false, Ordering::SeqCst);
    let waiting = std::time::Instant::now();
    while health.scraping.try_lock().is_err() {
        assert!(
            waiting.elapsed() < Duration::from_secs(5),
            "the stuck read ends"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Prometheus got a 503 for it: a stop waiting for a scrape must go on waiting.
    assert_eq!(
        health.scrapes.patience(),
        None,
        "answered 503, counted as a scrape"
    );
    // The stuck read ends, and scrapes are answered again.
    let waiting = std::time::Instant::now();
    while ask("/metrics").await.status() != StatusCode::OK {
        assert!(
            waiting.elapsed() < Duration::from_secs(5),
            "scrapes stay refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    spool.close();
}
