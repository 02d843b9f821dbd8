//! Command-line flags (in `args.rs`) and environment variables, turned into a validated [`Config`].
//!
//! Parsing is split in two so tests never touch the process environment: clap reads flags (and
//! their `BRIDGE_*` twins), then [`Config::from_args`] is a pure function over those arguments,
//! a lookup of the remaining environment (`KAFKA_*` → librdkafka properties) and a file reader.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use crate::auth::{self, AuthReload, CommaSplit, Credential, Credentials, FileDigest};
use crate::delivery::SpoolBudget;
use crate::kafka_props::{Defaults, KafkaProperties, KafkaSources, Watched};
use crate::topics::{KeyStrategy, TopicMap};

/// The user and password Qikchat's documentation uses; only ever accepted in embedded mode.
pub const SEED_CREDENTIAL: &str = "testuser:testpass";

/// How long Qikchat waits for a webhook's answer.
const QIKCHAT_WAITS: Duration = Duration::from_secs(2);

mod args;
mod bounds;
pub(crate) mod brokers;
mod caveats;
pub use args::{refusal, usage_error, variable_of, Args, Cli, Command, LogFormat};
pub use caveats::KafkaCaveats;

/// Where records go: brokers the operator runs, or the in-process mock cluster.
#[derive(Clone, PartialEq, Eq)]
pub enum KafkaMode {
    Brokers(String),
    Embedded,
}

/// The brokers without the password of a URL among them (`SASL_SSL://user:pass@host:9093`), as
/// the Kafka properties and librdkafka's texts show them: `--check-config` prints this.
impl fmt::Debug for KafkaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KafkaMode::Brokers(brokers) => f
                .debug_tuple("Brokers")
                .field(&crate::kafka_props::broker_list_password_hidden(brokers))
                .finish(),
            KafkaMode::Embedded => f.write_str("Embedded"),
        }
    }
}

/// Everything the bridge needs to run, validated.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub kafka: KafkaMode,
    pub kafka_properties: KafkaProperties,
    /// What `kafka_properties` came from, to make them again when a file they name changes.
    pub kafka_sources: KafkaSources,
    /// The files behind `kafka_properties`, as they were when read.
    pub kafka_watched: Watched,
    pub credentials: Credentials,
    /// Set with `--auth-file`: the file is read again while the bridge runs.
    pub auth_reload: Option<AuthReload>,
    /// The `--auth` values (or `BRIDGE_AUTH`) split at commas into several credentials.
    pub auth_comma_splits: Vec<CommaSplit>,
    /// True when the seed's test credential was put in place because none was configured.
    pub seed_credential_in_use: bool,
    pub webhook_path: String,
    pub ack_timeout: Duration,
    pub max_body_bytes: usize,
    pub topics: TopicMap,
    pub key_strategy: KeyStrategy,
    pub spool_dir: Option<PathBuf>,
    pub spool_max_bytes: u64,
    /// What is kept back from the ack deadline for a spool write (with `spool_dir` only).
    pub spool_write_budget: SpoolBudget,
    /// Records a second replay may send on average; 0: unpaced.
    pub replay_max_rate: u32,
    pub max_in_flight: usize,
    pub max_in_flight_bytes: u64,
    pub max_connections: usize,
    /// Refuse HTTP/2 on the webhook port.
    pub http1_only: bool,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
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

/// What says that settings without brokers are meant for a real deployment rather than the
/// embedded Kafka (which accepts the seed credential and takes no security settings): an unset
/// `KAFKA_BOOTSTRAP_SERVERS` (an optional ConfigMap key missing, a typo) would otherwise answer
/// every webhook 200 and lose it all at the next restart.
fn deployment_sign(args: &Args, kafka: &KafkaProperties) -> Option<String> {
    if !args.auth.is_empty() || args.auth_file.is_some() {
        return Some("webhook credentials are configured (--auth or --auth-file)".into());
    }
    if args.insecure_disable_auth {
        return Some(
            "--insecure-disable-auth is set (the embedded Kafka takes its seed credential)".into(),
        );
    }
    kafka
        .names()
        .find(|n| *n == "security.protocol" || n.starts_with("sasl.") || n.starts_with("ssl."))
        .map(|n| format!("a Kafka security setting is given ({n})"))
}

/// A file setting that could not be read. Its path is shown, unless it names nothing and has no
/// `/`: then it may be a secret set in the wrong variable (a password in `BRIDGE_AUTH_FILE`, not
/// `BRIDGE_AUTH`), and the message goes to the pod's log.
pub(crate) fn unreadable(setting: String, path: &Path, e: &std::io::Error) -> ConfigError {
    let path = if e.kind() == std::io::ErrorKind::NotFound && !path.to_string_lossy().contains('/')
    {
        PathBuf::from(
            "(a value without a '/', not shown: it may be a secret set in the wrong variable)",
        )
    } else {
        path.to_path_buf()
    };
    ConfigError::File {
        setting,
        path,
        reason: e.to_string(),
    }
}

impl ConfigError {
    /// The flag (or variable) whose value was refused: an invalid one, or a file it names.
    pub fn setting(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { setting, .. } => Some(setting),
            ConfigError::File { setting, .. } => Some(setting),
            _ => None,
        }
    }
}

pub(crate) fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.into(),
    }
}

/// Whether an `--auth` value (or `BRIDGE_AUTH`) holds anything: one of nothing but commas and
/// spaces (a template whose variables were all missing) is as empty as an empty one.
fn names_a_credential(value: &str) -> bool {
    value.split(',').any(|entry| !entry.trim().is_empty())
}

/// What `args` keep back from the ack deadline for a spool write: `None` without a spool.
fn spool_budget_of(args: &Args) -> Option<SpoolBudget> {
    args.spool_dir
        .as_ref()
        .map(|_| SpoolBudget::from_setting(args.spool_write_budget))
}

/// librdkafka refuses a `linger.ms` not below `message.timeout.ms` ("`message.timeout.ms` must be
/// greater than `linger.ms`"), naming a timeout the operator may never have set: the bridge's own,
/// `--ack-timeout` less `--spool-write-budget`. Said here with the setting it comes from.
fn lingers_past_the_wait(args: &Args, properties: &KafkaProperties) -> Result<(), ConfigError> {
    let spool = spool_budget_of(args);
    let wait_ms = crate::delivery::kafka_wait(args.ack_timeout, spool)
        .as_millis()
        .max(1);
    // The operator's own message.timeout.ms: librdkafka's words say it all.
    if properties.get("message.timeout.ms") != Some(wait_ms.to_string().as_str()) {
        return Ok(());
    }
    let Some(linger) = properties.number::<f64>("linger.ms") else {
        return Ok(());
    };
    if linger < wait_ms as f64 {
        return Ok(());
    }
    let setting = if spool.is_some() && args.spool_write_budget.is_some() {
        "--spool-write-budget"
    } else {
        "--ack-timeout"
    };
    Err(invalid(
        setting,
        format!(
            "leaves Kafka {wait_ms} ms (librdkafka's message.timeout.ms, the ack timeout less the \
             time kept for the spool's write), not more than linger.ms ({linger}), which \
             librdkafka refuses: lower linger.ms, or leave Kafka more of the ack timeout"
        ),
    ))
}

impl Config {
    /// Validates parsed arguments. `env` lists the process environment (only `KAFKA_*` entries
    /// are read from it); `read_file` reads secrets mounted as files.
    pub fn from_args<E, R>(args: Args, env: E, read_file: R) -> Result<Config, ConfigError>
    where
        E: IntoIterator<Item = (String, String)>,
        R: Fn(&Path) -> std::io::Result<String>,
    {
        // Empty is refused, not taken for unset: a variable that resolved to nothing (a missing
        // ConfigMap key) would otherwise answer 200 for records kept only in memory.
        let kafka = match args.kafka_brokers.as_deref().map(str::trim) {
            None => KafkaMode::Embedded,
            Some(brokers) => match brokers::refusal(
                brokers,
                "is empty: name the brokers (host:port,...), or leave it unset for the embedded \
                 in-memory Kafka",
            ) {
                Some(why) => return Err(invalid("--kafka-brokers", why)),
                None => KafkaMode::Brokers(brokers.to_string()),
            },
        };
        // Likewise an empty `BRIDGE_AUTH`, which each check below would misread: as a credential
        // without a colon, as credentials configured (refusing the embedded Kafka), or as
        // credentials set together with --insecure-disable-auth.
        if args.auth.iter().any(|value| !names_a_credential(value)) {
            return Err(invalid(
                "--auth",
                "is empty (BRIDGE_AUTH set to nothing, or to nothing but commas and spaces, as a \
                 missing Secret key leaves it): give USER:PASS, or leave it unset",
            ));
        }
        // Before anything is made from the settings (the Kafka defaults add to the body limit).
        bounds::check(&args)?;
        let kafka_sources = KafkaSources::new(
            env,
            &args.kafka_properties,
            Defaults {
                wait: crate::delivery::kafka_wait(args.ack_timeout, spool_budget_of(&args)),
                max_body_bytes: args.max_body_bytes,
            },
        );
        let (kafka_properties, kafka_watched) = kafka_sources.properties_watched(&read_file)?;
        lingers_past_the_wait(&args, &kafka_properties)?;
        if let KafkaMode::Brokers(list) = &kafka {
            let protocol = kafka_properties.get("security.protocol");
            if let Some(why) = brokers::scheme_mismatch(list, protocol) {
                return Err(invalid("--kafka-brokers", why));
            }
        }
        if matches!(kafka, KafkaMode::Embedded) {
            if let Some(sign) = deployment_sign(&args, &kafka_properties) {
                return Err(invalid(
                    "--kafka-brokers",
                    format!(
                        "is unset (nor KAFKA_BOOTSTRAP_SERVERS), which starts the embedded \
                         in-memory Kafka, but {sign}: a real deployment, whose records that Kafka \
                         would lose at exit. Name the brokers (host:port,...); for a local Kafka \
                         of its own, run `qikchat-bridge dev-kafka` and name its address"
                    ),
                ));
            }
        }

        // Which was meant? Taking either silently would be wrong half the time, and one way
        // round it would accept anyone while an operator believes credentials are checked.
        if args.insecure_disable_auth && (!args.auth.is_empty() || args.auth_file.is_some()) {
            return Err(invalid(
                "--insecure-disable-auth",
                "is set together with credentials (--auth or --auth-file, or BRIDGE_AUTH or \
                 BRIDGE_AUTH_FILE), which it would throw away: keep one of the two",
            ));
        }
        let auth::FlagCredentials {
            mut credentials,
            comma_splits: auth_comma_splits,
        } = auth::parse_flag(&args.auth).map_err(|r| invalid("--auth", r))?;
        let mut auth_reload = None;
        if let Some(path) = &args.auth_file {
            let text = read_file(path).map_err(|e| unreadable("--auth-file".into(), path, &e))?;
            if !args.insecure_disable_auth {
                auth_reload = Some(AuthReload {
                    path: path.clone(),
                    fixed: credentials.clone(),
                    started_with: FileDigest::of(&text),
                });
            }
            credentials.extend(auth::parse_file(&text).map_err(|r| invalid("--auth-file", r))?);
        }
        let mut seed_credential_in_use = false;
        if credentials.is_empty() && !args.insecure_disable_auth {
            match kafka {
                // A Secret not filled in yet: say so, rather than "none are configured".
                KafkaMode::Brokers(_) => {
                    return Err(match &args.auth_file {
                        Some(path) => ConfigError::File {
                            setting: "--auth-file".into(),
                            path: path.clone(),
                            reason: "it holds no credential (only blank lines or comments), and \
                                     no --auth is given"
                                .into(),
                        },
                        None => ConfigError::NoCredentials,
                    })
                }
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
            kafka_sources,
            kafka_watched,
            credentials,
            auth_reload,
            auth_comma_splits,
            seed_credential_in_use,
            webhook_path: args.webhook_path,
            ack_timeout: args.ack_timeout,
            max_body_bytes: args.max_body_bytes,
            topics,
            key_strategy: args.key_strategy,
            spool_dir: args.spool_dir,
            spool_max_bytes: args.spool_max_bytes,
            spool_write_budget: SpoolBudget::from_setting(args.spool_write_budget),
            replay_max_rate: args.replay_max_rate,
            max_in_flight: args.max_in_flight,
            max_in_flight_bytes: args.max_in_flight_bytes,
            max_connections: args.max_connections,
            http1_only: args.http1_only,
            header_read_timeout: args.header_read_timeout,
            idle_timeout: args.idle_timeout,
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
        Config::from_args(
            args,
            std::iter::empty(),
            crate::operator_file::read_to_string,
        )
    }

    /// Settings that are valid but weaken a promise, for a warning at start-up.
    pub fn caveats(&self) -> Vec<String> {
        let mut caveats = Vec::new();
        // Whether a password held a comma cannot be told from the value: said every time.
        caveats.extend(self.auth_comma_splits.iter().map(ToString::to_string));
        if self.ack_timeout >= QIKCHAT_WAITS {
            caveats.push(format!(
                "--ack-timeout ({:?}) is not below the 2 s Qikchat waits for an answer: a webhook \
                 answered later counts as failed there and is sent again, so a record stored in \
                 that time arrives twice",
                self.ack_timeout
            ));
        }
        if self.spool_dir.is_none() && self.spool_write_budget != SpoolBudget::Default {
            caveats.push(
                "--spool-write-budget is set without --spool-dir: there is no spool to keep time \
                 for, so Kafka gets the whole --ack-timeout"
                    .to_string(),
            );
        }
        caveats.extend_from_slice(self.kafka_caveats().said());
        caveats
    }

    /// The caveats of the Kafka properties' values, judged against this bridge's settings.
    pub fn kafka_caveats(&self) -> KafkaCaveats {
        KafkaCaveats::new(
            crate::delivery::kafka_wait(self.ack_timeout, self.spool_budget()),
            self.spool_dir.is_some(),
            crate::kafka_props::max_record_bytes(self.max_body_bytes),
            &self.kafka_properties,
        )
    }

    /// What is kept back from the ack deadline for a spool write: `None` without a spool.
    pub fn spool_budget(&self) -> Option<SpoolBudget> {
        self.spool_dir.as_ref().map(|_| self.spool_write_budget)
    }

    /// librdkafka's properties with the bootstrap servers filled in.
    pub fn producer_properties(&self, bootstrap: &str) -> BTreeMap<String, String> {
        let mut props = self.kafka_properties.to_map();
        props.insert("bootstrap.servers".into(), bootstrap.to_string());
        props
    }
}

/// Secrets stay out of logs and `--check-config` output: credentials show only user names and
/// Kafka properties that look secret are masked. `embedded_partitions` is shown in embedded mode
/// only, the one it is used in.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = f.debug_struct("Config");
        shown
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
            .field("spool_write_budget", &self.spool_write_budget)
            .field("replay_max_rate", &self.replay_max_rate)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_in_flight_bytes", &self.max_in_flight_bytes)
            .field("max_connections", &self.max_connections)
            .field("http1_only", &self.http1_only)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("shutdown_delay", &self.shutdown_delay)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("flush_timeout", &self.flush_timeout)
            .field("log_format", &self.log_format)
            .field("log_phone_numbers", &self.log_phone_numbers)
            .field("cloudevents_source", &self.cloudevents_source);
        if self.kafka == KafkaMode::Embedded {
            shown.field("embedded_partitions", &self.embedded_partitions);
        }
        shown.finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
