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

/// `value` without the password of a URL in it (`https://user:pass@idp/token`): any property
/// that takes a URL (the OAUTHBEARER token endpoint) can carry one, which is as secret there.
pub fn url_password_hidden(value: &str) -> std::borrow::Cow<'_, str> {
    hidden(value, url_passwords(value))
}

/// A broker list (`--kafka-brokers`) without its passwords, those only a broker list has too
/// (`sasl_ssl://user:pa#ss@host`, see [`broker_list_passwords`]), as the scrubber hides them.
pub fn broker_list_password_hidden(value: &str) -> std::borrow::Cow<'_, str> {
    hidden(
        value,
        url_passwords(value).chain(broker_list_passwords(value)),
    )
}

fn hidden<'v>(
    value: &'v str,
    passwords: impl Iterator<Item = &'v str>,
) -> std::borrow::Cow<'v, str> {
    use std::borrow::Cow;
    let mut shown = Cow::Borrowed(value);
    let mut at: Vec<(usize, usize)> = passwords
        .map(|p| (p.as_ptr() as usize - value.as_ptr() as usize, p.len()))
        .collect();
    // Merged where they overlap (a URL's user information runs to its last `@`, which may be a
    // later entry's), and from the last: the positions of those before stay right.
    at.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, len) in at {
        match merged.last_mut() {
            Some((_, end)) if start < *end => *end = (*end).max(start + len),
            _ => merged.push((start, start + len)),
        }
    }
    for (start, end) in merged.into_iter().rev() {
        shown.to_mut().replace_range(start..end, "<redacted>");
    }
    shown
}

/// The password of each URL in `value` (`https://user:pass@idp/token`), also in a list of them
/// (`http://a:p@h1,http://b:q@h2`: the first authority ends at the second's `/`, and its user
/// information at its last `@`): slices of `value`. A comma or a space may be in a password.
/// Also of a list entry without a scheme (`user:pass@host:9092`): librdkafka takes such user
/// information for part of a broker's host name, and quotes it when the name does not resolve.
pub(super) fn url_passwords(value: &str) -> impl Iterator<Item = &str> {
    let urls = value.match_indices("://").filter_map(move |(i, _)| {
        let rest = &value[i + 3..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let userinfo = &authority[..authority.rfind('@')?];
        userinfo.split_once(':').map(|(_, password)| password)
    });
    urls.chain(bare_passwords(value, scheme_at))
}

/// The password before each `@` of an entry without a scheme (as `scheme_at` finds one) runs
/// back to the first `:` of its entry, across commas (a password may hold one; more is hidden,
/// never less).
fn bare_passwords(value: &str, scheme_at: fn(&str) -> Option<usize>) -> impl Iterator<Item = &str> {
    value.match_indices('@').filter_map(move |(at, _)| {
        let mut end = at;
        loop {
            let start = value[..end].rfind(',').map_or(0, |comma| comma + 1);
            let piece = &value[start..end];
            // Only a scheme at the entry's start: librdkafka reads the first `://` of an entry
            // as one, and a password may hold `://` (`user:ab://cd@host`).
            if scheme_at(piece).is_some() {
                return None;
            }
            if let Some(colon) = piece.find(':') {
                return Some(&value[start + colon + 1..at]);
            }
            end = start.checked_sub(1)?;
        }
    })
}

/// More passwords of a broker list (`bootstrap.servers`) than [`url_passwords`] finds:
/// librdkafka reads no URL there (`sasl_ssl://user:pa#ss@host`), so a password may hold `/`, `?`
/// or `#`. Each `@` of an entry with a scheme librdkafka knows ends one from the entry's first `:`
/// (more is hidden, never less).
pub(super) fn broker_list_passwords(value: &str) -> impl Iterator<Item = &str> {
    // Each `@` of an entry that starts with a scheme (after its blanks) ends a password from the
    // entry's first `:`, the entry running across commas to the next scheme. Twice: with the
    // schemes librdkafka knows (a name it refuses may follow a comma of the password:
    // `sasl_ssl://u:pa,user://ss@h`), and with any name before `://` (`kafka://u:pa?ss,wo:rd@h`,
    // which the entries without a scheme below hide only from `wo:`); more hidden, never less.
    let with_scheme = move |known: fn(&str) -> Option<usize>| {
        let schemes = move |from: usize| {
            value[from..]
                .match_indices("://")
                .map(move |(i, _)| from + i)
                .filter(move |&i| {
                    let start = value[..i].rfind(',').map_or(0, |c| c + 1);
                    known(&value[start..]).is_some_and(|s| start + s == i + 3)
                })
        };
        schemes(0).flat_map(move |i| {
            let rest = &value[i + 3..];
            let entry = match schemes(i + 3).next().map(|next| next - (i + 3)) {
                Some(next) => &rest[..rest[..next].rfind(',').unwrap_or(next)],
                None => rest,
            };
            let colon = entry.find(':');
            entry
                .match_indices('@')
                .filter_map(move |(at, _)| colon.filter(|&c| c < at).map(|c| &entry[c + 1..at]))
        })
    };
    let with_scheme = with_scheme(kafka_scheme_at).chain(with_scheme(scheme_at));
    // An entry whose scheme librdkafka does not know (`user://pw@host`: it refuses `USER` and
    // quotes the entry whole) is a user and a password beginning with `//`.
    with_scheme.chain(bare_passwords(value, kafka_scheme_at))
}

/// Where what follows a scheme (`sasl_ssl://`) at the start of `entry`, after its blanks, begins.
fn scheme_at(entry: &str) -> Option<usize> {
    let trimmed = entry.trim_start();
    let name = trimmed
        .find(|c: char| {
            !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '+' || c == '.')
        })
        .unwrap_or(trimmed.len());
    (name > 0 && trimmed[name..].starts_with("://")).then(|| entry.len() - trimmed.len() + name + 3)
}

/// [`scheme_at`] of a scheme librdkafka takes in a broker list (it compares without case).
fn kafka_scheme_at(entry: &str) -> Option<usize> {
    scheme_at(entry).filter(|&end| {
        let name = entry[..end - 3].trim_start();
        crate::config::brokers::SCHEMES
            .iter()
            .any(|known| known.eq_ignore_ascii_case(name))
    })
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
