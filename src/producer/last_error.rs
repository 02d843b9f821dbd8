//! The latest error librdkafka reported for the producer in place, and when: the cause behind a
//! failed readiness check, whose own error only says no broker answered.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// The longest cause `/readyz` quotes: a token endpoint's answer can fill 2 KiB.
const MOST: usize = 512;

/// librdkafka's latest error since the last readiness check passed, with when it came.
///
/// A metadata request that reached no broker fails with `BrokerTransportFailure` whatever kept
/// the brokers away: a refused SASL password, a certificate the CA does not vouch for, a token
/// endpoint that is down, a name that does not resolve. librdkafka says which only through its
/// error callback, so the producer in place keeps the last one here for `/readyz`, and the log
/// need not be searched for it.
#[derive(Debug, Default)]
pub struct LastError(Mutex<Option<(Instant, String)>>);

impl LastError {
    /// Keeps `reason` (already scrubbed of secrets), seen at `at`.
    pub fn set(&self, reason: &str, at: Instant) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some((at, cut(reason)));
    }

    /// Keeps `reason` only where no other error is kept: librdkafka follows each broker's
    /// transport failure with `AllBrokersDown` once none is left, which says less of why.
    pub fn set_unless_kept(&self, reason: &str, at: Instant) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.is_none() {
            *kept = Some((at, cut(reason)));
        }
    }

    /// Forgets it: a check passed, so what came before no longer explains the next failure.
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// What a failed check adds: `; librdkafka's last error, 3 s ago: ...`, or nothing.
    pub fn cause(&self, now: Instant) -> String {
        match &*self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            None => String::new(),
            Some((at, reason)) => {
                let ago = now.saturating_duration_since(*at);
                format!(
                    "; librdkafka's last error, {} s ago: {reason}",
                    ago.as_secs()
                )
            }
        }
    }
}

/// `reason` on one line, at most [`MOST`] bytes (cut at a character's edge, marked `…`): it goes
/// into a probe's answer, which Kubernetes keeps in an event.
fn cut(reason: &str) -> String {
    let line: String = reason
        .chars()
        .map(|c| match c {
            '\u{2028}' | '\u{2029}' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    if line.len() <= MOST {
        return line;
    }
    let mut end = MOST - '…'.len_utf8();
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_failed_check_quotes_the_last_error_with_its_age_until_a_check_passes() {
        let last = LastError::default();
        let t0 = Instant::now();
        assert_eq!(last.cause(t0), "");
        last.set("first", t0);
        last.set("SASL authentication error: Authentication failed", t0);
        assert_eq!(
            last.cause(t0 + Duration::from_millis(3_900)),
            "; librdkafka's last error, 3 s ago: SASL authentication error: Authentication failed"
        );
        last.set_unless_kept("AllBrokersDown: 1/1 brokers are down", t0);
        assert!(last.cause(t0).ends_with("Authentication failed"));
        last.clear();
        assert_eq!(last.cause(t0 + Duration::from_secs(4)), "");
        last.set_unless_kept("AllBrokersDown: 1/1 brokers are down", t0);
        assert!(last.cause(t0).ends_with("1/1 brokers are down"));
    }

    #[test]
    fn a_long_or_multi_line_reason_is_cut_to_one_line_of_512_bytes_at_a_character_edge() {
        assert_eq!(cut("a\nb\tc\u{2028}d\u{2029}e"), "a b c d e");
        // 'é' is two bytes: 508 ASCII bytes leave its second byte past the room the mark leaves.
        let long = format!("{}é{}", "x".repeat(MOST - 4), "y".repeat(100));
        assert_eq!(cut(&long), format!("{}…", "x".repeat(MOST - 4)));
        let exact = "z".repeat(MOST);
        assert_eq!(cut(&exact), exact);
        let over = cut(&format!("{exact}z"));
        assert_eq!(over, format!("{}…", "z".repeat(MOST - 3)));
        assert_eq!(over.len(), MOST);
    }
}
