//! The spool's writer thread: appends that arrive while a commit runs are written together in the
//! next transaction, so concurrent webhooks share one fsync.

use std::sync::mpsc;

use redb::{Database, Durability};
use tokio::sync::oneshot;

use super::commits::{APPENDS, META};
use super::{io, Holdings, SpoolError, RECORDS};

/// Appends waiting beyond this many are committed in the next transaction.
const MAX_GROUP: usize = 1024;

/// One encoded record, what it reserved in the holdings, and where to say its sequence number
/// once it is durable.
pub(super) struct Append {
    pub bytes: Vec<u8>,
    pub len: u64,
    pub topic: String,
    pub key: Option<String>,
    pub done: oneshot::Sender<Result<u64, SpoolError>>,
}

/// Where the writer thread starts: the next sequence number, and the file's count of append
/// commits so far.
pub(super) struct From {
    pub seq: u64,
    pub appends: u64,
}

/// The writer thread: one durable transaction per group of waiting appends, settled in the
/// holdings whether or not anyone still waits for the answer.
pub(super) fn write_loop(
    db: &Database,
    holdings: &Holdings,
    rx: &mpsc::Receiver<Append>,
    from: From,
) {
    let From {
        seq: mut next_seq,
        mut appends,
    } = from;
    loop {
        let first = match rx.recv_timeout(super::linked::CHECK_EVERY) {
            Ok(first) => first,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                holdings.detached_now();
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(a) => group.push(a),
                Err(_) => break,
            }
        }
        holdings.commit_began(Some(std::time::Instant::now()));
        #[cfg(test)]
        test_hooks::before_commit(holdings);
        let result = match holdings.detached.get() {
            Some(reason) => Err(SpoolError::Io(reason.clone())),
            None => commit(db, holdings, &group, next_seq, appends + 1),
        };
        if result.is_ok() {
            appends += 1;
            if let Some(note) = &holdings.note {
                note.record(appends, next_seq..=next_seq + group.len() as u64 - 1);
            }
        }
        #[cfg(test)]
        test_hooks::committed(holdings);
        holdings.commit_began(None);
        for a in &group {
            holdings.written(a.len);
        }
        if result.is_ok() {
            next_seq += group.len() as u64;
            holdings
                .records
                .fetch_add(group.len() as u64, std::sync::atomic::Ordering::SeqCst);
            holdings.appended.notify_one();
        } else {
            for a in &group {
                holdings.release(a.len, Some(&a.topic), a.key.as_deref());
            }
            match &result {
                Err(_) if holdings.detached.get().is_some() => {}
                Err(e) => super::failure::check_writable(
                    db,
                    holdings,
                    &format!("a spool write failed: {e}"),
                ),
                Ok(_) => {}
            }
        }
        // Looked at after the fsync, so a file removed before or during the commit is caught: it
        // keeps these records only until the process ends. They are replayed from it meanwhile,
        // but not answered 200.
        let result = match (result, holdings.detached_now()) {
            (Ok(_), Some(reason)) => Err(SpoolError::Io(reason)),
            (result, _) => result,
        };
        for (i, a) in group.into_iter().enumerate() {
            let _ = a.done.send(result.clone().map(|first| first + i as u64));
        }
    }
}

/// Commits `group` from `first_seq` on, as the file's append commit number `appends`.
fn commit(
    db: &Database,
    holdings: &Holdings,
    group: &[Append],
    first_seq: u64,
    appends: u64,
) -> Result<u64, SpoolError> {
    let mut txn = db.begin_write().map_err(io)?;
    txn.set_durability(Durability::Immediate).map_err(io)?;
    {
        let mut table = txn.open_table(RECORDS).map_err(io)?;
        for (i, a) in group.iter().enumerate() {
            table
                .insert(first_seq + i as u64, a.bytes.as_slice())
                .map_err(io)?;
        }
        let mut meta = txn.open_table(META).map_err(io)?;
        meta.insert(APPENDS, appends).map_err(io)?;
    }
    // The fsync makes replay's removals committed before it durable too. Their count is kept
    // under this lock, which a removal takes only once it holds the write transaction, so none
    // can commit between this commit and its count's reset.
    let durable_at = holdings
        .deletes_durable_at
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    txn.commit().map_err(io)?;
    holdings
        .removals_not_durable
        .store(0, std::sync::atomic::Ordering::SeqCst);
    drop(durable_at);
    Ok(first_seq)
}

/// What the tests see of, and do to, the writer thread.
#[cfg(test)]
mod test_hooks {
    use std::sync::atomic::Ordering;

    use super::Holdings;

    /// Panics if a test asked for it, as redb may on a page damaged after the open.
    pub(super) fn before_commit(holdings: &Holdings) {
        if holdings.panic_next_commit.swap(false, Ordering::SeqCst) {
            panic!("injected: redb panicked on a damaged page");
        }
    }

    /// Counts one commit, whatever its result.
    pub(super) fn committed(holdings: &Holdings) {
        holdings.commits.fetch_add(1, Ordering::SeqCst);
    }
}
