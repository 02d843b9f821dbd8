//! The binary: parse settings, start logging, bind, run until SIGTERM/SIGINT, exit code.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use qikchat_bridge::config::{self, Cli, Command, Config, LogFormat};
use qikchat_bridge::embedded::EmbeddedKafka;
use qikchat_bridge::topics::{self, TopicMap};
use qikchat_bridge::{run_with_cut, tail, telemetry, Listeners};

// jemalloc, unprefixed so that librdkafka's C allocations use it too: records are allocated on
// the runtime's threads and freed on librdkafka's, which glibc's arenas serve with a lock.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit code for settings that cannot work (as sysexits' EX_USAGE family does).
const EXIT_CONFIG: u8 = 2;

/// A line on stderr. Not `eprintln!`, which panics when stderr is a closed pipe: the exit code
/// (2 for a setting that cannot work) is what a caller acts on, and a panic would turn it into 101.
fn complain(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Non-UTF-8 variables cannot be Kafka properties; skipping them beats panicking on them.
fn environment() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version: clap prints them to stdout and exits 0.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            complain(format_args!("{}", config::usage_error(&e).trim_end()));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Some(Command::DevKafka {
            partitions,
            topic_prefix,
        }) => dev_kafka(partitions, &topic_prefix),
        Some(Command::Tail(args)) => {
            match tail::run(&args, environment(), &mut std::io::stdout().lock()) {
                Ok(_) => ExitCode::SUCCESS,
                // `tail ... | head -1`: the reader has what it wanted.
                Err(tail::TailError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    complain(format_args!("qikchat-bridge tail: {e}"));
                    if e.is_usage() {
                        ExitCode::from(EXIT_CONFIG)
                    } else {
                        ExitCode::FAILURE
                    }
                }
            }
        }
        None => serve(cli.serve),
    }
}

fn serve(args: config::Args) -> ExitCode {
    let check_only = args.check_config;
    let read_file = qikchat_bridge::operator_file::read_to_string;
    let config = match Config::from_args(args, environment(), read_file) {
        Ok(config) => config,
        Err(e) => {
            complain(format_args!("qikchat-bridge: invalid configuration: {e}"));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if check_only {
        return check_config(&config);
    }
    if let Err(e) = telemetry::init(config.log_format) {
        complain(format_args!("qikchat-bridge: cannot start logging: {e}"));
        return ExitCode::FAILURE;
    }
    qikchat_bridge::open_files::raise_limit(config.max_connections);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        // Before anything slow (the producer, the spool's recovery): see `shutdown_signals`.
        let (shutdown, cut) = match shutdown_signals() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM and SIGINT");
                return ExitCode::FAILURE;
            }
        };
        let listeners = match Listeners::bind(&config).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot bind");
                return ExitCode::FAILURE;
            }
        };
        match run_with_cut(config, listeners, shutdown, cut).await {
            Ok(()) => ExitCode::SUCCESS,
            // librdkafka refused a property, or the producer they make (a TLS file missing):
            // a setting that cannot work, as with --check-config.
            Err(
                e @ qikchat_bridge::StartError::Producer(
                    rdkafka::error::KafkaError::ClientConfig(..)
                    | rdkafka::error::KafkaError::ClientCreation(_),
                ),
            ) => {
                tracing::error!(error = %e, "cannot start");
                ExitCode::from(EXIT_CONFIG)
            }
            Err(
                e @ (qikchat_bridge::StartError::SpoolFailed(_)
                | qikchat_bridge::StartError::TaskFailed(_)),
            ) => {
                tracing::error!(error = %e, "stopped");
                ExitCode::FAILURE
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                ExitCode::FAILURE
            }
        }
    });
    // `run` has flushed the webhook producer and closed the spool. Dropping the runtime would wait for
    // every blocking task, such as a producer replaced by a credential rotation that is still
    // delivering its records (up to its message timeout): those were never answered 200.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// Port 0 cannot be connected to: the token request fails before anything is sent.
const OFFLINE_TOKEN_ENDPOINT: &str = "http://127.0.0.1:0/check-config";

/// Validates what start-up would, short of connecting: librdkafka checks every property name
/// and value when it builds its configuration, and the properties together (`acks` against
/// idempotence) and the files they name (TLS keys, CAs) when it makes the producer.
fn check_config(config: &Config) -> ExitCode {
    let mut kafka = rdkafka::ClientConfig::new();
    // No brokers: the producer made below then never tries to connect (nor to resolve a name).
    for (k, v) in config.producer_properties("") {
        match k.as_str() {
            "bootstrap.servers" => {}
            // With the `oidc` method a new client asks for a token at once, which would send
            // the client secret to the identity provider (and wait for its answer) only to check
            // a configuration. An endpoint that refuses at once stands in; librdkafka's checks
            // of the method's settings (an endpoint is required, the grant's fields) still run.
            "sasl.oauthbearer.token.endpoint.url" => {
                kafka.set(k, OFFLINE_TOKEN_ENDPOINT);
            }
            _ => {
                kafka.set(k, v);
            }
        }
    }
    // What start-up would refuse at once: the directory, or the nearest of its parents that
    // exists (the rest is made then), is something else.
    let spool_file = config.spool_dir.as_deref().and_then(|dir| {
        let existing = dir.ancestors().find(|a| a.exists())?;
        (!existing.is_dir()).then_some(existing)
    });
    if let Some(file) = spool_file {
        complain(format_args!(
            "qikchat-bridge: invalid configuration: --spool-dir: {} is not a directory",
            file.display()
        ));
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Err(e) = kafka.create::<rdkafka::producer::BaseProducer>() {
        let e = qikchat_bridge::kafka_props::redacted(&e);
        complain(format_args!(
            "qikchat-bridge: invalid configuration: Kafka producer settings: {e}"
        ));
        return ExitCode::from(EXIT_CONFIG);
    }
    // A reader that went away (`| head`) has what it wanted; the check itself passed.
    let _ = writeln!(std::io::stdout(), "configuration is valid:\n{config:#?}");
    ExitCode::SUCCESS
}

/// Only the embedded cluster: the bridge's default topics (with `prefix`), its address on stdout.
fn dev_kafka(partitions: i32, prefix: &str) -> ExitCode {
    let _ = telemetry::init(LogFormat::Auto);
    let topics = match TopicMap::new(
        prefix,
        &[],
        topics::DEFAULT_FALLBACK,
        topics::DEFAULT_DEADLETTER,
    ) {
        Ok(map) => map.all_topics(),
        Err(e) => {
            complain(format_args!("qikchat-bridge dev-kafka: {e}"));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            complain(format_args!("qikchat-bridge dev-kafka: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // Listening before the cluster starts: as a container's PID 1, a signal that came while it
    // started (or before its address was printed) would be dropped, and it would run on until
    // killed.
    let signal = {
        let _context = runtime.enter();
        match shutdown_signals() {
            Ok((first, _)) => first,
            Err(e) => {
                complain(format_args!(
                    "qikchat-bridge dev-kafka: cannot listen for SIGTERM and SIGINT: {e}"
                ));
                return ExitCode::FAILURE;
            }
        }
    };
    let kafka = match EmbeddedKafka::start(&topics, partitions) {
        Ok(k) => k,
        Err(e) => {
            complain(format_args!("qikchat-bridge dev-kafka: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // The address is what dev-kafka is for: with no one left to read it, running on would only
    // hold a cluster nobody can find until a signal comes.
    if let Err(e) = writeln!(
        std::io::stdout(),
        "bootstrap.servers={}",
        kafka.bootstrap_servers()
    ) {
        complain(format_args!(
            "qikchat-bridge dev-kafka: cannot print the address: {e}"
        ));
        return ExitCode::FAILURE;
    }
    runtime.block_on(signal);
    drop(kafka);
    ExitCode::SUCCESS
}

/// The first and the second SIGTERM, SIGINT or SIGHUP after it is made, not after they are first
/// polled: as a container's PID 1 the bridge gets no default action for them, so the kernel drops
/// a signal that arrives before a handler exists, and a pod deleted while the bridge starts would
/// ignore its SIGTERM. The first starts the drain, the second cuts it short. SIGHUP (the terminal
/// gone, or a supervisor's "reload") stops it the same way rather than killing it mid-request:
/// the files it could reload are read again every second anyway. Call it inside the runtime.
#[cfg(unix)]
fn shutdown_signals() -> std::io::Result<(Signalled, Signalled)> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (count, signalled) = counted();
    tokio::spawn(async move {
        for n in 1..=2 {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            };
            count(n, name);
        }
        // Later ones are ignored (handled, so not the default action); SIGKILL remains.
        std::future::pending::<()>().await;
    });
    Ok(signalled)
}

#[cfg(not(unix))]
fn shutdown_signals() -> std::io::Result<(Signalled, Signalled)> {
    let (count, signalled) = counted();
    tokio::spawn(async move {
        for n in 1..=2 {
            if tokio::signal::ctrl_c().await.is_err() {
                break;
            }
            count(n, "Ctrl-C");
        }
        std::future::pending::<()>().await;
    });
    Ok(signalled)
}

/// Resolves once the signal it counts has come.
type Signalled = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Where the n-th signal is told, and the futures of the first and the second.
fn counted() -> (impl Fn(u8, &str), (Signalled, Signalled)) {
    let (tx, rx) = tokio::sync::watch::channel(0u8);
    let count = move |n: u8, name: &str| {
        if n == 1 {
            tracing::info!("{name} received");
        } else {
            tracing::info!("{name} received again");
        }
        let _ = tx.send(n);
    };
    let nth = |n: u8| -> Signalled {
        let mut rx = rx.clone();
        Box::pin(async move {
            if rx.wait_for(|seen| *seen >= n).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    };
    (count, (nth(1), nth(2)))
}
