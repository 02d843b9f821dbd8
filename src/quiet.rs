//! Repeats of one kind of error, logged once a window. While Kafka is down, librdkafka reports
//! `AllBrokersDown` at every failed connection attempt (28 lines a second measured against one
//! stopped broker), and out of file descriptors every `accept` fails (20 a second per listener),
//! which buried every other line and filled the log volume in a long outage.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long repeats of one kind of error are held back after one is logged (Vector's internal
/// logs use the same 10 s).
pub const WINDOW: Duration = Duration::from_secs(10);

/// When each kind of error was last logged, and how many of it were held back since.
#[derive(Debug, Default)]
pub struct Quieted(Mutex<HashMap<String, (Instant, u64)>>);

impl Quieted {
    /// Whether a report of `kind` at `now` is logged: `Some(held back since the last one
    /// logged)`, or `None` to hold it back.
    pub fn admit(&self, kind: &str, now: Instant) -> Option<u64> {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match seen.get_mut(kind) {
            Some((logged, held)) if now.saturating_duration_since(*logged) < WINDOW => {
                *held += 1;
                None
            }
            Some((logged, held)) => {
                *logged = now;
                Some(std::mem::take(held))
            }
            None => {
                seen.insert(kind.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_of_one_kind_are_logged_once_a_window_with_the_count_held_back() {
        let quiet = Quieted::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(quiet.admit("AllBrokersDown", at(0)), Some(0), "the first");
        assert_eq!(quiet.admit("AllBrokersDown", at(30)), None);
        assert_eq!(quiet.admit("AllBrokersDown", at(9_999)), None);
        assert_eq!(
            quiet.admit("BrokerTransportFailure", at(9_999)),
            Some(0),
            "another kind has a window of its own"
        );
        assert_eq!(
            quiet.admit("AllBrokersDown", at(10_000)),
            Some(2),
            "a window later, with the two held back"
        );
        assert_eq!(quiet.admit("AllBrokersDown", at(10_001)), None);
        assert_eq!(quiet.admit("AllBrokersDown", at(60_000)), Some(1));
        assert_eq!(
            quiet.admit("AllBrokersDown", at(90_000)),
            Some(0),
            "none held back"
        );
    }
}
