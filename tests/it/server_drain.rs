//! What a listener's drain leaves behind: no request it took, over HTTP/1 or HTTP/2, keeps
//! running after it returns (at the end of its grace) or after it is dropped (a cut drain).
//!
//! hyper runs each HTTP/2 request in a task of its own, apart from its connection's; it ends that
//! task (dropping the request) when the connection is dropped, as its stream then reads as reset.
//! These tests hold the bridge to that, so a request cannot go on using the producer and the
//! spool while the drain flushes and closes them.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use qikchat_bridge::server::{serve_with, ServerOptions};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};

/// Tells its `Notify` when the request future holding it is dropped.
struct Told(Arc<Notify>);

impl Drop for Told {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// A listener whose handler never answers; `started` hears of each request, `dropped` of each
/// request future dropped. Ends its drain when `stop` is sent.
struct Stuck {
    url: String,
    started: Arc<Notify>,
    dropped: Arc<Notify>,
    stop: oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<()>,
}

async fn stuck_listener() -> Stuck {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let (started, dropped) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (heard, told) = (started.clone(), dropped.clone());
    let handler = move |_req| {
        let (heard, told) = (heard.clone(), Told(told.clone()));
        async move {
            let _told = told;
            heard.notify_one();
            std::future::pending::<Response<Full<Bytes>>>().await
        }
    };
    let options = ServerOptions {
        name: "test",
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::from_millis(200),
        max_connections: 16,
        http1_only: false,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(serve_with(listener, handler, options, async move {
        let _ = stopped.await;
    }));
    Stuck {
        url,
        started,
        dropped,
        stop,
        serving,
    }
}

/// Sends one request that will never be answered and waits until the handler has it.
async fn open_request(stuck: &Stuck, client: reqwest::Client) {
    let url = stuck.url.clone();
    tokio::spawn(async move { client.post(url).body("{}").send().await });
    tokio::time::timeout(Duration::from_secs(10), stuck.started.notified())
        .await
        .expect("the handler got the request");
}

async fn ended_at_the_grace(client: reqwest::Client) {
    let stuck = stuck_listener().await;
    open_request(&stuck, client).await;
    let _ = stuck.stop.send(());
    tokio::time::timeout(Duration::from_secs(10), stuck.serving)
        .await
        .expect("the drain ended at its grace")
        .expect("serve_with did not panic");
    tokio::time::timeout(Duration::from_secs(5), stuck.dropped.notified())
        .await
        .expect("the request still open at the grace's end was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_request_open_when_the_grace_ends_is_dropped_with_its_connection() {
    let client = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("client");
    ended_at_the_grace(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_request_open_when_the_grace_ends_is_dropped_with_its_connection() {
    let client = common::h2c_client();
    ended_at_the_grace(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_request_open_when_the_server_is_dropped_is_dropped_with_it() {
    let client = common::h2c_client();
    let stuck = stuck_listener().await;
    open_request(&stuck, client).await;
    // As `run` does when the drain is cut short: the server's future is dropped.
    stuck.serving.abort();
    let _ = stuck.serving.await;
    tokio::time::timeout(Duration::from_secs(5), stuck.dropped.notified())
        .await
        .expect("the open request was dropped with the server");
}

/// A shutdown that comes while every connection slot is taken (kept-alive connections of a
/// proxy's pool, say) starts the drain at once: waiting for a slot to free first would hold it
/// until a connection's idle timeout ran out, with its connections never told to close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_at_the_connection_limit_drains_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handler = |_req| async { Response::new(Full::new(Bytes::from_static(b"ok"))) };
    let options = ServerOptions {
        name: "test",
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(30),
        max_connections: 1,
        http1_only: false,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(serve_with(listener, handler, options, async move {
        let _ = stopped.await;
    }));
    // The one slot, kept alive after its answer.
    let mut held = tokio::net::TcpStream::connect(addr).await.expect("connect");
    held.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = [0u8; 512];
    let read = held.read(&mut answer).await.expect("answered");
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("the drain waited for a free slot before it began")
        .expect("serve_with did not panic");
}
