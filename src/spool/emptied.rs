//! An empty file behind a link at the spool's path, told from a new one by the note of the
//! spool's last commit: the first is a spool file that lost its records, the second is how an
//! operator puts the spool on another volume.
//!
//! A file at the path itself is set aside when empty (see `recover::judged_open`): the bridge
//! only ever puts a finished file there. Behind a link the bridge cannot tell who made the file,
//! and setting it aside would replace the link with a file on the wrong volume; redb takes it for
//! a new file. So the note decides: one that names a commit (of any file, since the empty file
//! has no identity to compare) says the spool here held records, and the empty file is reported
//! the way a lost commit is, with the link and file left in place.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::commits::{self, Noted};
use super::recover::free_name;

/// Reports an empty file behind a link at `path` where the note in `dir` names a commit: logged
/// at `error` and left as a file that `spool_files_set_aside` counts. Blocking.
pub(super) fn report_if_emptied(dir: &Path, path: &Path) {
    let linked_and_empty = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink())
        && std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0);
    if !linked_and_empty {
        return;
    }
    let Some(noted) = commits::found_in(dir).filter(|n| n.appends > 0) else {
        return;
    };
    // The note stays until a start settles it: a start that reported and then failed (the file
    // held by another program, a full volume) or was cut off must not report the loss again at
    // every retry.
    if reported_already(dir, &noted) {
        tracing::error!(file = %path.display(), commits = noted.appends, last_commit_at_ms = noted.at_ms, "the spool file behind the link is empty, where the spool had committed records; reported by an earlier start");
        return;
    }
    match report(dir, path, &noted) {
        Ok(report) => {
            tracing::error!(file = %path.display(), commits = noted.appends, last_commit_at_ms = noted.at_ms, report = %report.display(), "the spool file behind the link is empty, where the spool had committed records: any it held were answered 200 and will not reach Kafka")
        }
        Err(e) => {
            tracing::error!(file = %path.display(), commits = noted.appends, last_commit_at_ms = noted.at_ms, error = %e, "the spool file behind the link is empty, where the spool had committed records: any it held were answered 200 and will not reach Kafka (and the report of it could not be written)")
        }
    }
}

/// The words of a report that name `noted`'s commit.
fn naming(noted: &Noted) -> String {
    format!(
        "the last (sequence numbers {}..={}) at {} ms",
        noted.first_seq, noted.last_seq, noted.at_ms
    )
}

/// Whether a report in `dir` already names `noted`'s commit.
fn reported_already(dir: &Path, noted: &Noted) -> bool {
    let prefix = format!("{}.unreadable-", super::FILE);
    let naming = naming(noted);
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".emptied"))
        })
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|text| text.contains(&naming)))
}

fn report(dir: &Path, path: &Path, noted: &Noted) -> std::io::Result<PathBuf> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let report = free_name(dir, now, ".emptied")?;
    let text = format!(
        "At {now} (Unix seconds) {} led to an empty file, where spool.last-append says the \
         spool had made {} commits, {} since the Unix epoch. Records still spooled then were \
         answered 200 and will not reach Kafka: find them on Qikchat's side since that time. If \
         the empty file was put there on purpose, as a new spool file, nothing was lost (remove \
         spool.last-append with the old file next time). Delete this file to clear the alert.\n",
        path.display(),
        noted.appends,
        naming(noted),
    );
    std::fs::write(&report, text)?;
    Ok(report)
}
