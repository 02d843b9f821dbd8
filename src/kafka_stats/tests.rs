//! Statistics-to-metrics tests: counters from librdkafka totals, per-broker gauges, clients gone.
use prometheus::core::Collector;
use rdkafka::statistics::{Broker, Topic, Window};

use super::*;

fn stats(client: &str, produce_requests: i64, batches: i64, records: i64) -> Statistics {
    let broker = Broker {
        name: "b:9092/1".into(),
        nodeid: 1,
        state: "UP".into(),
        req: HashMap::from([("Produce".to_string(), produce_requests)]),
        ..Default::default()
    };
    let topic = Topic {
        topic: "t".into(),
        batchcnt: Window {
            cnt: batches,
            sum: records,
            ..Default::default()
        },
        ..Default::default()
    };
    Statistics {
        name: client.into(),
        msg_cnt: produce_requests as u64,
        brokers: HashMap::from([(broker.name.clone(), broker)]),
        topics: HashMap::from([("t".to_string(), topic)]),
        ..Default::default()
    }
}

fn figures(k: &KafkaStats) -> (u64, f64, i64) {
    (
        k.produce_requests.with_label_values(&["b:9092/1"]).get(),
        k.batch_records.with_label_values(&["t"]).get(),
        k.queue_messages.get(),
    )
}

#[test]
fn produce_requests_count_up_from_librdkafka_totals_and_batches_average_per_window() {
    let k = KafkaStats::new("x").expect("metrics");
    k.update(0, &stats("a", 10, 10, 30), true);
    assert_eq!(figures(&k), (10, 3.0, 10));
    k.update(0, &stats("a", 25, 4, 10), true);
    assert_eq!(figures(&k), (25, 2.5, 25));
    // An idle window leaves the last average; a total that went down counts from zero.
    k.update(0, &stats("a", 5, 0, 0), true);
    assert_eq!(figures(&k), (30, 2.5, 5));
}

#[test]
fn brokers_the_producer_never_connected_to_are_not_reported_down() {
    let k = KafkaStats::new("x").expect("metrics");
    let mut s = stats("a", 1, 1, 1);
    let idle = Broker {
        name: "c:9092/2".into(),
        nodeid: 2,
        state: "INIT".into(),
        ..Default::default()
    };
    let lost = Broker {
        name: "d:9092/3".into(),
        nodeid: 3,
        state: "TRY_CONNECT".into(),
        ..Default::default()
    };
    s.brokers.insert(idle.name.clone(), idle);
    s.brokers.insert(lost.name.clone(), lost);
    k.update(0, &s, true);
    assert_eq!(
        broker_up(&k),
        [("b:9092/1".to_string(), 1), ("d:9092/3".to_string(), 0)]
    );
}

/// The `kafka_broker_up` series: broker and value, in name order.
fn broker_up(k: &KafkaStats) -> Vec<(String, i64)> {
    let mut up: Vec<(String, i64)> = Collector::collect(&k.broker_up)
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| {
            let broker = m.get_label()[0].value().to_string();
            (broker, m.get_gauge().get_value() as i64)
        })
        .collect();
    up.sort();
    up
}

#[test]
fn a_broker_no_longer_needed_or_gone_leaves_the_gauges_instead_of_staying_down() {
    let k = KafkaStats::new("x").expect("metrics");
    let broker = |name: &str, id, state: &str| Broker {
        name: name.into(),
        nodeid: id,
        state: state.into(),
        ..Default::default()
    };
    let mut s = stats("a", 1, 1, 1);
    s.brokers
        .insert("c:9092/2".into(), broker("c:9092/2", 2, "TRY_CONNECT"));
    k.update(0, &s, true);
    assert_eq!(
        broker_up(&k),
        [("b:9092/1".to_string(), 1), ("c:9092/2".to_string(), 0)]
    );
    // Broker 2 lost its leaderships while down: librdkafka puts it back to INIT. Broker 1 left
    // the cluster.
    s.brokers
        .insert("c:9092/2".into(), broker("c:9092/2", 2, "INIT"));
    s.brokers.remove("b:9092/1");
    k.update(0, &s, true);
    assert_eq!(broker_up(&k), []);
    let rtt = Collector::collect(&k.broker_rtt);
    assert!(rtt.iter().all(|f| f.get_metric().is_empty()));
    // The replay producer's statistics never touch the gauges.
    k.update(1, &stats("replay", 1, 1, 1), false);
    assert_eq!(broker_up(&k), []);
}

#[test]
fn the_totals_of_a_client_gone_for_an_hour_are_forgotten() {
    let k = KafkaStats::new("x").expect("metrics");
    let start = Instant::now();
    for (i, client) in ["rdkafka#producer-1", "rdkafka#producer-2"]
        .iter()
        .enumerate()
    {
        k.update_at(
            i as u64,
            &stats(client, 5, 1, 1),
            true,
            start + STALE * i as u32,
        );
    }
    let clients = |k: &KafkaStats| {
        let last = k.last_totals.lock().unwrap();
        let mut clients: Vec<u64> = last.keys().map(|&(c, _, _)| c).collect();
        clients.sort();
        clients.dedup();
        clients
    };
    assert_eq!(clients(&k), [1]);
    // Its traffic was counted before: 5 + 5.
    assert_eq!(figures(&k).0, 10);
}

#[test]
fn a_second_client_adds_its_traffic_but_leaves_the_gauges_to_the_primary() {
    let k = KafkaStats::new("x").expect("metrics");
    k.update(0, &stats("webhooks", 100, 10, 50), true);
    k.update(1, &stats("replay", 7, 7, 7), false);
    assert_eq!(figures(&k), (107, 5.0, 100));
    k.update(0, &stats("webhooks", 150, 10, 40), true);
    k.update(1, &stats("replay", 9, 2, 2), false);
    assert_eq!(figures(&k), (159, 4.0, 150));
}

#[test]
fn the_broker_round_trip_is_shown_in_seconds_from_librdkafkas_microseconds() {
    let k = KafkaStats::new("x").expect("metrics");
    let mut s = stats("a", 1, 1, 1);
    if let Some(b) = s.brokers.get_mut("b:9092/1") {
        b.rtt = Some(Window {
            avg: 2500,
            cnt: 3,
            ..Default::default()
        });
    }
    k.update(0, &s, true);
    let rtt = || k.broker_rtt.with_label_values(&["b:9092/1"]).get();
    assert!((rtt() - 0.0025).abs() < 1e-12, "{}", rtt());
    // A window in which the broker answered nothing (it may have stopped answering): not 0 s.
    if let Some(b) = s.brokers.get_mut("b:9092/1") {
        b.rtt = Some(Window::default());
    }
    k.update(0, &s, true);
    assert!((rtt() - 0.0025).abs() < 1e-12, "{}", rtt());
}

#[test]
fn a_broker_renamed_in_place_keeps_counting_from_where_it_was() {
    let k = KafkaStats::new("x").expect("metrics");
    k.update(0, &stats("a", 1000, 1, 1), true);
    // The same node on a new host: librdkafka renames it, and its totals carry on.
    let mut moved = stats("a", 1005, 1, 1);
    let mut broker = moved.brokers.remove("b:9092/1").expect("broker");
    broker.name = "new:9092/1".into();
    moved.brokers.insert(broker.name.clone(), broker);
    k.update(0, &moved, true);
    let total: u64 = ["b:9092/1", "new:9092/1"]
        .iter()
        .map(|b| k.produce_requests.with_label_values(&[b]).get())
        .sum();
    assert_eq!(
        total, 1005,
        "the history was added again under the new name"
    );
}

/// The webhook producer and the spool's replay producer are made from the same properties, and
/// librdkafka cuts a client's name at 127 bytes: with a long client.id both report the same
/// name. Keyed by that name, each one's totals were taken for deltas of the other's, and
/// `kafka_produce_requests_total` counted ten times the requests sent (found by review of
/// kafka_stats.rs: `stats.name` is no client's identity).
#[test]
fn two_producers_with_a_client_id_librdkafka_cuts_in_their_names_each_count_their_own_requests() {
    for id_len in [10, 130] {
        let (counted, sent) = produce_requests_of_two_producers(&"c".repeat(id_len));
        assert_eq!(counted, sent, "with a client.id of {id_len} bytes");
    }
}

/// `kafka_produce_requests_total` after two producers with `client_id` sent records to a mock
/// cluster, and the produce requests they sent by their own statistics.
fn produce_requests_of_two_producers(client_id: &str) -> (u64, u64) {
    use std::sync::Arc;

    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
    use rdkafka::{ClientConfig, ClientContext};

    struct Context {
        k: Arc<KafkaStats>,
        id: u64,
        primary: bool,
        names: Arc<Mutex<HashSet<String>>>,
        sent: Arc<Mutex<u64>>,
    }
    impl ClientContext for Context {
        fn stats(&self, s: Statistics) {
            self.names.lock().unwrap().insert(s.name.clone());
            let produce = |b: &Broker| b.req.get("Produce").copied().unwrap_or(0) as u64;
            *self.sent.lock().unwrap() = s
                .brokers
                .values()
                .filter(|b| b.nodeid >= 0)
                .map(produce)
                .sum();
            self.k.update(self.id, &s, self.primary);
        }
    }
    impl ProducerContext for Context {
        type DeliveryOpaque = ();
        fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
    }
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("t", 1, 1).expect("topic");
    let k = Arc::new(KafkaStats::new("x").expect("metrics"));
    let names = Arc::new(Mutex::new(HashSet::new()));
    let producer = |primary: bool| {
        let sent = Arc::new(Mutex::new(0));
        let context = Context {
            k: k.clone(),
            id: k.client(),
            primary,
            names: names.clone(),
            sent: sent.clone(),
        };
        let producer: BaseProducer<Context> = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("client.id", client_id)
            .set("statistics.interval.ms", "100")
            .set("linger.ms", "0")
            .create_with_context(context)
            .expect("producer");
        (producer, sent)
    };
    let (webhooks, replay) = (producer(true), producer(false));
    let until = Instant::now() + Duration::from_secs(2);
    for i in 0.. {
        if Instant::now() > until {
            break;
        }
        for (n, (p, _)) in [&webhooks, &replay].into_iter().enumerate() {
            if n == 0 || i % 5 == 0 {
                p.send(BaseRecord::<(), str>::to("t").payload("x"))
                    .expect("queued");
                p.flush(Duration::from_secs(5)).expect("sent");
            }
            p.poll(Duration::from_millis(10));
        }
    }
    // Each producer's last report, after its last request.
    std::thread::sleep(Duration::from_millis(300));
    for (p, _) in [&webhooks, &replay] {
        p.poll(Duration::from_millis(150));
    }
    if client_id.len() > 127 {
        assert_eq!(
            names.lock().unwrap().len(),
            1,
            "librdkafka no longer cuts names"
        );
    }
    let counted = Collector::collect(&k.produce_requests)
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum();
    let sent = *webhooks.1.lock().unwrap() + *replay.1.lock().unwrap();
    (counted, sent)
}
