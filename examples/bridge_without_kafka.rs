//! The bridge with Kafka taken out, for bench/run.sh's decomposition of the peak figure.
//!
//! Same flags, same runtime, allocator, listener, admin server and request path as the real
//! binary (routing, auth, body limits, classification, record building, metrics, answer), but
//! the sink answers at once instead of producing. Its throughput, set beside the ceiling's and
//! the bridge's, says how much of the gap is this crate's own request handling and how much is
//! the Kafka client and broker sharing the machine. NOT a product mode: every 200 it gives is a
//! lie about durability, which is why it is an example and never part of the binary.

use std::sync::Arc;

use clap::Parser;
use qikchat_bridge::admin::{self, Health};
use qikchat_bridge::config::{Cli, Config};
use qikchat_bridge::metrics::Metrics;
use qikchat_bridge::producer::{Delivered, ProduceError, Sink};
use qikchat_bridge::record::Record;
use qikchat_bridge::server::{self, ServerOptions};
use qikchat_bridge::webhook::Webhook;
use qikchat_bridge::Listeners;
use tokio::time::Instant;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Takes the fully built record and acknowledges it without sending it anywhere.
struct Discard;

impl Sink for Discard {
    async fn send(
        &self,
        record: &Record<'_>,
        _deadline: Instant,
    ) -> Result<Delivered, ProduceError> {
        // Keep the record's construction from being optimised away.
        std::hint::black_box(record);
        Ok(Delivered::Kafka {
            partition: 0,
            offset: 0,
        })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let config = Config::from_args(cli.serve, env, |p| std::fs::read_to_string(p))?;
    // The bridge's own logging, filter and all: with no subscriber, tracing's call sites would
    // take a cheaper path than the bridge's do.
    let _log = qikchat_bridge::telemetry::init(config.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listeners = Listeners::bind(&config).await?;
        let metrics = Arc::new(Metrics::new(&config.topics.all_topics())?);
        let health = Arc::new(Health::default());
        health.kafka.set(Ok(()));
        health
            .started
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(admin::serve(
            listeners.admin,
            health,
            metrics.clone(),
            config.header_read_timeout,
            stop_rx,
        ));
        let webhook = Arc::new(Webhook::new(&config, Arc::new(Discard), metrics));
        let options = ServerOptions::webhook(&config);
        // Runs until killed: the benchmark stops it with SIGTERM.
        server::serve(
            listeners.webhook,
            webhook,
            options,
            std::future::pending::<()>(),
        )
        .await;
        Ok(())
    })
}
