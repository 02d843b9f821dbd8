//! The borrowed pieces of the classifier's pass: object keys matched in place, fields taken when
//! they are strings (or numbers), and `payload`'s `id`, `to` and `message.from`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{depth_within, MARK_DUPLICATE_FIELD, MAX_DEPTH};

/// A string if the value is one; any other JSON value is consumed and only says what it was.
pub(super) enum Lenient<'a> {
    Text(Cow<'a, str>),
    /// A JSON number, as written.
    Number(&'a str),
    /// A JSON string that is not Unicode text: it holds an unpaired surrogate escape.
    NotText,
    /// Any other JSON value, as written.
    NotString(&'a str),
}

impl<'a> Lenient<'a> {
    /// For the id and number fields: a string, or a number's digits as written (a sender that
    /// writes a phone number as a JSON number still keys the conversation by it).
    pub(super) fn text(self) -> Option<Cow<'a, str>> {
        match self {
            Lenient::Text(text) => Some(text),
            Lenient::Number(digits) => Some(Cow::Borrowed(digits)),
            Lenient::NotText | Lenient::NotString(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Lenient<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Taken raw first, so that a value that is not a string is only checked, never
        // converted: serde_json refuses a number too large for f64 when it converts it, which
        // would turn a real event with such an `id` into a 400.
        let raw = <&'de RawValue>::deserialize(d)?;
        let text = raw.get();
        if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            return Ok(Lenient::Number(text));
        }
        if !text.starts_with('"') {
            return Ok(Lenient::NotString(text));
        }
        // Without a backslash, what is between the quotes is the text (serde_json has checked
        // the string, control characters included): no second parse for it.
        if let Some(plain) = text
            .get(1..text.len() - 1)
            .filter(|inner| memchr::memchr(b'\\', inner.as_bytes()).is_none())
        {
            return Ok(Lenient::Text(Cow::Borrowed(plain)));
        }
        // A string that is valid JSON but not Unicode text (an unpaired surrogate escape) is
        // passed on in the body like any other; as a field it is of no use, so it counts as
        // missing rather than turning the event into a 400.
        Ok(serde_json::Deserializer::from_str(raw.get())
            .deserialize_str(LenientVisitor)
            .unwrap_or(Lenient::NotText))
    }
}

/// The value of a field of the object `depth` levels deep, as [`Lenient`]. serde_json takes it raw
/// without a depth limit, and the fast pass has no depth scan before it (see [`Skip`]): an object
/// or array there is scanned for it. (The careful pass's scan has passed it already.)
pub(super) fn field<'de, A: MapAccess<'de>>(
    map: &mut A,
    depth: usize,
) -> Result<Lenient<'de>, A::Error> {
    let value = map.next_value()?;
    if let Lenient::NotString(raw) = value {
        if !depth_within(raw.as_bytes(), MAX_DEPTH - depth) {
            return Err(A::Error::custom(TOO_DEEP));
        }
    }
    Ok(value)
}

/// What the fast pass fails with on a body nested too deep: the careful pass then finds it.
const TOO_DEEP: &str = "nested too deep: for the careful pass";

/// A value the fast pass does not read, in an object or array `.0` levels deep: checked as JSON
/// like `IgnoredAny` does, but read through (numbers converted, strings decoded) rather than
/// skipped, so that the nesting is counted on the way and the depth scan is spared: an object or
/// array nested past [`MAX_DEPTH`] fails the pass (before serde_json's own recursion limit).
///
/// It fails on more than `IgnoredAny` (a number beyond f64, a lone surrogate escape, a control
/// character in a key, as [`KeyIn`] does), never on less: a body it fails on goes to the depth
/// scan and the careful pass, which answer for it as for any other refused by the fast pass.
#[derive(Clone, Copy)]
pub(super) struct Skip(pub(super) usize);

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested::<A::Error>()?;
        // Keys as bytes, as `IgnoredAny` takes them: a lone surrogate escape is no error there.
        while map.next_key_seed(KeyIn::<false>(&[]))?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested::<A::Error>()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

impl Skip {
    /// The depth of the values of an object or array read here, if it is within the limit.
    fn nested<E: serde::de::Error>(self) -> Result<Skip, E> {
        if self.0 < MAX_DEPTH {
            Ok(Skip(self.0 + 1))
        } else {
            Err(E::custom(TOO_DEEP))
        }
    }
}

struct LenientVisitor;

impl<'de> Visitor<'de> for LenientVisitor {
    type Value = Lenient<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Lenient::Text(Cow::Borrowed(v)))
    }
    // Strings with escapes cannot be borrowed from the body.
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Lenient::Text(Cow::Owned(v.to_string())))
    }
}

/// `payload`: its `id`, `to` and `message.from`, each if it is a string. Not an object: empty.
/// `CAREFUL`: see [`object_fields`].
#[derive(Default)]
pub(super) struct Payload<'a, const CAREFUL: bool> {
    pub(super) id: Option<Cow<'a, str>>,
    pub(super) to: Option<Cow<'a, str>>,
    pub(super) from: Option<Cow<'a, str>>,
}

impl<'de, const CAREFUL: bool> Deserialize<'de> for Payload<'de, CAREFUL> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object_fields::<D, CAREFUL>(d, ObjectFields(&["id", "to", "message"], true, 2))
            .map(|[id, to, from]| Payload { id, to, from })
    }
}

/// `payload.message`: its `from`.
struct Message<'a, const CAREFUL: bool>(Option<Cow<'a, str>>);

impl<'de, const CAREFUL: bool> Deserialize<'de> for Message<'de, CAREFUL> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object_fields::<D, CAREFUL>(d, ObjectFields(&["from"], false, 3))
            .map(|[from, _, _]| Message(from))
    }
}

/// Reads a value with `visitor`. The fast way converts it as it goes, so a number beyond f64
/// fails; `CAREFUL` takes it raw first and reads it only when it is an object.
fn object_fields<'de, D: Deserializer<'de>, const CAREFUL: bool>(
    d: D,
    visitor: ObjectFields<CAREFUL>,
) -> Result<[Option<Cow<'de, str>>; 3], D::Error> {
    if !CAREFUL {
        return d.deserialize_any(visitor);
    }
    let raw = <&'de RawValue>::deserialize(d)?;
    if !raw.get().starts_with('{') {
        return Ok(Default::default());
    }
    serde_json::Deserializer::from_str(raw.get())
        .deserialize_map(visitor)
        .map_err(D::Error::custom)
}

/// Picks the string fields named in `.0` (at most three) out of an object, each into its slot of
/// the result; with `.1` set, the last name is a nested object whose `from` fills the last slot
/// instead. Anything that is not an object yields Nones. `.2`: the depth of the object (or
/// array) read, for [`Skip`].
struct ObjectFields<const CAREFUL: bool>(&'static [&'static str], bool, usize);

impl<'de, const CAREFUL: bool> Visitor<'de> for ObjectFields<CAREFUL> {
    type Value = [Option<Cow<'de, str>>; 3];

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: [Option<Cow<'de, str>>; 3] = Default::default();
        let mut seen = [false; 3];
        let nested = self.1.then(|| self.0.len() - 1);
        while let Some(key) = map.next_key_seed(KeyIn::<CAREFUL>(self.0))? {
            // As for a repeated `payload`: a consumer keeping the first would see another
            // customer or message than the record's key and headers, taken from the last.
            if let Some(i) = key {
                if std::mem::replace(&mut seen[i], true) {
                    let parent = if self.1 { "payload" } else { "payload.message" };
                    let name = self.0[i];
                    return Err(A::Error::custom(format_args!(
                        "{MARK_DUPLICATE_FIELD}{parent}.{name}"
                    )));
                }
            }
            match key {
                Some(i) if Some(i) == nested => out[i] = map.next_value::<Message<CAREFUL>>()?.0,
                Some(i) => out[i] = field(&mut map, self.2)?.text(),
                None if CAREFUL => {
                    map.next_value::<IgnoredAny>()?;
                }
                None => map.next_value_seed(Skip(self.2))?,
            }
        }
        Ok(out)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if CAREFUL {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
        } else {
            while seq.next_element_seed(Skip(self.2))?.is_some() {}
        }
        Ok(Default::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Default::default())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Default::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Default::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Default::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Default::default())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Default::default())
    }
}

/// Which of the wanted names (`.0`) a map key is, found without copying the key:
/// serde_json lends an unescaped key straight from the body and an escaped one from its scratch
/// buffer. (`Cow<str>` as the key type would allocate: serde's `Cow` never borrows.)
///
/// Read as bytes: serde_json then decodes a lone surrogate escape (`"\ud800"`) too, as it does in
/// the values it skips, where reading the key as a string refused the whole body over a key no
/// one asked for.
///
/// Read as bytes, serde_json also lets a raw control character through (RFC 8259 wants it
/// escaped, and consumers' parsers refuse the body). The fast pass cannot tell one from an escaped
/// `"\u0001"`, which decodes to the same byte, so it gives up on any and leaves the key to the
/// careful pass (`CAREFUL`), whose whole-body check refuses the raw ones and lets the escaped by.
pub(super) struct KeyIn<'n, const CAREFUL: bool>(pub(super) &'n [&'static str]);

impl<'de, const CAREFUL: bool> DeserializeSeed<'de> for KeyIn<'_, CAREFUL> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_bytes(self)
    }
}

impl<'de, const CAREFUL: bool> Visitor<'de> for KeyIn<'_, CAREFUL> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        self.visit_bytes(key.as_bytes())
    }
    fn visit_bytes<E: serde::de::Error>(self, key: &[u8]) -> Result<Self::Value, E> {
        if !CAREFUL && key.iter().any(|&b| b < 0x20) {
            return Err(E::custom(
                "a control character in a key: for the careful pass",
            ));
        }
        Ok(self.0.iter().position(|name| name.as_bytes() == key))
    }
}
