//! Opening the spool file at start-up: a file redb cannot read is moved aside, and what a previous
//! process left is counted so appends, limits and key ordering continue where it stopped.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{
    Builder, Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata,
};

use super::{fresh, io, Counts, SpoolError, SpooledRecord, FILE, RECORDS, UNREADABLE};

/// redb's page cache. Its default, 1 GiB, also keeps every page written: a spool growing
/// through a Kafka outage took the process past a 512 MiB memory limit at ~400 MiB of records,
/// and the start-up scan of that file did again. The spool is written once and read once in
/// order, so a small cache costs little.
pub(super) const CACHE_BYTES: usize = 16 << 20;

/// With redb's integrity check: a file it closed cleanly is otherwise trusted page by page, and
/// one damaged afterwards (a disk that lost acknowledged writes, a bad restore) made the open or
/// the recovery scan panic at every start instead of being moved aside. The check reads the whole
/// file once at start-up, which the readiness probe waits for anyway.
pub(super) fn create(path: &Path) -> Result<Database, DatabaseError> {
    Builder::new()
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(true)
        .create(path)
}

/// Opens (or creates) the redb file at `path` in `dir`, and makes the directory's entries
/// durable, and those of `created` (the directories made for it, and the one that names the
/// first: see `dir::create`): redb fsyncs the file's contents, never the directory that names
/// it, so records answered 200 in a new file (the first start, or after a corrupt one was moved
/// aside) could otherwise vanish with their file in a power loss.
pub(super) fn open_or_move_aside(
    dir: &Path,
    path: &Path,
    created: &[std::path::PathBuf],
) -> Result<Database, SpoolError> {
    let db = open_or_move_aside_unsynced(dir, path)?;
    sync_dir(dir);
    for parent in created {
        sync_dir(parent);
    }
    Ok(db)
}

/// Some filesystems (FUSE, CIFS) refuse to sync a directory: that costs the new file's entry
/// its durability there, which is no reason to refuse to start.
fn sync_dir(dir: &Path) {
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot sync the spool's directory");
    }
}

fn open_or_move_aside_unsynced(dir: &Path, path: &Path) -> Result<Database, SpoolError> {
    if let Some(db) = fresh::settle_unfinished(dir, path)? {
        return Ok(db);
    }
    if std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return fresh::make_new(dir, path);
    }
    match judged_open(path) {
        Ok(db) => Ok(db),
        Err(Judged::Damaged(reason)) => move_aside(dir, path, reason),
        Err(Judged::Failed(e)) => Err(cannot_open(path, e)),
    }
}

/// Why an existing spool file that is not damaged cannot be used: start-up stops on it.
pub(super) fn cannot_open(path: &Path, e: DatabaseError) -> SpoolError {
    SpoolError::Io(format!("cannot open {}: {e}", path.display()))
}

/// Why the open of an existing spool file gave no database.
pub(super) enum Judged {
    /// Damaged, to be moved aside: why.
    Damaged(String),
    /// Any other failure (another process holds the lock, an I/O fault), which stops start-up,
    /// since a second writer or a fresh file would strand the records that are there.
    Failed(DatabaseError),
}

/// Opens the spool file at `path`, or says why it is damaged: made under another name and moved
/// here whole (see `fresh`), a file at the path was finished, so one of 0 bytes (which redb would
/// take for a new one) lost what it held, to a disk that dropped writes it had acknowledged or a
/// restore of an empty copy; and one redb finds corrupt is damaged too. A link at the path is
/// not followed: an empty file made for the spool on another volume (a link to nothing is
/// refused) is its first start's, which would otherwise be set aside and the link replaced.
pub(super) fn judged_open(path: &Path) -> Result<Database, Judged> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
        return Err(Judged::Damaged("the file is empty".to_string()));
    }
    create(path).map_err(|e| {
        if is_unreadable(&e) {
            Judged::Damaged(e.to_string())
        } else {
            Judged::Failed(e)
        }
    })
}

/// Moves the file at `file` aside for `reason` under a name `files_set_aside` counts, kept for
/// inspection.
pub(super) fn set_aside(dir: &Path, file: &Path, reason: &str) -> Result<(), SpoolError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = free_name(dir, now, "").map_err(io)?;
    tracing::error!(%reason, file = %file.display(), moved_to = %aside.display(), "spool file set aside; its records were answered 200 and are not replayed");
    std::fs::rename(file, &aside).map_err(io)?;
    // It holds whole webhooks too.
    super::dir::make_private(&aside);
    Ok(())
}

/// Moves the file at `path` aside for `reason`, kept for inspection, and starts a new one.
fn move_aside(dir: &Path, path: &Path, reason: String) -> Result<Database, SpoolError> {
    set_aside(dir, path, &reason)?;
    fresh::make_new(dir, path)
}

/// A name for a file moved aside at `now` (Unix seconds), ending in `suffix`, that no earlier one
/// has: a rename replaces its target, and a second file set aside in the same second (a restart
/// that found the new file damaged too) would take the first, records answered 200 with it. The
/// spool's directory lock keeps other processes from taking the name meanwhile.
pub(super) fn free_name(dir: &Path, now: u64, suffix: &str) -> std::io::Result<std::path::PathBuf> {
    (0..1000)
        .map(|n| match n {
            0 => dir.join(format!("{FILE}.unreadable-{now}{suffix}")),
            n => dir.join(format!("{FILE}.unreadable-{now}.{n}{suffix}")),
        })
        .find(|aside| std::fs::symlink_metadata(aside).is_err())
        .ok_or_else(|| std::io::Error::other("1000 spool files were set aside in this second"))
}

/// Leaves a report in `dir` of records the spool lost, named as files moved aside are (ending in
/// `suffix`) so that `spool_files_set_aside` counts it and the alert on it fires until an operator
/// removes it. `text` is given the time (Unix seconds). Synced, and its directory entry where the
/// filesystem allows: a report the start relies on (it ends the telling) must outlive a power loss.
pub(super) fn leave_report(
    dir: &Path,
    suffix: &str,
    text: impl FnOnce(u64) -> String,
) -> std::io::Result<std::path::PathBuf> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let report = free_name(dir, now, suffix)?;
    let mut file = std::fs::File::create(&report)?;
    std::io::Write::write_all(&mut file, text(now).as_bytes())?;
    file.sync_all()?;
    sync_dir(dir);
    Ok(report)
}

/// Spool files in `dir` moved aside as unreadable, at this start or an earlier one: their records
/// were answered 200 and will not reach Kafka.
pub(super) fn files_set_aside(dir: &Path) -> std::io::Result<u64> {
    let prefix = format!("{FILE}.unreadable-");
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .count() as u64)
}

/// What the spool held when it was opened.
#[derive(Debug, Default)]
pub(super) struct Contents {
    pub bytes: u64,
    pub records: u64,
    /// The sequence number the next append gets.
    pub next_seq: u64,
    /// Records per key and per topic.
    pub counts: Counts,
    /// Entries in the `unreadable` table.
    pub unreadable: u64,
    /// The append commits the file counts (`None`: a new file, or one older than the count).
    pub appends: Option<u64>,
}

/// Moves the entries set aside as undecodable that this version decodes back into `records`,
/// under their own sequence numbers: set aside by a version that could not read them, they replay
/// once a version that reads them runs again (after later records of their conversations that
/// went to Kafka meanwhile). Returns how many. Writes only when there is one.
pub(super) fn restore_decodable(db: &Database) -> Result<u64, SpoolError> {
    let decodable: Vec<u64> = {
        let txn = db.begin_read().map_err(io)?;
        let aside = match txn.open_table(UNREADABLE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(io(e)),
        };
        let mut found = Vec::new();
        for entry in aside.iter().map_err(io)? {
            let (seq, value) = entry.map_err(io)?;
            if postcard::from_bytes::<SpooledRecord>(value.value()).is_ok() {
                found.push(seq.value());
            }
        }
        found
    };
    if decodable.is_empty() {
        return Ok(0);
    }
    let txn = db.begin_write().map_err(io)?;
    let mut moved = 0u64;
    {
        let mut aside = txn.open_table(UNREADABLE).map_err(io)?;
        let mut records = txn.open_table(RECORDS).map_err(io)?;
        for seq in &decodable {
            // A file of an early version may hold a live record under the same number (its
            // numbering restarted below the entries set aside): that one stays, this one aside.
            if records.get(*seq).map_err(io)?.is_some() {
                tracing::error!(
                    seq,
                    "a spooled record set aside shares its number with a waiting one; left aside"
                );
                continue;
            }
            if let Some(raw) = aside.remove(*seq).map_err(io)? {
                records.insert(*seq, raw.value()).map_err(io)?;
                moved += 1;
            }
        }
    }
    txn.commit().map_err(io)?;
    if moved > 0 {
        tracing::warn!(
            records = moved,
            "spooled records set aside as undecodable by another version are readable again; replaying them"
        );
    }
    Ok(moved)
}

pub(super) fn scan(db: &Database) -> Result<Contents, SpoolError> {
    let mut found = Contents::default();
    let txn = db.begin_read().map_err(io)?;
    // Numbering goes on after the entries set aside too: restarted at 0 with the records table
    // empty, a later entry set aside under a number already there would replace the one kept.
    match txn.open_table(UNREADABLE) {
        Ok(aside) => {
            if let Some((seq, _)) = aside.last().map_err(io)? {
                found.next_seq = seq.value() + 1;
            }
            found.unreadable = aside.len().map_err(io)?;
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(io(e)),
    }
    match txn.open_table(super::commits::META) {
        Ok(meta) => {
            found.appends = meta
                .get(super::commits::APPENDS)
                .map_err(io)?
                .map(|v| v.value())
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(io(e)),
    }
    let table = match txn.open_table(RECORDS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(found),
        Err(e) => return Err(io(e)),
    };
    for entry in table.iter().map_err(io)? {
        let (seq, value) = entry.map_err(io)?;
        found.bytes += value.value().len() as u64;
        found.records += 1;
        found.next_seq = found.next_seq.max(seq.value() + 1);
        if let Ok(r) = postcard::from_bytes::<SpooledRecord>(value.value()) {
            found.counts.add(&r.topic, r.key.as_deref());
        }
    }
    Ok(found)
}

/// True when the file is corrupt or not a redb file at all (as opposed to locked or unreachable):
/// redb reports those as `Corrupted`, as an `InvalidData` I/O error on its header, or, for a file
/// cut short (a bad restore or copy), as an `UnexpectedEof` reading past its end.
fn is_unreadable(e: &redb::DatabaseError) -> bool {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => true,
        redb::DatabaseError::Storage(redb::StorageError::Io(e)) => matches!(
            e.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}
