//! `qikchat-bridge tail`: prints records as JSON lines, for operators debugging a live pipeline.
//!
//! It assigns itself every partition instead of joining a consumer group, so it never moves a
//! group's offsets or steals partitions from the real consumers.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::kafka_props::{self, ClientError, Scrubber};

#[derive(clap::Args, Debug, Clone)]
pub struct TailArgs {
    /// Topics to read.
    #[arg(required = true)]
    pub topics: Vec<String>,
    /// Kafka bootstrap servers (the embedded mode prints its own on start-up).
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", hide_env_values = true)]
    pub kafka_brokers: String,
    /// A librdkafka consumer property, KEY=VALUE (repeatable; KAFKA_* variables apply too).
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_properties: Vec<String>,
    /// Start at the oldest record instead of the next one produced.
    #[arg(long)]
    pub from_beginning: bool,
    /// Exit after printing this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit when no record arrived for this long (e.g. "5s").
    #[arg(long, value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("Kafka: {0}")]
    Kafka(ClientError),
    #[error("topic {0}: {1}")]
    NoSuchTopic(String, String),
    /// See [`refused_for_good`].
    #[error("Kafka refuses the records: {0} ({0:?}); reading on would print nothing, as from an empty topic")]
    Refused(RDKafkaErrorCode),
    #[error("no record read for the idle timeout, and fetching failed: {0} ({0:?}); the topic may not be empty")]
    Failing(RDKafkaErrorCode),
    /// See [`silence`].
    #[error("no record read for the idle timeout, and {0} for {secs:.1} s; the topic may not be empty", secs = .1.as_secs_f64())]
    Silent(String, Duration),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

impl TailError {
    /// Whether the command line or the Kafka properties are at fault, not the cluster: the
    /// binary exits 2 for these, like the bridge for settings that cannot work.
    pub fn is_usage(&self) -> bool {
        matches!(self, TailError::Config(_))
            || matches!(self, TailError::Kafka(e) if e.is_settings())
    }
}

/// librdkafka's `error` from the consumer made from the properties whose secrets `scrubber`
/// hides.
fn kafka(scrubber: &Arc<Scrubber>) -> impl Fn(KafkaError) -> TailError + '_ {
    |e| TailError::Kafka(ClientError::new(e, scrubber.clone()))
}

/// Settings that cannot work, refused as the bridge refuses its own (exit 2): no broker named
/// (librdkafka would wait for one for good, then blame the network), a topic name Kafka cannot
/// have (an empty one, a variable that resolved to nothing: the brokers' "unknown topic" blamed
/// the cluster, exit 1), an idle timeout of zero, which ends tail after the first record or none
/// at all, as if the topic had no more, and a count of zero, which ended it at once, 0 records
/// read and exit 0, as if it had read what it was asked to.
fn check(args: &TailArgs) -> Result<(), crate::config::ConfigError> {
    use crate::config::{brokers, invalid};
    let empty = "is empty: name the brokers (host:port,...)";
    if let Some(why) = brokers::refusal(&args.kafka_brokers, empty) {
        return Err(invalid("--kafka-brokers", why));
    }
    for (n, topic) in args.topics.iter().enumerate() {
        // Named by its place, not quoted: an unquoted `-X sasl.password=$PW` whose value holds a
        // space leaves the rest of the password among the topic names.
        if crate::topics::validate_topic(topic).is_err() {
            return Err(invalid(
                "TOPICS",
                format!(
                    "the {} topic name is not one Kafka can have (not empty, \".\" or \"..\"; \
                     only letters, digits, '.', '_' and '-'; at most 249 characters); it is not \
                     shown: it may be part of a secret",
                    crate::words::ordinal(n + 1)
                ),
            ));
        }
    }
    if args.count == Some(0) {
        return Err(invalid(
            "--count",
            "must be greater than zero (leave it out to read on for good)",
        ));
    }
    if args.idle_timeout.is_some_and(|t| t.is_zero()) {
        return Err(invalid(
            "--idle-timeout",
            "must be greater than zero (leave it out to read on for good)",
        ));
    }
    Ok(())
}

/// Prints records to `out` until `--count` or `--idle-timeout` says stop, or `out`'s reader goes
/// away; returns how many.
pub fn run<E, W>(args: &TailArgs, env: E, out: &mut W) -> Result<u64, TailError>
where
    E: IntoIterator<Item = (String, String)>,
    W: Write + AsFd,
{
    let read = crate::operator_file::read_to_string;
    let mut config = ClientConfig::new();
    // Before the topics: `-X sasl.password hunter2!` (a space for the `=`) leaves the password
    // among the topic names, where the topic check would quote it; the -X check does not.
    let overrides = kafka_props::overrides(env, &args.kafka_properties, &read)?;
    check(args)?;
    let protocol = overrides.get("security.protocol").map(String::as_str);
    if let Some(why) = crate::config::brokers::scheme_mismatch(&args.kafka_brokers, protocol) {
        return Err(crate::config::invalid("--kafka-brokers", why).into());
    }
    // The brokers too, as the bridge's producer has them: a broker URL may carry a password,
    // which librdkafka quotes in its log lines (`Failed to resolve 'user:pass@host:9092'`).
    let brokers = ("bootstrap.servers", args.kafka_brokers.as_str());
    let properties = overrides.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let scrubber = Arc::new(Scrubber::new(properties.chain([brokers])));
    // Where an offset that no longer exists (retention deleted it) starts: the oldest left for
    // --from-beginning, not the end, which would skip every record silently.
    config.set(
        "auto.offset.reset",
        if args.from_beginning {
            "earliest"
        } else {
            "latest"
        },
    );
    // librdkafka wants a group to assign partitions, though tail never joins or commits to it;
    // an operator whose credentials may describe only certain groups names one with -X.
    config.set("group.id", "qikchat-bridge-tail");
    // As the bridge's producer does: a first backoff above librdkafka's cap raises the cap.
    let cap =
        kafka_props::backoff_cap(&overrides, kafka_props::LIBRDKAFKA_RECONNECT_BACKOFF_MAX_MS);
    if let Some(cap) = cap {
        config.set("reconnect.backoff.max.ms", cap);
    }
    for (k, v) in overrides {
        // librdkafka's own refusal of an empty one says only "consumer queue not available".
        if k == "group.id" && v.trim().is_empty() {
            return Err(crate::config::invalid(
                "group.id",
                "is empty: tail needs a group to assign itself partitions, though it never joins \
                 it; leave it unset for qikchat-bridge-tail",
            )
            .into());
        }
        config.set(k, v);
    }
    config
        .set("bootstrap.servers", &args.kafka_brokers)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    // rust-rdkafka passes on only errors when no `log` logger is set, and tail sets none.
    config.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
    // librdkafka refuses a value that is not a number when the consumer is made.
    let fetch_wait = Duration::from_millis(
        config
            .get("fetch.wait.max.ms")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(500),
    );
    // An operator's interval counts only as the off switch (0): tail prints no statistics, and a
    // slower one (a KAFKA_STATISTICS_INTERVAL_MS meant for the bridge) would delay the idle exit.
    let stats_off = config
        .get("statistics.interval.ms")
        .is_some_and(|v| v.trim() == "0");
    let check_silence = args.idle_timeout.is_some() && !stats_off;
    if check_silence {
        config.set("statistics.interval.ms", silence::STATS_INTERVAL_MS);
    }
    let reasons = Reasons {
        scrubber: scrubber.clone(),
        last: Default::default(),
        silence: silence::Silence::new(fetch_wait, args.idle_timeout.unwrap_or_default()),
    };
    // tail takes the bridge's `KAFKA_*` settings, `oidc` ones too, whose failure to make a client
    // aborts the process in librdkafka 2.12.
    if let Some(e) = crate::kafka_props::fails_without_oidc(&config) {
        return Err(TailError::Kafka(ClientError::from_client(
            e, scrubber, &config,
        )));
    }
    let consumer: BaseConsumer<Reasons> = config
        .create_with_context(reasons)
        .map_err(|e| TailError::Kafka(ClientError::from_client(e, scrubber.clone(), &config)))?;

    assign(&consumer, args, &scrubber).inspect_err(|_| tell_reasons(&consumer))?;

    let mut printed = 0;
    let mut last = Instant::now();
    // The last fetch error since the last record, and when it came.
    let mut failing: Option<(RDKafkaErrorCode, Instant)> = None;
    while args.count.is_none_or(|n| printed < n) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                writeln!(out, "{}", terminal_safe(&to_json(&message).to_string()))?;
                out.flush()?;
                printed += 1;
                last = Instant::now();
                failing = None;
            }
            Some(Err(KafkaError::MessageConsumption(code))) if refused_for_good(code) => {
                return Err(TailError::Refused(code));
            }
            // A broker restarting or a leader moving: librdkafka reconnects by itself.
            Some(Err(KafkaError::MessageConsumption(code))) => {
                // Not eprintln!, which panics when stderr is a closed pipe (`2>&1 | head`).
                let _ = writeln!(std::io::stderr(), "tail: {code} (continuing)");
                // The group's coordinator is looked up, never used: see refused_for_good.
                if code != RDKafkaErrorCode::GroupAuthorizationFailed {
                    failing = Some((code, Instant::now()));
                }
            }
            Some(Err(e)) => return Err(kafka(&scrubber)(e)),
            // `tail ... | head -1` after the last record: a write would tell, but none may come.
            None if reader_gone(out) => {
                return Err(TailError::Io(std::io::ErrorKind::BrokenPipe.into()));
            }
            None => {}
        }
        if let Some(t) = args.idle_timeout.filter(|t| last.elapsed() >= *t) {
            // Idle because every fetch failed is no empty topic: a script must not take it for
            // one. An error that stopped (a broker restarted) left fetches that found nothing.
            if let Some((code, _)) = failing.filter(|(_, at)| at.elapsed() < t / 2) {
                return Err(TailError::Failing(code));
            }
            if !check_silence {
                break;
            }
            match consumer.context().silence.verdict(Instant::now()) {
                silence::Verdict::Answering => break,
                silence::Verdict::Unreadable => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "tail: librdkafka's statistics cannot be read, so the idle timeout \
                         cannot tell a partition not being read from one with no more records: \
                         ending as if none were left"
                    );
                    break;
                }
                silence::Verdict::Unsure => {}
                silence::Verdict::Silent(broker, silent) => {
                    return Err(TailError::Silent(
                        scrubber.scrub(&broker).into_owned(),
                        silent,
                    ));
                }
            }
        }
    }
    Ok(printed)
}

/// Whether `out` is a pipe or socket whose reader has closed it (poll says `POLLERR` or
/// `POLLHUP`, asked for no event and without waiting). A terminal or a file never is.
fn reader_gone(out: &impl AsFd) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(out, PollFlags::empty())];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&zero)).is_ok()
        && fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP)
}

/// Assigns every partition of the named topics at the start `--from-beginning` asks for.
fn assign(
    consumer: &BaseConsumer<Reasons>,
    args: &TailArgs,
    scrubber: &Arc<Scrubber>,
) -> Result<(), TailError> {
    let kafka = kafka(scrubber);
    let start = if args.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut assignment = TopicPartitionList::new();
    let mut topics: Vec<&String> = Vec::new();
    // Named twice, a topic's partitions would be assigned twice, which librdkafka refuses.
    for topic in &args.topics {
        if !topics.contains(&topic) {
            topics.push(topic);
        }
    }
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(&kafka)?;
        let missing = |why: String| TailError::NoSuchTopic(topic.clone(), why);
        let found = metadata
            .topics()
            .first()
            .ok_or_else(|| missing("not in the brokers' answer".into()))?;
        // The broker's own reason: a missing ACL is not a missing topic.
        if let Some(error) = found.error() {
            let code = rdkafka::error::RDKafkaErrorCode::from(error);
            return Err(missing(format!("{code} ({code:?})")));
        }
        let partitions = found.partitions().len();
        if partitions == 0 {
            return Err(missing("has no partitions".into()));
        }
        for p in 0..partitions {
            assignment
                .add_partition_offset(topic, p as i32, start)
                .map_err(&kafka)?;
        }
    }
    consumer.assign(&assignment).map_err(kafka)?;
    Ok(())
}

/// Hands librdkafka's queued log lines to [`Reasons`]: rust-rdkafka queues them for the
/// consumer's poll, and a blocking metadata wait that failed has polled nothing, so without this
/// the reason it failed would be dropped with the consumer.
fn tell_reasons(consumer: &BaseConsumer<Reasons>) {
    let until = Instant::now() + Duration::from_millis(100);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        // An error event ends a poll early; the loop reads on past it.
        let _ = consumer.poll(left);
    }
}

/// Prints librdkafka's warnings and errors to stderr, each once in a row: a wrong password or an
/// untrusted certificate otherwise surfaced only as the metadata wait's "Broker transport
/// failure", as a network fault would. (Its log lines would go to the `log` crate, which tail
/// does not set up; its error events reach the consumer's poll as bare codes, or not at all while
/// it waits for metadata.) librdkafka's log lines name brokers and reasons, and may quote a
/// secret (an OAUTHBEARER config it cannot parse, a token endpoint's URL): `scrubber` hides them.
struct Reasons {
    scrubber: Arc<Scrubber>,
    last: std::sync::Mutex<String>,
    silence: silence::Silence,
}

impl ClientContext for Reasons {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        if !matches!(
            level,
            L::Emerg | L::Alert | L::Critical | L::Error | L::Warning
        ) {
            return;
        }
        let line = format!("{fac}: {}", self.scrubber.scrub(message));
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last != line {
            // Not eprintln!, which panics when stderr is a closed pipe.
            let _ = writeln!(std::io::stderr(), "tail: librdkafka: {line}");
            *last = line;
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        // Read as librdkafka writes them (see kafka_stats::raw), which may still fail.
        match crate::kafka_stats::raw::parse(statistics) {
            Ok(statistics) => self.silence.record(&statistics, Instant::now()),
            Err(_) => self.silence.unreadable(),
        }
    }
}

impl ConsumerContext for Reasons {}

/// Refusals no reconnect ends: credentials, their ACLs (the bridge's own often allow writing,
/// not reading), a topic gone. Printed and read past, they left a script with no record and
/// exit 0, as if the topic were empty.
fn refused_for_good(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        // Not GroupAuthorizationFailed: librdkafka looks up the coordinator of a group tail
        // never uses, and credentials that may read a topic need not describe that group.
        C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::UnknownTopicOrPartition
            | C::UnknownTopic
    )
}

/// One record as a JSON object on one line. The value is a string holding the exact body (bodies
/// are often pretty-printed, so it cannot be inlined as JSON and stay on one line);
/// non-UTF-8 values and headers come as `value_base64` / base64 strings instead. A header name
/// that occurs more than once gets an array of its values, in record order.
pub fn to_json(m: &BorrowedMessage<'_>) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    let mut unreadable = 0;
    if let Some(hs) = m.headers() {
        for i in 0..hs.count() {
            // rust-rdkafka unwraps the name's UTF-8 conversion; another producer may have
            // written any bytes there, and one such header must not end the session.
            let Some(h) = headers::quietly(|| hs.get(i)) else {
                unreadable += 1;
                continue;
            };
            headers::add(&mut headers, h.key, h.value.map(text));
        }
    }
    let mut record = serde_json::json!({
        "topic": m.topic(),
        "partition": m.partition(),
        "offset": m.offset(),
        "timestamp": m.timestamp().to_millis(),
        "key": m.key().map(text),
        "headers": headers,
    });
    if unreadable > 0 {
        record["headers_with_non_utf8_names"] = unreadable.into();
    }
    // A tombstone (no value at all) is not an empty value: compacted topics delete with it.
    let Some(payload) = m.payload() else {
        record["value"] = serde_json::Value::Null;
        return record;
    };
    match std::str::from_utf8(payload) {
        Ok(s) => record["value"] = s.into(),
        Err(_) => {
            record["value_base64"] = base64::engine::general_purpose::STANDARD
                .encode(payload)
                .into()
        }
    }
    record
}

/// A JSON line with the characters a terminal acts on or reorders escaped (`\uXXXX`, the same
/// JSON): serde_json escapes only C0 controls, and record values and headers are the senders'
/// bytes, so a body could otherwise reach an operator's terminal with C1 controls (a one-byte
/// CSI, U+009B) or bidirectional overrides. Outside strings compact JSON has none of them.
pub fn terminal_safe(line: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        matches!(
            c,
            // C1 controls; Unicode's Bidi_Control set (marks, embeddings, overrides, isolates);
            // line and paragraph separators; the deprecated shaping and swapping controls and
            // interlinear annotation marks, which some terminals also act on.
            '\u{7f}'..='\u{9f}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{206f}'
                | '\u{fff9}'..='\u{fffb}'
        )
    };
    if !line.contains(unsafe_char) {
        return line.into();
    }
    let mut safe = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if unsafe_char(c) {
            safe.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            safe.push(c);
        }
    }
    safe.into()
}

/// A key or header value: a string when it is UTF-8, else `{"base64": ...}`.
fn text(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => {
            serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) })
        }
    }
}

mod headers;
mod silence;

#[cfg(test)]
mod tests;
