//! The durable spool: records Kafka did not acknowledge in time, kept on disk until replayed.
//!
//! Storage is redb (a maintained, crash-safe embedded B-tree with checksummed, copy-on-write
//! commits), so a torn write from a crash is rolled back to the last commit by redb itself
//! rather than by a file format of ours. Appends are group-committed: one writer thread takes
//! every append that is waiting, writes them in one transaction and fsyncs once
//! (`Durability::Immediate`), so concurrent webhooks share the cost of one fsync.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use redb::{Database, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Notify};

use crate::record::Record;

mod access;
mod commits;
mod counts;
mod dir;
mod emptied;
mod failure;
mod fresh;
mod lifecycle;
mod linked;
mod recover;
mod replay;
mod writer;
use counts::Counts;
pub(crate) use dir::nearest_existing;
pub use replay::{Stored, DURABLE_DELETES_EVERY};

/// The warning start-up logs when the volume under `dir` cannot hold `max_bytes` of records, for
/// `--check-config` (before `dir` exists: its nearest existing parent stands for it). Blocking.
pub fn volume_warning(dir: &Path, max_bytes: u64) -> Option<String> {
    dir::volume_warning(dir, max_bytes)
}
use writer::Append;

/// What in `dir` this process could not write to, and why, for `--check-config` and start-up:
/// the nearest directory that exists (the rest is made under it), the spool's files when they
/// exist, and a directory where start-up makes a new file. Blocking.
pub fn unwritable(dir: &Path) -> Option<(PathBuf, std::io::Error)> {
    dir::unwritable(dir, &[FILE, dir::LOCK_FILE], |path, file| {
        if !file && path != dir {
            access::may_make_in(path)
        } else {
            access::may_write(path, file)
        }
    })
    .or_else(|| fresh::in_the_way(dir, &dir.join(FILE)))
}

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
/// Entries of `records` that could not be decoded, moved out of replay's way but kept.
const UNREADABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("unreadable");
const FILE: &str = "spool.redb";

/// A record as kept on disk: everything needed to produce it later, exactly as it would have been.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledRecord {
    pub topic: String,
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub timestamp_ms: i64,
}

impl SpooledRecord {
    /// Its topic and key, the rest dropped now.
    fn into_names(self) -> (String, Option<String>) {
        (self.topic, self.key)
    }

    pub fn from_record(record: &Record<'_>) -> SpooledRecord {
        SpooledRecord {
            topic: record.topic.to_string(),
            key: record.key.as_deref().map(str::to_string),
            value: record.value.to_vec(),
            headers: record
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timestamp_ms: record.timestamp_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    #[error("spool is full ({max} bytes)")]
    Full { max: u64 },
    /// The writes waiting for the disk already hold [`MAX_WAITING_BYTES`]: the disk is stalled.
    #[error("spool writes waiting for the disk hold {waiting} bytes")]
    Busy { waiting: u64 },
    #[error("spool write failed: {0}")]
    Io(String),
}

impl SpoolError {
    /// What went wrong, without the "spool write failed" of a write's error: for an open.
    pub fn cause(&self) -> String {
        match self {
            SpoolError::Io(cause) => cause.clone(),
            other => other.to_string(),
        }
    }
}

/// Decoded records (sequence number, record, stored length) and undecodable entries (sequence
/// number, stored length).
type Oldest = (Vec<(u64, SpooledRecord, u64)>, Vec<(u64, u64)>);

/// What the spool holds now; shared by appenders, the writer thread and the replayer. The
/// writer thread settles each append's share once its commit is decided, so an append whose
/// caller gave up waiting (a client that reset its stream) is still counted right.
#[derive(Debug)]
struct Holdings {
    /// Records per key not yet delivered (new records for such a key go to the spool too, so
    /// they cannot overtake the older ones of the same conversation), and per topic.
    counts: Mutex<Counts>,
    bytes: AtomicU64,
    records: AtomicU64,
    /// Entries in the `unreadable` table: accepted records that will not be replayed.
    unreadable: AtomicU64,
    /// Spool files moved aside as unreadable found in the directory when last counted.
    files_set_aside: AtomicU64,
    /// The directory could not be listed at the last count: warned of once, not at every scrape.
    listing_failed: std::sync::atomic::AtomicBool,
    /// Encoded bytes handed to the writer thread and not yet committed (or failed).
    waiting: AtomicU64,
    /// Woken when a record is appended, so the replayer need not poll.
    appended: Notify,
    /// Why the file refuses every write, once it does (see `failure`).
    failure: tokio::sync::watch::Sender<Option<String>>,
    /// When the writer's current commit began (see [`Spool::write_stalled_for`]).
    commit_began: Mutex<Option<std::time::Instant>>,
    /// When replay's removals were last made durable (see [`Spool::remove`]).
    deletes_durable_at: Mutex<std::time::Instant>,
    /// Records removed since then: a crash, or a last commit at close that fails (a full disk),
    /// brings them back for the next start to send again.
    removals_not_durable: AtomicU64,
    /// The file redb opened, to notice it removed from its path (none over test storage).
    file: Option<linked::FileId>,
    /// Why the file is no longer the one at its path, once it is not (see `linked`).
    detached: std::sync::OnceLock<String>,
    /// Where each append commit is noted (see `commits`; none over test storage).
    note: Option<commits::Note>,
    /// Transactions the writer thread has committed (or failed to), for the group commit tests.
    #[cfg(test)]
    commits: AtomicU64,
    /// Makes the writer thread panic before its next commit, as redb may on a damaged page.
    #[cfg(test)]
    panic_next_commit: std::sync::atomic::AtomicBool,
}

impl Holdings {
    fn records(&self) -> u64 {
        self.records.load(Ordering::SeqCst)
    }

    fn commit_began(&self, at: Option<std::time::Instant>) {
        *self.commit_began.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// An append's encoding left the writer's queue: committed, or failed.
    fn written(&self, len: u64) {
        self.waiting.fetch_sub(len, Ordering::SeqCst);
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives back what a record reserved: one that failed to append, or left the spool.
    fn release(&self, len: u64, topic: Option<&str>, key: Option<&str>) {
        self.bytes.fetch_sub(len, Ordering::SeqCst);
        self.counts().remove(topic, key);
    }
}

/// Tells of the last append commit the file at `path`, counting `appends`, lost (see
/// `commits`): logged, and left as a file that `spool_files_set_aside` counts.
fn lost_commit(note: &commits::Note, appends: u64, path: &Path) {
    let Some(lost) = note.lost(appends) else {
        return;
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let records = lost.records();
    match commits::report_lost(dir, &lost, appends) {
        Ok(report) => {
            tracing::error!(records, first_seq = lost.first_seq, last_seq = lost.last_seq, committed_at_ms = lost.at_ms, report = %report.display(), "the spool file lacks its last commit, damaged after it was synced: its records were answered 200 and will not reach Kafka")
        }
        Err(e) => {
            tracing::error!(records, first_seq = lost.first_seq, last_seq = lost.last_seq, committed_at_ms = lost.at_ms, error = %e, "the spool file lacks its last commit, damaged after it was synced: its records were answered 200 and will not reach Kafka (and the report of it could not be written)")
        }
    }
}

/// Bound on the encoded records waiting for the writer thread's commit. A request whose write
/// outlasts its deadline is answered 503 and lets go of its body, but its copy waits in the
/// writer's queue; without this bound a stalled disk would pile up copies until the process ran
/// out of memory.
pub const MAX_WAITING_BYTES: u64 = 64 << 20;

pub struct Spool {
    db: Arc<Database>,
    writer: Mutex<Option<mpsc::Sender<Append>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    holdings: Arc<Holdings>,
    max_bytes: u64,
    /// Free space below which the spool reports no room (one largest record).
    headroom: u64,
    path: PathBuf,
    /// The directory's lock (see `dir::lock`), held while the spool is.
    _dir_lock: Option<std::fs::File>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn io(e: impl std::fmt::Display) -> SpoolError {
    SpoolError::Io(e.to_string())
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering what a previous process left. A file redb
    /// cannot open is moved aside (never a crash loop) and a new one started.
    /// `headroom` is the largest record expected: with less free space, [`Spool::has_room`] is false.
    pub fn open(dir: &Path, max_bytes: u64, headroom: u64) -> Result<Arc<Spool>, SpoolError> {
        let created = dir::create(dir)?;
        let lock = dir::lock(dir)?;
        let path = dir.join(FILE);
        let db = recover::open_or_move_aside(dir, &path, &created)?;
        dir::make_private(&path);
        let file = linked::FileId::of(&path).map_err(io)?;
        dir::warn_if_volume_too_small(dir, max_bytes);
        // Unreadable, the note is only no check at the next start.
        let note = commits::Note::open(dir, &db)
            .inspect_err(|e| tracing::warn!(error = %e, dir = %dir.display(), "cannot note the spool's commits beside it; a commit the file loses will not be noticed"))
            .ok();
        let spool =
            Spool::with_database(db, path, max_bytes, headroom, Some(lock), Some(file), note)?;
        let aside = spool.files_set_aside();
        if aside > 0 {
            tracing::error!(
                files = aside,
                dir = %dir.display(),
                "spool files moved aside as unreadable are in the spool directory: their records were answered 200 and are not in Kafka"
            );
        }
        Ok(spool)
    }

    /// The spool over an open redb database, at `path`, which is `file` when on disk (tests give
    /// it one whose storage fails on command).
    fn with_database(
        db: redb::Database,
        path: PathBuf,
        max_bytes: u64,
        headroom: u64,
        dir_lock: Option<std::fs::File>,
        file: Option<linked::FileId>,
        note: Option<commits::Note>,
    ) -> Result<Arc<Spool>, SpoolError> {
        let db = Arc::new(db);
        // Best effort: entries left aside are still counted and alerted on, and a start-up
        // stopped here (a full volume, say) would only keep webhooks from Kafka meanwhile.
        if let Err(e) = recover::restore_decodable(&db) {
            tracing::error!(error = %e, "cannot move readable entries back from the spool's unreadable table; they stay there");
        }
        let recover::Contents {
            bytes,
            records,
            next_seq,
            counts,
            unreadable,
            appends,
        } = recover::scan(&db)?;
        if let Some(note) = &note {
            lost_commit(note, appends.unwrap_or(0), &path);
            note.settle(appends.unwrap_or(0), next_seq);
        }
        let holdings = Arc::new(Holdings {
            counts: Mutex::new(counts),
            bytes: AtomicU64::new(bytes),
            records: AtomicU64::new(records),
            unreadable: AtomicU64::new(unreadable),
            files_set_aside: AtomicU64::new(0),
            listing_failed: std::sync::atomic::AtomicBool::new(false),
            waiting: AtomicU64::new(0),
            appended: Notify::new(),
            failure: tokio::sync::watch::Sender::new(None),
            commit_began: Mutex::new(None),
            deletes_durable_at: Mutex::new(std::time::Instant::now()),
            removals_not_durable: AtomicU64::new(0),
            file,
            detached: std::sync::OnceLock::new(),
            note,
            #[cfg(test)]
            commits: AtomicU64::new(0),
            #[cfg(test)]
            panic_next_commit: std::sync::atomic::AtomicBool::new(false),
        });
        if records > 0 {
            tracing::warn!(
                records,
                bytes,
                "spool holds records from an earlier run; replaying them"
            );
        }
        let (tx, rx) = mpsc::channel::<Append>();
        let (writer_db, writer_holdings) = (db.clone(), holdings.clone());
        let thread = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || {
                let _alive = failure::WriterAlive(&writer_holdings);
                let from = writer::From {
                    seq: next_seq,
                    appends: appends.unwrap_or(0),
                };
                writer::write_loop(&writer_db, &writer_holdings, &rx, from);
            })
            .map_err(io)?;
        Ok(Arc::new(Spool {
            db,
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            holdings,
            max_bytes,
            headroom,
            path,
            _dir_lock: dir_lock,
        }))
    }

    /// Whether records of this conversation (`key` on `topic`) wait in the spool.
    pub fn holds(&self, topic: &str, key: &str) -> bool {
        self.holdings.counts().holds(topic, key)
    }

    /// Whether records of `key` wait in the spool, on any topic.
    #[cfg(test)]
    pub fn holds_key(&self, key: &str) -> bool {
        self.holdings.counts().holds_key(key)
    }

    /// The topics with records waiting (or being written).
    pub fn topics(&self) -> std::collections::HashSet<String> {
        self.holdings.counts().topics()
    }

    /// Whether every record of `topic` waiting (or being written) is held by replay: its key by
    /// `held_key`, or, without a key, when `keyless_held`. Holds the counts' lock while it reads
    /// the keys, up to the first that is not held.
    pub fn all_held(
        &self,
        topic: &str,
        keyless_held: bool,
        held_key: impl FnMut(&str) -> bool,
    ) -> bool {
        self.holdings
            .counts()
            .all_held(topic, keyless_held, held_key)
    }

    /// Woken when records were appended.
    pub fn appended(&self) -> &Notify {
        &self.holdings.appended
    }

    /// Writes the record durably; `Ok` only after fsync. Cancel-safe: dropped while waiting,
    /// the record is still written (or not) and counted by the writer thread.
    pub async fn append(&self, record: SpooledRecord) -> Result<u64, SpoolError> {
        self.append_if(record, false)
            .await
            .unwrap_or_else(|| Err(SpoolError::Io("no key held".into())))
    }

    /// [`Spool::append`], but only while the spool still holds records of the record's
    /// conversation (its key on its topic): the check, the count and the hand-over to the writer
    /// are one step, so the record lands behind the ones it waits for and no later record of its
    /// conversation can overtake it. `None` when the conversation is no longer held (its records
    /// were delivered meanwhile): send it to Kafka instead.
    pub async fn append_behind(&self, record: SpooledRecord) -> Option<Result<u64, SpoolError>> {
        self.append_if(record, true).await
    }

    async fn append_if(
        &self,
        record: SpooledRecord,
        only_if_held: bool,
    ) -> Option<Result<u64, SpoolError>> {
        if let Some(reason) = self.holdings.detached.get() {
            return Some(Err(SpoolError::Io(reason.clone())));
        }
        let bytes = match postcard::to_allocvec(&record) {
            Ok(bytes) => bytes,
            Err(e) => return Some(Err(io(e))),
        };
        // The record is dropped here, not after the fsync: while requests wait for it, each
        // holds its body once in the encoding rather than twice.
        let (topic, key) = record.into_names();
        let len = bytes.len() as u64;
        let waiting = self.holdings.waiting.fetch_add(len, Ordering::SeqCst);
        if waiting > 0 && waiting + len > MAX_WAITING_BYTES {
            self.holdings.waiting.fetch_sub(len, Ordering::SeqCst);
            return Some(Err(SpoolError::Busy { waiting }));
        }
        let before = self.holdings.bytes.fetch_add(len, Ordering::SeqCst);
        if before + len > self.max_bytes {
            self.holdings.bytes.fetch_sub(len, Ordering::SeqCst);
            self.holdings.written(len);
            return Some(Err(SpoolError::Full {
                max: self.max_bytes,
            }));
        }
        let (done, answer) = oneshot::channel();
        let append = Append {
            bytes,
            len,
            topic: topic.clone(),
            key: key.clone(),
            done,
        };
        // Checking the key, counting the record and handing it to the writer are one step under
        // the writer's lock: a record that saw this one's count is queued after it, and one that
        // found its key held cannot see it released (and a later record overtake it through
        // Kafka) before it is counted itself.
        let unsent = {
            let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let mut counts = self.holdings.counts();
            if only_if_held && !key.as_deref().is_some_and(|k| counts.holds(&topic, k)) {
                drop(counts);
                drop(writer);
                self.holdings.bytes.fetch_sub(len, Ordering::SeqCst);
                self.holdings.written(len);
                return None;
            }
            counts.add(&topic, key.as_deref());
            drop(counts);
            match writer.as_ref() {
                Some(tx) => tx.send(append).err().map(|e| e.0),
                None => Some(append),
            }
        };
        if let Some(append) = unsent {
            self.holdings.written(len);
            self.holdings
                .release(len, Some(&append.topic), append.key.as_deref());
            return Some(Err(SpoolError::Io("spool is closed".into())));
        }
        Some(match answer.await {
            // The writer settled the accounting before it answered.
            Ok(result) => result,
            // It settles a whole group only after deciding its commit, so one that died without
            // answering left this append's reservation to us.
            Err(_) => {
                self.holdings.written(len);
                self.holdings.release(len, Some(&topic), key.as_deref());
                Err(SpoolError::Io("spool writer stopped".into()))
            }
        })
    }

    /// Holds the database's one write transaction, so the writer thread's next commit waits
    /// until the returned transaction is dropped: a stalled disk, for tests.
    #[cfg(test)]
    pub(crate) fn stall_writes(&self) -> redb::WriteTransaction {
        self.db.begin_write().expect("write transaction")
    }

    pub fn records(&self) -> u64 {
        self.holdings.records()
    }

    pub fn bytes(&self) -> u64 {
        self.holdings.bytes.load(Ordering::SeqCst)
    }

    /// Entries set aside as undecodable (see `from_seq`), from earlier runs too: records that
    /// were answered 200 and will not reach Kafka without an operator.
    pub fn unreadable(&self) -> u64 {
        self.holdings.unreadable.load(Ordering::SeqCst)
    }

    /// Spool files moved aside as unreadable (see `open`), from earlier runs too, counted in the
    /// directory now (blocking), so that an operator's removal shows without a restart; the last
    /// count when the directory cannot be listed.
    pub fn files_set_aside(&self) -> u64 {
        let counted = self.holdings.file.as_ref().and_then(|_| {
            let dir = self.path.parent()?;
            let listed = recover::files_set_aside(dir);
            let failed_before = self
                .holdings
                .listing_failed
                .swap(listed.is_err(), Ordering::SeqCst);
            match &listed {
                Err(e) if !failed_before => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot list the spool's directory for files set aside; its last count stands until it can")
                }
                Ok(_) if failed_before => {
                    tracing::info!(dir = %dir.display(), "the spool's directory can be listed again")
                }
                _ => {}
            }
            listed.ok()
        });
        if let Some(count) = counted {
            self.holdings.files_set_aside.store(count, Ordering::SeqCst);
        }
        self.holdings.files_set_aside.load(Ordering::SeqCst)
    }

    /// Records delivered and removed whose removal is not durable yet (see [`Spool::remove`]):
    /// after [`Spool::close`], those its last commit could not make durable, which the next start
    /// finds in the file again.
    pub fn removals_not_durable(&self) -> u64 {
        self.holdings.removals_not_durable.load(Ordering::SeqCst)
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Room for at least one more record of the largest size (none once its file is detached).
    pub fn has_room(&self) -> bool {
        self.max_bytes.saturating_sub(self.bytes()) >= self.headroom
            && self.holdings.detached.get().is_none()
    }

    /// Why the file is no longer the one at its path, once that was noticed: what it holds is
    /// lost if the bridge stops before replaying it.
    pub fn detached(&self) -> Option<String> {
        self.holdings.detached.get().cloned()
    }

    /// What stopping now would lose: records answered 200 that wait in a file the next start
    /// will not find (see `linked`).
    pub fn lost_if_stopped(&self) -> Option<String> {
        let reason = self.detached().filter(|_| self.records() > 0)?;
        Some(format!(
            "{reason}; the records it still held are lost with it"
        ))
    }

    /// How long the writer's current commit has been running: a disk that stalls without failing
    /// (a hung network volume) shows here, as appends only time out.
    pub fn write_stalled_for(&self) -> std::time::Duration {
        let began = *self
            .holdings
            .commit_began
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        began.map_or(std::time::Duration::ZERO, |t| t.elapsed())
    }

    /// Stops the writer after the appends already queued, and makes replay's removals since the
    /// last durable commit durable: whatever handles of the spool outlive this, a crash after it
    /// does not send those records again. Blocking.
    pub fn close(&self) {
        drop(self.writer.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        // The count's lock is taken once the write transaction is held, as a removal takes it:
        // one committing between this commit and the count's reset would go uncounted.
        let synced = self
            .db
            .begin_write()
            .map_err(redb::Error::from)
            .and_then(|txn| {
                let durable_at = self
                    .holdings
                    .deletes_durable_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                txn.commit().map_err(redb::Error::from)?;
                Ok(durable_at)
            });
        let not_durable = self.removals_not_durable();
        match synced {
            Ok(durable_at) => {
                self.holdings
                    .removals_not_durable
                    .store(0, Ordering::SeqCst);
                drop(durable_at);
            }
            // Nothing was waiting to be made durable: the appends were, when they were answered.
            Err(e) if not_durable == 0 => {
                tracing::debug!(error = %e, "the spool's last commit failed, with nothing to make durable")
            }
            Err(e) => tracing::warn!(
                error = %e,
                records = not_durable,
                "the spool's last removals could not be made durable: the next start sends these records again"
            ),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_storage;
#[cfg(test)]
mod tests;
