//! A spool file new to the bridge where the note of the spool's last commit names commits: the
//! file that made them was emptied (or replaced), and any records it still held are gone.
//!
//! An empty file at the spool's path itself is set aside as damaged (see `recover::judged_open`):
//! the bridge only ever puts a finished file there, given its identity first. Behind a link at
//! the path (how an operator puts the spool on another volume) an empty file is taken for a new
//! one, as a first start through the link needs; setting it aside would replace the link with a
//! file on the wrong volume. So the note decides, once the file is open: a file without its
//! identity, where the note names commits, did not make them. Told before the file is given its
//! identity, so told once (twice only if the start is cut off between the two).

use std::path::{Path, PathBuf};

use super::commits::Noted;
use super::recover::leave_report;

/// Tells of the commits `noted` names, which the spool file in `dir`, new to the bridge, did not
/// make: logged at `error` and left as a file that `spool_files_set_aside` counts. Blocking.
pub(super) fn tell(dir: &Path, noted: &Noted) {
    let path = dir.join(super::FILE);
    match report(dir, &path, noted) {
        Ok(report) => {
            tracing::error!(file = %path.display(), commits = noted.appends, last_commit_at_ms = noted.at_ms, report = %report.display(), "the spool file is new, where the spool had committed records (emptied, or replaced): any it still held were answered 200 and will not reach Kafka")
        }
        Err(e) => {
            tracing::error!(file = %path.display(), commits = noted.appends, last_commit_at_ms = noted.at_ms, error = %e, "the spool file is new, where the spool had committed records (emptied, or replaced): any it still held were answered 200 and will not reach Kafka (and the report of it could not be written)")
        }
    }
}

fn report(dir: &Path, path: &Path, noted: &Noted) -> std::io::Result<PathBuf> {
    // Durable before the file is given its identity (also durable), which ends the telling.
    leave_report(dir, ".emptied", |now| {
        format!(
            "At {now} (Unix seconds) {} was a new file (empty, or one the bridge never opened), \
             where spool.last-append says the spool had made {} commits, the last (sequence \
             numbers {}..={}) at {} ms since the Unix epoch. Records still spooled then were \
             answered 200 and will not reach Kafka: find them on Qikchat's side since that time. \
             If the file was put there on purpose, as a new spool file, nothing was lost (remove \
             spool.last-append with the old file next time). Delete this file to clear the \
             alert.\n",
            path.display(),
            noted.appends,
            noted.first_seq,
            noted.last_seq,
            noted.at_ms,
        )
    })
}
