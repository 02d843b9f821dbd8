//! Whether a request's path is the webhook path, compared as RFC 3986 (section 6.2.2) says
//! equivalent URIs compare, not byte for byte.
//!
//! Senders spell one path several ways: `%7e` or `%7E` or `~`, and some HTTP clients send
//! non-ASCII raw (hyper takes it) where the operator had to write it percent-encoded. A sender
//! that posted the configured URL must never get 404 for its spelling. Reserved characters stay
//! apart from their escapes (`/` is not `%2F`), as the RFC keeps them; a byte that is no URI
//! character at all (non-ASCII, `{`, `|`, a `%` that starts no escape) can only be data, which
//! clients send escaped (`%7B`, `%25`) and `curl -g` sends raw.

/// One character of a path as the RFC compares it: the byte it stands for, and whether it is
/// data rather than a delimiter. An escape is always data; so is a raw byte other than RFC 3986's
/// reserved characters: an unreserved one means the same escaped or not, and one that is no URI
/// character at all can only be data.
fn units(path: &str) -> impl Iterator<Item = (u8, bool)> + '_ {
    let bytes = path.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *bytes.get(i)?;
        if b == b'%' {
            let hex = |at: usize| bytes.get(at).and_then(|&d| (d as char).to_digit(16));
            if let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2)) {
                i += 3;
                return Some(((high * 16 + low) as u8, true));
            }
        }
        i += 1;
        Some((b, !b":/?#[]@!$&'()*+,;=".contains(&b)))
    })
}

/// Whether `request` (a request's path) names the configured `path`.
pub(super) fn same_path(request: &str, path: &str) -> bool {
    // Senders nearly always spell it as configured; the walk is for the others, and for 404s.
    request == path || units(request).eq(units(path))
}

#[cfg(test)]
mod tests {
    use super::same_path;

    #[test]
    fn the_configured_spelling_matches() {
        assert!(same_path("/webhook", "/webhook"));
        assert!(!same_path("/webhook/", "/webhook"));
        assert!(!same_path("/Webhook", "/webhook"));
    }

    #[test]
    fn percent_escapes_match_whatever_the_case_of_their_hex_digits() {
        assert!(same_path("/hook%c3%a9", "/hook%C3%A9"));
        assert!(same_path("/hook%C3%A9", "/hook%c3%a9"));
        assert!(!same_path("/hook%C3%A8", "/hook%C3%A9"));
    }

    #[test]
    fn an_unreserved_character_matches_its_escape_either_way() {
        assert!(same_path("/%7Eacme/%77ebhook", "/~acme/webhook"));
        assert!(same_path("/~acme/webhook", "/%7eacme/webhook"));
    }

    #[test]
    fn a_reserved_character_never_matches_its_escape() {
        assert!(!same_path("/a%2Fb", "/a/b"));
        assert!(!same_path("/a/b", "/a%2fb"));
        assert!(!same_path("/a%3Bb", "/a;b"));
    }

    #[test]
    fn raw_non_ascii_matches_its_escape() {
        assert!(same_path("/hook\u{e9}", "/hook%C3%A9"));
        assert!(!same_path("/hook\u{e8}", "/hook%C3%A9"));
    }

    #[test]
    fn a_character_no_uri_holds_raw_matches_its_escape_either_way() {
        // Python's requests and JavaScript's URL escape these; curl -g sends them raw.
        assert!(same_path("/hooks/%7Bacme%7D", "/hooks/{acme}"));
        assert!(same_path("/hooks/{acme}", "/hooks/%7bacme%7d"));
        for (raw, escaped) in [("|", "%7C"), ("^", "%5E"), ("\"", "%22"), ("\\", "%5C")] {
            assert!(
                same_path(&format!("/a{raw}b"), &format!("/a{escaped}b")),
                "{raw}"
            );
        }
    }

    #[test]
    fn a_percent_sign_that_starts_no_escape_is_data_as_its_escape_is() {
        assert!(same_path("/a%zz", "/a%zz"));
        assert!(same_path("/100%25", "/100%"));
        assert!(same_path("/a%zz", "/a%25zz"));
        assert!(!same_path("/a%", "/a"));
        assert!(!same_path("/a%4", "/a"));
        assert!(!same_path("/a%41", "/a"));
        // `from_str_radix` would read "+1" as a number.
        assert!(!same_path("/a%+1", "/a%01"));
    }
}
