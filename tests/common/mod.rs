//! Test harness: the real app on port 0 against its own `MockCluster`, an HTTP client, and a
//! real rdkafka consumer to read back what the bridge produced.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use qikchat_bridge::config::{Args, Config};
use qikchat_bridge::{run_with_cut, Listeners};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod bounded;
mod spawned;
#[allow(unused_imports)] // Only the tests that run the binary to its end use them.
pub use bounded::{exited_within, OutputWithin, EXIT_LIMIT};
#[allow(unused_imports)] // Only the tests that start the bridge as a process use them.
pub use spawned::{ports_in, KillOnDrop, Spawned, ANY_PORTS, LOG_FILTER};

pub const USER: &str = "qikchat";
pub const PASS: &str = "correct horse battery staple";
pub const PARTITIONS: i32 = 3;

/// A connection of h2's own client to `addr`, ready for a request: for what reqwest does not
/// expose (a stream left open, the server's settings).
pub async fn h2_connection(addr: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(connection);
    client.ready().await.expect("ready")
}

/// An HTTP/2 client that speaks h2c without an upgrade, as the bridge serves it on its port.
#[allow(dead_code)]
pub fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client")
}

/// The `Authorization` value for `USER:PASS`.
pub fn basic_auth_header() -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"))
    )
}

pub const TEXT: &[u8] = include_bytes!("../fixtures/message-in-text.json");
pub const IMAGE: &[u8] = include_bytes!("../fixtures/message-in-image.json");
pub const STATUS: &[u8] = include_bytes!("../fixtures/status-read.json");

pub struct TestApp {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    pub bootstrap: String,
    pub config: Config,
    pub http: reqwest::Client,
    /// For the admin port: a new connection per request. The admin server closes a connection
    /// idle for 1 s, and a pooled one reused just as it does failed its request
    /// (`IncompleteMessage`: seen under load between two `/metrics` reads about a second apart).
    admin_http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    cut: Option<oneshot::Sender<()>>,
    pub handle: Option<JoinHandle<Result<(), qikchat_bridge::StartError>>>,
}

/// A record as a consumer in any language would see it.
#[derive(Debug, Clone)]
pub struct Got {
    pub topic: String,
    pub partition: i32,
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub timestamp: Option<i64>,
}

impl TestApp {
    /// Starts the bridge with the test credential plus `extra` flags.
    pub async fn start(extra: &[&str]) -> TestApp {
        TestApp::start_with_env(extra, &[]).await
    }

    /// [`TestApp::start`] with `env` as the process environment the config reads.
    pub async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> TestApp {
        let app = TestApp::spawn(extra, env).await;
        app.wait_ready().await;
        app
    }

    /// [`TestApp::start`], with the topics in `missing` left out of the cluster.
    pub async fn start_without_topics(extra: &[&str], missing: &[&str]) -> TestApp {
        let app = TestApp::spawn_without_topics(extra, &[], missing).await;
        app.wait_ready().await;
        app
    }

    /// [`TestApp::start_with_env`] without waiting for it to be ready.
    pub async fn spawn(extra: &[&str], env: &[(&str, &str)]) -> TestApp {
        TestApp::spawn_without_topics(extra, env, &[]).await
    }

    /// [`TestApp::spawn`], with the topics in `missing` left out of the cluster.
    async fn spawn_without_topics(
        extra: &[&str],
        env: &[(&str, &str)],
        missing: &[&str],
    ) -> TestApp {
        // As main does. The tests of tests/it share one process: a test holding hundreds of
        // connections beside another's would otherwise run out of descriptors at a soft limit
        // of 1024, where each alone did not.
        static RAISED: std::sync::Once = std::sync::Once::new();
        RAISED.call_once(|| qikchat_bridge::open_files::raise_limit(0));
        let cluster = MockCluster::new(1).expect("mock cluster");
        let bootstrap = cluster.bootstrap_servers();
        let credential = format!("{USER}:{PASS}");
        let mut argv = vec![
            "qikchat-bridge",
            "--kafka-brokers",
            &bootstrap,
            "--auth",
            &credential,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ];
        argv.extend_from_slice(extra);
        let args = Args::try_parse_from(argv).expect("test flags parse");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let config = Config::from_args(args, env, |p| std::fs::read_to_string(p))
            .expect("test config is valid");
        for topic in config.topics.all_topics() {
            if missing.contains(&topic.as_str()) {
                continue;
            }
            cluster
                .create_topic(&topic, PARTITIONS, 1)
                .expect("create topic");
        }
        let listeners = Listeners {
            webhook: TcpListener::bind(config.listen)
                .await
                .expect("bind webhook"),
            admin: TcpListener::bind(config.admin_listen)
                .await
                .expect("bind admin"),
        };
        let addr = listeners.webhook.local_addr().expect("addr");
        let admin = listeners.admin.local_addr().expect("admin addr");
        let (tx, rx) = oneshot::channel::<()>();
        let (cut_tx, cut_rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(run_with_cut(
            config.clone(),
            listeners,
            async {
                let _ = rx.await;
            },
            async {
                if cut_rx.await.is_err() {
                    std::future::pending::<()>().await;
                }
            },
        ));
        TestApp {
            addr,
            admin,
            cluster,
            bootstrap,
            config,
            // Bounded, so that a regression that leaves a request unanswered fails its test
            // rather than hanging CI; longer than any ack timeout a test sets.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            admin_http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
            shutdown: Some(tx),
            cut: Some(cut_tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }

    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if self.admin_get("/readyz").await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("bridge not ready within 10 s");
    }

    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let r = self.admin_request(reqwest::Method::GET, path).await;
        (r.status().as_u16(), r.text().await.expect("admin body"))
    }

    /// A request with `method` to `path` on the admin port.
    pub async fn admin_request(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.admin_http
            .request(method, format!("http://{}{path}", self.admin))
            .send()
            .await
            .expect("admin request")
    }

    /// POSTs `body` with the test credential.
    pub async fn post(&self, body: &'static [u8]) -> reqwest::Response {
        self.post_as(USER, PASS, body).await
    }

    /// POSTs `body` as `user` with `pass`.
    pub async fn post_as(&self, user: &str, pass: &str, body: &'static [u8]) -> reqwest::Response {
        self.http
            .post(self.url())
            .basic_auth(user, Some(pass))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// POSTs `body` with the test credential in the background.
    pub fn spawn_post(&self, body: &'static [u8]) -> JoinHandle<reqwest::Response> {
        let (http, url) = (self.http.clone(), self.url());
        tokio::spawn(async move {
            http.post(url)
                .basic_auth(USER, Some(PASS))
                .body(body)
                .send()
                .await
                .expect("request")
        })
    }

    /// POSTs a status in the background once the broker answers only after 3 s, and returns when
    /// the bridge counts it in flight. A text message goes first, on the real round trip, so the
    /// idempotent producer's id and connection are not behind three slow ones (the first answer
    /// then took 9 s on CI). Needs an ack timeout over 3 s for the held request to succeed.
    pub async fn spawn_post_held_by_a_slow_broker(&self) -> JoinHandle<reqwest::Response> {
        assert_eq!(self.post(TEXT).await.status(), 200);
        self.cluster
            .broker_round_trip_time(1, Duration::from_secs(3))
            .expect("rtt");
        let request = self.spawn_post(STATUS);
        eventually("the request is in flight", async || {
            self.in_flight().await >= 1
        })
        .await;
        request
    }

    /// The `qikchat_bridge_requests_in_flight` gauge, read from /metrics.
    pub async fn in_flight(&self) -> i64 {
        let (_, metrics) = self.admin_get("/metrics").await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("qikchat_bridge_requests_in_flight "))
            .and_then(|v| v.trim().parse().ok())
            .expect("in-flight gauge")
    }

    /// Stops the bridge and waits for `run` to return.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(60), h)
                .await
                .expect("run returns within 60 s of the shutdown")
                .expect("run task")
                .expect("run result");
        }
    }

    /// Waits (at most `within`) for `run` to return cleanly after [`TestApp::trigger_shutdown`].
    #[allow(dead_code)]
    pub async fn wait_stopped(&mut self, within: Duration) {
        let handle = self.handle.take().expect("running");
        tokio::time::timeout(within, handle)
            .await
            .expect("run returns in time")
            .expect("run task")
            .expect("clean exit");
    }

    /// Waits (at most `within`) for `run` to return an error, by itself or after
    /// [`TestApp::trigger_shutdown`]; returns its text.
    #[allow(dead_code)]
    pub async fn wait_failed(&mut self, within: Duration) -> String {
        let handle = self.handle.take().expect("running");
        tokio::time::timeout(within, handle)
            .await
            .expect("run returns in time")
            .expect("run task")
            .expect_err("run ends in an error")
            .to_string()
    }

    /// Waits (at most 30 s) until `/metrics` has `line`.
    #[allow(dead_code)]
    pub async fn wait_metric(&self, line: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (_, metrics) = self.admin_get("/metrics").await;
            if metrics.lines().any(|l| l == line) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {line} in {metrics}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Cuts the drain short, as a second SIGTERM does.
    #[allow(dead_code)]
    pub fn cut_drain_short(&mut self) {
        if let Some(tx) = self.cut.take() {
            let _ = tx.send(());
        }
    }

    /// Reads every record in `topic` until `count` arrived or `timeout` passed.
    pub async fn records(&self, topic: &str, count: usize, timeout: Duration) -> Vec<Got> {
        let (bootstrap, topic) = (self.bootstrap.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || read_records(&bootstrap, &topic, count, timeout))
            .await
            .expect("consumer task")
    }

    /// That no request before this call stored anything, in any topic: a status posted now is
    /// read back first, so a record handed to librdkafka earlier (wrongly) would have been
    /// delivered by then (by the same producer, no later) and counted. Reading the topics at once
    /// would miss one still in librdkafka's queue.
    ///
    /// The first produce of a fresh app can outlast the ack timeout on a loaded machine, so a
    /// sentinel answered 503 is posted again (for up to 30 s). A 503'd sentinel may still be
    /// stored later, so with several sentinels the check is that every stored record is one of
    /// them (by its `request-id`) rather than a count; with one it is that exactly one is stored.
    pub async fn assert_nothing_stored_before_now(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut sentinels = Vec::new();
        loop {
            let sentinel = self.post(STATUS).await;
            let status = sentinel.status().as_u16();
            assert!(matches!(status, 200 | 503), "the sentinel status: {status}");
            sentinels.push(request_id(&sentinel));
            if status == 200 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the sentinel still answered 503 after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let last = sentinels.last().cloned().expect("a sentinel");
        wait_all_stored(&self.bootstrap, "whatsapp.message.status", &[last]).await;
        if sentinels.len() == 1 {
            assert_eq!(
                self.total_records().await,
                1,
                "only the sentinel was stored"
            );
            return;
        }
        let total = self.total_records().await;
        let (bootstrap, topics) = (self.bootstrap.clone(), self.config.topics.all_topics());
        let stored: Vec<Option<String>> = tokio::task::spawn_blocking(move || {
            topics
                .iter()
                .flat_map(|t| read_records(&bootstrap, t, usize::MAX, Duration::from_secs(2)))
                .map(|g| g.headers.get("request-id").cloned())
                .collect()
        })
        .await
        .expect("consumer task");
        assert!(
            stored.len() as i64 >= total,
            "read {} of {total} records",
            stored.len()
        );
        let unexpected: Vec<_> = stored
            .iter()
            .filter(|id| !id.as_ref().is_some_and(|id| sentinels.contains(id)))
            .collect();
        assert!(
            unexpected.is_empty(),
            "only sentinels were stored, also {unexpected:?} (sentinels {sentinels:?})"
        );
    }

    /// The topics the cluster has, but its internal ones (`__consumer_offsets`).
    pub async fn cluster_topics(&self) -> BTreeSet<String> {
        let bootstrap = self.bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = consumer(&bootstrap)
                .fetch_metadata(None, Duration::from_secs(5))
                .expect("metadata");
            metadata
                .topics()
                .iter()
                .map(|t| t.name().to_string())
                .filter(|name| !name.starts_with("__"))
                .collect()
        })
        .await
        .expect("metadata task")
    }

    /// How many records all of the bridge's topics hold.
    pub async fn total_records(&self) -> i64 {
        let bootstrap = self.bootstrap.clone();
        let topics = self.config.topics.all_topics();
        tokio::task::spawn_blocking(move || {
            let consumer = consumer(&bootstrap);
            let mut total = 0;
            for topic in &topics {
                for p in 0..PARTITIONS {
                    let (lo, hi) = consumer
                        .fetch_watermarks(topic, p, Duration::from_secs(5))
                        .expect("watermarks");
                    total += hi - lo;
                }
            }
            total
        })
        .await
        .expect("watermark task")
    }
}

/// A consumer of the cluster at `bootstrap`, committing nothing.
pub fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "qikchat-bridge-tests")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// Every record in `topic` (read from the beginning), until `count` arrived or `timeout` passed.
pub fn read_records(bootstrap: &str, topic: &str, count: usize, timeout: Duration) -> Vec<Got> {
    let consumer = consumer(bootstrap);
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < count && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(contract_checked(&m)),
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}

/// A record, after the checks every record the bridge writes must pass, whatever the test: a
/// value (never a tombstone) with a `body-sha256` header that is its digest, each header once with a
/// UTF-8 value, and the receive time (`received-at`) as CreateTime.
fn contract_checked(m: &rdkafka::message::BorrowedMessage<'_>) -> Got {
    let value = m
        .payload()
        .expect("a value: the bridge writes no tombstones");
    let mut headers = BTreeMap::new();
    for h in m.headers().iter().flat_map(|hs| hs.iter()) {
        let v = h.value.expect("a header value");
        let v = String::from_utf8(v.to_vec()).expect("utf-8 header");
        let before = headers.insert(h.key.to_string(), v);
        assert!(before.is_none(), "header {} written twice", h.key);
    }
    let want: String = <sha2::Sha256 as sha2::Digest>::digest(value)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        headers.get("body-sha256"),
        Some(&want),
        "every record carries body-sha256, the value's digest"
    );
    assert!(
        matches!(m.timestamp(), rdkafka::Timestamp::CreateTime(_)),
        "{:?}",
        m.timestamp()
    );
    // The same instant as `received-at`, to the millisecond, also for a copy the spool replayed
    // (the duplicates a consumer drops are equal in both).
    let received_at = headers
        .get("received-at")
        .expect("every record says when it was received");
    let received_ms = humantime::parse_rfc3339(received_at)
        .expect("received-at is RFC 3339")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    assert_eq!(
        m.timestamp().to_millis(),
        Some(received_ms),
        "the record's time is its received-at, {received_at}"
    );
    Got {
        topic: m.topic().to_string(),
        partition: m.partition(),
        key: m
            .key()
            .map(|k| String::from_utf8(k.to_vec()).expect("utf-8 key")),
        value: value.to_vec(),
        headers,
        timestamp: m.timestamp().to_millis(),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The `request-id` headers of every record in `topic`, read from the beginning for 2 s.
pub fn request_ids(bootstrap: &str, topic: &str) -> std::collections::HashSet<String> {
    read_records(bootstrap, topic, usize::MAX, Duration::from_secs(2))
        .into_iter()
        .filter_map(|g| g.headers.get("request-id").cloned())
        .collect()
}

/// Waits until the bridge on `admin` answers /readyz with 200.
pub async fn wait_ready_at(admin: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let http = reqwest::Client::new();
    loop {
        let url = format!("http://127.0.0.1:{admin}/readyz");
        if http.get(url).send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "bridge not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 30 s) until every request id in `want` is in `topic`.
pub async fn wait_all_stored(bootstrap: &str, topic: &str, want: &[String]) {
    let want: std::collections::HashSet<&String> = want.iter().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (b, t) = (bootstrap.to_string(), topic.to_string());
        let got = tokio::task::spawn_blocking(move || request_ids(&b, &t))
            .await
            .expect("consumer");
        let missing = want.iter().filter(|id| !got.contains(**id)).count();
        if missing == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {} records answered 200 are not in Kafka",
            want.len()
        );
    }
}

/// A one-broker `MockCluster` with `topic` created and its broker already down, and its address.
pub fn cluster_with_broker_down(
    topic: &str,
) -> (MockCluster<'static, DefaultProducerContext>, String) {
    let cluster = MockCluster::new(1).expect("cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(topic, PARTITIONS, 1).expect("topic");
    cluster.broker_down(1).expect("down");
    (cluster, bootstrap)
}

/// Log output captured in memory.
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Installs the process-wide JSON subscriber at `filter`, writing here. Once per test binary.
    pub fn install(filter: &str) -> Captured {
        std::env::set_var("RUST_LOG", filter);
        let captured = Captured::default();
        let writer = captured.clone();
        qikchat_bridge::telemetry::init_with(qikchat_bridge::config::LogFormat::Json, move || {
            writer.clone()
        })
        .expect("subscriber");
        captured
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("lock").len()
    }

    pub fn text_from(&self, start: usize) -> String {
        String::from_utf8(self.0.lock().expect("lock")[start..].to_vec()).expect("utf-8")
    }
}

/// POSTs `body` to the webhook over a bare TCP connection with the test credential, for tests
/// that need the socket itself (half-closing it, or reading what the server does with it).
#[allow(dead_code)] // not every test binary uses it
pub async fn raw_post(addr: SocketAddr, body: &[u8]) -> tokio::net::TcpStream {
    raw_request(addr, body.len(), body).await
}

/// Like [`raw_post`], but the head announces `content_length` bytes whatever `body` holds.
#[allow(dead_code)]
pub async fn raw_request(
    addr: SocketAddr,
    content_length: usize,
    body: &[u8],
) -> tokio::net::TcpStream {
    raw_framed(addr, &format!("content-length: {content_length}"), body).await
}

/// An authenticated JSON POST written by hand: the head with its `framing` line
/// (`content-length: N` or a `transfer-encoding`), then `body` exactly as given.
#[allow(dead_code)]
pub async fn raw_framed(addr: SocketAddr, framing: &str, body: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = raw_send(addr, post_head(framing).as_bytes()).await;
    s.write_all(body).await.expect("write body");
    s
}

/// A new connection with `bytes` written on it as they are (a head written by hand, say).
#[allow(dead_code)]
pub async fn raw_send(addr: SocketAddr, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    s
}

/// The head of an authenticated JSON POST to the webhook, with its `framing` line.
#[allow(dead_code)]
pub fn post_head(framing: &str) -> String {
    format!(
        "POST /webhook HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-type: application/json\r\n{framing}\r\n\r\n",
        basic_auth_header(),
    )
}

/// Everything the server writes until it closes the connection (at most 10 s), as text.
#[allow(dead_code)]
pub async fn read_until_closed(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("closed within 10 s")
        .expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

/// The `X-Request-Id` the bridge answered with.
pub fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string()
}

/// A temporary spool directory on a memory filesystem (`/dev/shm`) where the machine has one, for
/// the tests whose subject is what the bridge does with its spool rather than the disk. With a
/// spool, a record reaches it only in the last 250 ms of its deadline, and on a loaded machine one
/// fsync stalled behind other writers' dirty pages outlasts that (a `dd` beside the outage test
/// failed it 2 runs in 6, every answer 503): the bridge's 503 is then right (it may still commit the
/// record and replay it), as `delivery::tests` shows with a stalled spool, but a test of replay or
/// routing that expects 200s would fail for the disk's sake. Elsewhere, the usual temp directory.
pub fn memory_tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    match tempfile::tempdir_in(shm) {
        Ok(dir) => dir,
        Err(_) => tempfile::tempdir().expect("tempdir"),
    }
}

/// Replaces the file at once, as Kubernetes swaps a Secret's files (rename, never a partial write).
pub fn rotate(path: &std::path::Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).expect("write");
    std::fs::rename(&next, path).expect("rename");
}

/// Waits (at most 20 s) until `done` holds.
pub async fn eventually(what: &str, done: impl AsyncFnMut() -> bool) {
    eventually_within(what, Duration::from_secs(20), done).await
}

/// Waits (at most `within`) until `done` holds.
pub async fn eventually_within(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The bridge binary run with `args` (environment cleared, warnings logged) until it stops by
/// itself, which must be with status 1, a failed start; its log. A bridge that starts instead
/// would run until stopped: it is killed after 60 s and the test fails, rather than hanging.
#[allow(dead_code)]
pub fn failed_start(args: &[&str]) -> String {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_qikchat-bridge"))
        .args(args)
        .env_clear()
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    // Read as it comes, so a long log cannot fill the pipe and stall the bridge.
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut log = Vec::new();
        let _ = stderr.read_to_end(&mut log);
        String::from_utf8_lossy(&log).into_owned()
    });
    let Some(status) = exited_within(&mut child, Duration::from_secs(60)) else {
        let _ = child.kill();
        let _ = child.wait();
        let log = reader.join().unwrap_or_default();
        panic!("still running 60 s after its start, which should have failed:\n{log}");
    };
    let log = reader.join().expect("stderr reader");
    assert_eq!(status.code(), Some(1), "{log}");
    log
}

/// Sends `signal` and waits (at most 20 s) for the process to exit.
#[allow(dead_code)]
pub fn stop_with(child: &mut std::process::Child, signal: &str) -> std::process::ExitStatus {
    let sent = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    exited_within(child, Duration::from_secs(20)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("still running 20 s after {signal}");
    })
}

/// An authenticated JSON POST of `body`, head and body, as a client writes it.
#[allow(dead_code)]
pub fn post_bytes(body: &[u8]) -> Vec<u8> {
    let mut bytes = post_head(&format!("content-length: {}", body.len())).into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The bytes of the first answer in `seen` (head and `Content-Length` body), once it is whole.
#[allow(dead_code)]
pub fn answer_length(seen: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(seen);
    let end = text.find("\r\n\r\n")?;
    let length = text[..end]
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .expect("a content-length");
    (seen.len() >= end + 4 + length).then_some(end + 4 + length)
}

/// One whole answer (head and `Content-Length` body), leaving the connection open.
#[allow(dead_code)]
pub async fn read_answer(s: &mut tokio::net::TcpStream) -> String {
    let mut seen = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if answer_length(&seen).is_some() {
            return text;
        }
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read(s, &mut buf),
        )
        .await
        .expect("answered within 10 s")
        .expect("read");
        assert!(n > 0, "closed before a whole answer: {text:?}");
        seen.extend_from_slice(&buf[..n]);
    }
}

/// A plain producer to `bootstrap`, for records some other client wrote.
pub fn producer_to(bootstrap: &str) -> rdkafka::producer::FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer")
}

/// Produces `payload` to `topic` straight to the brokers at `bootstrap` (no bridge), as some
/// other client would, and waits for the acknowledgement.
pub async fn produce(bootstrap: &str, topic: &str, payload: &[u8]) {
    producer_to(bootstrap)
        .send(
            rdkafka::producer::FutureRecord::<(), [u8]>::to(topic).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
}

/// Holds the bridge's spool opening for as long as it lives: the spool's lock file is a FIFO,
/// whose opening for writing waits until something opens it for reading, as a large spool's
/// recovery keeps the bridge starting for minutes. Dropped, it opens the FIFO for reading and
/// writing, which never waits, and keeps it open: the opening goes on, and one that reaches the
/// FIFO only later does not wait. One at a time in a test process: the wait for the opening
/// looks at every thread of the process, and was satisfied by another test's held opening.
#[allow(dead_code)]
pub struct HeldOpening {
    fifo: std::path::PathBuf,
    /// Released after `drop` has let the opening go on.
    _alone: std::sync::MutexGuard<'static, ()>,
}

/// Whether a thread of this process waits in a FIFO's opening (Linux's `wait_for_partner`).
fn an_opening_waits() -> bool {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .any(|task| {
            std::fs::read_to_string(task.path().join("wchan"))
                .is_ok_and(|wchan| wchan.trim() == "wait_for_partner")
        })
}

#[allow(dead_code)]
impl HeldOpening {
    /// Blocks while another test of this process holds one.
    pub fn in_dir(dir: &std::path::Path) -> HeldOpening {
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let alone = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fifo = dir.join("spool.lock");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success(), "mkfifo {}", fifo.display());
        HeldOpening {
            fifo,
            _alone: alone,
        }
    }

    /// Waits until the bridge's opening waits on the FIFO.
    pub async fn wait_reached(&self) {
        eventually("the spool's opening waits on its FIFO", async || {
            an_opening_waits()
        })
        .await;
    }
}

impl Drop for HeldOpening {
    fn drop(&mut self) {
        // On Linux a FIFO opened for both never waits for a partner. Kept open for the rest of
        // the test process: closed, a writer's opening that came after it would wait for good.
        if let Ok(fifo) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.fifo)
        {
            std::mem::forget(fifo);
        }
        // The next test's wait must not see this opening's thread before it wakes.
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while an_opening_waits() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
