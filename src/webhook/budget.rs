//! The bytes of request bodies held at once: reserved before a body is read and returned when
//! its request ends, so a burst of large bodies is answered 503 instead of taking the process
//! past its memory limit.

use std::sync::atomic::{AtomicU64, Ordering};

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

    /// Reserves `bytes`, or `None` when that would pass the limit. One atomic add on the way
    /// in and one on the way out: cheap enough for every request.
    pub fn reserve(&self, bytes: u64) -> Option<Reserved<'_>> {
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

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_held_up_to_the_limit_and_returned_when_their_requests_end() {
        let budget = BodyBudget::new(1000);
        let a = budget.reserve(600).expect("fits");
        assert!(budget.reserve(401).is_none(), "would pass the limit");
        assert_eq!(budget.held(), 600, "a refused reservation holds nothing");
        let b = budget.reserve(400).expect("exactly the limit");
        drop(a);
        assert_eq!(budget.held(), 400);
        let c = budget.reserve(600).expect("room again");
        drop((b, c));
        assert_eq!(budget.held(), 0);
        assert!(budget.reserve(u64::MAX).is_none(), "no overflow");
        assert_eq!(budget.held(), 0);
    }
}
