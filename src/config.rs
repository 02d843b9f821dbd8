//! Command-line flags and environment variables, turned into a validated [`Config`].
//!
//! Parsing is split in two so tests never touch the process environment: clap reads flags (and
//! their `BRIDGE_*` twins), then [`Config::from_args`] is a pure function over those arguments,
//! a lookup of the remaining environment (`KAFKA_*` → librdkafka properties) and a file reader.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::auth::{Credential, Credentials};
use crate::kafka_props::{self, KafkaProperties};
use crate::topics::{self, KeyStrategy, TopicMap};

/// The user and password Qikchat's documentation uses; only ever accepted in embedded mode.
pub const SEED_CREDENTIAL: &str = "testuser:testpass";

/// Receives Qikchat webhooks, authenticates them and produces each one to Kafka, byte for byte.
///
/// Every flag has an environment variable (shown in brackets). Any `KAFKA_<NAME>` variable sets
/// the librdkafka property `<name>` (`_` → `.`, `__` → `_`, `___` → `-`), and `KAFKA_<NAME>_FILE`
/// reads that property's value from a file. Without --kafka-brokers the bridge starts an
/// in-memory Kafka for local use.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "qikchat-bridge",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: Args,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Run only the embedded Kafka (librdkafka's mock cluster) with the bridge's topics, print
    /// `bootstrap.servers=HOST:PORT` and wait for SIGTERM/SIGINT. For benchmarks and local tests.
    DevKafka {
        /// Partitions per topic.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// Prepended to every topic name.
        #[arg(long, env = "BRIDGE_TOPIC_PREFIX", default_value = "")]
        topic_prefix: String,
    },
    /// Print the records in topics as JSON lines (topic, partition, offset, timestamp, key,
    /// headers, value), for debugging a live pipeline.
    Tail(crate::tail::TailArgs),
}

/// The serving flags (the default command).
#[derive(Parser, Debug, Clone)]
#[command(name = "qikchat-bridge")]
pub struct Args {
    /// Address of the webhook listener.
    #[arg(long, env = "BRIDGE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address of the admin listener (/metrics, /livez, /readyz); keep it off the public ingress.
    #[arg(long, env = "BRIDGE_ADMIN_LISTEN", default_value = "0.0.0.0:9464")]
    pub admin_listen: SocketAddr,

    /// Kafka bootstrap servers (host:port,...). Unset: start an embedded in-memory Kafka.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_brokers: Option<String>,

    /// A librdkafka producer property, KEY=VALUE (repeatable; wins over KAFKA_* variables).
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_properties: Vec<String>,

    /// An accepted Basic credential, USER:PASS (repeatable, for rotation; env: comma-separated).
    #[arg(
        long,
        env = "BRIDGE_AUTH",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub auth: Vec<String>,

    /// A file of accepted credentials, one USER:PASS per line (# comments and blank lines skipped).
    #[arg(long, env = "BRIDGE_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,

    /// Accept webhooks without credentials. Insecure: anyone who finds the URL can write to Kafka.
    #[arg(long, env = "BRIDGE_INSECURE_DISABLE_AUTH")]
    pub insecure_disable_auth: bool,

    /// The path Qikchat posts to; every other path answers 404.
    #[arg(long, env = "BRIDGE_WEBHOOK_PATH", default_value = "/webhook")]
    pub webhook_path: String,

    /// How long a request may wait for Kafka's acknowledgement before it is answered 503.
    #[arg(long, env = "BRIDGE_ACK_TIMEOUT", default_value = "1500ms", value_parser = humantime::parse_duration)]
    pub ack_timeout: Duration,

    /// Largest accepted request body, in bytes (larger: 413).
    #[arg(long, env = "BRIDGE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Prepended to every topic name (e.g. "prod.").
    #[arg(long, env = "BRIDGE_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,

    /// Route an event to a topic, EVENT=TOPIC (repeatable; replaces that event's default).
    #[arg(
        long = "topic",
        env = "BRIDGE_TOPICS",
        value_delimiter = ',',
        value_name = "EVENT=TOPIC"
    )]
    pub topics: Vec<String>,

    /// Topic for authenticated events whose `event` has no route.
    #[arg(long, env = "BRIDGE_FALLBACK_TOPIC", default_value = topics::DEFAULT_FALLBACK)]
    pub fallback_topic: String,

    /// Topic for authenticated bodies that are not a JSON object with a string `event` (answered 400).
    #[arg(long, env = "BRIDGE_DEADLETTER_TOPIC", default_value = topics::DEFAULT_DEADLETTER)]
    pub deadletter_topic: String,

    /// How the record key is chosen.
    #[arg(long, env = "BRIDGE_KEY_STRATEGY", value_enum, default_value_t = KeyStrategy::Conversation)]
    pub key_strategy: KeyStrategy,

    /// Directory of the durable spool. Set: a record Kafka has not acknowledged in time is written
    /// here (fsync) and answered 200, then replayed to Kafka in order. Unset: such requests get 503.
    #[arg(long, env = "BRIDGE_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Largest size of the spool's records in bytes; when full, unacknowledged requests get 503.
    #[arg(long, env = "BRIDGE_SPOOL_MAX_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub spool_max_bytes: u64,

    /// Requests handled at once; more are answered 503 at once, so memory stays bounded
    /// (at most this many bodies of --max-body-bytes).
    #[arg(long, env = "BRIDGE_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,

    /// Open client connections; at the limit the bridge stops accepting until one closes.
    #[arg(long, env = "BRIDGE_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// How long a client may take to send the request head.
    #[arg(long, env = "BRIDGE_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a client may take to send the request body (slower: 408).
    #[arg(long, env = "BRIDGE_BODY_READ_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,

    /// After SIGTERM, keep serving but report unready for this long, so load balancers drain first.
    #[arg(long, env = "BRIDGE_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,

    /// After that, how long in-flight requests may take to finish.
    #[arg(long, env = "BRIDGE_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// How long the producer may take to flush its queue at exit.
    #[arg(long, env = "BRIDGE_FLUSH_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub flush_timeout: Duration,

    /// Log format; auto is json unless stderr is a terminal. The filter comes from RUST_LOG.
    #[arg(long, env = "BRIDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// Include customers' phone numbers (record keys) in logs.
    #[arg(long, env = "BRIDGE_LOG_PHONE_NUMBERS")]
    pub log_phone_numbers: bool,

    /// Also write CloudEvents headers (ce_specversion, ce_id, ce_source, ce_type, ce_time; Kafka
    /// binding, binary mode). The value stays the body, unchanged.
    #[arg(long, env = "BRIDGE_CLOUDEVENTS")]
    pub cloudevents: bool,

    /// The CloudEvents `source` attribute (a URI-reference).
    #[arg(
        long,
        env = "BRIDGE_CLOUDEVENTS_SOURCE",
        default_value = "qikchat-bridge"
    )]
    pub cloudevents_source: String,

    /// Partitions of each topic the embedded Kafka creates.
    #[arg(long, env = "BRIDGE_EMBEDDED_PARTITIONS", default_value_t = 3)]
    pub embedded_partitions: i32,

    /// Validate every setting (reading *_FILE files too), print a redacted summary and exit.
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

/// Where records go: brokers the operator runs, or the in-process mock cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KafkaMode {
    Brokers(String),
    Embedded,
}

/// Everything the bridge needs to run, validated.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub kafka: KafkaMode,
    pub kafka_properties: KafkaProperties,
    pub credentials: Credentials,
    /// True when the seed's test credential was put in place because none was configured.
    pub seed_credential_in_use: bool,
    pub webhook_path: String,
    pub ack_timeout: Duration,
    pub max_body_bytes: usize,
    pub topics: TopicMap,
    pub key_strategy: KeyStrategy,
    pub spool_dir: Option<PathBuf>,
    pub spool_max_bytes: u64,
    pub max_in_flight: usize,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    pub flush_timeout: Duration,
    pub log_format: LogFormat,
    pub log_phone_numbers: bool,
    /// `Some(source)` when CloudEvents headers are on.
    pub cloudevents_source: Option<String>,
    pub embedded_partitions: i32,
}

/// A setting that cannot be used, with the flag or variable to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{setting}: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
    #[error("cannot read {setting} file {path}: {reason}")]
    File {
        setting: String,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "no webhook credentials are configured for real Kafka brokers: set --auth USER:PASS, \
         BRIDGE_AUTH or BRIDGE_AUTH_FILE, or pass --insecure-disable-auth to accept \
         unauthenticated webhooks"
    )]
    NoCredentials,
}

pub(crate) fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.into(),
    }
}

impl Config {
    /// Validates parsed arguments. `env` lists the process environment (only `KAFKA_*` entries
    /// are read from it); `read_file` reads secrets mounted as files.
    pub fn from_args<E, R>(args: Args, env: E, read_file: R) -> Result<Config, ConfigError>
    where
        E: IntoIterator<Item = (String, String)>,
        R: Fn(&Path) -> std::io::Result<String>,
    {
        let kafka = match args.kafka_brokers.as_deref().map(str::trim) {
            None | Some("") => KafkaMode::Embedded,
            Some(brokers) => KafkaMode::Brokers(brokers.to_string()),
        };
        let kafka_properties = kafka_props::from_sources(
            env,
            &args.kafka_properties,
            crate::delivery::kafka_wait(args.ack_timeout, args.spool_dir.is_some()),
            &read_file,
        )?;

        let mut credentials = Vec::new();
        for entry in &args.auth {
            credentials.push(Credential::parse(entry).map_err(|r| invalid("--auth", r))?);
        }
        if let Some(path) = &args.auth_file {
            let text = read_file(path).map_err(|e| ConfigError::File {
                setting: "--auth-file".into(),
                path: path.clone(),
                reason: e.to_string(),
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let cred = Credential::parse(line)
                    .map_err(|r| invalid("--auth-file", format!("line {}: {r}", n + 1)))?;
                credentials.push(cred);
            }
        }
        let mut seed_credential_in_use = false;
        if credentials.is_empty() && !args.insecure_disable_auth {
            match kafka {
                KafkaMode::Brokers(_) => return Err(ConfigError::NoCredentials),
                KafkaMode::Embedded => {
                    credentials
                        .push(Credential::parse(SEED_CREDENTIAL).map_err(|r| invalid("seed", r))?);
                    seed_credential_in_use = true;
                }
            }
        }
        let credentials = if args.insecure_disable_auth {
            Credentials::disabled()
        } else {
            Credentials::new(credentials)
        };

        if !args.webhook_path.starts_with('/') || args.webhook_path.contains(['?', '#', ' ']) {
            return Err(invalid(
                "--webhook-path",
                format!(
                    "{:?} must be an absolute path like /webhook",
                    args.webhook_path
                ),
            ));
        }
        let positive = [
            ("--ack-timeout", args.ack_timeout),
            ("--header-read-timeout", args.header_read_timeout),
            ("--body-read-timeout", args.body_read_timeout),
        ];
        for (setting, value) in positive {
            if value.is_zero() {
                return Err(invalid(setting, "must be greater than zero"));
            }
        }
        if args.cloudevents && args.cloudevents_source.trim().is_empty() {
            return Err(invalid("--cloudevents-source", "cannot be empty"));
        }
        if args.spool_dir.is_some() && args.spool_max_bytes < args.max_body_bytes as u64 + 4096 {
            return Err(invalid(
                "--spool-max-bytes",
                "must hold at least one body of --max-body-bytes (plus 4 KiB for its headers)",
            ));
        }
        if args.max_in_flight == 0 || args.max_connections == 0 {
            return Err(invalid(
                "--max-in-flight/--max-connections",
                "must be greater than zero",
            ));
        }
        if args.max_body_bytes == 0 {
            return Err(invalid("--max-body-bytes", "must be greater than zero"));
        }
        if !(1..=1000).contains(&args.embedded_partitions) {
            return Err(invalid(
                "--embedded-partitions",
                "must be between 1 and 1000",
            ));
        }
        let topics = TopicMap::new(
            &args.topic_prefix,
            &args.topics,
            &args.fallback_topic,
            &args.deadletter_topic,
        )?;

        Ok(Config {
            listen: args.listen,
            admin_listen: args.admin_listen,
            kafka,
            kafka_properties,
            credentials,
            seed_credential_in_use,
            webhook_path: args.webhook_path,
            ack_timeout: args.ack_timeout,
            max_body_bytes: args.max_body_bytes,
            topics,
            key_strategy: args.key_strategy,
            spool_dir: args.spool_dir,
            spool_max_bytes: args.spool_max_bytes,
            max_in_flight: args.max_in_flight,
            max_connections: args.max_connections,
            header_read_timeout: args.header_read_timeout,
            body_read_timeout: args.body_read_timeout,
            shutdown_delay: args.shutdown_delay,
            shutdown_grace: args.shutdown_grace,
            flush_timeout: args.flush_timeout,
            log_format: args.log_format,
            log_phone_numbers: args.log_phone_numbers,
            cloudevents_source: args.cloudevents.then_some(args.cloudevents_source),
            embedded_partitions: args.embedded_partitions,
        })
    }

    /// Config for tests and embedding: defaults plus `brokers`, with the given `USER:PASS`.
    pub fn for_brokers(brokers: &str, credential: &str) -> Result<Config, ConfigError> {
        let args = Args::try_parse_from([
            "qikchat-bridge",
            "--kafka-brokers",
            brokers,
            "--auth",
            credential,
        ])
        .map_err(|e| invalid("args", e.to_string()))?;
        Config::from_args(args, std::iter::empty(), |p| std::fs::read_to_string(p))
    }

    /// Librdkafka properties with the bootstrap servers filled in.
    pub fn producer_properties(&self, bootstrap: &str) -> BTreeMap<String, String> {
        let mut props = self.kafka_properties.to_map();
        props.insert("bootstrap.servers".into(), bootstrap.to_string());
        props
    }
}

/// Secrets stay out of logs and `--check-config` output: credentials show only user names and
/// Kafka properties that look secret are masked.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("kafka", &self.kafka)
            .field("kafka_properties", &self.kafka_properties)
            .field("credentials", &self.credentials)
            .field("webhook_path", &self.webhook_path)
            .field("ack_timeout", &self.ack_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("topics", &self.topics)
            .field("key_strategy", &self.key_strategy)
            .field("spool_dir", &self.spool_dir)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_connections", &self.max_connections)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("shutdown_delay", &self.shutdown_delay)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("flush_timeout", &self.flush_timeout)
            .field("log_format", &self.log_format)
            .field("log_phone_numbers", &self.log_phone_numbers)
            .field("cloudevents_source", &self.cloudevents_source)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
