//! How a librdkafka property is named: from a `KAFKA_*` environment variable, under one of
//! librdkafka's two names for it, and which variables only look like properties.

/// Whether librdkafka knows no property by this name (whatever value it would refuse).
pub(super) fn unknown(key: &str) -> bool {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaConfRes;
    matches!(
        rdkafka::ClientConfig::new()
            .set(key, "")
            .create_native_config(),
        Err(KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN,
            ..
        ))
    )
}

/// Turns `KAFKA_SASL_MECHANISM` into `sasl.mechanism` the way Confluent's images do:
/// `___` → `-`, `__` → `_`, `_` → `.`, lower-cased.
pub fn env_to_property(name: &str) -> Option<String> {
    let rest = name.strip_prefix("KAFKA_")?;
    if rest.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(rest.len());
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let run = bytes[i..].iter().take_while(|&&b| b == b'_').count();
            match run {
                1 => out.push('.'),
                2 => out.push('_'),
                3 => out.push('-'),
                _ => return None,
            }
            i += run;
        } else {
            out.push(bytes[i].to_ascii_lowercase() as char);
            i += 1;
        }
    }
    Some(out)
}

/// The properties `-X` flags set, under the names [`canonical`] keeps. A `KAFKA_*_FILE` for one
/// of them is neither read nor watched: the flag wins, so a missing or rotated file it names
/// would refuse a start, or rebuild the producer, over a value nothing uses.
pub fn flag_properties(flags: &[String]) -> std::collections::BTreeSet<String> {
    flags
        .iter()
        .filter_map(|f| f.split_once('='))
        .map(|(k, _)| canonical(k.trim()).to_string())
        .collect()
}

/// The property a `KAFKA_*` or `KAFKA_*_FILE` variable sets, under the name [`canonical`] keeps.
pub fn variable_property(variable: &str) -> Option<String> {
    let name = variable.strip_suffix("_FILE").unwrap_or(variable);
    env_to_property(name).map(|key| canonical(&key).to_string())
}

/// Kubernetes injects `<SERVICE>_SERVICE_HOST`, `<SERVICE>_PORT_9092_TCP_ADDR`... for every
/// Service in the namespace, so also for `kafka`, `kafka-ui` or `kafka-connect`; read as
/// properties they would make librdkafka refuse to start. No librdkafka property has a `port`
/// or `service.host` part.
pub(super) fn is_service_link(name: &str) -> bool {
    let protocol_port = name.split("_PORT_").skip(1).any(|after| {
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0
            && ["_TCP", "_UDP", "_SCTP"]
                .iter()
                .any(|p| after[digits..].starts_with(p))
    });
    name.ends_with("_PORT")
        || name.ends_with("_SERVICE_HOST")
        || name.contains("_SERVICE_PORT")
        || protocol_port
}

/// librdkafka's second names for one property. Both in one map would be applied in no fixed
/// order (rdkafka keeps them in a `HashMap`), so an operator's `delivery.timeout.ms` would race
/// the bridge's `message.timeout.ms`: each is kept under the name on the right.
const ALIASES: [(&str, &str); 10] = [
    ("metadata.broker.list", "bootstrap.servers"),
    ("delivery.timeout.ms", "message.timeout.ms"),
    ("queue.buffering.max.ms", "linger.ms"),
    ("compression.codec", "compression.type"),
    ("request.required.acks", "acks"),
    ("max.in.flight.requests.per.connection", "max.in.flight"),
    ("message.send.max.retries", "retries"),
    ("sasl.mechanisms", "sasl.mechanism"),
    (
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.client.secret",
    ),
    (
        "sasl.oauthbearer.client.credentials.client.id",
        "sasl.oauthbearer.client.id",
    ),
];

/// The producer's topic-level properties (librdkafka's CONFIGURATION.md, "Topic configuration
/// properties"), under the names [`canonical`] keeps.
const TOPIC_LEVEL: [&str; 9] = [
    "acks",
    "request.timeout.ms",
    "message.timeout.ms",
    "queuing.strategy",
    "produce.offset.report",
    "partitioner",
    "compression.type",
    "compression.level",
    "msg_order_cmp",
];

/// The name a property is kept under (see [`ALIASES`]). librdkafka also takes a topic-level
/// property with a `topic.` prefix (it strips one from a name that is no global property, as
/// kcat's `-X topic.acks=1` relies on), so `topic.acks` is kept as `acks` too: in one map with
/// the bridge's default the two would be applied in no fixed order, and the rules that read
/// `acks` (idempotence) and `message.timeout.ms` would not see it. Global properties named
/// `topic.*` (`topic.metadata.refresh.interval.ms`) keep their names.
pub fn canonical(key: &str) -> &str {
    match key.strip_prefix("topic.").map(unaliased) {
        Some(name) if TOPIC_LEVEL.contains(&name) => name,
        _ => unaliased(key),
    }
}

fn unaliased(key: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == key)
        .map_or(key, |(_, name)| name)
}
