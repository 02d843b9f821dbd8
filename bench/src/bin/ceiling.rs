//! The ceiling: a bare hyper 1 server that reads each request body fully and answers 200 with
//! the bridge's success body. Same stack as the bridge (tokio multi-thread runtime, hyper-util's
//! auto builder, HTTP/1.1 keep-alive with half-close allowed, TCP_NODELAY) and nothing else: no
//! auth, no parsing, no Kafka, and the system allocator.
//!
//! Usage: ceiling --listen 127.0.0.1:PORT

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{header, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

const ACCEPTED: &[u8] = br#"{"status":"accepted"}"#;

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the whole body, as the bridge must before it can produce it.
    let status = match req.into_body().collect().await {
        Ok(_) => hyper::StatusCode::OK,
        Err(_) => hyper::StatusCode::BAD_REQUEST,
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(ACCEPTED)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// A bare hyper server: the benchmark's ceiling.
#[derive(clap::Parser)]
struct Args {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
}

fn main() {
    let listen = <Args as clap::Parser>::parse().listen;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| {
                eprintln!("ceiling: cannot bind {listen}: {e}");
                std::process::exit(1)
            });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The bridge's HTTP/1 settings that make it cheaper (half-close spares a recv per
        // request): the ceiling must not lose to the bridge on a setting.
        builder.http1().keep_alive(true).half_close(true);
        let accept = async {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("ceiling: accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let builder = builder.clone();
                tokio::spawn(async move {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service_fn(handle))
                        .await;
                });
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = accept => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
}
