//! Opening and closing the spool from async code: recovery and the writer's last commit run off
//! the async workers, and a writer stuck on a hung volume cannot hold the process's exit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Spool, SpoolError};

impl Spool {
    /// Opens the spool off the async workers (recovery scans the file), and logs where it is.
    pub async fn open_off_runtime(
        dir: PathBuf,
        max_bytes: u64,
        headroom: u64,
    ) -> Result<Arc<Spool>, SpoolError> {
        let shown = dir.display().to_string();
        let spool = tokio::task::spawn_blocking(move || Spool::open(&dir, max_bytes, headroom))
            .await
            .map_err(|e| SpoolError::Io(e.to_string()))??;
        tracing::info!(dir = %shown, max_bytes, records = spool.records(), "durable spool enabled");
        Ok(spool)
    }

    /// Looks at the file's path again at shutdown, waiting at most `wait` (a `stat` on a hung
    /// volume): the writer looks only after a commit and after a second without one, so a file
    /// removed just before a shutdown was not yet known as lost, and the exit said nothing of
    /// the records answered 200 that went with it (see [`Spool::lost_if_stopped`]).
    pub async fn look_again_within(self: &Arc<Self>, wait: Duration) {
        let spool = self.clone();
        let looking = tokio::task::spawn_blocking(move || {
            spool.holdings.detached_now();
        });
        let _ = tokio::time::timeout(wait, looking).await;
    }

    /// Closes the spool at shutdown, waiting at most `wait` for its writer: one stuck in an fsync
    /// (a hung network volume) must not hold the exit, and what it had not committed was not
    /// answered 200. Closing takes milliseconds otherwise; the chart's grace period counts 2 s.
    /// Returns whether the writer finished.
    pub async fn close_within(self: Arc<Self>, wait: Duration) -> bool {
        let lost = self.lost_if_stopped();
        let closing = self.clone();
        let closing = tokio::task::spawn_blocking(move || closing.close());
        let finished = tokio::time::timeout(wait, closing).await.is_ok();
        if !finished {
            tracing::error!(timeout = ?wait, "the spool's writer did not finish; exiting without it");
        }
        // What the next start finds: removals the close could not make durable come back.
        let records = self.records() + self.removals_not_durable();
        if records > 0 {
            match lost {
                Some(reason) => tracing::error!(
                    records,
                    %reason,
                    "the spool still holds records answered 200, in a file the next start will not find: they are lost unless it is put back"
                ),
                None => tracing::warn!(
                    records,
                    "spool still holds records; they are replayed at the next start"
                ),
            }
        }
        finished
    }
}
