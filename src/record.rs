//! The Kafka record the bridge writes: the body as value, a key, and headers whose names are the
//! contract with consumers (see the README's "Records" section).

use std::borrow::Cow;

use crate::classify::Envelope;
use crate::topics::KeyStrategy;

/// The Qikchat event name, e.g. `whatsapp:message:in` (absent on dead-letter records).
pub const HEADER_EVENT: &str = "event";
/// Qikchat's message id, `payload.id`, when the body has one.
pub const HEADER_MESSAGE_ID: &str = "message-id";
/// The request's `X-Request-Id`, or one the bridge generated (UUID v4).
pub const HEADER_REQUEST_ID: &str = "request-id";
/// When the bridge received the request: RFC 3339, UTC, milliseconds.
pub const HEADER_RECEIVED_AT: &str = "received-at";
/// The request's `Content-Type`, `application/json` when it sent none.
pub const HEADER_CONTENT_TYPE: &str = "content-type";
/// SHA-256 of the value, lower-case hex: the same body delivered twice (at-least-once: a late
/// acknowledgement plus a retry, or a replay after a crash) carries the same digest.
pub const HEADER_BODY_SHA256: &str = "body-sha256";
/// On dead-letter records only: why the body was refused.
pub const HEADER_DEADLETTER_REASON: &str = "deadletter-reason";
/// On dead-letter records that their own topic refused after they were spooled: that topic, so
/// they can be sent back to it once the cause (its size limit, say) is fixed.
pub const HEADER_DEADLETTER_TOPIC: &str = "deadletter-topic";

/// CloudEvents Kafka protocol binding, binary mode (opt-in with `--cloudevents`); `content-type`
/// doubles as the event's `datacontenttype`.
pub const CE_SPECVERSION: &str = "ce_specversion";
pub const CE_ID: &str = "ce_id";
pub const CE_SOURCE: &str = "ce_source";
pub const CE_TYPE: &str = "ce_type";
pub const CE_TIME: &str = "ce_time";

/// Everything the producer needs; borrowed from the request, so nothing is copied until
/// librdkafka copies the value into its queue.
#[derive(Debug)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub key: Option<Cow<'a, str>>,
    pub value: &'a [u8],
    pub timestamp_ms: i64,
    pub headers: RecordHeaders<'a>,
}

/// `time` as a record's timestamp: ms since the Unix epoch; `None` before it (a VM's reset clock).
pub fn timestamp_ms(time: std::time::SystemTime) -> Option<i64> {
    time.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as i64)
}

/// librdkafka's allowance for a record's framing in its size check
/// (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`).
const WIRE_OVERHEAD: usize = 36;

impl Record<'_> {
    /// The size librdkafka weighs against `message.max.bytes` when it takes a record (value, key,
    /// headers with their length prefixes, framing): a record over the limit is refused on every
    /// topic, so it must not be spooled, where replay could never deliver it.
    pub fn wire_size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| {
                name.len() + value.len() + varint_len(name.len()) + varint_len(value.len())
            })
            .sum();
        WIRE_OVERHEAD + self.value.len() + self.key.as_deref().map_or(0, str::len) + headers
    }
}

/// Bytes of a length as Kafka's zig-zag varint.
fn varint_len(n: usize) -> usize {
    let mut v = (n as u64) << 1;
    let mut len = 1;
    while v >= 0x80 {
        v >>= 7;
        len += 1;
    }
    len
}

/// The headers of a record: built from a request, or as stored in the spool.
#[derive(Debug, Clone, Copy)]
pub enum RecordHeaders<'a> {
    Request(Headers<'a>),
    Raw(&'a [(&'a str, &'a str)]),
}

impl<'a> From<Headers<'a>> for RecordHeaders<'a> {
    fn from(h: Headers<'a>) -> Self {
        RecordHeaders::Request(h)
    }
}

impl<'a> RecordHeaders<'a> {
    pub fn iter(&self) -> HeaderIter<'a> {
        match self {
            RecordHeaders::Request(h) => h.iter(),
            RecordHeaders::Raw(list) => HeaderIter::Raw(list.iter()),
        }
    }
}

#[derive(Debug)]
/// Iterates either kind of [`RecordHeaders`] without allocating.
// Lives briefly on the stack; boxing the large variant would bring back the allocation it avoids.
#[allow(clippy::large_enum_variant)]
pub enum HeaderIter<'a> {
    /// Every possible header of a request's record, absent ones as `None` (skipped).
    Request(std::array::IntoIter<(&'static str, Option<&'a str>), 12>),
    Raw(std::slice::Iter<'a, (&'a str, &'a str)>),
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            HeaderIter::Request(i) => i.find_map(|(n, v)| v.map(|v| (n, v))),
            HeaderIter::Raw(i) => i.next().copied(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    pub event: Option<&'a str>,
    pub message_id: Option<&'a str>,
    pub request_id: &'a str,
    pub received_at: &'a str,
    pub content_type: &'a str,
    pub body_sha256: &'a str,
    pub deadletter_reason: Option<&'a str>,
    /// The CloudEvents `source` when `--cloudevents` is on; only events get `ce_*` headers.
    pub cloudevents_source: Option<&'a str>,
}

impl<'a> Headers<'a> {
    /// The headers present on this record, in a fixed order.
    pub fn iter(&self) -> HeaderIter<'a> {
        let c = self.cloudevents();
        HeaderIter::Request(
            [
                (HEADER_EVENT, self.event),
                (HEADER_MESSAGE_ID, self.message_id),
                (HEADER_REQUEST_ID, Some(self.request_id)),
                // Empty only on a clock outside the years 1970..9999 it can write: left out
                // rather than a value that breaks the documented format.
                (
                    HEADER_RECEIVED_AT,
                    Some(self.received_at).filter(|t| !t.is_empty()),
                ),
                (HEADER_CONTENT_TYPE, Some(self.content_type)),
                (HEADER_BODY_SHA256, Some(self.body_sha256)),
                (HEADER_DEADLETTER_REASON, self.deadletter_reason),
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
            ]
            .into_iter(),
        )
    }

    /// `ce_id` is the body's digest: CloudEvents wants `source` + `id` unique for each distinct
    /// event and the same for a re-sent one, which the sender's `X-Request-Id` (its choice, maybe
    /// repeated across events, new on each retry) is not.
    fn cloudevents(&self) -> [(&'static str, Option<&'a str>); 5] {
        let on = self.cloudevents_source.and(self.event).is_some();
        let when = |v: &'a str| on.then_some(v);
        [
            (CE_SPECVERSION, when("1.0")),
            (CE_ID, when(self.body_sha256)),
            (CE_SOURCE, self.cloudevents_source.and_then(when)),
            (CE_TYPE, self.event.and_then(when)),
            (CE_TIME, when(self.received_at).filter(|t| !t.is_empty())),
        ]
    }
}

/// The record key for a classified body.
///
/// Qikchat writes the same customer as `9184…` in `message.from` and `+9184…` in a status's `to`;
/// a leading `+` is dropped (with any space around it) so both land on the same partition.
pub fn key<'a>(strategy: KeyStrategy, envelope: &'a Envelope<'a>) -> Option<Cow<'a, str>> {
    let pick = match strategy {
        KeyStrategy::None => return None,
        KeyStrategy::MessageId => envelope.message_id.as_deref(),
        KeyStrategy::Conversation => envelope
            .from
            .as_deref()
            .or(envelope.to.as_deref())
            .or(envelope.message_id.as_deref()),
    }?;
    let trimmed = match strategy {
        KeyStrategy::Conversation => pick
            .trim_start_matches(|c: char| c == '+' || is_space(c))
            .trim_end_matches(is_space),
        _ => pick,
    };
    (!trimmed.is_empty()).then_some(Cow::Borrowed(trimmed))
}

/// White space around a number: Unicode's, and U+FEFF, the byte-order mark, which ECMAScript's
/// `\s` counts too (the published key pattern, `^[^+\s]`, is read by JSON Schema validators
/// with ECMAScript's regular expressions); a number copied with one is still the customer's.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

#[cfg(test)]
mod tests;
