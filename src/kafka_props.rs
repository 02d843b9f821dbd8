//! Librdkafka producer properties: the bridge's low-latency defaults, then `KAFKA_*` environment
//! variables (as Confluent's images map them), then `-X key=value` flags, later sources winning.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::config::{invalid, ConfigError};

/// Producer properties, validated by librdkafka itself when the producer is created.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(BTreeMap<String, String>);

impl KafkaProperties {
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0.clone()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A property's value as a number, as librdkafka reads it ([`number`]); `None` when unset.
    pub fn number<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.get(key).and_then(|v| number(key, v))
    }

    /// The properties' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// Why these defaults: a 200 promises the webhook is stored, so `acks=all` (the record is on every
/// in-sync replica, surviving the leader's loss) and idempotence (librdkafka's retries neither
/// duplicate nor reorder a conversation's records), as Kafka's own producer defaults since 3.0 and
/// the Helm chart; on bench/run.sh's single mock broker (no replication) the idempotent producer's
/// bookkeeping measured within the noise of `acks=1` (bench/ab.sh: −5% to +5% at peak, about the
/// same p99). Qikchat waits at most 2 s, so a record librdkafka cannot deliver within the ack
/// deadline is better failed (the sender retries on our 503) than kept in memory. A 0.25 ms linger
/// lets concurrent webhooks share a produce request: measured with bench/run.sh it beat 0 (more
/// produce requests, +40% CPU per record), 0.1 (6% lower peak) and 1 ms (p99 over 2 ms at 5k
/// req/s); against 0.5 it kept the same peak and cut p99 at 5k req/s by 0.2-0.4 ms, which keeps
/// that target met on a busy host, for ~10% more CPU per request at such rates. No compression, as
/// librdkafka's own default: with lz4 the broker thread spent 1.3 µs more per record (a compression
/// buffer allocated and zeroed per batch), a third of its CPU, to shrink records that are ~1 KiB of
/// JSON. Nagle off on broker sockets: every answer waits on a produce request, which should leave
/// at once (5 of 6 alternating runs at 256 connections were 6-25% faster with it off). A 20 ms
/// first reconnect backoff (librdkafka: 100): librdkafka spaces its "connect to any broker"
/// attempts by half of it (at least 11 ms), and at start-up it drops the bootstrap connection as
/// soon as the first metadata names the real broker, failing a metadata request still in flight on
/// it; the retry then waited out 50 ms, so a third of starts were ready in ~60 ms instead of ~8
/// (now ~20). Reconnects after a broker failure still double up to `reconnect.backoff.max.ms`.
///
/// Keys are hashed as the Java client and Kafka Streams do (murmur2; librdkafka's own default
/// hashes with CRC32), so their producers and joins put a customer on the same partition.
/// `message.max.bytes` leaves room for the largest body the bridge accepts plus its key and
/// headers: librdkafka's own default (1,000,000) is below the default `--max-body-bytes` (1 MiB),
/// so bodies near the limit got 413, and a spooled one could never be replayed.
/// `topic.metadata.propagation.max.ms` at a third of the wait: librdkafka holds the records of a
/// topic the brokers do not have that long, and then until its next metadata answer (its fast
/// refreshes come ~0.1, 0.3, 0.7 s after the first), before failing them as an unknown topic. Its
/// default, 30 s, is past every ack deadline, so each was answered at the deadline as a mere
/// timeout, the topic named nowhere; two thirds still let the answer miss the deadline. A topic
/// made just before its first record still has that long to show, and once it is taken for absent
/// librdkafka asks again when the next record comes (taken 0.4 s after the topic was made).
fn defaults(limits: Defaults) -> BTreeMap<String, String> {
    let message_timeout = limits.wait.as_millis().max(1).to_string();
    let propagation = (limits.wait.as_millis() / 3).max(1).to_string();
    [
        ("client.id", "qikchat-bridge".to_string()),
        ("acks", "all".to_string()),
        ("enable.idempotence", "true".to_string()),
        ("linger.ms", "0.25".to_string()),
        ("compression.type", "none".to_string()),
        ("partitioner", "murmur2_random".to_string()),
        ("socket.nagle.disable", "true".to_string()),
        ("message.timeout.ms", message_timeout),
        ("topic.metadata.propagation.max.ms", propagation),
        (
            "message.max.bytes",
            max_record_bytes(limits.max_body_bytes).to_string(),
        ),
        (
            "queue.buffering.max.kbytes",
            queue_kbytes(limits.max_body_bytes).to_string(),
        ),
        ("batch.size", batch_bytes(limits.max_body_bytes).to_string()),
        ("reconnect.backoff.ms", "20".to_string()),
        (
            "reconnect.backoff.max.ms",
            RECONNECT_BACKOFF_MAX_MS.to_string(),
        ),
        ("statistics.interval.ms", "5000".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// What the bridge's producer defaults are made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    /// How long a record may wait for Kafka: `message.timeout.ms`.
    pub wait: Duration,
    /// `--max-body-bytes`: `message.max.bytes` must take such a body with its key and headers.
    pub max_body_bytes: usize,
}

/// Room for a record's key and headers beside its body. The headers the bridge writes come to
/// about 300 bytes (a sender's request id is kept only up to 128 characters); the key and the
/// message id are copied from the body, so they are bounded by nothing but the body: a record
/// larger than the limit is refused with 413 before it is stored (`Record::wire_size`).
pub const RECORD_ROOM: usize = 64 * 1024;

/// librdkafka's own `message.max.bytes` default.
pub const LIBRDKAFKA_MAX_RECORD_BYTES: usize = 1_000_000;

/// The default `message.max.bytes` for bodies of up to `max_body_bytes`.
pub fn max_record_bytes(max_body_bytes: usize) -> usize {
    LIBRDKAFKA_MAX_RECORD_BYTES.max(max_body_bytes + RECORD_ROOM)
}

/// The default `batch.size`: librdkafka's 1,000,000, or less with a lower body limit. A topic's
/// `max.message.bytes` bounds a whole batch, not one record, and the broker refuses every record
/// of a batch over it as too large: an operator who lowers `--max-body-bytes` to fit a topic's
/// limit would otherwise see small records refused (413, or dead-lettered from the spool) as
/// soon as enough of them share a batch. A record larger than this still goes, alone.
pub fn batch_bytes(max_body_bytes: usize) -> usize {
    LIBRDKAFKA_MAX_RECORD_BYTES.min(max_body_bytes + RECORD_ROOM)
}

/// The default `queue.buffering.max.kbytes`: 64 MiB bounds memory, but never below one record
/// of the largest size, which librdkafka would refuse every time (bodies over ~64 MiB).
pub fn queue_kbytes(max_body_bytes: usize) -> usize {
    (64 * 1024).max(max_record_bytes(max_body_bytes).div_ceil(1024))
}

/// The bridge's producer properties: its defaults, then `env`'s `KAFKA_*`, then `-X` flags.
pub fn from_sources<E, R>(
    env: E,
    flags: &[String],
    limits: Defaults,
    read_file: &R,
) -> Result<KafkaProperties, ConfigError>
where
    E: IntoIterator<Item = (String, String)>,
    R: Fn(&Path) -> std::io::Result<String>,
{
    let mut props = defaults(limits);
    let set = overrides(env, flags, read_file)?;
    if let Some(why) = breaks_acknowledgement(&set) {
        return Err(invalid("Kafka producer settings", why));
    }
    follow(&mut props, &set, limits);
    props.extend(set);
    let props = KafkaProperties(props);
    // Here, not only at start-up: a rotated file makes the properties again.
    queue_takes_the_largest_record(&props)?;
    Ok(props)
}

/// librdkafka refuses a record larger than its whole queue with QueueFull, every time: such a
/// webhook would get 503 for ever, or, with a spool, 200 and then stay spooled for good, since
/// replay takes QueueFull for a busy producer and retries. Checked wherever the properties are
/// made: at start-up, and when a rotated file makes them again for a new producer.
fn queue_takes_the_largest_record(props: &KafkaProperties) -> Result<(), ConfigError> {
    let (Some(kbytes), Some(record)) = (
        props.number::<u64>("queue.buffering.max.kbytes"),
        props.number::<u64>("message.max.bytes"),
    ) else {
        // librdkafka refuses a value that is no number when it makes the producer.
        return Ok(());
    };
    if kbytes.saturating_mul(1024) < record {
        return Err(invalid(
            "queue.buffering.max.kbytes",
            format!(
                "{kbytes} KiB is less than message.max.bytes ({record} bytes), the largest record \
                 the bridge hands to librdkafka, which refuses a record larger than its whole \
                 queue every time: set it to at least {} or lower message.max.bytes \
                 (or --max-body-bytes, which it follows)",
                record.div_ceil(1024)
            ),
        ));
    }
    Ok(())
}

/// Only what the operator set through `KAFKA_*` variables and `-X` flags (for the `tail`
/// consumer, which shares the connection settings but none of the producer's defaults).
pub fn overrides<E, R>(
    env: E,
    flags: &[String],
    read_file: &R,
) -> Result<BTreeMap<String, String>, ConfigError>
where
    E: IntoIterator<Item = (String, String)>,
    R: Fn(&Path) -> std::io::Result<String>,
{
    let mut props = BTreeMap::new();
    let mut from_env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("KAFKA_") && k != "KAFKA_BOOTSTRAP_SERVERS")
        .filter(|(k, _)| !is_service_link(k))
        .collect();
    from_env.sort();
    // Which variable set each property: two that set the same one (`KAFKA_X` and `KAFKA_X_FILE`,
    // or two names of one property) are refused, as no order between them is the obvious one.
    let mut set_by: BTreeMap<String, String> = BTreeMap::new();
    let flagged = names::flag_properties(flags);
    for (name, value) in from_env {
        let variable = name.clone();
        let (name, value) = match name.strip_suffix("_FILE") {
            // -X wins: the file is not read (its property is still checked below, and set by
            // the flag after this loop).
            Some(base) if names::variable_property(base).is_some_and(|p| flagged.contains(&p)) => {
                (base.to_string(), String::new())
            }
            Some(base) => {
                let path = Path::new(&value);
                let text = read_file(path)
                    .map_err(|e| crate::config::unreadable(name.clone(), path, &e))?;
                // A byte-order mark (PowerShell, Windows editors) is no part of a secret.
                let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
                let text = text.trim_end_matches(['\r', '\n']);
                // An empty Secret key mounts as an empty file: as a password it would only be
                // refused by the brokers later, far from the cause (and a rotation caught
                // half-written keeps the working producer instead).
                if text.is_empty() {
                    return Err(ConfigError::File {
                        setting: name.clone(),
                        path: path.to_path_buf(),
                        reason: "it is empty".into(),
                    });
                }
                // librdkafka takes C strings: making the producer would fail with a bare "FFI
                // nul error", naming neither the variable nor its file.
                if text.contains('\0') {
                    return Err(ConfigError::File {
                        setting: name.clone(),
                        path: path.to_path_buf(),
                        reason: "it holds a NUL byte, which librdkafka cannot take".into(),
                    });
                }
                (base.to_string(), text.to_string())
            }
            None => (name, value),
        };
        let key = env_to_property(&name).ok_or_else(|| {
            invalid(
                "KAFKA_* environment",
                format!("{name} does not name a librdkafka property"),
            )
        })?;
        // librdkafka refuses it only when it makes the producer, when which variable set it is
        // no longer known, and a name without a dot is not shown there (it may be a secret
        // given to -X without its KEY=); a variable's name is no secret.
        if names::unknown(&key) {
            return Err(invalid(
                "KAFKA_* environment",
                format!("{variable} sets {key:?}, which librdkafka has no property named"),
            ));
        }
        let key = canonical(&key).to_string();
        if !flagged.contains(&key) {
            secret_not_empty(&key, &value, "KAFKA_* environment", &variable)?;
        }
        if let Some(other) = set_by.insert(key.clone(), variable.clone()) {
            return Err(invalid(
                "KAFKA_* environment",
                format!("{other} and {variable} both set {key}: keep one of the two"),
            ));
        }
        props.insert(key, value);
    }
    for (n, flag) in flags.iter().enumerate() {
        let (key, value) = flag
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| {
                // None of its text: `sasl.password:hunter2`, or a bare `-X "$PASSWORD"`, would
                // print the secret.
                invalid(
                    "-X",
                    format!(
                        "the {} -X flag is not KEY=VALUE (its text is not shown: it may hold a \
                         secret)",
                        crate::words::ordinal(n + 1)
                    ),
                )
            })?;
        let key = canonical(key.trim()).to_string();
        secret_not_empty(&key, value, "-X", &format!("-X {key}="))?;
        set_by.insert(
            key.clone(),
            format!("-X {}", flag.split('=').next().unwrap_or("").trim()),
        );
        props.insert(key, value.to_string());
    }
    // Named as the operator set it: `KAFKA_METADATA_BROKER_LIST` is no `-X` flag.
    if let Some(setter) = set_by.get("bootstrap.servers") {
        return Err(invalid(
            setting_of(setter),
            format!(
                "{setter} sets bootstrap.servers: set the brokers with --kafka-brokers or \
                 KAFKA_BOOTSTRAP_SERVERS"
            ),
        ));
    }
    if let Some(id) = props
        .get("client.id")
        .filter(|id| id.len() > MAX_CLIENT_ID_BYTES)
    {
        let setter = set_by.get("client.id").map_or("", String::as_str);
        return Err(invalid(
            setting_of(setter),
            format!(
                "{setter} sets client.id to {} bytes, more than the {MAX_CLIENT_ID_BYTES} it may \
                 have: librdkafka writes it whole into its statistics report, whose buffer a \
                 client.id of about 20 KiB overruns",
                id.len()
            ),
        ));
    }
    Ok(props)
}

/// The setting a refusal names for what `setter` (a flag or a variable, as in `set_by`) set.
fn setting_of(setter: &str) -> &'static str {
    if setter.starts_with("-X") {
        "-X"
    } else {
        "KAFKA_* environment"
    }
}

/// The longest `client.id` taken. librdkafka formats each piece of its statistics report into a
/// buffer it doubles at most once per piece (`_st_printf` in `rdkafka.c`, 10 KiB to start), and
/// the first piece holds the whole client.id: a piece longer than the doubled room moves the
/// write position past the buffer's end, and the next piece is written beyond it (a heap overflow in
/// the bridge's own process, every `statistics.interval.ms`). Kafka itself caps it only at
/// 32,767 bytes; a client.id names the bridge in broker logs and quotas, so 1 KiB is ample.
pub const MAX_CLIENT_ID_BYTES: usize = 1024;

/// An empty secret is refused as an empty `_FILE` is: the brokers would refuse it later, far from
/// the cause. And `-X sasl.password= hunter2` (a space after the `=`) leaves the password as a
/// stray argument, which `tail` takes for a topic name.
fn secret_not_empty(
    key: &str,
    value: &str,
    setting: &'static str,
    setter: &str,
) -> Result<(), ConfigError> {
    if is_secret(key) && value.is_empty() {
        return Err(invalid(
            setting,
            format!("{setter} sets {key} to nothing: give its value (or leave it out)"),
        ));
    }
    Ok(())
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret(k) {
                    "<redacted>".into()
                } else {
                    url_password_hidden(v)
                };
                (k, shown)
            }))
            .finish()
    }
}

mod cut;
mod follow;
mod key_hint;
mod names;
mod oidc_probe;
mod passwords;
mod redact;
mod scrub;
mod sources;
pub use follow::{backoff_cap, LIBRDKAFKA_RECONNECT_BACKOFF_MAX_MS};
use follow::{follow, RECONNECT_BACKOFF_MAX_MS};
use names::is_service_link;
pub use names::{canonical, env_to_property};
pub use oidc_probe::fails_without_oidc;
pub use passwords::{broker_list_password_hidden, url_password_hidden};
pub use redact::{is_secret, redacted, ClientError};
pub use scrub::Scrubber;
pub use sources::{KafkaSources, Watched};

/// Whether the `KAFKA_*` variable `name` would be read for a property with these `-X` flags:
/// not a Kubernetes service link, not `KAFKA_BOOTSTRAP_SERVERS` (a flag's twin), and not one
/// whose property a flag sets (the flag wins, and the variable's value is never used).
pub fn reads_variable(name: &str, flags: &[String]) -> bool {
    name.starts_with("KAFKA_")
        && name != "KAFKA_BOOTSTRAP_SERVERS"
        && !is_service_link(name)
        && !names::variable_property(name)
            .is_some_and(|p| names::flag_properties(flags).contains(&p))
}

/// Why the operator's properties would break the acknowledgement every answer waits for, if they
/// do: librdkafka accepts both, and the bridge would run without a record it could answer 200.
fn breaks_acknowledgement(set: &BTreeMap<String, String>) -> Option<String> {
    let only_errors = set
        .get("delivery.report.only.error")
        .and_then(|v| as_read("delivery.report.only.error", v));
    if only_errors.as_deref() == Some("true") {
        return Some(
            "delivery.report.only.error=true: librdkafka would report no successful delivery, \
             and each webhook waits for its own (every record would be stored and still answered \
             503, or spooled and sent again at every replay); remove it"
                .into(),
        );
    }
    // librdkafka takes -1 to 1000, but brokers refuse every produce request whose acks is not -1,
    // 0 or 1 (INVALID_REQUIRED_ACKS): every webhook would be answered 503, or spooled for good,
    // with readiness green. `acks=2` reads like "two replicas", which is `all` with
    // `min.insync.replicas=2` on the topic.
    let acks = set.get("acks").and_then(|v| number::<i64>("acks", v));
    if let Some(acks) = acks.filter(|a| !(-1..=1).contains(a)) {
        return Some(format!(
            "acks={acks}: Kafka brokers take only all (-1), 1 or 0 and refuse every produce \
             request with any other value; for two replicas use all with the topic's \
             min.insync.replicas=2"
        ));
    }
    if set.get("transactional.id").is_some_and(|id| !id.is_empty()) {
        return Some(
            "transactional.id: the bridge produces outside transactions, and a transactional \
             producer refuses every such record; remove it"
                .into(),
        );
    }
    None
}

/// A property's value as librdkafka reads it, asked of librdkafka itself, which writes it back
/// in one spelling: `true` or `false` for `1`, `t` or `TRUE`, and a number in decimal, where C's
/// `strtol` with base 0 takes `0x80000` as hex and `0400000` as octal, and ignores text after the
/// digits. A decimal parse of the same text disagreed with the limit the producer applies (a
/// record then passed the bridge's size check, was spooled and answered 200, and was refused at
/// replay for good). `None` when librdkafka refuses the value (it says why when it makes the
/// producer).
pub fn as_read(key: &str, value: &str) -> Option<String> {
    let mut config = rdkafka::ClientConfig::new();
    config.set(key, value);
    config.create_native_config().ok()?.get(key).ok()
}

/// A numeric property's value as librdkafka reads it ([`as_read`]).
pub fn number<T: std::str::FromStr>(key: &str, value: &str) -> Option<T> {
    as_read(key, value)?.parse().ok()
}

#[cfg(test)]
mod tests;
