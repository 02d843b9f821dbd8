//! What the handler reads from a request besides its route and credential: the media type,
//! the request id, the body as one buffer and its digest.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::{
    HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, HOST, TRANSFER_ENCODING,
};
use http::{HeaderMap, Request, Version};
use http_body_util::BodyExt;
use hyper::body::Body;
use sha2::{Digest, Sha256};

use crate::error::{MediaRefusal, WebhookError};

// A `HeaderName` rather than a `&str`: inserting a header by a non-standard `&str` name
// allocates that name on every call.
pub(super) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The body's data frames as one buffer. A body that arrived in one frame (a webhook usually
/// does) is handed on as that frame, without the copy and list that `collect()` makes. One in
/// several frames is joined in a buffer of its declared length, or, without one, copied to its
/// own size at the end: a buffer that grew by doubling could hold twice what the in-flight
/// bytes count for it.
pub(super) async fn concat<B: Body<Data = Bytes>>(body: B) -> Result<Bytes, B::Error> {
    let declared = usize::try_from(body.size_hint().lower()).unwrap_or(0);
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers carry nothing the record needs
        };
        if let Some(joined) = joined.as_mut() {
            joined.extend_from_slice(&data);
        } else if let Some(head) = first.take() {
            let mut buf = BytesMut::with_capacity(declared.max(head.len() + data.len()));
            buf.extend_from_slice(&head);
            buf.extend_from_slice(&data);
            joined = Some(buf);
        } else {
            first = Some(data);
        }
    }
    Ok(match joined {
        Some(buf) if buf.capacity() > buf.len() + buf.len() / 8 => Bytes::copy_from_slice(&buf),
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// Reads a refused request's body to its end and drops it, up to `limit` bytes and for at most
/// `within`: whether it ended. An HTTP/1 connection closed with bytes still unread is reset,
/// and a sender still writing its body may then see the reset rather than the answer.
pub(super) async fn discard<B>(body: B, limit: usize, within: Duration) -> bool
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let read = async {
        let mut body = std::pin::pin!(http_body_util::Limited::new(body, limit));
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(within, read).await.unwrap_or(false)
}

/// 9999-12-31T23:59:59.999Z, the last time four digits of year can say, after the epoch.
const LAST_RFC3339: Duration = Duration::from_millis(253_402_300_799_999);

/// A time as RFC 3339 UTC with milliseconds ("2026-11-24T19:00:37.123Z"), formatted on the stack.
pub(super) struct Rfc3339Millis {
    buf: [u8; 32],
    len: usize,
}

impl Rfc3339Millis {
    pub(super) fn new(time: SystemTime) -> Rfc3339Millis {
        let mut buf = [0u8; 32];
        // humantime panics on a time before 1970 and fails from the year 10000 on, which `write!`
        // to a slice turns into a panic too: a clock that far off (a VM's reset clock) gets an
        // empty value rather than a panic in every request.
        if !time
            .duration_since(UNIX_EPOCH)
            .is_ok_and(|since| since <= LAST_RFC3339)
        {
            return Rfc3339Millis { buf, len: 0 };
        }
        let mut rest = &mut buf[..];
        // 24 bytes until the year 10000; humantime writes ASCII only.
        let len = match write!(rest, "{}", humantime::format_rfc3339_millis(time)) {
            Ok(()) => 32 - rest.len(),
            Err(_) => 0,
        };
        Rfc3339Millis { buf, len }
    }

    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Lower-case hex SHA-256, on the stack.
pub(super) fn sha256_hex(body: &[u8]) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(body);
    let mut out = [0u8; 64];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    out
}

/// Drops the spaces and tabs around each field's value, as HTTP/1's parser does before hyper
/// hands a request on. HTTP/2 passes them through (RFC 9113, section 8.2.1, calls such a field
/// malformed, and neither h2 nor hyper refuses it), so without this the same request was judged
/// otherwise over h2c: a `Content-Type` of 256 bytes and a space refused as too long, two equal
/// `Content-Type` or `Authorization` fields as differing, an `X-Request-Id` with a space replaced,
/// an `Expect` or a `Host` not recognised.
pub(super) fn trim_values(headers: &mut HeaderMap) {
    let padded = |b: &[u8]| {
        matches!(b.first(), Some(b' ' | b'\t')) || matches!(b.last(), Some(b' ' | b'\t'))
    };
    for value in headers.values_mut().filter(|v| padded(v.as_bytes())) {
        let bytes = value.as_bytes();
        let start = bytes.iter().position(|b| !matches!(b, b' ' | b'\t'));
        let end = bytes.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
        let trimmed = match (start, end) {
            (Some(start), Some(end)) => &bytes[start..=end],
            _ => &[][..],
        };
        // A part of a valid value is valid; the check is HeaderValue's.
        if let Ok(mut trimmed) = HeaderValue::from_bytes(trimmed) {
            trimmed.set_sensitive(value.is_sensitive());
            *value = trimmed;
        }
    }
}

/// Longest `Content-Type` kept: it is copied into every record's headers, and a real one
/// (`application/json; charset=utf-8`) is a tenth of this.
const MAX_CONTENT_TYPE: usize = 256;

/// JSON, or nothing said: anything else is refused before the body is read.
pub(super) fn content_type(headers: &HeaderMap) -> Result<&str, WebhookError> {
    let Ok(value) = single_value(headers, &CONTENT_TYPE) else {
        return Err(WebhookError::UnsupportedMediaType(MediaRefusal::Malformed));
    };
    let Some(value) = value else {
        return Ok("application/json");
    };
    if value.len() > MAX_CONTENT_TYPE {
        return Err(WebhookError::UnsupportedMediaType(MediaRefusal::Malformed));
    }
    let text = value
        .to_str()
        .map_err(|_| WebhookError::UnsupportedMediaType(MediaRefusal::Malformed))?;
    let (media, params) = text.split_once(';').unwrap_or((text, ""));
    let (kind, sub) = media
        .trim_matches([' ', '\t'])
        .split_once('/')
        .ok_or(WebhookError::UnsupportedMediaType(MediaRefusal::NotJson))?;
    // RFC 9110, section 8.3.1: both are tokens. `application/x/y+json` is no media type anyone
    // reads the same way, and it is copied into every record.
    if !token(kind) || !token(sub) {
        return Err(WebhookError::UnsupportedMediaType(MediaRefusal::Malformed));
    }
    let sub = sub.as_bytes();
    let json = sub.eq_ignore_ascii_case(b"json")
        || (sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case(b"+json"));
    if !kind.eq_ignore_ascii_case("application") || !json {
        return Err(WebhookError::UnsupportedMediaType(MediaRefusal::NotJson));
    }
    // Copied into the record, `application/cloudevents...` would tell a CloudEvents reader the
    // value is a structured event (Kafka binding, section 3): it is a webhook body.
    if sub.len() >= 11 && sub[..11].eq_ignore_ascii_case(b"cloudevents") {
        return Err(WebhookError::UnsupportedMediaType(
            MediaRefusal::CloudEvents,
        ));
    }
    utf8_or_unsaid(params).map_err(WebhookError::UnsupportedMediaType)?;
    // HTTP/2 passes on what HTTP/1's parser drops: the record's header is the same either way.
    Ok(text.trim_matches([' ', '\t']))
}

/// A single-value field (RFC 9110, section 5.3): its value, `None` when absent, `Err` when given
/// twice with values that differ, since a proxy in front may have read the other one.
pub(super) fn single_value<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, ()> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.any(|other| Some(other) != first) {
        return Err(());
    }
    Ok(first)
}

/// The codings a header lists over all its fields, trimmed, empty list members skipped; a value
/// that is not text comes as one coding that no check accepts.
fn codings<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("\0").split(','))
        .map(str::trim)
        .filter(|coding| !coding.is_empty())
}

/// No transfer coding but `chunked`, which hyper undoes: it leaves any other in place (`gzip,
/// chunked` arrives as gzip bytes), and such a body would be dead-lettered as bytes no one can
/// read while its sender, told 400, gives up. Chunked twice is refused too: hyper undoes one
/// layer (RFC 9112, section 7: a sender must not apply it more than once).
pub(super) fn chunked_only(headers: &HeaderMap) -> Result<(), WebhookError> {
    let mut chunked = false;
    for coding in codings(headers, &TRANSFER_ENCODING) {
        if !coding.eq_ignore_ascii_case("chunked") || std::mem::replace(&mut chunked, true) {
            return Err(WebhookError::UnsupportedTransferCoding);
        }
    }
    Ok(())
}

/// One `Host` header, which HTTP/1.1 requires (HTTP/1.0 and HTTP/2, which has `:authority`, may
/// go without), and a valid one: RFC 9112, section 3.2 asks a server to refuse a request without
/// it, with more than one, or with one whose value is no `host[:port]`, as a proxy in front may
/// have routed it by another reading. Its value is not compared with anything: the bridge
/// answers under any name its ingress gives it.
///
/// The target's authority too, where it has one: an absolute URI's (`POST http://host/webhook`),
/// which RFC 9112 (section 3.2.2) has a server use in place of Host, and HTTP/2's `:authority`
/// (hyper puts both in the URI), whose user information RFC 9113 (section 8.3.1) forbids.
pub(super) fn one_host(
    version: Version,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Result<(), WebhookError> {
    if uri
        .authority()
        .is_some_and(|authority| !valid_host(authority.as_str().as_bytes()))
    {
        return Err(WebhookError::Host(
            "the request's authority (an absolute URI's, or HTTP/2's :authority) must be a host \
             name or address with an optional port",
        ));
    }
    let mut hosts = headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(WebhookError::Host("the Host header must be given once")),
        (None, _) if version == Version::HTTP_11 => Err(WebhookError::Host(
            "an HTTP/1.1 request must have a Host header",
        )),
        (Some(host), None) if !valid_host(host.as_bytes()) => Err(WebhookError::Host(
            "the Host header must be a host name or address with an optional port",
        )),
        _ => Ok(()),
    }
}

/// RFC 9112's `Host = uri-host [ ":" port ]` (RFC 3986, section 3.2.2: a bracketed IPv6 or
/// future address, or a registered name of unreserved characters, sub-delimiters and
/// percent-escapes, which takes in IPv4 addresses), or empty, for a target without authority.
/// By hand: `http::uri::Authority` copies the value to parse it, an allocation every request.
pub(super) fn valid_host(host: &[u8]) -> bool {
    let (name, port) = match host.strip_prefix(b"[") {
        Some(literal) => match literal.iter().position(|&b| b == b']') {
            Some(end) if ip_literal(&literal[..end]) => (&[][..], &literal[end + 1..]),
            _ => return false,
        },
        None => {
            let end = host.iter().position(|&b| b == b':').unwrap_or(host.len());
            (&host[..end], &host[end..])
        }
    };
    reg_name(name)
        && port.strip_prefix(b":").map_or(port.is_empty(), |digits| {
            digits.iter().all(u8::is_ascii_digit)
        })
}

/// Inside the brackets: an IPv6 address, or `v` HEX `.` and more (RFC 3986's IPvFuture).
fn ip_literal(inside: &[u8]) -> bool {
    if let Some(future) = inside.strip_prefix(b"v").or(inside.strip_prefix(b"V")) {
        return match future.iter().position(|&b| b == b'.') {
            Some(dot) if dot > 0 && dot + 1 < future.len() => {
                future[..dot].iter().all(u8::is_ascii_hexdigit)
                    && future[dot + 1..]
                        .iter()
                        .all(|&b| unreserved_or_sub_delim(b) || b == b':')
            }
            _ => false,
        };
    }
    std::str::from_utf8(inside).is_ok_and(|text| text.parse::<std::net::Ipv6Addr>().is_ok())
}

fn reg_name(name: &[u8]) -> bool {
    let mut rest = name;
    while let Some((&b, tail)) = rest.split_first() {
        rest = match b {
            b'%' => match tail {
                [h, l, more @ ..] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => more,
                _ => return false,
            },
            b if unreserved_or_sub_delim(b) => tail,
            _ => return false,
        };
    }
    true
}

fn unreserved_or_sub_delim(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

/// No content coding but `identity`: the body as sent becomes the record's value byte for byte,
/// and a gzip body there would be bytes no consumer expects (RFC 9110, section 15.5.16: 415).
pub(super) fn identity_encoding(headers: &HeaderMap) -> Result<(), WebhookError> {
    if codings(headers, &CONTENT_ENCODING).all(|coding| coding.eq_ignore_ascii_case("identity")) {
        Ok(())
    } else {
        Err(WebhookError::UnsupportedEncoding)
    }
}

/// Whether a media type's parameters (what follows its first `;`) leave the body UTF-8: no
/// `charset`, or `charset=utf-8` (any case, quoted or not). JSON is UTF-8 (RFC 8259, section 8.1),
/// and the body is checked to be; a record whose copied `Content-Type` named another charset
/// would tell consumers to decode the same bytes differently. So every reader must find the same
/// parameters in it: they follow RFC 9110's grammar (section 5.6.6: `name=value`, the name a
/// token, the value a token or a quoted string, separated by `;` and optional white space), and
/// what readers part ways on is refused too: a `*` in a name (RFC 2231's `charset*0=latin1`,
/// which Python's email parser joins into a charset) and a `\` or `;` in a quoted value (readers that
/// count quotes, or split at every `;` as Python's `requests` does, find a `charset` there).
fn utf8_or_unsaid(mut rest: &str) -> Result<(), MediaRefusal> {
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return Ok(());
        }
        // An empty parameter (`;;`, or a `;` at the end): the grammar allows it.
        if let Some(after) = rest.strip_prefix(';') {
            rest = after;
            continue;
        }
        let name_len = token_len(rest);
        let (name, after) = rest.split_at(name_len);
        let after = after
            .strip_prefix('=')
            .filter(|_| name_len > 0 && !name.contains('*'))
            .ok_or(MediaRefusal::Malformed)?;
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted
                    .find(['"', '\\', ';'])
                    .filter(|&end| quoted.as_bytes()[end] == b'"')
                    .ok_or(MediaRefusal::Malformed)?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => {
                let len = token_len(after);
                if len == 0 {
                    return Err(MediaRefusal::Malformed);
                }
                after.split_at(len)
            }
        };
        if name.eq_ignore_ascii_case("charset")
            && !value.eq_ignore_ascii_case("utf-8")
            && !value.eq_ignore_ascii_case("utf8")
        {
            return Err(MediaRefusal::Charset);
        }
        // After a parameter: white space, then the next `;` or the end.
        let next = next.trim_start_matches([' ', '\t']);
        if !next.is_empty() && !next.starts_with(';') {
            return Err(MediaRefusal::Malformed);
        }
        rest = next;
    }
}

/// RFC 9110's token characters (section 5.6.2).
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The length of the run of token characters `text` starts with.
fn token_len(text: &str) -> usize {
    text.bytes().take_while(|&b| tchar(b)).count()
}

/// A non-empty run of token characters.
fn token(text: &str) -> bool {
    !text.is_empty() && token_len(text) == text.len()
}

/// The sender's `X-Request-Id` when it is a sane token (printable ASCII, so also valid text),
/// otherwise a fresh UUID.
pub(super) fn request_id<B>(req: &Request<B>) -> HeaderValue {
    let sane = |v: &&HeaderValue| {
        (1..=128).contains(&v.len()) && v.as_bytes().iter().all(u8::is_ascii_graphic)
    };
    match req.headers().get(X_REQUEST_ID).filter(sane) {
        Some(v) => v.clone(),
        None => {
            let mut buf = uuid::Uuid::encode_buffer();
            let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
            HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"))
        }
    }
}
