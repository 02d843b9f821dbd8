//! How much replay sends at once, and how fast: a batch's records handed to Kafka all at once,
//! or evenly at most a rate.

use std::num::NonZeroU32;
use std::time::Duration;

use tokio::time::Instant;

use super::Batch;

/// Replay's batches and pace (`--replay-rate`). Unpaced, a backlog drains as fast as the broker
/// takes it, which on a near broker is as fast as the CPU allows, and live webhooks share that CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    limits: Batch,
    per_second: Option<NonZeroU32>,
    /// When the next record may go.
    next: Option<Instant>,
}

/// A paced batch is handed over in slices of at most this fraction of a second's records, so
/// replay's CPU comes in small even pieces rather than in bursts that delay live webhooks.
const SLICES_PER_SECOND: u32 = 100;

impl Pace {
    /// Batches of at most `limits`, and at most `per_second` records a second (0: no limit).
    pub fn new(limits: Batch, per_second: u32) -> Pace {
        Pace {
            limits,
            per_second: NonZeroU32::new(per_second),
            next: None,
        }
    }

    /// How much of the spool one read takes: the limits, paced or not.
    pub(super) fn limits(&self) -> Batch {
        self.limits
    }

    /// The most records handed over together: a hundredth of a second's when paced (at least
    /// one), else a whole batch.
    pub(super) fn slice(&self) -> usize {
        let Some(rate) = self.per_second else {
            return self.limits.records;
        };
        usize::try_from(rate.get() / SLICES_PER_SECOND)
            .unwrap_or(usize::MAX)
            .clamp(1, self.limits.records)
    }

    /// Waits until `records` more may go at this pace, and counts them as gone; `false` when
    /// `stop` came first (nothing counted). Cancelled before it returns, it counts nothing. Time
    /// spent waiting for Kafka counts: a batch whose last acknowledgements took longer than the
    /// rate's share lets the next records go at once. Time spent idle does not: an empty spool
    /// earns no burst for the next outage.
    pub(super) async fn wait(
        &mut self,
        records: usize,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        let Some(rate) = self.per_second else {
            return true;
        };
        let now = Instant::now();
        let start = match self.next {
            Some(next) if next > now => {
                let mut stop = stop.clone();
                tokio::select! {
                    () = tokio::time::sleep_until(next) => {}
                    () = crate::admin::stopped(&mut stop) => return false,
                }
                next
            }
            _ => now,
        };
        let share = Duration::from_secs_f64(records as f64 / f64::from(rate.get()));
        self.next = Some(start + share);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Batch = Batch {
        records: 2048,
        bytes: 8 << 20,
    };

    #[test]
    fn a_paced_slice_holds_a_hundredth_of_a_seconds_records_and_at_least_one() {
        let slice = |rate| Pace::new(LIMITS, rate).slice();
        assert_eq!(slice(0), 2048, "unpaced: the whole batch");
        assert_eq!(slice(5000), 50);
        assert_eq!(slice(30), 1);
        assert_eq!(slice(u32::MAX), 2048);
        // Read whole either way.
        assert_eq!(Pace::new(LIMITS, 5000).limits(), LIMITS);
    }

    #[tokio::test(start_paused = true)]
    async fn time_idle_earns_no_burst_and_time_waiting_for_kafka_lets_the_next_slice_go() {
        let (_stop, stop) = tokio::sync::watch::channel(false);
        let mut pace = Pace::new(LIMITS, 100);
        let start = Instant::now();
        assert!(pace.wait(10, &stop).await);
        assert_eq!(Instant::now(), start, "the first slice goes at once");
        assert!(pace.wait(10, &stop).await);
        assert_eq!(Instant::now() - start, Duration::from_millis(100));
        // Idle for ten seconds: the next slice goes at once, and the one after a tenth of a
        // second later, not at once to catch up.
        tokio::time::advance(Duration::from_secs(10)).await;
        let back = Instant::now();
        assert!(pace.wait(10, &stop).await);
        assert_eq!(Instant::now(), back);
        assert!(pace.wait(10, &stop).await);
        assert_eq!(Instant::now() - back, Duration::from_millis(100));
        // Acknowledgements that took longer than the slice's share: the next goes at once.
        tokio::time::advance(Duration::from_millis(300)).await;
        let acked = Instant::now();
        assert!(pace.wait(10, &stop).await);
        assert_eq!(Instant::now(), acked);
    }
}
