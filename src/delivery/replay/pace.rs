//! How much replay sends at once, and how fast: each batch as soon as the last was
//! acknowledged, or at most a rate.

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

/// A paced batch holds at most this fraction of a second's records, so the rate holds within
/// each second instead of in bursts of a whole batch followed by a long wait.
const SLICES_PER_SECOND: u32 = 10;

impl Pace {
    /// Batches of at most `limits`, and at most `per_second` records a second (0: no limit).
    pub fn new(limits: Batch, per_second: u32) -> Pace {
        Pace {
            limits,
            per_second: NonZeroU32::new(per_second),
            next: None,
        }
    }

    /// The largest batch: the limits, with at most a tenth of a second's records when paced.
    pub(super) fn batch(&self) -> Batch {
        let limits = self.limits;
        let Some(rate) = self.per_second else {
            return limits;
        };
        let slice = usize::try_from(rate.get() / SLICES_PER_SECOND).unwrap_or(usize::MAX);
        Batch {
            records: slice.clamp(1, limits.records),
            ..limits
        }
    }

    /// Waits until `records` more may go at this pace, and counts them as gone; `false` when
    /// `stop` came first (nothing counted). Time spent waiting for Kafka counts: a batch whose
    /// acknowledgements took longer than its share of the rate lets the next one go at once.
    /// Time spent idle does not: an empty spool earns no burst for the next outage.
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
    fn a_paced_batch_holds_a_tenth_of_a_seconds_records_and_at_least_one() {
        let batch = |rate| Pace::new(LIMITS, rate).batch();
        assert_eq!(batch(0), LIMITS);
        assert_eq!(batch(5000).records, 500);
        assert_eq!(batch(5000).bytes, LIMITS.bytes);
        assert_eq!(batch(3).records, 1);
        assert_eq!(batch(1_000_000).records, 2048);
    }
}
