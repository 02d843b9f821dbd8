//! The passwords of URLs and broker lists in a property's value, found in time in proportion to
//! the value, and the value shown without them.

use std::borrow::Cow;

/// `value` without the password of a URL in it (`https://user:pass@idp/token`): any property
/// that takes a URL (the OAUTHBEARER token endpoint) can carry one, which is as secret there.
pub fn url_password_hidden(value: &str) -> Cow<'_, str> {
    hidden(value, url_passwords(value))
}

/// A broker list (`--kafka-brokers`) without its passwords, those only a broker list has too
/// (`sasl_ssl://user:pa#ss@host`, see [`broker_list_passwords`]), as the scrubber hides them.
pub fn broker_list_password_hidden(value: &str) -> Cow<'_, str> {
    hidden(
        value,
        url_passwords(value).chain(broker_list_passwords(value)),
    )
}

fn hidden<'v>(value: &'v str, passwords: impl Iterator<Item = &'v str>) -> Cow<'v, str> {
    let mut shown = Cow::Borrowed(value);
    let mut at: Vec<(usize, usize)> = passwords
        .map(|p| (p.as_ptr() as usize - value.as_ptr() as usize, p.len()))
        .collect();
    // Merged where they overlap or meet (a URL's user information runs to its last `@`, which may
    // be a later entry's; an empty password found twice is hidden once), and from the last: the
    // positions of those before stay right.
    at.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, len) in at {
        match merged.last_mut() {
            Some((_, end)) if start <= *end => *end = (*end).max(start + len),
            _ => merged.push((start, start + len)),
        }
    }
    for (start, end) in merged.into_iter().rev() {
        shown.to_mut().replace_range(start..end, "<redacted>");
    }
    shown
}

/// The password of each URL in `value` (`https://user:pass@idp/token`), also in a list of them
/// (`http://a:p@h1,http://b:q@h2`): slices of `value`. A comma or a space may be in a password,
/// and so may a `/`, `?` or `#` that a URL's user information cannot hold unescaped, with its
/// `@` after them (see [`Marks::url_password`]). Also of a list entry without a scheme
/// (`user:pass@host:9092`): librdkafka takes such user information for part of a broker's host
/// name, and quotes it when the name does not resolve.
pub(super) fn url_passwords(value: &str) -> impl Iterator<Item = &str> {
    let marks = Marks::new(value);
    // Without those inside another (`x://a:b` many times, then `@`: each runs on to that `@`),
    // which hide nothing more and would take memory in the square of the value's length.
    let mut reached = 0;
    let urls: Vec<&str> = value
        .match_indices("://")
        .filter_map(|(i, _)| marks.url_password(i + 3))
        .filter(|password| {
            let end = password.as_ptr() as usize - value.as_ptr() as usize + password.len();
            let inside = end <= reached;
            reached = reached.max(end);
            !inside
        })
        .collect();
    urls.into_iter().chain(bare_passwords(value, scheme_at))
}

/// The passwords of `value` to scrub from librdkafka's texts, with those of a broker list when
/// it is one: of those that start at the same place, only the longest, which hides what each
/// shorter one would (they are its starts, and its pieces between commas start theirs). Those of
/// an entry with many `@` nest (`u:p,@,@,…`): copied each, as needles and cut starts, they took
/// memory in the square of the value's length (1.2 GB for a 5 KB value).
pub(super) fn passwords_to_scrub(value: &str, broker_list: bool) -> Vec<&str> {
    let brokers = broker_list.then(|| broker_list_passwords(value));
    let mut longest = std::collections::BTreeMap::new();
    for password in url_passwords(value).chain(brokers.into_iter().flatten()) {
        let start = password.as_ptr() as usize - value.as_ptr() as usize;
        let kept = longest.entry(start).or_insert(password);
        if password.len() > kept.len() {
            *kept = password;
        }
    }
    longest.into_values().collect()
}

/// Where the characters that shape a URL are in a value, in order. Each URL's parts are found
/// among them by binary search: scanning what follows each `://` again would take time in the
/// square of the value's length (minutes for a value of some ten thousand of them).
struct Marks<'v> {
    value: &'v str,
    /// Where each entry of a list ends: the comma before an entry that starts with a scheme
    /// (after its blanks), and the value's end.
    ends: Vec<usize>,
    ats: Vec<usize>,
    /// `/`, `?` and `#`, where an authority ends.
    delimiters: Vec<usize>,
    /// `?` and `#`, where a path ends.
    path_ends: Vec<usize>,
    hashes: Vec<usize>,
    ampersands: Vec<usize>,
    equals: Vec<usize>,
}

impl<'v> Marks<'v> {
    fn new(value: &'v str) -> Marks<'v> {
        let mut marks = Marks {
            value,
            ends: Vec::new(),
            ats: Vec::new(),
            delimiters: Vec::new(),
            path_ends: Vec::new(),
            hashes: Vec::new(),
            ampersands: Vec::new(),
            equals: Vec::new(),
        };
        for (i, b) in value.bytes().enumerate() {
            match b {
                b'@' => marks.ats.push(i),
                b'/' => marks.delimiters.push(i),
                b'?' | b'#' => {
                    marks.delimiters.push(i);
                    marks.path_ends.push(i);
                    if b == b'#' {
                        marks.hashes.push(i);
                    }
                }
                b'&' => marks.ampersands.push(i),
                b'=' => marks.equals.push(i),
                // The blanks and the name after a comma are read once: they end at the next one.
                b',' if scheme_at(&value[i + 1..]).is_some() => marks.ends.push(i),
                _ => {}
            }
        }
        marks.ends.push(value.len());
        marks
    }

    /// The password of the URL whose authority starts at `from` (after its `://`): from the
    /// user information's first `:` to its last `@`, the authority ending at the first `/`, `?`
    /// or `#`. A password may hold those three, unescaped (`https://u:pa/ss@idp/token`, which
    /// no client reads as the operator meant, but which librdkafka quotes in its errors), or a
    /// list's `,NAME://` (`http://u:pa,x://ss@idp`). Then an `@` follows where none of a URL's
    /// own goes (in a path, a fragment or a query's name), or the authority is no host and
    /// port (`u:pa`): the password runs on to the last `@` of the first entry that has one.
    fn url_password(&self, from: usize) -> Option<&'v str> {
        let end = next(&self.ends, from)?;
        let authority_end = next(&self.delimiters, from).map_or(end, |d| d.min(end));
        let authority = &self.value[from..authority_end];
        let last_at = authority.rfind('@');
        let (colon, user_at) = match last_at.and_then(|at| Some((authority[..at].find(':')?, at))) {
            Some((colon, at)) => (colon, Some(at)),
            None => {
                // The `@` of a user without a password (`https://me@corp:pa/ss@idp`: the
                // password holds the authority's end): the host, or the password, follows it.
                let host_from = last_at.map_or(0, |at| at + 1);
                let rest = &authority[host_from..];
                // An IPv6 address (`[::1]:8443`) holds colons of its own.
                let host = host_from
                    + match rest.starts_with('[') {
                        true => rest.find(']').map_or(rest.len(), |b| b + 1),
                        false => 0,
                    };
                (host + authority[host..].find(':')?, None)
            }
        };
        let own = next(&self.ats, authority_end)
            .filter(|&at| at < end)
            .is_none_or(|at| self.in_query_value(at, authority_end));
        let port = user_at.is_none() && authority[colon + 1..].bytes().all(|b| b.is_ascii_digit());
        let password_from = from + colon + 1;
        match user_at {
            Some(at) if own => Some(&self.value[password_from..from + at]),
            None if own && port => None,
            _ => {
                let first = next(&self.ats, password_from)?;
                let last = prev(&self.ats, next(&self.ends, first)?)?;
                Some(&self.value[password_from..last])
            }
        }
    }

    /// Whether the `@` at `at`, after an authority that ends at `authority_end`, is in a query's
    /// value (`?login_hint=a@b`), where a URL has addresses of its own.
    fn in_query_value(&self, at: usize, authority_end: usize) -> bool {
        let Some(query) = next(&self.path_ends, authority_end).filter(|&q| q < at) else {
            return false;
        };
        let fragment = self.value.as_bytes()[query] == b'#'
            || next(&self.hashes, query).is_some_and(|hash| hash < at);
        let parameter = prev(&self.ampersands, at).map_or(query, |amp| amp.max(query));
        !fragment && prev(&self.equals, at).is_some_and(|eq| eq > parameter)
    }
}

/// The first of `marks` at or after `from`.
fn next(marks: &[usize], from: usize) -> Option<usize> {
    marks.get(marks.partition_point(|&m| m < from)).copied()
}

/// The last of `marks` before `before`.
fn prev(marks: &[usize], before: usize) -> Option<usize> {
    marks[..marks.partition_point(|&m| m < before)]
        .last()
        .copied()
}

/// The password before each `@` of an entry without a scheme (as `scheme_at` finds one) runs
/// back to the first `:` of its entry, across commas (a password may hold one; more is hidden,
/// never less). One pass: the `:` each piece between commas leaves for those after it.
fn bare_passwords(value: &str, scheme_at: fn(&str) -> Option<usize>) -> impl Iterator<Item = &str> {
    let mut found = Vec::new();
    let mut open: Option<usize> = None;
    let mut start = 0;
    for piece in value.split(',') {
        // Only a scheme at the entry's start: librdkafka reads the first `://` of an entry as
        // one, and a password may hold `://` (`user:ab://cd@host`). No `@` comes before it.
        if scheme_at(piece).is_some() {
            open = None;
        } else {
            let colon = piece.find(':').map(|c| start + c);
            for (at, _) in piece.match_indices('@') {
                let at = start + at;
                if let Some(colon) = colon.filter(|&c| c < at).or(open) {
                    found.push(&value[colon + 1..at]);
                }
            }
            open = colon.or(open);
        }
        start += piece.len() + 1;
    }
    found.into_iter()
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
    let with_scheme = |known: fn(&str) -> Option<usize>| {
        // Where each `://` that follows an entry's scheme is.
        let mut schemes = Vec::new();
        let mut start = 0;
        for piece in value.split(',') {
            schemes.extend(known(piece).map(|end| start + end - 3));
            start += piece.len() + 1;
        }
        let mut found = Vec::new();
        for (n, &i) in schemes.iter().enumerate() {
            let rest = &value[i + 3..];
            let entry = match schemes.get(n + 1).map(|next| next - (i + 3)) {
                Some(next) => &rest[..rest[..next].rfind(',').unwrap_or(next)],
                None => rest,
            };
            if let Some(colon) = entry.find(':') {
                let ats = entry.match_indices('@').filter(move |&(at, _)| colon < at);
                found.extend(ats.map(|(at, _)| &entry[colon + 1..at]));
            }
        }
        found
    };
    let with_scheme = with_scheme(kafka_scheme_at)
        .into_iter()
        .chain(with_scheme(scheme_at));
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

#[cfg(test)]
mod tests;
