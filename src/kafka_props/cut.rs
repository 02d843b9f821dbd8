//! The start of a secret that librdkafka cut off: a URL's password after its user, where a
//! broker's name or thread name ends, and an opaque secret at the end of a long log line.
//!
//! librdkafka names a broker's thread after the first 63 bytes of its name
//! (`[thrd:sasl_ssl://user:pass…]`: a 64-character API secret always overruns it), cuts a
//! broker's name at about 253 characters and a log line at 2 KiB. A whole secret is the
//! scrubber's; this finds the cut copies, which it cannot match whole.

/// What follows a broker name librdkafka cut: the end of a thread name, the `: ` or quote of a
/// message about it, the `@` or `/` of the rest of its address; and a character it cut in two
/// shows as U+FFFD.
const CUT_ENDS: [&str; 7] = ["]", ":", "'", "\"", "@", "/", "\u{fffd}"];

/// Where a cut copy of a secret may start.
enum Anchor {
    /// Right after this text (`user:`).
    After(String),
    /// After the `:` that starts a text: a message that starts with a broker's name, whose
    /// user is empty.
    Start,
}

impl Anchor {
    /// Whether it ends at `at` in `text`.
    fn ends_at(&self, text: &str, at: usize) -> bool {
        match self {
            Anchor::After(before) => text.as_bytes()[..at].ends_with(before.as_bytes()),
            Anchor::Start => at == 1 && text.starts_with(':'),
        }
    }

    /// Whether it is anywhere in `text`.
    fn in_text(&self, text: &str) -> bool {
        match self {
            Anchor::After(before) => text.contains(before.as_str()),
            Anchor::Start => text.starts_with(':'),
        }
    }
}

/// A log line at least this long may have been cut at librdkafka's 2 KiB.
const LONG_LINE: usize = 1024;

/// The secrets whose cut copies are hidden.
#[derive(Default)]
pub(super) struct CutSecrets {
    /// A URL's password, or a piece of one after a comma, with what comes before it where
    /// librdkafka names it (`user:`): only after that is a start of the password taken for one,
    /// so that a host or port that happens to begin like it (`kafka:9092` beside the password
    /// `kafka-secret`) is left.
    after_user: Vec<(Anchor, String)>,
    /// Opaque secrets (passwords, client secrets, at least `min_len` bytes): at the end of a
    /// long line only.
    opaque: Vec<String>,
    min_len: usize,
}

impl CutSecrets {
    pub(super) fn new(min_len: usize) -> CutSecrets {
        CutSecrets {
            min_len,
            ..CutSecrets::default()
        }
    }

    /// A URL's password, `value[start..]` being where it is in `value`.
    pub(super) fn add_url_password(&mut self, value: &str, start: usize, password: &str) {
        if password.is_empty() {
            return;
        }
        let before = &value[..start];
        // After the last `,` or `://` before it, whichever is later: the `://` looked for after
        // the comma only, not back across a whole list for each of its passwords.
        let comma = before.rfind(',').map_or(0, |i| i + 1);
        let user_from = before[comma..]
            .rfind("://")
            .map_or(comma, |i| comma + i + 3);
        // librdkafka skips the blanks between a list's entries.
        let user = value[user_from..start].trim_start();
        let after = |before: &str| Anchor::After(before.to_string());
        if user == ":" {
            // No user: where a broker's name starts (a thread name, a scheme, a quote, a
            // message), not after any `:`, which a port follows.
            for before in ["[thrd::", "//:", "':", "]: :"] {
                self.after_user.push((after(before), password.to_string()));
            }
            self.after_user.push((Anchor::Start, password.to_string()));
        } else {
            self.after_user.push((after(user), password.to_string()));
        }
        // librdkafka splits a broker list at commas, a password's too, and names a broker after
        // the piece that follows one (`sasl_ssl://PIECE@host`), its thread after the first 63
        // bytes of that.
        for piece in password.split(',').skip(1).filter(|p| !p.trim().is_empty()) {
            for before in ["[thrd:", "://", "'"] {
                self.after_user
                    .push((after(before), piece.trim_start().to_string()));
            }
        }
    }

    pub(super) fn add_opaque(&mut self, secret: &str) {
        if secret.len() >= self.min_len {
            self.opaque.push(secret.to_string());
        }
    }

    /// Whether `text` may hold a cut copy at all: most lines hold no secret's user.
    pub(super) fn may_be_in(&self, text: &str) -> bool {
        self.after_user
            .iter()
            .any(|(anchor, _)| anchor.in_text(text))
            || (text.len() >= LONG_LINE && !self.opaque.is_empty())
    }

    /// How many bytes of `text` from `at` are the start of a secret cut off there, the most
    /// that is; `at` may be inside a character (none matches there).
    pub(super) fn hidden_at(&self, text: &str, at: usize) -> Option<usize> {
        let rest = &text.as_bytes()[at..];
        let after_user = self
            .after_user
            .iter()
            .filter(|(anchor, _)| anchor.ends_at(text, at))
            .filter_map(|(_, password)| {
                // Not always the longest start in common: a password's `:` runs on into the
                // `: Failed` librdkafka writes after the cut. A whole one is the scrubber's,
                // unless it is too short for that: then it is hidden here, after its user only.
                let whole = password.len() < self.min_len;
                let most = password.len() - usize::from(!whole);
                let common = common_prefix(rest, password.as_bytes()).min(most);
                (1..=common).rev().find(|&len| cut_at(text, at + len))
            });
        let at_the_end = self.opaque.iter().filter_map(|secret| {
            let common = common_prefix(rest, secret.as_bytes());
            let ends = text.len() >= LONG_LINE
                && (at + common == text.len()
                    || &text.as_bytes()[at + common..] == "\u{fffd}".as_bytes());
            (common >= self.min_len && ends && text.is_char_boundary(at + common)).then_some(common)
        });
        after_user.chain(at_the_end).max()
    }
}

/// Whether `text` may have been cut off at `end`.
fn cut_at(text: &str, end: usize) -> bool {
    text.is_char_boundary(end)
        && (end == text.len() || CUT_ENDS.iter().any(|e| text[end..].starts_with(e)))
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(value: &str) -> CutSecrets {
        let mut cut = CutSecrets::new(4);
        for password in super::super::passwords::url_passwords(value) {
            let start = password.as_ptr() as usize - value.as_ptr() as usize;
            cut.add_url_password(value, start, password);
        }
        cut
    }

    fn hidden(cut: &CutSecrets, text: &str) -> Vec<(usize, usize)> {
        (0..text.len())
            .filter_map(|at| cut.hidden_at(text, at).map(|len| (at, len)))
            .collect()
    }

    #[test]
    fn a_password_cut_after_its_user_is_found_whatever_follows_the_cut() {
        let cut = url("sasl_ssl://USER:abc:def@host:9092");
        let text = "[thrd:sasl_ssl://USER:abc]: USER:abc:de: Failed";
        // After each `USER:`: `abc` before `]`, and `abc:de` before `: Failed`, not `abc:de:`,
        // the longest start in common, which runs on into librdkafka's text.
        assert_eq!(hidden(&cut, text), vec![(22, 3), (33, 6)]);
    }

    /// The scrubber leaves secrets under 4 bytes (they would cut into every word), so a URL
    /// password that short is hidden here whole where its user names it. Before, only its cut
    /// copies were, to one byte short of it: `u:abc@host` was shown as it is.
    #[test]
    fn a_password_too_short_for_the_scrubber_is_hidden_whole_after_its_user() {
        let cut = url("sasl_ssl://u:abc@host:9092");
        let text = "[thrd:sasl_ssl://u:abc@host:9092/bootstrap]: u:abc@host:9092: Connect failed";
        assert_eq!(hidden(&cut, text), vec![(19, 3), (47, 3)]);
        // Not where no user names it: `abc` is too common a word for that.
        assert_eq!(hidden(&cut, "abc@host failed"), vec![]);
    }

    #[test]
    fn a_host_that_begins_like_the_password_is_left() {
        let cut = url("admin:kafka-secret@kafka:9092");
        assert_eq!(
            hidden(&cut, "Connect to kafka:9092/bootstrap failed"),
            vec![]
        );
        assert_eq!(hidden(&cut, "admin:kafka-s]"), vec![(6, 7)]);
    }

    #[test]
    fn an_opaque_secret_is_cut_only_at_the_end_of_a_long_line() {
        let mut cut = CutSecrets::new(4);
        cut.add_opaque("s3cr3t-value");
        let long = format!("{} s3cr3t-v", "x".repeat(LONG_LINE));
        assert_eq!(hidden(&cut, &long), vec![(LONG_LINE + 1, 8)]);
        // A copy of just the shortest length hidden is hidden too (found by mutation testing:
        // `>` for `>=` left the first four bytes of the secret shown).
        let shortest = format!("{} s3cr", "x".repeat(LONG_LINE));
        assert_eq!(hidden(&cut, &shortest), vec![(LONG_LINE + 1, 4)]);
        assert_eq!(hidden(&cut, "short s3cr3t-v"), vec![]);
        assert_eq!(hidden(&cut, &format!("{long} and more")), vec![]);
        assert_eq!(
            hidden(&cut, &format!("{long}\u{fffd}")),
            vec![(LONG_LINE + 1, 8)]
        );
    }

    /// A password without a user is cut only where a broker's name starts: right after the `:`
    /// that starts a text, not after a later `:`, which a port follows (found by mutation
    /// testing: `&&` as `||` hid every port in such a text, and the second byte of any text).
    #[test]
    fn a_password_without_a_user_is_found_only_where_a_brokers_name_starts() {
        let cut = url(":44999xyzSecret@127.0.0.1:44999");
        assert_eq!(
            hidden(&cut, ":44999xyzSe: Connect to 127.0.0.1:44999: refused"),
            vec![(1, 10)]
        );
        assert_eq!(hidden(&cut, "x44999]"), vec![]);
    }

    /// Where the cut copy ends is a character's boundary whatever comes before it (found by
    /// mutation testing: the boundary looked for before the copy, inside a two-byte character,
    /// left the copy shown).
    #[test]
    fn an_opaque_secret_cut_at_the_end_of_a_long_line_of_accented_text_is_hidden() {
        let mut cut = CutSecrets::new(4);
        cut.add_opaque("s3cr3t-value");
        let long = format!("{} s3cr3t-v", "\u{e9}".repeat(LONG_LINE / 2 + 1));
        assert_eq!(hidden(&cut, &long), vec![(LONG_LINE + 3, 8)]);
    }
}
