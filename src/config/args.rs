//! The command line: the serving flags with their `BRIDGE_*` environment twins, and the
//! subcommands. Only parsing lives here; [`super::Config::from_args`] validates.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::topics::{self, KeyStrategy};

/// Receives Qikchat webhooks, authenticates them and produces each one to Kafka, byte for byte.
///
/// Every flag but --check-config has an environment variable (shown in brackets; -X through
/// KAFKA_<NAME>, below). Any `KAFKA_<NAME>` variable sets
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
    /// `bootstrap.servers=HOST:PORT` and wait for SIGTERM, SIGINT or SIGHUP (each exits 0). For
    /// benchmarks and local tests.
    DevKafka {
        /// Partitions per topic (1 to 1000, as --embedded-partitions).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=1000))]
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
// `hide_env_values` keeps out of `--help` the value of each variable that may hold a secret: a
// broker URL's password, a credential, the CloudEvents source's `user:password@` (refused at
// start-up, without being quoted), and a password set in the wrong variable (one without a
// `/` in a file's, or one in a variable of a closed set of values, which `usage_error` hides).
#[derive(Parser, Debug, Clone)]
#[command(name = "qikchat-bridge")]
pub struct Args {
    /// Address of the webhook listener.
    #[arg(long, env = "BRIDGE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address of the admin listener (/metrics, /livez, /readyz); keep it off the public ingress.
    #[arg(long, env = "BRIDGE_ADMIN_LISTEN", default_value = "0.0.0.0:9464")]
    pub admin_listen: SocketAddr,

    /// Kafka bootstrap servers (host:port,...). Unset: start an embedded in-memory Kafka (an
    /// empty value is refused).
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", hide_env_values = true)]
    pub kafka_brokers: Option<String>,

    /// A librdkafka producer property, KEY=VALUE (repeatable; wins over KAFKA_* variables).
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_properties: Vec<String>,

    /// An accepted Basic credential, USER:PASS (repeatable, for rotation). Flag and env alike
    /// are split at commas: a password with a comma belongs in --auth-file.
    // Split by `Config::from_args`, not by clap: which credentials came from one value tells
    // what may be a piece of a password (`eve:abc,def:ghi`), for its messages and warning.
    #[arg(long, env = "BRIDGE_AUTH", hide_env_values = true)]
    pub auth: Vec<String>,

    /// A file of accepted credentials, one USER:PASS per line (# comments and blank lines skipped).
    #[arg(long, env = "BRIDGE_AUTH_FILE", hide_env_values = true)]
    pub auth_file: Option<PathBuf>,

    /// Accept webhooks without credentials. Insecure: anyone who finds the URL can write to Kafka.
    #[arg(long, env = "BRIDGE_INSECURE_DISABLE_AUTH", hide_env_values = true)]
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
    #[arg(long, env = "BRIDGE_KEY_STRATEGY", value_enum, hide_env_values = true, default_value_t = KeyStrategy::Conversation)]
    pub key_strategy: KeyStrategy,

    /// Directory of the durable spool. Set: a record Kafka has not acknowledged in time is written
    /// here (fsync) and answered 200, then replayed to Kafka in order. Unset: such requests get 503.
    #[arg(long, env = "BRIDGE_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Largest size of the spool's records in bytes; when full, unacknowledged requests get 503.
    #[arg(long, env = "BRIDGE_SPOOL_MAX_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub spool_max_bytes: u64,

    /// Time kept back from --ack-timeout for writing a record to the spool and syncing it when
    /// Kafka has not acknowledged: Kafka gets the rest. Default: 250ms, or a quarter of
    /// --ack-timeout when that is less. Raise it for a disk slower to sync.
    #[arg(long, env = "BRIDGE_SPOOL_WRITE_BUDGET", value_parser = humantime::parse_duration)]
    pub spool_write_budget: Option<Duration>,

    /// Records a second replay sends from the spool at most, on average (0: as fast as Kafka
    /// takes them), leaving CPU and the broker to the webhooks answered while a backlog drains.
    #[arg(long, env = "BRIDGE_REPLAY_MAX_RATE", default_value_t = 0)]
    pub replay_max_rate: u32,

    /// Requests handled at once; more are answered 503 at once (their bodies are bounded by
    /// --max-in-flight-bytes).
    #[arg(long, env = "BRIDGE_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,

    /// Bytes of request bodies over 64 KiB held at once (each body's Content-Length, or
    /// --max-body-bytes when it has none); a request that would pass it is answered 503 at once.
    /// At least --max-body-bytes.
    #[arg(long, env = "BRIDGE_MAX_IN_FLIGHT_BYTES", default_value_t = 96 * 1024 * 1024)]
    pub max_in_flight_bytes: u64,

    /// Open client connections; at the limit the bridge stops accepting until one closes.
    #[arg(long, env = "BRIDGE_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Serve only HTTP/1.1 on the webhook port, refusing HTTP/2 (prior knowledge): Qikchat and
    /// most proxies send HTTP/1.1, and an unauthenticated HTTP/2 connection may hold 2-3.5 MiB.
    #[arg(long, env = "BRIDGE_HTTP1_ONLY", hide_env_values = true)]
    pub http1_only: bool,

    /// How long a client may take to send the request head.
    #[arg(long, env = "BRIDGE_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a kept-alive connection may wait for its next request before it is closed; keep
    /// it above the upstream keep-alive timeout of any proxy in front (ingress-nginx: 60s).
    #[arg(long, env = "BRIDGE_IDLE_TIMEOUT", default_value = "75s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// How long a client may take to send the request body (slower: 408); a body not whole by
    /// the ack timeout, counted from the request's arrival, gets its 408 then.
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
    #[arg(long, env = "BRIDGE_LOG_FORMAT", value_enum, hide_env_values = true, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// Include customers' phone numbers (record keys) in logs.
    #[arg(long, env = "BRIDGE_LOG_PHONE_NUMBERS", hide_env_values = true)]
    pub log_phone_numbers: bool,

    /// Also write CloudEvents headers (ce_specversion, ce_id, ce_source, ce_type, ce_time; Kafka
    /// binding, binary mode). The value stays the body, unchanged.
    #[arg(long, env = "BRIDGE_CLOUDEVENTS", hide_env_values = true)]
    pub cloudevents: bool,

    /// The CloudEvents `source` attribute (a URI-reference).
    #[arg(
        long,
        env = "BRIDGE_CLOUDEVENTS_SOURCE",
        hide_env_values = true,
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

/// What clap's answer to `argv` comes to: `None` for the help or version it prints itself (exit
/// 0), else the text of a refused command line (exit 2; see [`usage_error`]). A help or version
/// request clap found at the start of a longer cluster of short flags (`-hunter2`: a password put
/// where a flag was expected, `-X sasl.password -hunter2`) is refused too: taken for a request,
/// the command would exit 0 as though nothing were wrong.
pub fn refusal(e: &clap::Error, argv: &[OsString]) -> Option<String> {
    use clap::error::ErrorKind;
    if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return e.use_stderr().then(|| usage_error(e, argv));
    }
    // Asked for alone, it is what was meant, whatever value of another flag starts with `-h`
    // (`--help --webhook-path -hook`). Not a value `help` (`--cloudevents-source help`): clap's
    // `help` subcommand comes first.
    let alone = ["-h", "--help", "-V", "--version"];
    if flags(argv).any(|(at, a)| alone.contains(&a.as_ref()) || (at == 1 && a == "help")) {
        return None;
    }
    let (at, _) =
        flags(argv).find(|(_, a)| (a.starts_with("-h") || a.starts_with("-V")) && a.len() > 2)?;
    Some(format!(
        "error: unexpected argument {} found: -h and -V ask for help and the version only \
         alone, not joined to more letters\n\nFor more information, try '--help'.",
        unquoted(Some(at))
    ))
}

/// Each argument of `argv` with its place (1 for the first after the program's name), up to a
/// `--`, after which none is a flag.
fn flags(argv: &[OsString]) -> impl Iterator<Item = (usize, std::borrow::Cow<'_, str>)> {
    argv.iter()
        .map(|a| a.to_string_lossy())
        .enumerate()
        .skip(1)
        .take_while(|(_, a)| a != "--")
}

/// How a refused argument is named: by its place, when it is known, never by its text.
fn unquoted(place: Option<usize>) -> String {
    match place {
        Some(n) => format!("(argument {n}, not shown: it may hold a secret)"),
        None => "(an argument not shown: it may hold a secret)".into(),
    }
}

/// Where clap's `stray` came from in `argv`, when only one argument can be it: clap names an
/// unknown long flag without its `=VALUE`, and an unknown short one without the rest of its
/// cluster (`-Z` of `-Zunter2`).
fn place(stray: &str, argv: &[OsString]) -> Option<usize> {
    let short = !stray.starts_with("--") && stray.starts_with('-') && stray.chars().count() == 2;
    let mut places = argv.iter().enumerate().skip(1).filter_map(|(i, a)| {
        let a = a.to_string_lossy();
        let long_with_value = stray.starts_with("--")
            && a.strip_prefix(stray)
                .is_some_and(|rest| rest.starts_with('='));
        (a == stray || long_with_value || (short && a.starts_with(stray))).then_some(i)
    });
    match (places.next(), places.next()) {
        (Some(i), None) => Some(i),
        _ => None,
    }
}

/// What to print for a command line clap refused: its own message, except that an argument it
/// could not place is not quoted back, only its place in `argv` (when one argument alone can be
/// it). `-X sasl.password hunter2` (a space for the `=`) leaves the password as a stray
/// argument, and clap's message names it; stderr goes to the pod's logs. A password that starts
/// with `-` (`-X sasl.password --hunter2`) looks like a flag, so a stray flag is not quoted
/// either: clap's tip names the flag meant, if one is close (`--lisen`: `--listen`).
/// Nor is a value given to a flag that takes none (`--insecure-disable-auth=$PW`) or one outside
/// a flag's closed set (`BRIDGE_INSECURE_DISABLE_AUTH=$PW`, whose values are `true` and
/// `false`): clap lists what the flag takes, which says all the value would. A value a flag
/// parses freely (`--listen nowhere`) is shown, as it says what was wrong.
pub fn usage_error(e: &clap::Error, argv: &[OsString]) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let mut text = e.render().to_string();
    let misplaced =
        e.kind() == ErrorKind::TooManyValues || e.get(ContextKind::ValidValue).is_some();
    if misplaced {
        if let Some(ContextValue::String(value)) = e.get(ContextKind::InvalidValue) {
            text = text.replace(
                &format!("'{value}'"),
                "(a value not shown: it may hold a secret)",
            );
        }
    }
    // An unknown argument's, not that of a flag named in other errors (`--log-format <FORMAT>`).
    let unknown = e.kind() == ErrorKind::UnknownArgument;
    for kind in [ContextKind::InvalidSubcommand, ContextKind::InvalidArg] {
        if kind == ContextKind::InvalidArg && !unknown {
            continue;
        }
        if let Some(ContextValue::String(stray)) = e.get(kind) {
            // clap's tip for a stray flag quotes it again: `to pass '-Z' as a value, use '-- -Z'`.
            let tip = format!("'-- {stray}'");
            text = text
                .split_inclusive('\n')
                .filter(|line| !line.contains(&tip))
                .collect::<String>()
                .replace("\n\n\n", "\n\n");
            // Quoted, as clap quotes it: a short stray must not blank out other words.
            text = text.replace(&format!("'{stray}'"), &unquoted(place(stray, argv)));
        }
    }
    let variable = match e.kind() {
        ErrorKind::InvalidUtf8 => not_utf8_variable(argv),
        _ => from_variable(e, argv),
    };
    if let Some(variable) = variable {
        let end = text.find('\n').unwrap_or(text.len());
        text.insert_str(end, &format!(" (the value of {variable})"));
    }
    text
}

/// The flag's twin variable whose value is not UTF-8, when the command line does not give the
/// flag: clap's "invalid UTF-8 was detected in one or more arguments" names none, and sends
/// whoever set `KAFKA_BOOTSTRAP_SERVERS` or `BRIDGE_AUTH` looking through the arguments.
fn not_utf8_variable(argv: &[OsString]) -> Option<String> {
    use clap::CommandFactory;
    let command = Cli::command();
    let found = std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .filter_map(|a| variable_of(&format!("--{}", a.get_long()?), argv))
        .find(|v| std::env::var_os(v).is_some_and(|value| value.to_str().is_none()));
    found
}

/// The variable a refused value came from, when the command line does not give its flag: clap
/// names the flag alone (`invalid value '10MiB' for '--max-body-bytes <BYTES>'`), which a pod's
/// log reader, who set `BRIDGE_MAX_BODY_BYTES`, looks for in vain.
fn from_variable(e: &clap::Error, argv: &[OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let ContextValue::String(named) = e.get(ContextKind::InvalidArg)? else {
        return None;
    };
    variable_of(named.split_whitespace().next()?, argv)
}

/// The variable that gave `flag` (`--max-body-bytes`) its value: its environment twin, when
/// `argv` does not give the flag itself. For messages that name the flag alone.
pub fn variable_of(flag: &str, argv: &[OsString]) -> Option<String> {
    use clap::CommandFactory;
    let long = flag.strip_prefix("--")?;
    let command = Cli::command();
    let arg = std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_long() == Some(long) && a.get_env().is_some())?;
    let given = flags(argv).any(|(_, a)| {
        let short = arg
            .get_short()
            .is_some_and(|s| a.starts_with(&format!("-{s}")) && !a.starts_with("--"));
        short || a == format!("--{long}") || a.starts_with(&format!("--{long}="))
    });
    (!given).then(|| arg.get_env().map(|v| v.to_string_lossy().into_owned()))?
}
