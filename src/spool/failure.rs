//! A spool whose file refuses every write: redb latches the first failed I/O (a full volume,
//! EIO) and refuses every later write transaction until the file is opened again, so appends,
//! and the deletes that replay needs, would fail for as long as the process lived.

use redb::Database;

use super::{Holdings, Spool};

impl Holdings {
    /// Records that the file refuses writes, once, with why.
    pub(super) fn fail(&self, reason: String) {
        self.failure.send_if_modified(|failure| {
            if failure.is_some() {
                return false;
            }
            tracing::error!(%reason, "the spool cannot take records again until its file is opened anew");
            *failure = Some(reason);
            true
        });
    }
}

/// Held by the writer thread. If it unwinds (redb panicking on a page damaged after the open,
/// say), every later append could only fail "spool is closed" while the bridge kept serving:
/// recorded as a failure, the bridge stops instead, and its restart opens the file again.
pub(super) struct WriterAlive<'a>(pub(super) &'a Holdings);

impl Drop for WriterAlive<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .fail("the spool's writer thread panicked".to_string());
        }
    }
}

/// After a failed write: whether the file still takes one. A failed commit alone proves nothing
/// (redb refuses a value too large, say); a write transaction it will not even begin means the
/// I/O error is latched. Blocks while another write transaction runs.
pub(super) fn check_writable(db: &Database, holdings: &Holdings, cause: &str) {
    match db.begin_write() {
        Ok(txn) => {
            let _ = txn.abort();
        }
        Err(e) => holdings.fail(format!("{cause}; a new write is refused: {e}")),
    }
}

/// After a failed read: the same check, without waiting for the writer's transaction (a stalled
/// fsync would hold a metrics scrape or replay there). A latched error is refused at once, even
/// while another transaction is open; an error that did not latch leaves nothing to find.
pub(super) fn check_writable_now(db: &Database, holdings: &Holdings, cause: &str) {
    match db.try_begin_write() {
        Ok(txn) => {
            let _ = txn.abort();
        }
        Err(redb::TransactionError::WouldBlock) => {}
        Err(e) => holdings.fail(format!("{cause}; a new write is refused: {e}")),
    }
}

impl Spool {
    /// Why the file refuses writes, once it does.
    pub fn failure(&self) -> Option<String> {
        self.holdings.failure.borrow().clone()
    }

    /// Resolves once the file refuses writes, with why: the bridge then stops, so that its
    /// restart opens the file again (what was committed is all there) instead of answering 503
    /// and replaying the same records without deleting them.
    pub async fn failed(&self) -> String {
        let mut failure = self.holdings.failure.subscribe();
        loop {
            if let Some(reason) = failure.borrow_and_update().clone() {
                return reason;
            }
            if failure.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}
