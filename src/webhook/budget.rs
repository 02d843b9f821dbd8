//! The bytes of request bodies held at once: reserved before a body is read and returned when
//! its request ends, so a burst of large bodies is answered 503 instead of taking the process
//! past its memory limit.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bodies up to this size are bounded by `--max-in-flight` alone (1024 of them hold 64 MiB), so
/// Qikchat's (1–3 KiB) never touch the shared counter: written by every request from both
/// cores, it cost 2% of the peak throughput (`bench/ab.sh`, 12 rounds, 11 of them slower).
pub const SMALL_BODY: u64 = 64 * 1024;

#[derive(Debug)]
pub struct BodyBudget {
    limit: u64,
    held: AtomicU64,
}

/// Bytes held for one request until it is dropped, even if its future is dropped first.
#[derive(Debug)]
pub struct Reserved<'a> {
    budget: &'a BodyBudget,
    bytes: u64,
}

impl BodyBudget {
    pub fn new(limit: u64) -> BodyBudget {
        BodyBudget {
            limit,
            held: AtomicU64::new(0),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Reserves `bytes` (nothing for a small body), or `None` when that would pass the limit.
    pub fn reserve(&self, bytes: u64) -> Option<Reserved<'_>> {
        if bytes <= SMALL_BODY {
            return Some(Reserved {
                budget: self,
                bytes: 0,
            });
        }
        let before = self.held.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.limit {
            self.held.fetch_sub(bytes, Ordering::Relaxed);
            return None;
        }
        Some(Reserved {
            budget: self,
            bytes,
        })
    }

    #[cfg(test)]
    fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }
}

impl Reserved<'_> {
    /// Holds only `bytes` from now on (never more than reserved): a body of unknown length is
    /// reserved at the largest, and once read it holds what it is for the rest of its request
    /// (through the whole wait for Kafka), not what it might have been.
    pub fn shrink_to(&mut self, bytes: u64) {
        let keep = if bytes <= SMALL_BODY {
            0
        } else {
            bytes.min(self.bytes)
        };
        self.budget
            .held
            .fetch_sub(self.bytes - keep, Ordering::Relaxed);
        self.bytes = keep;
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = SMALL_BODY + 1;

    #[test]
    fn bodies_are_held_up_to_the_limit_and_returned_when_their_requests_end() {
        let budget = BodyBudget::new(10 * K);
        let a = budget.reserve(6 * K).expect("fits");
        assert!(budget.reserve(4 * K + 1).is_none(), "would pass the limit");
        assert_eq!(budget.held(), 6 * K, "a refused reservation holds nothing");
        let b = budget.reserve(4 * K).expect("exactly the limit");
        drop(a);
        assert_eq!(budget.held(), 4 * K);
        let c = budget.reserve(6 * K).expect("room again");
        drop((b, c));
        assert_eq!(budget.held(), 0);
        assert!(budget.reserve(u64::MAX).is_none(), "no overflow");
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_reservation_shrinks_to_the_body_it_turned_out_to_be() {
        let budget = BodyBudget::new(10 * K);
        let mut unknown = budget.reserve(8 * K).expect("fits");
        unknown.shrink_to(3 * K);
        assert_eq!(budget.held(), 3 * K);
        unknown.shrink_to(5 * K);
        assert_eq!(budget.held(), 3 * K, "never grows");
        let mut small = budget.reserve(7 * K).expect("room again");
        small.shrink_to(100);
        assert_eq!(budget.held(), 3 * K, "a small body holds nothing");
        let mut largest_small = budget.reserve(7 * K).expect("room again");
        largest_small.shrink_to(SMALL_BODY);
        assert_eq!(
            budget.held(),
            3 * K,
            "nor one of exactly 64 KiB (found by mutation testing)"
        );
        drop(largest_small);
        drop((unknown, small));
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn small_bodies_pass_even_when_the_budget_is_spent() {
        let budget = BodyBudget::new(K);
        let large = budget.reserve(K).expect("fits");
        let small = budget
            .reserve(SMALL_BODY)
            .expect("small bodies are not counted");
        assert_eq!(budget.held(), K);
        drop((small, large));
        assert_eq!(budget.held(), 0);
    }

    /// The refusal's log line says "too many body bytes in flight (limit N)" from it (found by
    /// mutation testing: a limit of 0 went unnoticed).
    #[test]
    fn a_budget_tells_the_limit_it_was_made_with() {
        assert_eq!(BodyBudget::new(10 * K).limit(), 10 * K);
    }

    /// In bytes, not relative to the constant: a webhook of tens of KiB (a long text, a list of
    /// contacts) is never refused for the budget that large bodies spent (found by mutation
    /// testing: `64 + 1024` went unnoticed).
    #[test]
    fn bodies_up_to_64_kib_are_small() {
        let budget = BodyBudget::new(0);
        assert!(budget.reserve(10 * 1024).is_some());
        assert!(budget.reserve(64 * 1024).is_some());
        assert!(budget.reserve(64 * 1024 + 1).is_none());
    }
}
