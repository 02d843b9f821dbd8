//! librdkafka's texts (log lines, errors) without the secrets of the properties a client was made from.

use std::borrow::Cow;
use std::fmt;

use super::cut::CutSecrets;
use super::redact::{broker_list_passwords, is_secret, url_passwords};

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
            let brokers = (key == "bootstrap.servers").then(|| broker_list_passwords(value));
            for password in url_passwords(value).chain(brokers.into_iter().flatten()) {
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
mod tests {
    use super::*;

    fn scrubber(properties: &[(&str, &str)]) -> Scrubber {
        Scrubber::new(properties.iter().copied())
    }

    const OAUTH: &str = "principal=svc lifetime=3600 extension_apikey=SECRET_APIKEY_42";

    #[test]
    fn a_secret_value_is_hidden_whole() {
        let s = scrubber(&[
            ("sasl.password", "hunter2-pw"),
            ("client.id", "hunter2-pw-x"),
        ]);
        assert_eq!(
            s.scrub("auth with hunter2-pw failed"),
            "auth with <redacted> failed"
        );
        let s = scrubber(&[("sasl.oauthbearer.config", OAUTH)]);
        assert_eq!(s.scrub(&format!("config: {OAUTH}.")), "config: <redacted>.");
    }

    #[test]
    fn the_basic_credentials_sent_to_the_token_endpoint_are_hidden_when_its_error_quotes_them() {
        let s = scrubber(&[
            ("sasl.oauthbearer.client.id", "bridge"),
            ("sasl.oauthbearer.client.secret", "Oidc-Secret-5b7e"),
        ]);
        // base64("bridge:Oidc-Secret-5b7e")
        let line = "Failed to retrieve OIDC token: {\"error_description\":\"unexpected \
                    Authorization: Basic YnJpZGdlOk9pZGMtU2VjcmV0LTViN2U=\"} (400)";
        assert_eq!(
            s.scrub(line),
            "Failed to retrieve OIDC token: {\"error_description\":\"unexpected \
             Authorization: Basic <redacted>\"} (400)"
        );
    }

    #[test]
    fn the_start_of_the_basic_credentials_where_librdkafka_cut_a_long_line_is_hidden() {
        let secret = "Oidc-Secret-5b7e-long-enough-to-matter";
        let s = scrubber(&[
            ("sasl.oauthbearer.client.id", "bridge"),
            ("sasl.oauthbearer.client.secret", secret),
        ]);
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("bridge:{secret}"));
        // An endpoint's error that quotes the request's headers near the end of the 2 KiB line.
        let head = format!(
            "Failed to retrieve OIDC token from \"http://idp/token\": {{\"trace\":\"{}\",\
             \"headers\":\"Authorization: Basic ",
            "x".repeat(1800)
        );
        let line = format!("{head}{}", &basic[..40]);
        assert!(line.len() < 2048);
        assert_eq!(s.scrub(&line), format!("{head}<redacted>"));
    }

    #[test]
    fn each_extension_of_sasl_oauthbearer_extensions_and_its_value_is_hidden() {
        let s = scrubber(&[(
            "sasl.oauthbearer.extensions",
            "apikey=KEY_1234,trace=TRACE_5678",
        )]);
        assert_eq!(
            s.scrub("bad extension apikey=KEY_1234 (value TRACE_5678)"),
            "bad extension <redacted> (value <redacted>)"
        );
    }

    #[test]
    fn the_suffix_librdkafka_quotes_from_an_unknown_token_is_hidden() {
        let s = scrubber(&[("sasl.oauthbearer.config", OAUTH)]);
        let line = "Failed to acquire SASL OAUTHBEARER token: Unrecognized \
                    sasl.oauthbearer.config beginning at: lifetime=3600 \
                    extension_apikey=SECRET_APIKEY_42";
        let shown = s.scrub(line);
        assert_eq!(
            shown,
            "Failed to acquire SASL OAUTHBEARER token: Unrecognized sasl.oauthbearer.config \
             beginning at: <redacted>"
        );
        // An extension's value alone.
        assert_eq!(s.scrub("value: SECRET_APIKEY_42"), "value: <redacted>");
        assert_eq!(
            s.scrub("a\textension_apikey=SECRET_APIKEY_42\n"),
            "a\t<redacted>\n"
        );
    }

    #[test]
    fn a_password_in_any_url_is_hidden_and_the_rest_of_the_url_kept() {
        let s = scrubber(&[(
            "sasl.oauthbearer.token.endpoint.url",
            "https://u:URLPW_5@idp.example/token",
        )]);
        assert_eq!(
            s.scrub(r#"Failed to retrieve OIDC token from "https://u:URLPW_5@idp.example/token""#),
            r#"Failed to retrieve OIDC token from "https://u:<redacted>@idp.example/token""#
        );
        let s = scrubber(&[("x.urls", "http://a:p@ss-1@h1/,https://b:second-pw@h2")]);
        assert_eq!(s.scrub("p@ss-1 second-pw"), "<redacted> <redacted>");
        let s = scrubber(&[("x.url", "https://user@idp/token?next=a:b@c")]);
        assert_eq!(s.needles, Vec::<String>::new(), "no password");
    }

    #[test]
    fn a_line_without_a_secret_is_borrowed_as_it_is() {
        let s = scrubber(&[
            ("sasl.password", "hunter2-pw"),
            ("sasl.oauthbearer.config", OAUTH),
        ]);
        let line = "Connect to ipv4#127.0.0.1:9092 failed: Connection refused";
        assert!(matches!(s.scrub(line), Cow::Borrowed(l) if l == line));
        assert!(matches!(Scrubber::default().scrub(OAUTH), Cow::Borrowed(_)));
    }

    #[test]
    fn short_tokens_and_plain_values_are_left_alone() {
        let s = scrubber(&[
            ("sasl.oauthbearer.config", "principal=svc x=1 abc"),
            ("sasl.password", "pw"),
            ("client.id", "qikchat-bridge"),
        ]);
        let line = "svc abc pw x=1 qikchat-bridge principal=svc";
        assert_eq!(s.scrub(line), line);
    }

    /// Only what may be secret: a log line about a broker named like the principal, or a
    /// timeout equal to the token's lifetime, keeps its words.
    #[test]
    fn the_public_parts_of_an_oauthbearer_config_and_the_words_of_a_pem_key_are_not_hidden() {
        let s = scrubber(&[
            (
                "sasl.oauthbearer.config",
                "principal=kafka lifeSeconds=3600 extension_traceId=true",
            ),
            (
                "ssl.key.pem",
                "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",
            ),
        ]);
        for line in [
            "kafka-0.kafka.svc:9092/0: Connect to ipv4#10.0.0.7:9092 failed: Connection refused",
            "Metadata request timed out after 3600ms",
            "-----BEGIN PRIVATE KEY----- is not a certificate",
        ] {
            assert_eq!(s.scrub(line), line);
        }
        assert_eq!(
            s.scrub("extension_traceId=true"),
            "<redacted>",
            "an extension, which may be a key"
        );
    }

    /// librdkafka names a broker's thread after its first 63 bytes, cuts a broker's name at
    /// about 253 characters and a log line at 2 KiB: the password of `user:pass@host` was
    /// shown up to the cut (35 of a 59-character one in a thread name).
    #[test]
    fn the_start_of_a_secret_that_librdkafka_cut_off_is_hidden() {
        let pw = "kP9vQ2xR7mT4wZ8yB3nC6dF1gH5jL0sA2eU7iO4pY9tR3wQ8zX6cV1bN5mK";
        let s = scrubber(&[(
            "bootstrap.servers",
            &format!("USERNAME:{pw}@pkc.example:9092"),
        )]);
        let cut = &pw[..35];
        assert_eq!(
            s.scrub(&format!(
                "[thrd:sasl_ssl://USERNAME:{cut}]: sasl_ssl://USERNAME:{pw}@pkc"
            )),
            "[thrd:sasl_ssl://USERNAME:<redacted>]: sasl_ssl://USERNAME:<redacted>@pkc"
        );
        for after in ["'", ": Failed", "\"", "/0", "\u{fffd}", ""] {
            assert_eq!(
                s.scrub(&format!("to 'USERNAME:{cut}{after}")),
                format!("to 'USERNAME:<redacted>{after}"),
                "{after:?}"
            );
        }
        // After its user even a short start is a cut copy; elsewhere a start is no secret (the
        // host `kafka` beside the password `kafka-secret`), nor one that goes on with other text.
        assert_eq!(s.scrub("[thrd:USERNAME:kP9]"), "[thrd:USERNAME:<redacted>]");
        assert_eq!(s.scrub("kP9vQ2: and more"), "kP9vQ2: and more");
        assert_eq!(
            s.scrub("USERNAME:kP9vQ2 and more"),
            "USERNAME:kP9vQ2 and more"
        );
        // A password's own `:` that runs on into librdkafka's `: Failed` after the cut.
        let s = scrubber(&[("bootstrap.servers", "u:Qz7kL9vMn2Xq8:Rw4Tj6Hy@h:9092")]);
        assert_eq!(
            s.scrub("[thrd:u:Qz7kL9vMn2Xq8]: u:Qz7kL9vMn2Xq8: Failed"),
            "[thrd:u:<redacted>]: u:<redacted>: Failed"
        );
        let s = scrubber(&[("bootstrap.servers", "u:h\u{e9}-h\u{e9}-h\u{e9}@h:9092")]);
        assert_eq!(s.scrub("u:h\u{e9}-h\u{fffd}]"), "u:<redacted>\u{fffd}]");
    }

    /// What a review of the first versions found still shown, as librdkafka wrote it.
    #[test]
    fn cut_copies_in_a_list_after_a_blank_a_comma_or_no_user_are_hidden() {
        let pw = "kP9vQ2xR7mT4wZ8yB3nC6dF1gH5jL0sA2eU7iO4pY9tR3wQ8zX6cV1bN5mK";
        // A blank after the list's comma, which librdkafka skips.
        let s = scrubber(&[("bootstrap.servers", &format!("h:1, USER:{pw}@h:2"))]);
        assert_eq!(
            s.scrub(&format!("[thrd:USER:{}]: x", &pw[..58])),
            "[thrd:USER:<redacted>]: x"
        );
        // The piece of a password after a comma names a broker of its own.
        let piece = "Gf5Ds0Ya8Ue3Io7Qw2Er9Ty4Uo6Pa1Sd5Fg8Hj3Kl7Zx2Cv";
        let s = scrubber(&[(
            "bootstrap.servers",
            &format!("sasl_plaintext://USER:Zq7Wm3Kx9Pv2,{piece}@h:9092"),
        )]);
        assert_eq!(
            s.scrub(&format!("[thrd:sasl_plaintext://{}]: x", &piece[..46])),
            "[thrd:sasl_plaintext://<redacted>]: x"
        );
        // A whole piece that a longer cut copy starts with.
        let s = scrubber(&[("bootstrap.servers", "USER:ab:cd@efghijklmn,opqrstuv@h:9092")]);
        assert!(
            !s.scrub("[thrd:USER:ab:cd@efghijklmn:9092/bootstrap]")
                .contains("efghijklmn"),
            "{}",
            s.scrub("[thrd:USER:ab:cd@efghijklmn:9092/bootstrap]")
        );
        // No user: a port that begins like the password is left.
        let s = scrubber(&[("bootstrap.servers", ":44999xyzSecret@127.0.0.1:44999")]);
        assert_eq!(
            s.scrub("Failed to resolve ':<x>@127.0.0.1:44999:9092'"),
            "Failed to resolve ':<x>@127.0.0.1:44999:9092'"
        );
        assert_eq!(s.scrub("[thrd::44999xyzSe]"), "[thrd::<redacted>]");
        assert_eq!(s.scrub(":44999xyzSe: Failed"), ":<redacted>: Failed");
        // librdkafka reads no URL in a broker list: a `#`, `?` or `/` is part of the password.
        let s = scrubber(&[(
            "bootstrap.servers",
            "sasl_plaintext://user:%SNM_d$bi8#7d20gf2/Pb27Pd@nohost:9092",
        )]);
        assert_eq!(
            s.scrub("[thrd:sasl_plaintext://user:%SNM_d$bi8#7d20gf2/Pb2]: user:%SNM_d$bi8#7d20gf2/Pb27Pd@nohost"),
            "[thrd:sasl_plaintext://user:<redacted>]: user:<redacted>@nohost"
        );
    }

    #[test]
    fn the_longest_secret_goes_first_and_nothing_cuts_into_the_placeholder() {
        let s = scrubber(&[
            ("sasl.password", "redacted"),
            ("ssl.key.password", "redacted-too"),
        ]);
        assert_eq!(s.scrub("redacted-too redacted"), "<redacted> <redacted>");
        assert_eq!(format!("{s:?}"), "Scrubber { secrets: 2 }");
    }

    /// librdkafka cuts a log line at 2 KiB: the start of a password, or of a URL's password, left
    /// at the end of one is hidden (found by mutating `Scrubber::new` by hand: cargo-mutants
    /// leaves constructors alone).
    #[test]
    fn the_start_of_a_password_or_a_urls_password_where_librdkafka_cut_a_long_line_is_hidden() {
        let s = scrubber(&[
            ("sasl.password", "Sasl-Pw-7c1d-long"),
            (
                "sasl.oauthbearer.token.endpoint.url",
                "https://u:Url-Pw-9e2f-long@idp/token",
            ),
        ]);
        let head = format!("error: {} ", "x".repeat(1100));
        for cut in ["Sasl-Pw-7c1", "Url-Pw-9e2"] {
            assert_eq!(
                s.scrub(&format!("{head}{cut}")),
                format!("{head}<redacted>"),
                "{cut}"
            );
        }
    }

    /// librdkafka reads the first `://` of a broker list's entry as its scheme, a password's too:
    /// it quoted the whole entry (`Broker name "USER:Zq7Wm://3Kx9@h" parse error: unsupported
    /// protocol "USER:ZQ7WM"`), or the piece before it as a host (`[thrd:sasl_plaintext://
    /// USER:Zq7Wm::9092/bootstrap]`); the lines as librdkafka wrote them.
    #[test]
    fn a_password_holding_a_scheme_separator_is_hidden_where_librdkafka_quotes_it() {
        let s = scrubber(&[(
            "bootstrap.servers",
            "USER:Zq7Wm://3Kx9Pv2Hr5T@127.0.0.1:48590",
        )]);
        assert_eq!(
            s.scrub(
                "[thrd:app]: Broker name \"USER:Zq7Wm://3Kx9Pv2Hr5T@127.0.0.1:48590\" parse \
                 error: unsupported protocol \"USER:ZQ7WM\""
            ),
            "[thrd:app]: Broker name \"USER:<redacted>@127.0.0.1:48590\" parse error: \
             unsupported protocol \"USER:<redacted>\""
        );
        let s = scrubber(&[(
            "bootstrap.servers",
            "sasl_plaintext://USER:Zq7Wm://3Kx9Pv2Hr5T@127.0.0.1:48590",
        )]);
        assert_eq!(
            s.scrub(
                "[thrd:sasl_plaintext://USER:Zq7Wm::9092/bootstrap]: Failed to resolve \
                 'USER:Zq7Wm::9092'"
            ),
            "[thrd:sasl_plaintext://USER:<redacted>:9092/bootstrap]: Failed to resolve \
             'USER:<redacted>:9092'"
        );
    }

    /// `--check-config` prints the brokers as the scrubber hides them: a password holding `#`,
    /// `?` or `/` after a scheme, and one holding `://`, were printed whole.
    #[test]
    fn check_config_hides_the_passwords_only_a_broker_list_has() {
        use super::super::redact::broker_list_password_hidden;
        for (brokers, shown) in [
            (
                "sasl_ssl://USER:Zq7Wm#3Kx9/Pv2Hr5T@127.0.0.1:48590",
                "sasl_ssl://USER:<redacted>@127.0.0.1:48590",
            ),
            (
                "USER:Zq7Wm://3Kx9Pv2Hr5T@127.0.0.1:48590",
                "USER:<redacted>@127.0.0.1:48590",
            ),
            (
                "sasl_ssl://USER:Zq7Wm://3Kx9Pv2Hr5T@h:1, sasl_ssl://B:Pw2Hr5TLq8Nd@h:2",
                "sasl_ssl://USER:<redacted>@h:1, sasl_ssl://B:<redacted>@h:2",
            ),
            // A scheme librdkafka does not know is a user, and `//` begins the password...
            (
                "User://Zq7Wm3Kx9Pv2@h:1, sasl_ssl://B:Pw2Hr5TLq8Nd@h:2",
                "User:<redacted>@h:1, sasl_ssl://B:<redacted>@h:2",
            ),
            // ...nor does it end the password before it, which may hold a comma.
            (
                "sasl_ssl://A:Zq7Wm3,user://Kx9Pv2@h:1",
                "sasl_ssl://A:<redacted>@h:1",
            ),
            // ...but one it knows, in any case, leaves what follows it a host.
            ("SASL_SSL://Zq7Wm3Kx9Pv2@h:1", "SASL_SSL://Zq7Wm3Kx9Pv2@h:1"),
        ] {
            assert_eq!(broker_list_password_hidden(brokers), shown);
        }
    }

    /// An entry with a scheme librdkafka does not know (`kafka://`) whose password holds `?` (no
    /// URL then) and a comma with a `:` after it: found walking back from its `@` alone, the
    /// password was hidden only from that `:` (found by a review's fuzzing of the fix above).
    #[test]
    fn a_password_holding_a_comma_after_a_scheme_librdkafka_does_not_know_is_hidden_whole() {
        let list = "kafka://svc:Kx9?Pv2,Zq7W:m3@127.0.0.1:47411";
        assert_eq!(
            super::super::redact::broker_list_password_hidden(list),
            "kafka://svc:<redacted>@127.0.0.1:47411"
        );
        let s = scrubber(&[("bootstrap.servers", list)]);
        assert_eq!(
            s.scrub(
                "[thrd:app]: Broker name \"kafka://svc:Kx9?Pv2,Zq7W:m3@127.0.0.1:47411\" parse \
                 error: unsupported protocol \"KAFKA\""
            ),
            "[thrd:app]: Broker name \"kafka://svc:<redacted>@127.0.0.1:47411\" parse error: \
             unsupported protocol \"KAFKA\""
        );
    }

    /// librdkafka takes the text before a broker list entry's first `://` for a scheme, and
    /// refuses one it does not know quoting the rest of the list: `user://pw@host` is a user and
    /// a password beginning with `//`, which it showed (the line as librdkafka wrote it).
    #[test]
    fn a_password_beginning_with_slashes_after_a_user_is_hidden_where_librdkafka_quotes_it() {
        let s = scrubber(&[(
            "bootstrap.servers",
            "User://Zq7Wm3Kx9Pv2@127.0.0.1:47050, sasl_ssl://B:Pw2Hr5TLq8Nd@127.0.0.1:47053",
        )]);
        assert_eq!(
            s.scrub(
                "[thrd:app]: Broker name \"User://Zq7Wm3Kx9Pv2@127.0.0.1:47050, \
                 sasl_ssl://B:Pw2Hr5TLq8Nd@127.0.0.1:47053\" parse error: unsupported protocol \
                 \"USER\""
            ),
            "[thrd:app]: Broker name \"User:<redacted>@127.0.0.1:47050, \
             sasl_ssl://B:<redacted>@127.0.0.1:47053\" parse error: unsupported protocol \"USER\""
        );
    }

    /// librdkafka skips the blanks after a broker list's comma, a password's too, and names a
    /// broker after the piece without them: in its thread's name, its messages and /readyz
    /// (found by mutation testing cut.rs; the lines as librdkafka wrote them).
    #[test]
    fn the_piece_of_a_password_after_a_comma_and_a_blank_is_hidden_where_librdkafka_quotes_it() {
        let piece = "Gf5Ds0Ya8Ue3Io7Qw2Er9";
        let s = scrubber(&[(
            "bootstrap.servers",
            &format!("USER:Zq7Wm3Kx9Pv2, {piece}@127.0.0.1:48001"),
        )]);
        let line = format!(
            "[thrd:{piece}@127.0.0.1:48001/bootstrap]: {piece}@127.0.0.1:48001/bootstrap: \
             Failed to resolve '{piece}@127.0.0.1:48001': Name or service not known"
        );
        assert_eq!(
            s.scrub(&line),
            "[thrd:<redacted>@127.0.0.1:48001/bootstrap]: <redacted>@127.0.0.1:48001/bootstrap: \
             Failed to resolve '<redacted>@127.0.0.1:48001': Name or service not known"
        );
        let s = scrubber(&[(
            "bootstrap.servers",
            &format!("sasl_plaintext://USER:Zq7Wm3Kx9Pv2, {piece}@h:9092"),
        )]);
        assert_eq!(
            s.scrub(&format!("[thrd:sasl_plaintext://{piece}@h:9092/bootstrap]")),
            "[thrd:sasl_plaintext://<redacted>@h:9092/bootstrap]"
        );
    }

    /// A needle or a cut copy that starts before a password and ends inside it must not leave
    /// the rest of the password shown: the trimmed piece after ", " of one entry's password
    /// (`:Kx9P`), a comma piece's cut copy after `://` (`u:Zq`), or a cut copy after `//:` of a
    /// password found in an entry without a scheme's name, each hid the start of another
    /// entry's password alone, in the line librdkafka writes for the list (all three were
    /// hidden at c6489d8).
    #[test]
    fn a_match_overlapping_the_start_of_a_password_does_not_leave_the_rest_of_it_shown() {
        for (brokers, rest) in [
            (
                "ssl://USER:Kx9Pv2/abcd@127.0.0.1:48601, :Kx9P@127.0.0.1:48602",
                "v2/abcd",
            ),
            ("ssl://u:Zq'%40%40@h0:9092,u:Zq]://7W@h1:9092", "'%40%40"),
            (
                "sasl_ssl://:/'.#K@h0:9092,  ://svc.acct:--m3Zq@h2:9092",
                "'.#K",
            ),
        ] {
            let s = scrubber(&[("bootstrap.servers", brokers)]);
            let line = format!(
                "[thrd:app]: Broker name \"{brokers}\" parse error: protocol \"SSL\" does not \
                 match security.protocol setting \"plaintext\""
            );
            let shown = s.scrub(&line);
            assert!(!shown.contains(rest), "{shown}");
        }
    }
}
