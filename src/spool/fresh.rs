//! A new spool file: made whole under another name before it takes the spool file's path, and
//! what a start cut off while making one left under that name.

use std::path::{Path, PathBuf};

use redb::{Builder, Database, ReadableDatabase, ReadableTableMetadata};

use super::recover::{cannot_open, create, judged_open, set_aside, Judged, CACHE_BYTES};
use super::{commits, SpoolError, RECORDS, UNREADABLE};

/// A new spool file while redb makes it, beside `FILE`.
const UNFINISHED: &str = "spool.redb.new";

/// Deals with a new file a previous start left under its first name (see [`make_new`]). One that
/// holds nothing was cut off while it was made: removed. Records are appended only once the file
/// is at the path and the directory synced, but where that sync fails (some filesystems refuse
/// it) a power loss can undo the rename of a file that holds records answered 200, so any other
/// is kept: put back at the path when none is there, or when the file there is the damaged one a
/// move aside had replaced with it (both renames undone); set aside, and counted, beside a
/// readable one, which is then the spool's file, opened once. One that cannot be opened now for
/// another reason (held by another program, an I/O fault) stops the start with both kept.
pub(super) fn settle_unfinished(dir: &Path, path: &Path) -> Result<Option<Database>, SpoolError> {
    let unfinished = dir.join(UNFINISHED);
    if !exists(&unfinished, |p| std::fs::symlink_metadata(p))? {
        return Ok(None);
    }
    let path_taken = exists(path, |p| std::fs::symlink_metadata(p))?;
    if holds_nothing(&unfinished) {
        return match std::fs::remove_file(&unfinished) {
            Ok(()) => {
                tracing::info!(file = %unfinished.display(), "removed a spool file a previous start did not finish making; it held nothing");
                Ok(None)
            }
            // In the way only of a new file: the one at the path is opened all the same.
            Err(e) if path_taken => {
                tracing::warn!(file = %unfinished.display(), error = %e, "cannot remove a spool file a previous start did not finish making");
                Ok(None)
            }
            Err(e) => Err(SpoolError::Io(format!(
                "cannot remove {}: {e}",
                unfinished.display()
            ))),
        };
    }
    if path_taken {
        // A link that leads nowhere may name a file on a volume not mounted yet. Putting the
        // leftover back in its place would strand that file, uncounted; setting the leftover
        // aside for a new, empty file made where the link points would strand the leftover's
        // records. Which holds the records is the operator's to say.
        if !exists(path, |p| std::fs::metadata(p))? {
            return Err(SpoolError::Io(format!(
                "{} is a link that leads nowhere, and {} holds records: restore what the link \
                 names, or remove the link so that file is put back in its place",
                path.display(),
                unfinished.display()
            )));
        }
        match judged_open(path) {
            Err(Judged::Damaged(reason)) => set_aside(dir, path, &reason)?,
            Err(Judged::Failed(e)) => return Err(cannot_open(path, e)),
            Ok(db) => {
                set_aside(
                    dir,
                    &unfinished,
                    "a spool file was found under the name it was made with, beside another",
                )?;
                return Ok(Some(db));
            }
        }
    }
    tracing::warn!(file = %unfinished.display(), "a spool file was found under the name it was made with, its rename undone (by a power loss, where the directory could not be synced); putting it back");
    put_in_place(&unfinished, path)?;
    Ok(None)
}

/// A directory under the name a new file is made with, when no file is at the path, and why:
/// start-up cannot remove it (see [`settle_unfinished`]) to make the spool's file, and failed
/// with exit code 1 where `--check-config` passed. Blocking.
pub(super) fn in_the_way(dir: &Path, path: &Path) -> Option<(PathBuf, std::io::Error)> {
    let unfinished = dir.join(UNFINISHED);
    let a_directory = std::fs::symlink_metadata(&unfinished).is_ok_and(|m| m.is_dir());
    let none_at_path =
        std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
    (a_directory && none_at_path).then(|| {
        let why = "it is a directory, where start-up makes the spool's new file";
        (unfinished, std::io::Error::other(why))
    })
}

/// Renames a new file from the name it was made with to the spool's path.
fn put_in_place(unfinished: &Path, path: &Path) -> Result<(), SpoolError> {
    std::fs::rename(unfinished, path).map_err(|e| {
        SpoolError::Io(format!(
            "cannot rename {} to {}: {e}",
            unfinished.display(),
            path.display()
        ))
    })
}

/// Whether anything is at `path`, as `look` sees it; an error other than its absence says
/// nothing either way.
fn exists(
    path: &Path,
    look: fn(&Path) -> std::io::Result<std::fs::Metadata>,
) -> Result<bool, SpoolError> {
    match look(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SpoolError::Io(format!(
            "cannot look up {}: {e}",
            path.display()
        ))),
    }
}

/// redb's magic number, the last part of a new file it writes: a file without it was cut off
/// while redb made it.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Whether a file left under the name it was made with holds nothing: not a file, or redb had not finished it
/// (it lacks redb's magic number: empty, or grown and zero-filled), or redb opens it and finds no
/// entry, kept or set aside. Anything else (entries, a file redb refuses or cannot open now, one
/// that cannot be read) may hold records answered 200.
fn holds_nothing(file: &Path) -> bool {
    use std::io::Read;
    // Not one the bridge made (a directory, say): nothing of the spool's, and never put back.
    if std::fs::symlink_metadata(file).is_ok_and(|m| !m.is_file()) {
        return true;
    }
    let mut head = Vec::with_capacity(REDB_MAGIC.len());
    match std::fs::File::open(file)
        .and_then(|f| f.take(REDB_MAGIC.len() as u64).read_to_end(&mut head))
    {
        Ok(_) if head != REDB_MAGIC => return true,
        Ok(_) => {}
        Err(_) => return false,
    }
    let Ok(db) = Builder::new()
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(true)
        .open(file)
    else {
        return false;
    };
    let Ok(txn) = db.begin_read() else {
        return false;
    };
    [RECORDS, UNREADABLE]
        .into_iter()
        .all(|table| match txn.open_table(table) {
            Ok(t) => t.len().is_ok_and(|n| n == 0),
            Err(redb::TableError::TableDoesNotExist(_)) => true,
            Err(_) => false,
        })
}

/// Makes a new spool file at `path`: under another name until redb has written it whole and it
/// has its identity (see `commits`), then renamed into place. A crash or a full volume while
/// redb writes a new file leaves it empty or without redb's header, which at the path would look
/// like a file that lost its records and be set aside with an alarm at every start; under the
/// other name it is removed at the next.
pub(super) fn make_new(dir: &Path, path: &Path) -> Result<Database, SpoolError> {
    let unfinished = dir.join(UNFINISHED);
    let db = create(&unfinished)
        .map_err(|e| SpoolError::Io(format!("cannot create {}: {e}", unfinished.display())))?;
    commits::file_id(&db).map_err(|e| {
        SpoolError::Io(format!(
            "cannot give {} its identity: {e}",
            unfinished.display()
        ))
    })?;
    put_in_place(&unfinished, path)?;
    Ok(db)
}
