//! librdkafka's statistics read from its raw JSON, whose first two strings it writes unescaped.

use std::borrow::Cow;

use rdkafka::statistics::Statistics;

/// The statistics in `raw`. librdkafka writes the client's name and `client.id` into them as
/// they are (`rdkafka.c`: `"name": "%s", "client_id": "%s"`), so a client.id holding `"`, `\`
/// or a control character (`CORP\svc`, the line end a YAML block leaves) made every report no
/// JSON: the metrics read from them stopped, and the alerts on those with them. It also cuts
/// names at a byte count (the client's at 127 bytes, a broker's at 255), which may split a
/// character in two: such a piece is read as U+FFFD rather than the whole report refused.
pub fn parse(raw: &[u8]) -> serde_json::Result<Statistics> {
    // A wrong place leaves librdkafka's own `"client_id"` and `"type"` after it, which serde
    // refuses (a field twice, or text outside a string), so the first report read is right.
    let mut first_error = None;
    if let Some(rest) = raw.strip_prefix(HEAD) {
        let fallback = std::iter::once_with(|| first_separators(rest)).flatten();
        for (name, client_id, tail) in splits(rest).into_iter().chain(fallback) {
            match read(&rebuilt(raw, name, client_id, tail)) {
                Ok(statistics) => return Ok(statistics),
                Err(e) => _ = first_error.get_or_insert(e),
            }
        }
    }
    first_error.map_or_else(|| read(raw), Err)
}

fn read(raw: &[u8]) -> serde_json::Result<Statistics> {
    match std::str::from_utf8(raw) {
        Ok(text) => serde_json::from_str(text),
        // Only bytes of 0x80 and over are replaced, never the ASCII of the JSON around them.
        Err(_) => serde_json::from_str(&String::from_utf8_lossy(raw)),
    }
}

const HEAD: &[u8] = b"{ \"name\": \"";
const MIDDLE: &[u8] = b"\", \"client_id\": \"";
const TYPE: &[u8] = b"\", \"type\": \"";
/// The client's name: `CLIENT_ID#TYPE-N`, cut at this many bytes (`rk_name[128]`).
const NAME_MAX: usize = 127;
/// The longest client.id: the bridge and tail refuse longer ones.
const ID_MAX: usize = crate::kafka_props::MAX_CLIENT_ID_BYTES;

/// The report `raw` with `name` and `client_id` escaped, `tail` following `"type": "`;
/// borrowed when they need nothing.
fn rebuilt<'a>(raw: &'a [u8], name: &[u8], client_id: &[u8], tail: &[u8]) -> Cow<'a, [u8]> {
    let plain = |s: &[u8]| {
        std::str::from_utf8(s).is_ok() && !s.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20)
    };
    if plain(name) && plain(client_id) {
        return Cow::Borrowed(raw);
    }
    let json = |s: &[u8]| serde_json::to_vec(&String::from_utf8_lossy(s)).unwrap_or_default();
    let mut out = Vec::with_capacity(raw.len() + 16);
    out.extend_from_slice(b"{ \"name\": ");
    out.extend(json(name));
    out.extend_from_slice(b", \"client_id\": ");
    out.extend(json(client_id));
    out.extend_from_slice(b", \"type\": \"");
    out.extend_from_slice(tail);
    Cow::Owned(out)
}

/// The places the name and the client.id could end in `rest` (the report after its opening
/// `{ "name": "`), as the name, the client.id and what follows `"type": "`. A client.id may
/// hold the very text that separates them, and even a name for another client.id, so every
/// place where the name is what librdkafka makes of the client.id before it (the client.id,
/// `#`, the type, `-` and a number, cut at 127 bytes) is taken, in order. Only as far as a
/// name and a client.id reach is searched, not the whole report (hundreds of KiB with many
/// partitions).
fn splits(rest: &[u8]) -> Vec<(&[u8], &[u8], &[u8])> {
    let mut found = Vec::new();
    for m in positions(rest, MIDDLE, NAME_MAX) {
        let (name, after) = (&rest[..m], &rest[m + MIDDLE.len()..]);
        for (kind, marker) in markers() {
            for t in positions(after, &marker, ID_MAX) {
                if names(name, &after[..t], kind) {
                    found.push((name, &after[..t], &after[t + TYPE.len()..]));
                }
            }
        }
    }
    found
}

/// The first separators found, for a librdkafka that names its clients otherwise.
fn first_separators(rest: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let m = positions(rest, MIDDLE, NAME_MAX).next()?;
    let after = &rest[m + MIDDLE.len()..];
    let t = markers()
        .iter()
        .filter_map(|(_, marker)| positions(after, marker, ID_MAX).next())
        .min()?;
    Some((&rest[..m], &after[..t], &after[t + TYPE.len()..]))
}

/// What follows a client.id of each type: `", "type": "producer", "ts":`.
fn markers() -> [(&'static [u8], Vec<u8>); 2] {
    [&b"producer"[..], b"consumer"].map(|kind| (kind, [TYPE, kind, b"\", \"ts\":"].concat()))
}

/// Whether `name` is what librdkafka names a client of `kind` with this `client_id`.
fn names(name: &[u8], client_id: &[u8], kind: &[u8]) -> bool {
    let whole = [client_id, b"#", kind, b"-"].concat();
    let number = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match name.strip_prefix(&whole[..]) {
        Some(n) => (!n.is_empty() || name.len() == NAME_MAX) && number(n),
        None => name.len() == NAME_MAX && whole.starts_with(name),
    }
}

/// Where `needle` starts in `haystack`, each place up to `at_most`, in order, overlapping ones
/// included (a client.id may end inside text that looks like a separator).
fn positions<'a>(
    haystack: &'a [u8],
    needle: &'a [u8],
    at_most: usize,
) -> impl Iterator<Item = usize> + 'a {
    let reach = &haystack[..haystack.len().min(at_most.saturating_add(needle.len()))];
    let finder = memchr::memmem::Finder::new(needle);
    let mut from = 0;
    std::iter::from_fn(move || {
        let at = from + finder.find(reach.get(from..)?)?;
        from = at + 1;
        Some(at)
    })
}

#[cfg(test)]
mod tests;
