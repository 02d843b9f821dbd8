//! The spool's directory: created private to the bridge's user, its new entries made durable, and
//! held by one process at a time.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::SpoolError;

/// Held beside the redb file for as long as the spool is open.
pub(super) const LOCK_FILE: &str = "spool.lock";

/// Creates `dir` (and any missing parent) readable by the bridge's user alone, since the spool
/// holds whole webhooks (messages, phone numbers). Returns the directories whose entries that
/// changed (see [`changed_by_creating`]).
pub(super) fn create(dir: &Path) -> Result<Vec<PathBuf>, SpoolError> {
    let changed = changed_by_creating(dir, Path::exists);
    if changed.is_empty() {
        return Ok(changed);
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| SpoolError::Io(format!("cannot create {}: {e}", dir.display())))?;
    Ok(changed)
}

/// The directories whose entries creating `dir` changes, which must be synced for the new ones
/// to survive a power loss: the nearest parent that exists (`.` for a relative path's first
/// directory) and each directory created but `dir` itself (synced with the file it names).
/// None when `dir` exists.
fn changed_by_creating(dir: &Path, exists: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.as_os_str().is_empty() && !exists(at) {
        missing.push(at);
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    if missing.is_empty() {
        return Vec::new();
    }
    let existing = if at.as_os_str().is_empty() {
        Path::new(".")
    } else {
        at
    };
    std::iter::once(existing)
        .chain(missing.into_iter().skip(1).rev())
        .map(Path::to_path_buf)
        .collect()
}

/// The first of `dir`'s nearest existing directory (`.` for a relative path none of which
/// exists) and the `files` in `dir` that exist, that `access` refuses (its flag: a file), and
/// why: start-up would fail to create, lock or open the spool there. A volume mounted read-only
/// (a pod's `readOnlyRootFilesystem` without a volume at the spool) refuses even root. When all
/// of `files` exist, `dir` itself is not asked: opening them needs no write to it (only setting
/// a damaged file aside would, which then fails and says so).
pub(super) fn unwritable(
    dir: &Path,
    files: &[&str],
    access: impl Fn(&Path, bool) -> std::io::Result<()>,
) -> Option<(PathBuf, std::io::Error)> {
    if let Some(refused) = dangling(dir, files) {
        return Some(refused);
    }
    let existing = nearest_existing(dir);
    let present: Vec<PathBuf> = files
        .iter()
        .map(|f| dir.join(f))
        .filter(|f| f.exists())
        .collect();
    if present.len() < files.len() {
        if let Err(e) = access(existing, false) {
            return Some((existing.to_path_buf(), e));
        }
    }
    present
        .into_iter()
        .find_map(|file| access(&file, true).err().map(|e| (file, e)))
}

/// The first symbolic link to nothing among `dir`, the parents start-up would make, and the
/// `files` in `dir`, with what it points to; or one that cannot be followed (a loop, a directory
/// on the way this process may not search). Such a link does not exist to the checks that
/// follow, so they passed it, while start-up failed with exit code 1 ("File exists" making the
/// directory, "No such file or directory" opening a file through it; found by a review), or
/// made a new file where it leads, which may be a volume not mounted yet: refused whatever its
/// target's directory, as start-up refuses it too.
fn dangling(dir: &Path, files: &[&str]) -> Option<(PathBuf, std::io::Error)> {
    let made = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists());
    made.map(Path::to_path_buf)
        .chain(files.iter().map(|f| dir.join(f)))
        .find_map(|path| {
            let target = std::fs::read_link(&path).ok()?;
            let e = std::fs::metadata(&path).err()?;
            let why = if e.kind() == ErrorKind::NotFound {
                format!(
                    "it is a symbolic link to {}, which leads to nothing that exists",
                    target.display()
                )
            } else {
                format!(
                    "it is a symbolic link to {}, which cannot be reached: {e}",
                    target.display()
                )
            };
            Some((path, std::io::Error::other(why)))
        })
}

/// `dir`, or the nearest of its parents that exists, which stands for it before start-up makes the
/// rest: `.` for a relative path none of whose parents exists.
pub(crate) fn nearest_existing(dir: &Path) -> &Path {
    dir.ancestors()
        .find(|a| !a.as_os_str().is_empty() && a.exists())
        .unwrap_or(Path::new("."))
}

/// Takes the spool's lock, which the returned file holds until it is closed. redb locks its own
/// file too, but not the moving aside of a corrupt one (a second process could move the first
/// one's new file aside, with the records it answered 200 for), and on a filesystem without
/// locks it opens the file unlocked: two writers would corrupt it.
pub(super) fn lock(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| SpoolError::Io(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(SpoolError::Io(format!(
            "another process holds the spool in {} (its {LOCK_FILE} is locked): one bridge per \
             spool directory",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(SpoolError::Io(format!(
            "cannot lock {}: {e}; the spool needs a filesystem with file locks (a local volume)",
            path.display()
        ))),
    }
}

/// Makes the spool file readable by the bridge's user alone, whoever created it: a file made
/// before this rule, or restored, keeps no wider access. Not fatal: a file another user owns
/// cannot be changed, and the bridge can still write it.
pub(super) fn make_private(file: &Path) {
    let private = std::fs::Permissions::from_mode(0o600);
    match std::fs::set_permissions(file, private) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cannot make the spool file private to the bridge's user");
        }
    }
}

/// Warns when the volume under `dir` cannot hold `max_bytes` of records: it would fill before
/// the spool's limit, and a full volume stops the bridge at each write until it is grown, where
/// a full spool only answers 503. Not refused: a volume can be grown while the bridge runs.
/// Blocking.
pub(super) fn warn_if_volume_too_small(dir: &Path, max_bytes: u64) {
    if let Some(volume) = too_small_volume(dir, max_bytes) {
        tracing::warn!(
            dir = %dir.display(),
            max_bytes,
            volume_bytes = volume,
            "{VOLUME_TOO_SMALL}"
        );
    }
}

const VOLUME_TOO_SMALL: &str = "the spool's volume is too small for --spool-max-bytes (its file \
     takes about a quarter more than its records): it would fill first, and a full volume stops \
     the bridge at each write until it is grown; set --spool-max-bytes to at most 65% of the \
     volume";

/// What [`warn_if_volume_too_small`] would say of `dir`, before it exists (its nearest existing
/// parent stands for it), for `--check-config`. Blocking.
pub(super) fn volume_warning(dir: &Path, max_bytes: u64) -> Option<String> {
    let volume = too_small_volume(nearest_existing(dir), max_bytes)?;
    Some(format!(
        "{VOLUME_TOO_SMALL} ({max_bytes} bytes of records on a volume of {volume} bytes)"
    ))
}

/// The size of the volume under `dir`, when `max_bytes` of records would not fit in it.
fn too_small_volume(dir: &Path, max_bytes: u64) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    let volume = stat.f_blocks.saturating_mul(stat.f_frsize);
    too_small(max_bytes, volume).then_some(volume)
}

/// Whether `max_bytes` of records, in a file that takes about a quarter more (redb's pages and
/// free space), would not fit in `volume` bytes. An unknown size (0) fits.
fn too_small(max_bytes: u64, volume: u64) -> bool {
    volume > 0 && u128::from(max_bytes) * 5 / 4 > u128::from(volume)
}

#[cfg(test)]
mod tests;
