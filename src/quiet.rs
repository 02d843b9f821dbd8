//! Repeats of one kind of error, logged once a window. While Kafka is down, librdkafka reports
//! `AllBrokersDown` at every failed connection attempt (28 lines a second measured against one
//! stopped broker), and out of file descriptors every `accept` fails (20 a second per listener),
//! which buried every other line and filled the log volume in a long outage. And a budget of
//! lines a second for reports that anyone who can connect may cause, one per request refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
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

/// At most `per_second` reports a second of each of `N` kinds, with how many were held back since
/// the last one logged. Lock-free, since it is on the path of every refused request; two reports
/// at the turn of a second may admit one more or one fewer than the budget.
#[derive(Debug)]
pub struct Budget<const N: usize> {
    per_second: u32,
    start: Instant,
    kinds: [Spent; N],
}

#[derive(Debug, Default)]
struct Spent {
    second: AtomicU64,
    admitted: AtomicU32,
    held: AtomicU64,
}

impl<const N: usize> Budget<N> {
    pub fn new(per_second: u32) -> Budget<N> {
        Budget {
            per_second,
            start: Instant::now(),
            kinds: std::array::from_fn(|_| Spent::default()),
        }
    }

    /// Whether a report of kind `kind` (below `N`) at `now` is logged: `Some(held back since
    /// the last one logged)`, or `None` to hold it back.
    pub fn admit(&self, kind: usize, now: Instant) -> Option<u64> {
        let spent = &self.kinds[kind % N];
        let second = now.saturating_duration_since(self.start).as_secs();
        if spent.second.swap(second, Relaxed) != second {
            spent.admitted.store(0, Relaxed);
        }
        if spent.admitted.fetch_add(1, Relaxed) < self.per_second {
            Some(spent.held.swap(0, Relaxed))
        } else {
            spent.held.fetch_add(1, Relaxed);
            None
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

    #[test]
    fn a_budget_admits_so_many_reports_of_a_kind_a_second_and_then_says_how_many_it_held_back() {
        let budget = Budget::<2>::new(3);
        let start = budget.start;
        let at = |ms: u64| start + Duration::from_millis(ms);
        let first: Vec<_> = (0..5).map(|i| budget.admit(0, at(i * 100))).collect();
        assert_eq!(first, [Some(0), Some(0), Some(0), None, None]);
        assert_eq!(
            budget.admit(1, at(500)),
            Some(0),
            "another kind has its own"
        );
        assert_eq!(
            budget.admit(0, at(1_000)),
            Some(2),
            "the next second, with the two"
        );
        assert_eq!(budget.admit(0, at(1_001)), Some(0));
        assert_eq!(budget.admit(0, at(5_000)), Some(0), "none held back");
    }
}
