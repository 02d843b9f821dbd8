//! The spool's metrics: appends by result, replays, dead-letterings, and the gauges refreshed before each
//! scrape.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::name;
use crate::spool::{Spool, SpoolError};

#[derive(Debug)]
pub struct SpoolMetrics {
    /// Resolved for every result at start-up, so all show from the first scrape.
    appends: [IntCounter; 5],
    pub replayed: IntCounter,
    pub replay_failures: IntCounter,
    pub deadlettered: IntCounter,
    records: IntGauge,
    bytes: IntGauge,
    max_bytes: IntGauge,
    unreadable: IntGauge,
    files_set_aside: IntGauge,
    oldest_age: Gauge,
    /// The oldest record's receive time at the last read that succeeded ([`NONE`]: empty).
    oldest_ms: AtomicI64,
}

/// No record was waiting at the last read.
const NONE: i64 = i64::MIN;

impl SpoolMetrics {
    pub(super) fn new(registry: &Registry) -> prometheus::Result<SpoolMetrics> {
        let appends = IntCounterVec::new(
            Opts::new(
                name("spool_appends_total"),
                "Records written to the spool, by result (ok, full, error, busy, late)",
            ),
            &["result"],
        )?;
        let replayed = IntCounter::new(
            name("spool_replayed_total"),
            "Spooled records delivered to Kafka",
        )?;
        let replay_failures = IntCounter::new(
            name("spool_replay_failures_total"),
            "Spooled records Kafka did not acknowledge on a replay attempt (retried)",
        )?;
        let deadlettered = IntCounter::new(
            name("spool_deadlettered_total"),
            "Spooled records Kafka refused on their topic for good (too large, invalid), moved to the dead-letter topic",
        )?;
        let records = IntGauge::new(name("spool_records"), "Records waiting in the spool")?;
        let bytes = IntGauge::new(name("spool_bytes"), "Bytes of records waiting in the spool")?;
        let max_bytes = IntGauge::new(
            name("spool_max_bytes"),
            "Spool capacity in bytes (0: no spool)",
        )?;
        let unreadable = IntGauge::new(
            name("spool_unreadable_records"),
            "Spooled records that could not be decoded, set aside in the spool file's unreadable table and not replayed",
        )?;
        let files_set_aside = IntGauge::new(
            name("spool_files_set_aside"),
            "Spool files moved aside at start-up because they could not be read, still in the spool directory (their records are not replayed)",
        )?;
        let oldest_age = Gauge::new(
            name("spool_oldest_age_seconds"),
            "Age of the oldest record waiting in the spool (0 when empty)",
        )?;
        registry.register(Box::new(appends.clone()))?;
        for c in [&replayed, &replay_failures, &deadlettered] {
            registry.register(Box::new(c.clone()))?;
        }
        for g in [&records, &bytes, &max_bytes, &unreadable, &files_set_aside] {
            registry.register(Box::new(g.clone()))?;
        }
        registry.register(Box::new(oldest_age.clone()))?;
        Ok(SpoolMetrics {
            appends: ["ok", "full", "error", "busy", "late"]
                .map(|r| appends.with_label_values(&[r])),
            replayed,
            replay_failures,
            deadlettered,
            records,
            bytes,
            max_bytes,
            unreadable,
            files_set_aside,
            oldest_age,
            oldest_ms: AtomicI64::new(NONE),
        })
    }

    pub fn append(&self, result: &Result<u64, SpoolError>) {
        let i = match result {
            Ok(_) => 0,
            Err(SpoolError::Full { .. }) => 1,
            Err(SpoolError::Io(_)) => 2,
            Err(SpoolError::Busy { .. }) => 3,
        };
        self.appends[i].inc();
    }

    /// A write that did not finish by its request's deadline (it may still commit).
    pub fn late(&self) {
        self.appends[4].inc();
    }

    /// Refreshes the gauges; called before each scrape. Blocking (reads the oldest record).
    pub fn observe(&self, spool: &Spool) {
        let now_ms = crate::record::timestamp_ms(std::time::SystemTime::now()).unwrap_or(0);
        self.observe_at(spool, now_ms);
    }

    pub(crate) fn observe_at(&self, spool: &Spool, now_ms: i64) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.records.set(clamp(spool.records()));
        self.bytes.set(clamp(spool.bytes()));
        self.max_bytes.set(clamp(spool.max_bytes()));
        self.unreadable.set(clamp(spool.unreadable()));
        self.files_set_aside.set(clamp(spool.files_set_aside()));
        // A read that failed shows the age of the oldest record the last one found, which
        // keeps growing: 0 ("empty"), or an age frozen at the failure, would hold off the alert
        // exactly when records may be stuck.
        let oldest = match spool.oldest_timestamp_ms() {
            Ok(oldest) => {
                self.oldest_ms
                    .store(oldest.unwrap_or(NONE), Ordering::Relaxed);
                oldest
            }
            Err(_) => Some(self.oldest_ms.load(Ordering::Relaxed)).filter(|&t| t != NONE),
        };
        let age = oldest.map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1e3);
        self.oldest_age.set(age);
    }
}
