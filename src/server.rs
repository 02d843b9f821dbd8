//! The listeners' accept loop: HTTP/1.1 keep-alive and h2c on one port, a connection limit,
//! header and idle timeouts, and a graceful drain that lets in-flight requests finish within a bound.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::producer::Sink;
use crate::quiet::Quieted;
use crate::webhook::Webhook;

mod activity;

use activity::{Activity, Limits, OpenRequest, Verdict, Watched};

#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Which listener, in its log lines: `webhook` or `admin`.
    pub name: &'static str,
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    /// Refuse HTTP/2 (hyper then answers its preface as a malformed HTTP/1 request).
    pub http1_only: bool,
}

impl ServerOptions {
    /// The webhook listener's, from its settings.
    pub fn webhook(config: &Config) -> ServerOptions {
        ServerOptions {
            name: "webhook",
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            shutdown_grace: config.shutdown_grace,
            max_connections: config.max_connections,
            http1_only: config.http1_only,
        }
    }
}

/// Serves webhooks until `shutdown` resolves, then stops accepting, waits (at most
/// `shutdown_grace`) for open requests to be answered, and closes what is still open.
pub async fn serve<S: Sink>(
    listener: TcpListener,
    webhook: Arc<Webhook<S>>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |req| {
        let webhook = webhook.clone();
        async move { webhook.handle(req).await }
    };
    serve_with(listener, handler, options, shutdown).await;
}

/// [`serve`] for any handler: the admin listener gets the same connection limit, timeouts and
/// drain as the webhook one.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    handler: H,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        // Without half-close, hyper tries a read on every request whose answer is pending (to
        // notice a client that hung up): one more recv syscall per webhook, which would only
        // drop a future whose record librdkafka sends anyway. With it, the answer is written
        // when the delivery report comes and a gone client fails that write.
        .half_close(true)
        // hyper's default (~408 KiB) is what a request head may fill before it answers 431, and
        // every connection may, before anyone is authenticated: 4096 of them held 1.6 GiB.
        // Qikchat's heads are under 1 KiB; bodies are read through it 16 KiB at a time.
        .max_buf_size(READ_BUFFER_BYTES)
        // Its timer would also run while a kept-alive connection waits for its next request;
        // the connection's loop below keeps the two waits apart (see `activity`).
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        // What one connection may hold before anyone is authenticated is its open streams'
        // header lists: HPACK lets a byte on the wire stand for a whole header, so a stream's
        // list decodes to up to 16 KiB of headers (about 60 KiB in memory) for ~0.5 KiB sent.
        // 256 streams let one unauthenticated connection hold ~15 MiB, and 200 connections
        // 2.8 GiB; 32 still keep ~1 ms acknowledgements from capping a connection below
        // ~30k webhooks a second, and a proxy that wants more opens more connections.
        .max_concurrent_streams(HTTP2_MAX_STREAMS)
        .max_header_list_size(READ_BUFFER_BYTES as u32)
        // Pings find peers that vanished without a FIN, which would otherwise keep a
        // connection's permit for good.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = if options.http1_only {
        builder.http1_only()
    } else {
        builder
    };
    // Told to every connection at shutdown: each then closes as hyper's graceful shutdown does
    // (HTTP/1 once its request is answered, HTTP/2 with GOAWAY after its open streams).
    let (stopping, stop) = watch::channel(false);
    tokio::pin!(shutdown);
    // A permit per open connection: at the limit, accepting pauses and new clients wait in the
    // kernel's backlog instead of costing memory here.
    let connections = Arc::new(Semaphore::new(options.max_connections));
    let mut tasks = JoinSet::new();
    let quieted = Quieted::default();

    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Usually EMFILE/ENFILE: back off instead of spinning on the error, and log it
                // once a window, not 20 times a second for as long as the descriptors stay used.
                match quieted.admit(&e.to_string(), Instant::now()) {
                    None => {}
                    Some(held_back) => tracing::warn!(
                        listener = options.name,
                        error = %e,
                        held_back,
                        "accept failed; new connections wait in the kernel's backlog (repeats are \
                         logged once every {}s, with how many were held back)",
                        crate::quiet::WINDOW.as_secs()
                    ),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while tasks.try_join_next().is_some() {}
        // Answers are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let activity = Arc::new(Activity::default());
        let seen = activity.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let head = req.method() == http::Method::HEAD;
            let answer = handler(req);
            let request = OpenRequest::started(seen.clone());
            async move {
                let mut answer = answer.await;
                if head {
                    answer = without_body(answer);
                }
                request.answered(earns_idle(answer.status()));
                Ok::<_, Infallible>(answer)
            }
        });
        let conn = builder
            .serve_connection(
                TokioIo::new(Watched::new(stream, activity.clone())),
                service,
            )
            .into_owned();
        let limits = Limits {
            header_read: options.header_read_timeout,
            idle: options.idle_timeout,
        };
        let name = options.name;
        let mut stop = stop.clone();
        tasks.spawn(async move {
            tokio::pin!(conn);
            let mut closing = false;
            let check = tokio::time::sleep(limits.header_read.min(limits.idle));
            tokio::pin!(check);
            // hyper-util has no timer while it tells HTTP/1 from HTTP/2, hyper's HTTP/1 timer is
            // off (see above), and an HTTP/2 connection is closed only when its pings go
            // unanswered: this loop bounds a first request, a head and an idle keep-alive
            // connection for both protocols.
            let ended = loop {
                tokio::select! {
                    // The connection first: a request that arrived as the timer fired must be
                    // seen (and counted open) before the timer's branch judges it idle.
                    biased;
                    ended = conn.as_mut() => break ended,
                    _ = stop.wait_for(|stop| *stop), if !closing => {
                        conn.as_mut().graceful_shutdown();
                        activity.told_to_close();
                        closing = true;
                    }
                    () = check.as_mut() => {
                        let wait = match activity.verdict(limits) {
                            Verdict::Wait(left) => left,
                            Verdict::SlowHead => {
                                tracing::debug!(listener = name, %peer, "request head not sent within the header read timeout; dropping the connection");
                                return;
                            }
                            // Closed gracefully first: an HTTP/2 client told by GOAWAY knows its
                            // next request was not taken and may send it again elsewhere, where a
                            // bare close could have cut it off unanswered. One that lets a whole
                            // timeout pass without closing is dropped.
                            Verdict::Idle if closing => {
                                tracing::debug!(listener = name, %peer, "idle connection still open a timeout after it was told to close; dropping it");
                                return;
                            }
                            Verdict::Idle => {
                                tracing::debug!(listener = name, %peer, "no request within the header read or idle timeout; closing");
                                conn.as_mut().graceful_shutdown();
                                activity.told_to_close();
                                closing = true;
                                limits.header_read.min(limits.idle)
                            }
                        };
                        check.as_mut().reset(tokio::time::Instant::now() + wait);
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }

    drop(listener);
    // Connections that ended since the last accept are still in the set until reaped.
    while tasks.try_join_next().is_some() {}
    let open = tasks.len();
    tracing::info!(
        listener = options.name,
        open_connections = open,
        "stopped accepting; draining"
    );
    let _ = stopping.send(true);
    let drained = async { while tasks.join_next().await.is_some() {} };
    tokio::select! {
        () = drained => tracing::info!(listener = options.name, "all connections drained"),
        () = tokio::time::sleep(options.shutdown_grace) => {
            tracing::warn!(listener = options.name, grace = ?options.shutdown_grace, "shutdown grace expired; closing the remaining connections");
        }
    }
    // Their requests are cut off unanswered, so their senders retry; a record already handed
    // to librdkafka is still flushed after this returns.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// The answer to a `HEAD`: the headers a `GET` would get, its `Content-Length` too, and no
/// body. hyper leaves out the body itself over HTTP/1 only: over HTTP/2 it sent it as DATA frames,
/// which clients refuse as a protocol error (RFC 9110 §9.3.2: a HEAD answer has no content).
fn without_body(answer: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    use hyper::body::Body;
    let (mut parts, body) = answer.into_parts();
    if let Some(length) = body.size_hint().exact() {
        parts
            .headers
            .entry(http::header::CONTENT_LENGTH)
            .or_insert_with(|| length.into());
    }
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// The most an HTTP/1 connection buffers while it reads: a longer request head gets 431.
pub const READ_BUFFER_BYTES: usize = 16 * 1024;

/// The streams an HTTP/2 connection may have open at once (see `serve`).
pub const HTTP2_MAX_STREAMS: u32 = 32;

/// Whether a connection whose last answer had this status may wait `--idle-timeout` for its next
/// request: not one refused as a stranger's (wrong path, method or credentials), whose sender
/// could otherwise hold a slot that long with one request. Any other answer went to a sender who
/// authenticated, including refusals (400, 413, a 503 while Kafka is down): closing its
/// connections early would race a proxy's pool, which does not retry a POST.
fn earns_idle(status: http::StatusCode) -> bool {
    use http::StatusCode as S;
    !matches!(
        status,
        S::UNAUTHORIZED | S::NOT_FOUND | S::METHOD_NOT_ALLOWED
    )
}
