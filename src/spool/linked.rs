//! Whether the spool's open file is still the one at its path. Removed (the directory deleted,
//! the volume cleaned) or replaced, it still takes writes and fsyncs, but the next start opens
//! what is at the path, not it: a 200 for a record spooled there would be lost at the restart.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Holdings;

/// How often the writer thread looks while no append comes, so a spool removed while Kafka is
/// up is noticed before an outage needs it.
pub(super) const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The file redb opened, by device and inode.
#[derive(Debug, Clone)]
pub(crate) struct FileId {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The file at `path` now. Blocking.
    pub(super) fn of(path: &Path) -> std::io::Result<FileId> {
        let meta = std::fs::metadata(path)?;
        Ok(FileId {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Why the path no longer leads to this file, if it does not. An error other than "not
    /// found" (a permission changed, a transient I/O error) proves nothing either way. Blocking.
    fn gone(&self) -> Option<String> {
        let at = match FileId::of(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "nothing",
            Err(_) => return None,
            Ok(now) if (now.dev, now.ino) == (self.dev, self.ino) => return None,
            Ok(_) => "another file",
        };
        Some(format!(
            "the spool's file {} was removed or replaced while the bridge ran ({at} is there now), \
             so what is written to it would not be found by the next start",
            self.path.display()
        ))
    }
}

impl Holdings {
    /// Whether the spool's file is detached from its path, looking again if it was not yet.
    /// Once it is, appends are refused, and what it holds is replayed from the open file; the
    /// spool then counts as failed once it is empty, so the bridge stops and its restart makes a
    /// new one. Blocking (a `stat`): called by the writer thread.
    pub(super) fn detached_now(&self) -> Option<String> {
        if let Some(reason) = self.detached.get() {
            return Some(reason.clone());
        }
        let reason = self.file.as_ref()?.gone()?;
        if self.detached.set(reason.clone()).is_ok() {
            tracing::error!(
                %reason,
                records = self.records(),
                "no more records are spooled (503 instead); those it holds are replayed while the \
                 bridge runs, then it stops so that its restart makes a new spool"
            );
            self.stop_if_drained();
        }
        Some(reason)
    }

    /// A detached spool with nothing left to replay is done: failed, so the bridge restarts.
    pub(super) fn stop_if_drained(&self) {
        if let Some(reason) = self.detached.get() {
            if self.records() == 0 {
                self.fail(format!("{reason}; it holds no record to replay"));
            }
        }
    }
}

#[cfg(test)]
mod tests;
