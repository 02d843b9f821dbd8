//! Reads the few fields the bridge needs (`event`, `payload.id`, `payload.to`,
//! `payload.message.from`) in one borrowed pass over the body, without building a JSON tree.
//!
//! The whole body is still checked to be JSON, nested at most [`MAX_DEPTH`] deep (serde_json reads
//! through unknown values and their nesting is counted; on the rare path, a depth scan and then
//! `IgnoredAny`, which validates them), but only the event name is required: every other field is
//! taken when it is a string (or a number, as written) and ignored otherwise, so an unexpected
//! payload shape never turns a real event into a 400.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

mod fields;
use fields::{field, KeyIn, Lenient, Payload, Skip};

/// What the bridge reads from a valid body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub event: Cow<'a, str>,
    /// `payload.id`: Qikchat's message id.
    pub message_id: Option<Cow<'a, str>>,
    /// `payload.to`: for statuses, the customer's number.
    pub to: Option<Cow<'a, str>>,
    /// `payload.message.from`: for incoming messages, the customer's number.
    pub from: Option<Cow<'a, str>>,
}

/// Why a body was refused; the text goes into the 400 answer and the dead-letter header, so it
/// names the problem and a position but never echoes the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error("body is not valid JSON ({0})")]
    NotJson(String),
    #[error("body is not a JSON object")]
    NotObject,
    #[error("field `event` is missing")]
    MissingEvent,
    #[error("field `event` is not a string")]
    EventNotString,
    /// Routed nowhere, it would give records an empty `event` header (and, with CloudEvents,
    /// an empty `ce_type`, which the spec forbids and SDKs refuse).
    #[error("field `event` is empty or only white space")]
    EmptyEvent,
    /// It becomes a record header (and `ce_type`, where CloudEvents forbids control characters,
    /// and HTTP headers cannot carry them for the bridges that map it to `ce-type`).
    /// CloudEvents' String type also forbids Unicode noncharacters.
    #[error(
        "field `event` is not printable text (a control character, a Unicode noncharacter or an unpaired surrogate escape)"
    )]
    EventNotText,
    #[error("field `event` appears more than once")]
    DuplicateEvent,
    /// Consumers that keep the first `payload` and the bridge (serde: the last) would read
    /// different messages, and the record's key would not be the one a consumer sees.
    #[error("field `payload` appears more than once")]
    DuplicatePayload,
    /// `payload.id`, `payload.to`, `payload.message` or `payload.message.from` twice.
    #[error("field `{0}` appears more than once")]
    DuplicateField(String),
    #[error("body nests objects or arrays more than {MAX_DEPTH} levels deep")]
    TooDeep,
    #[error("body is not valid UTF-8 (at byte {0})")]
    NotUtf8(usize),
}

/// Qikchat's payloads nest about five levels; consumers' parsers (Python's json has a recursion
/// limit near 1000, others far less) should never receive a record built to crash them.
pub const MAX_DEPTH: usize = 64;

pub fn classify(body: &[u8]) -> Result<Envelope<'_>, ClassifyError> {
    // JSON is UTF-8 (RFC 8259), and serde_json checks it only in the strings it decodes, not in
    // those it skips: a Latin-1 byte in a message text would reach consumers whose strict
    // decoders then fail on the record every time they read it.
    let body = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) => return Err(ClassifyError::NotUtf8(e.valid_up_to())),
    };
    // From the text, not the bytes: serde_json then skips the UTF-8 check of every string it
    // reads, which the check above has made once for the whole body.
    let parsed = match parse::<false>(body) {
        // The fast pass converts three values as it reads them: the body, `payload` and
        // `payload.message`, and serde_json refuses a number beyond f64 there (as a syntax
        // error); it also converts the values it skips, and gives up on any nested past
        // MAX_DEPTH (see `fields::Skip`), so that it accepts only bodies the depth scan would.
        // A refused body gets the depth scan, then a careful pass that takes those values raw
        // first: twice the parse on a rare path. A body at fault fails that pass's whole-body
        // check first, so its 400 names the same error and position (a body both too deep and
        // at fault is too deep, whichever comes first in it).
        Err(_) => {
            check_depth(body.as_bytes())?;
            parse::<true>(body)
        }
        ok => ok,
    };
    parsed.map_err(structural)?
}

/// One pass of the visitor over the body; `CAREFUL` takes the converted values raw first.
fn parse<const CAREFUL: bool>(
    body: &str,
) -> Result<Result<Envelope<'_>, ClassifyError>, serde_json::Error> {
    if CAREFUL {
        let raw: &RawValue = serde_json::from_str(body)?;
        if !raw.get().starts_with('{') {
            return Ok(Err(ClassifyError::NotObject));
        }
        return serde_json::Deserializer::from_str(raw.get())
            .deserialize_map(EnvelopeVisitor::<true>);
    }
    let mut de = serde_json::Deserializer::from_str(body);
    let raw = de.deserialize_any(EnvelopeVisitor::<false>)?;
    de.end()?;
    Ok(raw)
}

/// serde_json skips ignored values iteratively and without a depth limit, so the careful pass's
/// bodies have their depth checked by a scan of its own: brackets outside strings. (The fast pass
/// counts it as it goes, see `fields::Skip`.) Strings, most of a webhook's bytes, are
/// crossed with `memchr` to their next quote or backslash instead of byte by byte (the byte loop
/// was half of the classifier's time in a profile).
fn check_depth(body: &[u8]) -> Result<(), ClassifyError> {
    if depth_within(body, MAX_DEPTH) {
        Ok(())
    } else {
        Err(ClassifyError::TooDeep)
    }
}

/// Whether objects and arrays nest at most `limit` deep (a parameter so tests can use a small one).
fn depth_within(body: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        i += 1;
        match b {
            b'"' => loop {
                let rest = body.get(i..).unwrap_or_default();
                match memchr::memchr2(b'"', b'\\', rest) {
                    // Unterminated: not deep, and serde_json reports the real error.
                    None => return true,
                    Some(j) if rest[j] == b'\\' => i += j + 2,
                    Some(j) => {
                        i += j + 1;
                        break;
                    }
                }
            },
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// serde_json's own messages can quote parts of the input ("invalid type: string \"...\""), so
/// only the category and position are kept.
fn position_only(e: serde_json::Error) -> ClassifyError {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end",
        serde_json::error::Category::Syntax => "syntax error",
        _ => "unexpected value",
    };
    ClassifyError::NotJson(format!("{what} at line {} column {}", e.line(), e.column()))
}

fn structural(e: serde_json::Error) -> ClassifyError {
    // The visitor reports its own findings as custom errors carrying these markers.
    let text = e.to_string();
    for (marker, err) in [
        (MARK_NOT_OBJECT, ClassifyError::NotObject),
        (MARK_DUPLICATE, ClassifyError::DuplicateEvent),
        (MARK_DUPLICATE_PAYLOAD, ClassifyError::DuplicatePayload),
    ] {
        if text.starts_with(marker) {
            return err;
        }
    }
    if let Some(rest) = text.strip_prefix(MARK_DUPLICATE_FIELD) {
        let field = rest.split(' ').next().unwrap_or_default();
        return ClassifyError::DuplicateField(field.to_string());
    }
    position_only(e)
}

const MARK_NOT_OBJECT: &str = "\u{1}not-object";
const MARK_DUPLICATE: &str = "\u{1}duplicate-event";
const MARK_DUPLICATE_PAYLOAD: &str = "\u{1}duplicate-payload";
/// Followed by the field's path.
const MARK_DUPLICATE_FIELD: &str = "\u{1}duplicate-field:";

/// Emits the scalar `visit_*` methods of a visitor as "not an object" for the envelope.
macro_rules! not_an_object {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(E::custom(MARK_NOT_OBJECT))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(E::custom(MARK_NOT_OBJECT))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(E::custom(MARK_NOT_OBJECT))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(E::custom(MARK_NOT_OBJECT))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(E::custom(MARK_NOT_OBJECT))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(E::custom(MARK_NOT_OBJECT))
        }
    };
}

/// U+FDD0..U+FDEF and the last two code points of every plane (U+FFFE, U+FFFF, U+1FFFE, ...):
/// Unicode's noncharacters, which CloudEvents' String type forbids (and `event` is `ce_type`).
fn noncharacter(c: char) -> bool {
    let c = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&c) || c & 0xFFFE == 0xFFFE
}

/// Whether `text` holds a control character (or, with `noncharacters`, a Unicode noncharacter).
/// ASCII text, the usual, is checked by the byte, without decoding it.
fn not_printable(text: &str, noncharacters: bool) -> bool {
    if text.is_ascii() {
        // Without an early exit, the compiler checks many bytes at a time.
        return text
            .bytes()
            .fold(false, |found, b| found | b.is_ascii_control());
    }
    text.chars()
        .any(|c| c.is_control() || (noncharacters && noncharacter(c)))
}

/// The visitor returns the classification result as its value, so that "missing event" or "event
/// is not a string" are found after the body was fully validated as JSON.
struct EnvelopeVisitor<const CAREFUL: bool>;

impl<'de, const CAREFUL: bool> Visitor<'de> for EnvelopeVisitor<CAREFUL> {
    type Value = Result<Envelope<'de>, ClassifyError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut event: Option<Lenient<'de>> = None;
        let mut payload: Option<Payload<'de, CAREFUL>> = None;
        while let Some(key) = map.next_key_seed(KeyIn::<CAREFUL>(&["event", "payload"]))? {
            match key {
                Some(0) => {
                    if event.is_some() {
                        return Err(de::Error::custom(MARK_DUPLICATE));
                    }
                    event = Some(field(&mut map, 1)?);
                }
                Some(_) => {
                    if payload.is_some() {
                        return Err(de::Error::custom(MARK_DUPLICATE_PAYLOAD));
                    }
                    payload = Some(map.next_value()?);
                }
                None if CAREFUL => {
                    map.next_value::<IgnoredAny>()?;
                }
                None => map.next_value_seed(Skip(1))?,
            }
        }
        let event = match event {
            None => return Ok(Err(ClassifyError::MissingEvent)),
            Some(Lenient::NotString(_) | Lenient::Number(_)) => {
                return Ok(Err(ClassifyError::EventNotString))
            }
            Some(Lenient::NotText) => return Ok(Err(ClassifyError::EventNotText)),
            // Blank as a key is: a byte-order mark alone is no event name either.
            Some(Lenient::Text(event)) if event.chars().all(crate::record::is_space) => {
                return Ok(Err(ClassifyError::EmptyEvent))
            }
            Some(Lenient::Text(event)) if not_printable(&event, true) => {
                return Ok(Err(ClassifyError::EventNotText))
            }
            Some(Lenient::Text(event)) => event,
        };
        let payload = payload.unwrap_or_default();
        Ok(Ok(Envelope {
            event,
            // A header value, and perhaps the key: a control character there (a CR LF, say)
            // would reach every consumer that forwards record headers. The id is only dropped,
            // not the event: the body itself is stored as sent.
            message_id: payload.id.filter(|id| !not_printable(id, false)),
            to: payload.to,
            from: payload.from,
        }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom(MARK_NOT_OBJECT))
    }

    not_an_object!();
}

#[cfg(test)]
mod tests;
