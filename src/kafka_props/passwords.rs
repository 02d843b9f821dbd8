//! The passwords of URLs and broker lists in a property's value, and the value shown without them.

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

#[cfg(test)]
mod tests;
