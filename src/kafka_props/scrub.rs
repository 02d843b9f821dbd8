//! librdkafka's texts (log lines, errors) without the secrets of the properties a client was made from.

use std::borrow::Cow;
use std::fmt;

use super::cut::CutSecrets;
use super::passwords::passwords_to_scrub;
use super::redact::is_secret;

const HIDDEN: &str = "<redacted>";

/// Pieces shorter than this are not hidden: a secret's token such as `x=1` or `abc` would
/// otherwise be cut out of every word holding it, in every line librdkafka logs; and a secret
/// that short is guessed in a moment anyway, so hiding it would protect next to nothing.
const MIN_LEN: usize = 4;

/// The secrets of one client's properties, and the pieces of them librdkafka quotes alone.
#[derive(Default)]
pub struct Scrubber {
    /// Longest first, so that a value goes whole rather than as its tokens.
    needles: Vec<String>,
    /// Where librdkafka cut one off: of the opaque ones (passwords, client secrets, a URL's
    /// password), not a configuration or a key that starts with public words (`principal=svc`,
    /// `-----BEGIN PRIVATE KEY-----`), which would cut into lines that quote only those.
    cut: CutSecrets,
    /// Values librdkafka quotes when it refuses them making a client (see
    /// [`quoted_when_refused`]), longest first.
    refusable: Vec<String>,
}

impl Scrubber {
    /// From a client's properties: each secret value (see [`is_secret`]) and the pieces of it
    /// librdkafka's parsers quote (see [`pieces`]), and the password of any URL in any value.
    pub fn new<K, V>(properties: impl IntoIterator<Item = (K, V)>) -> Scrubber
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let (mut needles, mut cut) = (Vec::new(), CutSecrets::new(MIN_LEN));
        let mut refusable = Vec::new();
        let (mut client_id, mut client_secret) = (None, None);
        for (key, value) in properties {
            let (key, value) = (key.as_ref(), value.as_ref());
            match key {
                "sasl.oauthbearer.client.id" => client_id = Some(value.to_string()),
                "sasl.oauthbearer.client.secret" => client_secret = Some(value.to_string()),
                _ => {}
            }
            // A mechanism's own name is no secret, and naming it tells why this build refuses it
            // (`No provider for SASL mechanism GSSAPI: recompile librdkafka with libsasl2`).
            let mechanism = [
                "GSSAPI",
                "PLAIN",
                "SCRAM-SHA-256",
                "SCRAM-SHA-512",
                "OAUTHBEARER",
            ]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(value.trim()));
            if quoted_when_refused(key, value) && !mechanism {
                refusable.extend(refused_pieces(key, value));
            }
            if is_secret(key) {
                needles.extend(pieces(key, value).into_iter().map(str::to_string));
                if ["password", "passphrase", "secret"]
                    .iter()
                    .any(|s| key.contains(s))
                {
                    cut.add_opaque(value);
                }
            }
            // With its pieces between commas: librdkafka splits a broker list at them, and
            // quotes the piece of a password after one alone (`ssWORD@host` of `u:pa,ssWORD@host`),
            // without the blanks it skips there (`ssWORD@host` of `u:pa, ssWORD@host` too).
            for password in passwords_to_scrub(value, key == "bootstrap.servers") {
                needles.push(password.to_string());
                needles.extend(
                    password
                        .split(',')
                        .skip(1)
                        .map(|piece| piece.trim_start().to_string()),
                );
                // A password's `://` makes librdkafka read a scheme that it quotes upper-cased
                // (`unsupported protocol "USER:AB"` of `user:ab://cd@host`).
                if let Some(scheme) = password.find("://").map(|i| &password[..i]) {
                    needles.push(scheme.to_ascii_uppercase());
                }
                let start = password.as_ptr() as usize - value.as_ptr() as usize;
                cut.add_url_password(value, start, password);
                cut.add_opaque(password);
            }
        }
        // librdkafka sends the token endpoint `Authorization: Basic base64(id:secret)`, which an
        // endpoint's or a gateway's error may quote back, and librdkafka logs that error whole.
        if let (Some(id), Some(secret)) = (client_id, client_secret) {
            use base64::Engine;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            // Its start too, where librdkafka cut a long error's line (2 KiB) in its middle.
            cut.add_opaque(&basic);
            needles.push(basic);
        }
        needles.retain(|n| n.len() >= MIN_LEN);
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        refusable.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        refusable.dedup();
        Scrubber {
            needles,
            cut,
            refusable,
        }
    }

    /// A refusal to make a client, scrubbed, without the values it may quote that are no secret
    /// but may be one set in the wrong variable (see [`quoted_when_refused`]).
    pub fn scrub_refusal(&self, text: &str) -> String {
        hide_pieces(&self.scrub(text), &self.refusable, may_be_cut(text))
    }

    /// `text` with every secret, and every piece of one, replaced by `<redacted>`, the longest
    /// first; borrowed as it is when none is there.
    pub fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if !self.needles.iter().any(|n| text.contains(head(n))) && !self.cut.may_be_in(text) {
            return Cow::Borrowed(text);
        }
        // One pass, the longest needle at each place: replacing needle after needle would also
        // cut into the `<redacted>` put in before (a secret `redacted`, say). Every place is
        // looked at, inside a match too, and overlapping matches are hidden as one: a needle or
        // a cut copy that starts before a password and ends inside it (`:Kx9P` of the password
        // `Kx9Pv2/abcd` after `USER`) would otherwise leave the rest of the password shown.
        let mut out = String::with_capacity(text.len());
        let (mut copied, mut hiding) = (0, None::<(usize, usize)>);
        for at in 0..=text.len() {
            if let Some((start, end)) = hiding.filter(|&(_, end)| at >= end) {
                out.push_str(&text[copied..start]);
                out.push_str(HIDDEN);
                copied = end;
                hiding = None;
            }
            if let Some(len) = (at < text.len())
                .then(|| self.hidden_at(text, at))
                .flatten()
                .filter(|&len| len > 0)
            {
                hiding =
                    Some(hiding.map_or((at, at + len), |(start, end)| (start, end.max(at + len))));
            }
        }
        if copied == 0 {
            return Cow::Borrowed(text);
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// How many bytes of `text` from `at` are secret: a whole needle, the longest first, or the
    /// start of one librdkafka cut off. A needle starts with a whole UTF-8 character, so a match
    /// is on a boundary.
    fn hidden_at(&self, text: &str, at: usize) -> Option<usize> {
        let rest = &text.as_bytes()[at..];
        let whole = self.needles.iter().find(|n| rest.starts_with(n.as_bytes()));
        // A cut copy can be longer than a whole needle it starts with (`ab:cd` of the password
        // `ab:cd@host,more` cut after `@host`).
        whole.map(String::len).max(self.cut.hidden_at(text, at))
    }
}

/// What of `key`'s refused value librdkafka may quote, longest first: the value, and each element
/// of a list (`,`, `;` or OpenSSL's `:` between them: the one refused is quoted), also as
/// librdkafka reads an escaped list (`rd_string_split`); each of at least [`MIN_LEN`] bytes, none
/// a number, which is no secret, nor for a path property a path with a `/`, which is shown.
pub(super) fn refused_pieces(key: &str, value: &str) -> Vec<String> {
    let value = value.trim();
    let path = is_path(key);
    // Split as librdkafka splits the property: a path property's element is a whole path.
    let separators: &[char] = match key {
        "plugin.library.paths" => &[';'],
        _ if path => &[],
        _ => &[',', ';', ':'],
    };
    let plain = value.split(separators).map(str::trim).map(str::to_string);
    let escaped = match key {
        "ssl.providers" => escaped_elements(value),
        _ => Vec::new(),
    };
    let mut pieces: Vec<String> = std::iter::once(value.to_string())
        .chain(plain)
        .chain(escaped)
        .filter(|p| p.len() >= MIN_LEN && p.parse::<f64>().is_err())
        .filter(|p| !(path && p.contains('/')))
        .collect();
    pieces.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    pieces.dedup();
    pieces
}

/// A list as librdkafka's `rd_string_split` reads it (`ssl.providers`): split at commas not
/// escaped, each element's escapes read (`\t` a tab, `\,` a comma), its blanks trimmed, and cut
/// at a NUL (`\0`), where the C string it is passed as ends.
fn escaped_elements(value: &str) -> Vec<String> {
    let mut elements = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        let read = match c {
            ',' => {
                elements.push(String::new());
                continue;
            }
            '\\' => match chars.next() {
                Some('t') => '\t',
                Some('n') => '\n',
                Some('r') => '\r',
                Some('0') => '\0',
                Some(other) => other,
                None => break,
            },
            c => c,
        };
        if let Some(last) = elements.last_mut() {
            last.push(read);
        }
    }
    elements
        .into_iter()
        .map(|e| {
            let e = e.split('\0').next().unwrap_or_default();
            e.trim_matches(crate::config::brokers::C_BLANKS).to_string()
        })
        .collect()
}

/// `text` without `pieces` (longest first), and, when `cut` (librdkafka's 512-byte text was
/// full), without the start of one that ends it, the longest such start of any: looked for first,
/// before a shorter piece that begins a longer one cuts into it; a character cut in two there
/// ends the text as U+FFFD.
pub(super) fn hide_pieces(text: &str, pieces: &[String], cut: bool) -> String {
    let whole = text.trim_end_matches('\u{fffd}');
    let start = pieces
        .iter()
        .filter(|_| cut)
        .flat_map(|piece| {
            (MIN_LEN..piece.len())
                .filter(|&n| piece.is_char_boundary(n))
                .filter(|&n| whole.ends_with(&piece[..n]))
                .max()
        })
        .max();
    let (head, hidden_end) = match start {
        Some(n) => (&whole[..whole.len() - n], true),
        None => (text, false),
    };
    let mut text = head.to_string();
    for piece in pieces {
        text = text.replace(piece.as_str(), HIDDEN);
    }
    if hidden_end {
        text.push_str(HIDDEN);
    }
    text
}

/// Whether librdkafka's 512-byte text (`errstr`, with its NUL) may have been cut short; a
/// character cut in two there is three bytes of U+FFFD.
pub(super) fn may_be_cut(librdkafka_text: &str) -> bool {
    librdkafka_text.len() >= 500
}

/// Whether librdkafka quotes the property's value when it refuses it making a client, a free text
/// that is no secret (`Unsupported SASL mechanism: X`, `Failed to load OpenSSL provider "X"`,
/// `Failed to open ssl.keystore.location: X`, `dlopen() failed: X.so`) but, like a value outside
/// a closed set, may be a secret set in the wrong variable. A path with a `/` is shown.
fn quoted_when_refused(key: &str, value: &str) -> bool {
    matches!(
        key,
        "sasl.mechanism"
            | "sasl.mechanisms"
            | "partition.assignment.strategy"
            | "ssl.providers"
            | "ssl.curves.list"
            | "ssl.sigalgs.list"
            | "ssl.cipher.suites"
            | "ssl.engine.id"
    ) || (is_path(key) && !value.contains('/'))
}

/// Whether the property names files (`ssl.ca.location`, `plugin.library.paths`), whose paths with
/// a `/` are shown.
fn is_path(key: &str) -> bool {
    key.ends_with(".location") || key == "plugin.library.paths"
}

/// A needle's first [`MIN_LEN`] bytes, to the end of the character there: no part of it is in a
/// text without them.
fn head(needle: &str) -> &str {
    let end = (MIN_LEN..needle.len())
        .find(|&i| needle.is_char_boundary(i))
        .unwrap_or(needle.len());
    &needle[..end]
}

/// Never the secrets themselves (`BridgeContext`, which holds one, is `Debug`).
impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber")
            .field("secrets", &self.needles.len())
            .finish()
    }
}

/// A secret value and what librdkafka may quote of it alone: of `sasl.oauthbearer.config`, whose
/// parser (rdkafka_sasl_oauthbearer.c) splits it at spaces into `key=value` tokens, the rest of
/// the value from a token it does not know (`beginning at: ...`) and an extension's token or value
/// (`extension_NAME=VALUE`, where API keys go). Not its other values (`principal`,
/// `lifeSeconds`, `scope`), which are no secret and would hide words such as a broker's host name
/// or a timeout in every line; nor the words of a PEM key or a password, which librdkafka quotes
/// whole if at all.
fn pieces<'v>(key: &str, value: &'v str) -> Vec<&'v str> {
    let mut pieces = vec![value];
    // `NAME=VALUE,NAME=VALUE`: each extension and its value, as in the configuration below.
    if key == "sasl.oauthbearer.extensions" {
        for token in value.split(',') {
            pieces.push(token);
            pieces.extend(token.split_once('=').map(|(_, v)| v));
        }
    }
    if key == "sasl.oauthbearer.config" {
        pieces.extend(
            value
                .char_indices()
                .filter(|&(i, c)| c.is_whitespace() && value[i..].len() > c.len_utf8())
                .map(|(i, c)| &value[i + c.len_utf8()..]),
        );
        for token in value.split_whitespace() {
            if let Some((name, extension)) = token.split_once('=') {
                if name.starts_with("extension_") {
                    pieces.extend([token, extension]);
                }
            }
        }
    }
    pieces
}

#[cfg(test)]
mod tests;
