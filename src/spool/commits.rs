//! The spool's last append, noted beside its file after each commit, so that a commit the file
//! loses after it was synced is told at the next start rather than lost without a word.
//!
//! redb commits with one fsync and a checksummed commit slot in the file's header; at an open
//! after a crash, a newest slot whose checksum fails is taken for a commit the crash cut off, and
//! redb quietly falls back to the commit before. A commit cut off was never answered 200, but a
//! slot damaged after its fsync (a disk that flips or loses bytes it acknowledged) takes with it
//! the last group of records that were: up to a commit's 1,024. redb's two-phase commit would
//! refuse such a file instead, and so set aside every record in it, at the cost of a second fsync
//! per commit. The note costs one small write, not synced: written only once the commit is, it
//! never names a commit the file does not hold, unless the file lost it. It names its file by an
//! identity the file is given durably when first opened, before any append: a note of another
//! file (one moved aside, or deleted, since) is never compared with this one, and a note left
//! behind by a power loss names an older commit, never a newer one.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, TableDefinition};

/// The file's identity and the number of appends committed to it, kept in the file itself.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(super) const APPENDS: &str = "appends";
const FILE_ID: &str = "file-id";

/// The note's file, in the spool's directory.
const NOTE: &str = "spool.last-append";
const MAGIC: &[u8; 8] = b"qbspool2";
const LEN: usize = 8 * 7;

/// One append commit: the file it went to, the file's count of appends once it is in, its
/// records' sequence numbers and when it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Noted {
    pub file_id: u64,
    pub appends: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub at_ms: u64,
}

impl Noted {
    /// How many records the commit held.
    pub fn records(&self) -> u64 {
        self.last_seq - self.first_seq + 1
    }

    fn encode(&self) -> [u8; LEN] {
        let mut out = [0; LEN];
        out[..8].copy_from_slice(MAGIC);
        let fields = [
            self.file_id,
            self.appends,
            self.first_seq,
            self.last_seq,
            self.at_ms,
        ];
        for (i, v) in fields.iter().enumerate() {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        out[LEN - 8..].copy_from_slice(&check(&fields).to_le_bytes());
        out
    }

    /// `None` for anything but a whole note: a note written half before a power loss, or none.
    fn decode(bytes: &[u8]) -> Option<Noted> {
        if bytes.len() != LEN || &bytes[..8] != MAGIC {
            return None;
        }
        let word = |i: usize| {
            let mut w = [0; 8];
            w.copy_from_slice(&bytes[8 + 8 * i..16 + 8 * i]);
            u64::from_le_bytes(w)
        };
        let fields = [word(0), word(1), word(2), word(3), word(4)];
        (word(5) == check(&fields)).then_some(Noted {
            file_id: fields[0],
            appends: fields[1],
            first_seq: fields[2],
            last_seq: fields[3],
            at_ms: fields[4],
        })
    }
}

/// FNV-1a over the fields: a torn or stale write is refused, not believed.
fn check(fields: &[u64; 5]) -> u64 {
    fields
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// The note's file, open for the writer thread.
#[derive(Debug)]
pub(super) struct Note {
    file: File,
    /// The note as the last process left it.
    found: Option<Noted>,
    /// The identity of the file the spool opened.
    file_id: u64,
}

impl Note {
    /// Opens (or creates) the note in `dir` for the redb file `db`, reading what it said first,
    /// and gives `db` its identity if it has none (a durable commit, before any append). A file
    /// without one, where the note names commits, did not make them: emptied or replaced (see
    /// `emptied`), which is told before the identity is given, so that a start cut off after it
    /// cannot leave the file taken for the spool's own.
    pub(super) fn open(dir: &Path, db: &Database) -> Result<Note, String> {
        let path = dir.join(NOTE);
        // Reading a FIFO there waited for a writer that never came: start-up hung, never ready
        // (found by a review). Any other kind is no note either.
        if std::fs::metadata(&path).is_ok_and(|m| !m.is_file()) {
            return Err(format!("{} is not a regular file", path.display()));
        }
        // A note there that cannot be read (a wrong owner, an I/O error) is no note at this start,
        // but the file is not given its identity without the check: the next start, the note
        // readable, would take an emptied file for its own and never tell the loss (found by a
        // review).
        let found = match std::fs::read(&path) {
            Ok(bytes) => Noted::decode(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let given = |e: redb::Error| format!("cannot give the spool file its identity: {e}");
        let file_id = match existing_identity(db).map_err(given)? {
            Some(id) => id,
            None => {
                if let Some(noted) = found.filter(|n| n.appends > 0) {
                    super::emptied::tell(dir, &noted);
                }
                give_identity(db).map_err(given)?
            }
        };
        // Not emptied here: a start cut off before its check (a scan of a large spool takes a
        // while) must leave the note for the next. `settle` cuts what follows a note.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(Note {
            file,
            found,
            file_id,
        })
    }

    /// The append the note names that the file, counting `appends`, lacks: only a note of this
    /// same file is compared.
    pub(super) fn lost(&self, appends: u64) -> Option<Noted> {
        self.found
            .filter(|n| n.file_id == self.file_id && appends < n.appends)
    }

    /// Notes what the file holds at the open, once it was compared with the note found: its count
    /// of appends, so the next start tells nothing twice; and cuts the file to one note, so that
    /// a longer one (garbage) does not outlive every note written over its start.
    pub(super) fn settle(&self, appends: u64, next_seq: u64) {
        self.record(appends, next_seq..=next_seq);
        if let Err(e) = self.file.set_len(LEN as u64) {
            tracing::warn!(error = %e, "cannot cut the note of the spool's last commit to one");
        }
    }

    /// Notes an append commit the file holds now (the `appends`-th, of the records `seqs`). A
    /// failed write only weakens the check at the next start: logged, never an append's failure.
    pub(super) fn record(&self, appends: u64, seqs: std::ops::RangeInclusive<u64>) {
        let noted = Noted {
            file_id: self.file_id,
            appends,
            first_seq: *seqs.start(),
            last_seq: *seqs.end(),
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        if let Err(e) = self.file.write_all_at(&noted.encode(), 0) {
            tracing::warn!(error = %e, "cannot note the spool's last commit beside it");
        }
    }
}

/// `db`'s identity: a random number written durably the first time the bridge opens it.
pub(super) fn file_id(db: &Database) -> Result<u64, redb::Error> {
    match existing_identity(db)? {
        Some(id) => Ok(id),
        None => give_identity(db),
    }
}

/// `db`'s identity, if it was given one.
fn existing_identity(db: &Database) -> Result<Option<u64>, redb::Error> {
    let txn = db.begin_read()?;
    match txn.open_table(META) {
        Ok(meta) => Ok(meta.get(FILE_ID)?.map(|id| id.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Gives `db` a new identity, durably.
fn give_identity(db: &Database) -> Result<u64, redb::Error> {
    let id = uuid::Uuid::new_v4().as_u64_pair().0;
    let txn = db.begin_write()?;
    txn.open_table(META)?.insert(FILE_ID, id)?;
    txn.commit()?;
    Ok(id)
}

/// Leaves a report in `dir` of the records of the last commit, which the spool's file (counting
/// `appends`) lacks.
pub(super) fn report_lost(dir: &Path, lost: &Noted, appends: u64) -> std::io::Result<PathBuf> {
    super::recover::leave_report(dir, ".lost-commit", |now| {
        format!(
            "At {now} (Unix seconds) the spool file lacked its last commit: {} records \
             (sequence numbers {}..={}), committed at {} ms since the Unix epoch and answered \
             200, are not in it (its count of commits is {appends}, the commit made it {}). The \
             file's header was damaged after the commit was synced, and the records will not \
             reach Kafka: find them on Qikchat's side around that time. Delete this file to \
             clear the alert.\n",
            lost.records(),
            lost.first_seq,
            lost.last_seq,
            lost.at_ms,
            lost.appends
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_reads_back_and_a_damaged_one_is_not_believed() {
        let noted = Noted {
            file_id: 0x1234_5678_9abc_def0,
            appends: 7,
            first_seq: 100,
            last_seq: 131,
            at_ms: 1_700_000_000_000,
        };
        let bytes = noted.encode();
        assert_eq!(Noted::decode(&bytes), Some(noted));
        for i in 0..LEN {
            let mut damaged = bytes;
            damaged[i] ^= 0x10;
            assert_eq!(Noted::decode(&damaged), None, "byte {i}");
        }
        assert_eq!(Noted::decode(&bytes[..LEN - 1]), None);
        assert_eq!(Noted::decode(&[]), None);
    }

    fn database(dir: &Path) -> Database {
        Database::create(dir.join("spool.redb")).expect("create")
    }

    #[test]
    fn a_file_that_counts_fewer_appends_than_its_note_lost_the_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(dir.path());
        let note = Note::open(dir.path(), &db).expect("open");
        note.record(3, 10..=12);
        drop(note);
        let note = Note::open(dir.path(), &db).expect("reopen");
        let lost = note.lost(2).expect("lost");
        assert_eq!((lost.appends, lost.first_seq, lost.last_seq), (3, 10, 12));
        assert_eq!(note.lost(3), None);
        assert_eq!(note.lost(4), None, "a note not written is no loss");
    }

    /// A note of another file (the one before it moved aside, or deleted) says nothing of this
    /// one, which counts its appends from 0 again.
    #[test]
    fn a_note_of_another_file_is_not_compared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(dir.path());
        Note::open(dir.path(), &db).expect("open").record(5, 0..=4);
        drop(db);
        std::fs::remove_file(dir.path().join("spool.redb")).expect("remove");
        let db = database(dir.path());
        let note = Note::open(dir.path(), &db).expect("reopen");
        assert!(note.found.is_some());
        assert_eq!(note.lost(0), None);
    }

    /// A start cut off between reading the note and comparing it (a kill during a long scan)
    /// leaves the note for the next start.
    #[test]
    fn an_open_cut_off_before_its_check_leaves_the_note() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(dir.path());
        Note::open(dir.path(), &db)
            .expect("open")
            .record(3, 10..=12);
        drop(Note::open(dir.path(), &db).expect("an open cut off"));
        let note = Note::open(dir.path(), &db).expect("the next");
        assert!(note.lost(2).is_some());
    }

    /// A group commit lost whole is reported with all its records, not as one.
    #[test]
    fn the_report_of_a_lost_commit_counts_every_record_of_its_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lost = Noted {
            file_id: 1,
            appends: 3,
            first_seq: 10,
            last_seq: 12,
            at_ms: 1_700_000_000_000,
        };
        let report = report_lost(dir.path(), &lost, 2).expect("report");
        let text = std::fs::read_to_string(report).expect("read");
        assert!(
            text.contains("3 records (sequence numbers 10..=12)"),
            "{text}"
        );
    }

    /// A note longer than one (garbage) is cut at the open, so the notes written after it
    /// read back.
    #[test]
    fn a_longer_note_does_not_outlive_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(dir.path());
        std::fs::write(dir.path().join(NOTE), [7u8; 100]).expect("garbage");
        let note = Note::open(dir.path(), &db).expect("open");
        assert_eq!(note.found, None);
        note.settle(0, 0);
        note.record(1, 0..=0);
        drop(note);
        let note = Note::open(dir.path(), &db).expect("reopen");
        assert!(note.lost(0).is_some());
    }
}
