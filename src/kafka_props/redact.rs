//! Which properties are secrets, and librdkafka's configuration errors without their values.

use std::fmt;
use std::sync::Arc;

use super::Scrubber;

/// A property whose value is never printed (in `--check-config`, logs or errors). Each part
/// names secrets among librdkafka's properties; "token" is not one: the only property holding it
/// is `sasl.oauthbearer.token.endpoint.url`, an identity provider's address that operators set in
/// plain configuration (the Helm chart refuses secrets there).
pub fn is_secret(key: &str) -> bool {
    [
        "password",
        "passphrase",
        "private.key",
        "jaas",
        "secret",
        "sasl.oauthbearer.config",
        // Its values are a token request's extensions, where API keys go (as the
        // `extension_NAME=VALUE` tokens of `sasl.oauthbearer.config`).
        "sasl.oauthbearer.extensions",
        "ssl.key.pem",
        "ssl_key",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// librdkafka's configuration errors quote the value they refused, which may be a secret: also
/// under a name it does not know, which is most often a secret's name misspelt. Its other texts
/// (a client it could not make) may quote secrets too, or a URL's password: `scrubber`, made from
/// the same properties, hides them.
pub fn redacted(e: &rdkafka::error::KafkaError, scrubber: &Scrubber) -> String {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaConfRes;
    let text = match e {
        // librdkafka ends some descriptions with a line end (a value out of its range).
        KafkaError::ClientConfig(_, desc, key, value) if is_secret(key) => {
            format!("invalid value for {key}: {}", hide(desc.trim_end(), value))
        }
        // librdkafka's description of an unknown name is `No such configuration property: "name"`
        // and never holds the value; rdkafka's own text for the error appends the value. But the
        // name may be a secret itself: `-X "$PASSWORD"` for a base64 password ending in `=`
        // splits into a "name" and a value of `=`.
        KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, desc, key, _) => {
            if looks_like_a_property(key) {
                desc.clone()
            } else {
                "No such configuration property (its name is not shown: it does not look like \
                 one, and may be a secret given to -X without its KEY=)"
                    .to_string()
            }
        }
        // rdkafka's text is `desc key value`, on a second line when `desc` ends with a line end
        // (` message.max.bytes 500` below "… is outside allowed range 1000..1000000000"): one
        // line instead, the property named once. `scrubber` hides a secret value in it.
        KafkaError::ClientConfig(_, desc, key, value) => {
            let desc = desc.trim_end();
            // A value outside a property's closed set (`security.protocol`, `compression.type`,
            // a `debug` context): as for the bridge's own flags, a wrong one may be a secret set
            // in the wrong variable (`KAFKA_SECURITY_PROTOCOL=$PASSWORD`). librdkafka quotes what
            // it refused, which need not be the value as given (without its leading blanks; one
            // token of a list such as `debug`'s): what lies between its own words goes.
            const OPEN: &str = "Invalid value \"";
            const CLOSE: &str = "\" for configuration property \"";
            if let Some(rest) = desc.strip_prefix(OPEN) {
                // librdkafka's text is cut at 512 bytes: a long value leaves no closing words, or
                // only words of its own, with no property's name and closing quote after them.
                let named = |end: usize| {
                    let name = rest[end + CLOSE.len()..].strip_suffix('"')?;
                    let plain =
                        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
                    (!name.is_empty() && name.bytes().all(plain)).then_some(name)
                };
                let name = rest.rfind(CLOSE).and_then(named).unwrap_or(key);
                let desc =
                    format!("Invalid value (not shown) for configuration property \"{name}\"");
                return scrubber
                    .scrub(&format!(
                        "Client config error: {desc}: it is not one of the values this \
                         property takes (a wrong one may be a secret set in the wrong variable)"
                    ))
                    .into_owned();
            }
            // A value a property's check refused (`sasl.mechanisms` with a space, a string
            // property's set of values) is quoted after the name: as above, it goes.
            const CHECKED: &str = "Invalid value for configuration property \"";
            if let Some((name, _)) = desc
                .strip_prefix(CHECKED)
                .and_then(|r| r.split_once("\": "))
            {
                let desc =
                    format!("Invalid value (not shown) for configuration property \"{name}\"");
                return scrubber
                    .scrub(&format!(
                        "Client config error: {desc}: the property's check refused it (a wrong \
                         value may be a secret set in the wrong variable)"
                    ))
                    .into_owned();
            }
            // Where librdkafka quotes a value of free text (`Failed to parse pattern "…"`,
            // `dlopen() failed: ….so`), it goes too; a number it shows (`value 5 is outside
            // allowed range`) is none of a secret's. The property is named, as set: librdkafka
            // names an alias by its own name (`acks` is `request.required.acks`), or none.
            let pieces = super::scrub::refused_pieces(key, value);
            let desc = super::scrub::hide_pieces(desc, &pieces, super::scrub::may_be_cut(desc));
            if desc.contains(&format!("\"{key}\"")) {
                format!("Client config error: {desc}")
            } else {
                format!("Client config error: {desc} (set as {key})")
            }
        }
        KafkaError::ClientCreation(text) => {
            return format!("Client creation error: {}", scrubber.scrub_refusal(text))
        }
        other => other.to_string(),
    };
    scrubber.scrub(&text).into_owned()
}

/// librdkafka's refusal to make a client, shown (`Display` and `Debug`) without the secrets of
/// the properties it was made from.
pub struct ClientError {
    error: rdkafka::error::KafkaError,
    scrubber: Arc<Scrubber>,
    /// What librdkafka's error leaves out (see [`super::key_hint`]).
    hint: Option<&'static str>,
}

impl ClientError {
    pub fn new(error: rdkafka::error::KafkaError, scrubber: Arc<Scrubber>) -> ClientError {
        ClientError {
            error,
            scrubber,
            hint: None,
        }
    }

    /// The error of making a client from `config`, with what it leaves out: that the client
    /// key it could not load is encrypted, and its password missing or wrong.
    pub fn from_client(
        error: rdkafka::error::KafkaError,
        scrubber: Arc<Scrubber>,
        config: &rdkafka::ClientConfig,
    ) -> ClientError {
        let hint = super::key_hint::key_hint(&error.to_string(), |name| {
            config.get(name).map(str::to_string)
        });
        ClientError {
            hint,
            ..ClientError::new(error, scrubber)
        }
    }

    /// librdkafka's error, whose own `Display` and `Debug` may quote a secret.
    pub fn kafka(&self) -> &rdkafka::error::KafkaError {
        &self.error
    }

    /// Whether the properties are at fault (refused, or the client they make: a TLS file
    /// missing), not the cluster: a setting that cannot work.
    pub fn is_settings(&self) -> bool {
        use rdkafka::error::KafkaError;
        matches!(
            self.error,
            KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)
        )
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redacted(&self.error, &self.scrubber))?;
        match self.hint {
            Some(hint) => write!(f, " ({hint})"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientError")
            .field(&self.to_string())
            .finish()
    }
}

/// No `source`: librdkafka's error would be printed as it is.
impl std::error::Error for ClientError {}

/// librdkafka's property names: lower case, with at least one dot (`acks` and the few others
/// without one are known names, never refused as unknown).
fn looks_like_a_property(name: &str) -> bool {
    name.contains('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// `text` without `value` in it. librdkafka quotes a value it refused or ends its description with
/// it; only elsewhere is every occurrence replaced, so a short value does not garble the words.
fn hide(text: &str, value: &str) -> String {
    const HIDDEN: &str = "<redacted>";
    if value.is_empty() || !text.contains(value) {
        return text.to_string();
    }
    let quoted = format!("\"{value}\"");
    if text.contains(&quoted) {
        return text.replace(&quoted, &format!("\"{HIDDEN}\""));
    }
    match text.strip_suffix(value) {
        Some(head) if head.ends_with(": ") => format!("{head}{HIDDEN}"),
        _ => text.replace(value, HIDDEN),
    }
}

#[cfg(test)]
mod tests;
