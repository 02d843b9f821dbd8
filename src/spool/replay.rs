//! What replay reads and deletes: records in order from a sequence number, removal once
//! delivered, and undecodable entries set aside.

use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;

use redb::{Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::{io, Oldest, Spool, SpoolError, SpooledRecord, RECORDS, UNREADABLE};

/// How often replay's removals are fsynced at most: what a crash during a drain may send again
/// is what replay delivered in this long, at the cost of one fsync per period.
pub const DURABLE_DELETES_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A record replay delivered, for [`Spool::remove`]: its sequence number, what it was counted
/// under, and its stored length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub topic: String,
    pub key: Option<String>,
    pub len: u64,
}

impl Stored {
    pub fn of(seq: u64, record: &SpooledRecord, len: u64) -> Stored {
        Stored {
            seq,
            topic: record.topic.clone(),
            key: record.key.clone(),
            len,
        }
    }
}

impl Spool {
    /// The oldest records, in order, up to `limit`, for tests (replay reads by range). Blocking.
    #[cfg(test)]
    pub(crate) fn oldest(
        &self,
        limit: usize,
    ) -> Result<Vec<(u64, SpooledRecord, u64)>, SpoolError> {
        self.from_seq(0..=u64::MAX, limit, u64::MAX)
    }

    /// A failed read may have latched redb's I/O error as a failed write does (every write is
    /// refused from then on): checked as a write is, since replay alone reads, nothing else may
    /// write for a long time, and replay would otherwise stall with the bridge looking healthy.
    /// A page found damaged after the open fails the spool at once (see [`damaged`]).
    fn checked<T>(&self, read: impl FnOnce() -> Result<T, redb::Error>) -> Result<T, SpoolError> {
        guarded(read).map_err(|e| {
            let cause = format!("a spool read failed: {e}");
            if !damaged(&e, &self.holdings, &cause) {
                super::failure::check_writable_now(&self.db, &self.holdings, &cause);
            }
            io(e)
        })
    }

    /// The newest record's sequence number, `None` when the spool is empty. Blocking.
    pub fn last_seq(&self) -> Result<Option<u64>, SpoolError> {
        self.checked(|| self.read_last_seq())
    }

    fn read_last_seq(&self) -> Result<Option<u64>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(RECORDS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let last = table.last()?.map(|(seq, _)| seq.value());
        Ok(last)
    }

    /// The records with sequence numbers in `seqs`, in order, up to `limit` records and — past
    /// the first — `max_bytes` stored bytes, for replay. Blocking. An entry that cannot be
    /// decoded is moved to the `unreadable` table (kept for inspection), so it can neither stall
    /// replay behind it nor count against the spool's size.
    pub fn from_seq(
        &self,
        seqs: RangeInclusive<u64>,
        limit: usize,
        max_bytes: u64,
    ) -> Result<Vec<(u64, SpooledRecord, u64)>, SpoolError> {
        let (out, unreadable) = self.checked(|| self.read_from(seqs, limit, max_bytes))?;
        if !unreadable.is_empty() {
            let moved = self.set_aside(&unreadable);
            if let Err(e) = &moved {
                // As a failed delete: a latched error would otherwise stall replay here for good
                // with the bridge looking healthy.
                let cause = format!("setting undecodable spool entries aside failed: {e}");
                super::failure::check_writable(&self.db, &self.holdings, &cause);
            }
            moved?;
        }
        Ok(out)
    }

    /// Up to `limit` decoded records from `first` on, in order, and the undecodable entries
    /// among them.
    fn read_from(
        &self,
        seqs: RangeInclusive<u64>,
        limit: usize,
        max_bytes: u64,
    ) -> Result<Oldest, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(RECORDS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(e.into()),
        };
        let (mut out, mut unreadable) = (Vec::new(), Vec::new());
        let mut bytes = 0u64;
        for entry in table.range(seqs)? {
            if out.len() >= limit || (!out.is_empty() && bytes >= max_bytes) {
                break;
            }
            let (seq, value) = entry?;
            let raw = value.value();
            match postcard::from_bytes::<SpooledRecord>(raw) {
                Ok(r) => {
                    bytes += raw.len() as u64;
                    out.push((seq.value(), r, raw.len() as u64));
                }
                Err(_) => unreadable.push((seq.value(), raw.len() as u64)),
            }
        }
        Ok((out, unreadable))
    }

    /// Moves undecodable entries (sequence number, length) to the `unreadable` table.
    fn set_aside(&self, entries: &[(u64, u64)]) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(io)?;
        let mut moved = Vec::with_capacity(entries.len());
        {
            let mut records = txn.open_table(RECORDS).map_err(io)?;
            let mut aside = txn.open_table(UNREADABLE).map_err(io)?;
            for &(seq, len) in entries {
                let raw = records.remove(seq).map_err(io)?.map(|v| v.value().to_vec());
                if let Some(raw) = raw {
                    // Counted once: an entry already aside under this number (a file of an
                    // early version) is replaced, not added.
                    let replaced = aside.insert(seq, raw.as_slice()).map_err(io)?.is_some();
                    moved.push((seq, len, replaced));
                }
            }
        }
        txn.commit().map_err(io)?;
        // Only what was there: counted down twice, an entry would leave the spool looking fuller
        // than it is (and the counts wrap below zero).
        let added = moved.iter().filter(|(_, _, replaced)| !replaced).count();
        self.holdings
            .unreadable
            .fetch_add(added as u64, Ordering::SeqCst);
        for (seq, len, _) in &moved {
            tracing::error!(
                seq,
                "a spooled record cannot be decoded; moved to the spool file's `unreadable` table"
            );
            self.holdings.records.fetch_sub(1, Ordering::SeqCst);
            self.holdings.release(*len, None, None);
        }
        self.holdings.stop_if_drained();
        Ok(())
    }

    /// Removes delivered records. Blocking. Mostly not fsynced: a crash before the next durable
    /// commit replays them again, which the dedup header makes harmless. But only a bounded number:
    /// once Kafka is back no append makes a durable commit, so without one of its own a crash
    /// after a drain of hours would send the whole drained backlog again. The removal that empties
    /// the spool and one every [`DURABLE_DELETES_EVERY`] are fsynced.
    pub fn remove(&self, delivered: &[Stored]) -> Result<(), SpoolError> {
        guarded(|| self.remove_now(delivered)).map_err(|e| {
            let cause = format!("a spool delete failed: {e}");
            if !damaged(&e, &self.holdings, &cause) {
                super::failure::check_writable(&self.db, &self.holdings, &cause);
            }
            io(e)
        })
    }

    fn remove_now(&self, delivered: &[Stored]) -> Result<(), redb::Error> {
        if delivered.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write()?;
        let mut removed = Vec::with_capacity(delivered.len());
        let emptied = {
            let mut table = txn.open_table(RECORDS)?;
            for stored in delivered {
                if table.remove(stored.seq)?.is_some() {
                    removed.push(stored);
                }
            }
            table.is_empty()?
        };
        let mut durable_at = self
            .holdings
            .deletes_durable_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let durable = emptied || durable_at.elapsed() >= DURABLE_DELETES_EVERY;
        if !durable {
            txn.set_durability(Durability::None)?;
        }
        txn.commit()?;
        if durable {
            *durable_at = std::time::Instant::now();
            self.holdings
                .removals_not_durable
                .store(0, Ordering::SeqCst);
        } else {
            self.holdings
                .removals_not_durable
                .fetch_add(removed.len() as u64, Ordering::SeqCst);
        }
        drop(durable_at);
        // Only what was there is given back: a record removed twice must not uncount another
        // of its key or topic.
        for stored in removed {
            self.holdings.records.fetch_sub(1, Ordering::SeqCst);
            self.holdings
                .release(stored.len, Some(&stored.topic), stored.key.as_deref());
        }
        self.holdings.stop_if_drained();
        Ok(())
    }

    /// Receive time of the oldest waiting record (`None` when there is none). Blocking.
    pub fn oldest_timestamp_ms(&self) -> Result<Option<i64>, SpoolError> {
        let (oldest, _) = self.checked(|| self.read_from(0..=u64::MAX, 1, u64::MAX))?;
        Ok(oldest.first().map(|(_, r, _)| r.timestamp_ms))
    }
}

/// `op`, with a panic in it taken for what it is in redb: a page it found damaged. Some of its
/// checks return `Corrupted`, some panic in debug builds only, and some (`unreachable!` in its
/// B-tree cursor, met in a review's trials) in release builds too.
fn guarded<T>(op: impl FnOnce() -> Result<T, redb::Error>) -> Result<T, redb::Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(op)).unwrap_or_else(|panic| {
        Err(redb::Error::Corrupted(format!(
            "panicked: {}",
            crate::supervise::message(&*panic)
        )))
    })
}

/// Whether `e` is a page found damaged after the open (redb checks the whole file when it opens
/// it), and if so fails the spool: replay cannot read or delete past it, while appends, which
/// rewrite only the newest pages, would go on into a file the next start sets aside whole. As for
/// a writer that panicked, the bridge stops, and its restart sets the file aside (counted in
/// `spool_files_set_aside`) with fewer records answered 200 in it than if it went on.
fn damaged(e: &redb::Error, holdings: &super::Holdings, cause: &str) -> bool {
    let damaged = matches!(e, redb::Error::Corrupted(_));
    if damaged {
        holdings.fail(format!("{cause}: a page of the spool's file is damaged"));
    }
    damaged
}
