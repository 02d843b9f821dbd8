//! A spool whose file leaves its path: refused appends, replay from the open file, then a stop.

use std::time::Duration;

use crate::spool::tests::{oldest_bodies, oldest_stored, on_disk_with, record};
use crate::spool::{Spool, SpoolError};

fn refused_as_detached(result: Result<u64, SpoolError>) -> String {
    match result {
        Err(SpoolError::Io(reason)) if reason.contains("removed or replaced") => reason,
        other => panic!("not refused as detached: {other:?}"),
    }
}

#[tokio::test]
async fn a_spool_whose_directory_is_deleted_refuses_appends_and_replays_what_it_held_then_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 1 << 20, 1).expect("open");
    spool.append(record(Some("k"), "r0")).await.expect("append");
    std::fs::remove_dir_all(dir.path()).expect("remove the directory");

    // Written to the open file, but looked at after the fsync: not answered as stored.
    let reason = refused_as_detached(spool.append(record(Some("k"), "r1")).await);
    assert!(reason.contains("nothing is there now"), "{reason}");
    assert_eq!(spool.records(), 2, "r1 is in the open file all the same");
    refused_as_detached(spool.append(record(Some("k"), "r2")).await);
    assert_eq!(spool.records(), 2, "r2 was not written");
    assert!(!spool.has_room(), "readiness must not count on it");
    assert!(spool.detached().is_some());
    assert_eq!(
        spool.failure(),
        None,
        "not while it holds records to replay"
    );

    let held = oldest_stored(&spool, 10);
    assert_eq!(
        oldest_bodies(&spool, 10),
        [b"r0".to_vec(), b"r1".to_vec()],
        "replayed in order"
    );
    spool.remove(&held[..1]).expect("remove r0");
    assert_eq!(spool.failure(), None, "r1 is still to replay");
    spool.remove(&held[1..]).expect("remove r1");
    let failure = spool
        .failure()
        .expect("failed once drained, so the bridge restarts");
    assert!(failure.contains("holds no record to replay"), "{failure}");
}

/// A detached spool whose last entries are ones replay cannot decode is drained when it sets them
/// aside: it fails then, as when its last record is delivered, or the bridge would go on
/// refusing what it would spool and never restart to make a new spool.
#[tokio::test]
async fn a_detached_spool_drained_by_setting_its_last_entries_aside_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let spool = Spool::open(dir.path(), 1 << 20, 1).expect("open");
        let txn = spool.db.begin_write().expect("write");
        txn.open_table(super::super::RECORDS)
            .expect("table")
            .insert(0, b"".as_slice())
            .expect("an undecodable entry");
        txn.commit().expect("commit");
        spool.close();
    }
    let spool = Spool::open(dir.path(), 1 << 20, 1).expect("reopen");
    std::fs::remove_dir_all(dir.path()).expect("remove the directory");
    spool.look_again_within(Duration::from_secs(10)).await;
    assert!(spool.detached().is_some());
    assert_eq!(spool.failure(), None, "not while it holds an entry");
    let read = spool.from_seq(0..=u64::MAX, 10, u64::MAX).expect("read");
    assert!(read.is_empty());
    assert_eq!((spool.records(), spool.unreadable()), (0, 1));
    let failure = spool
        .failure()
        .expect("failed once drained, so the bridge restarts");
    assert!(failure.contains("holds no record to replay"), "{failure}");
}

#[tokio::test]
async fn a_spool_file_replaced_by_another_is_detached_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 1 << 20, 1).expect("open");
    let path = dir.path().join(super::super::FILE);
    std::fs::rename(&path, dir.path().join("moved.redb")).expect("move");
    std::fs::write(&path, b"").expect("another file at the path");
    let reason = refused_as_detached(spool.append(record(None, "r0")).await);
    assert!(reason.contains("another file is there now"), "{reason}");
    let held = oldest_stored(&spool, 10);
    spool.remove(&held).expect("remove");
    assert!(spool.failure().is_some());
}

#[tokio::test]
async fn an_idle_empty_spool_whose_directory_is_deleted_fails_without_waiting_for_an_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 1 << 20, 1).expect("open");
    std::fs::remove_dir_all(dir.path()).expect("remove the directory");
    // The writer thread looks every second (real time: it is not on the runtime).
    let reason = tokio::time::timeout(Duration::from_secs(10), spool.failed())
        .await
        .expect("noticed by the writer thread while idle");
    assert!(reason.contains("holds no record to replay"), "{reason}");
}

#[tokio::test]
async fn a_spool_left_in_place_is_not_detached_by_its_appends_or_removals() {
    let (_dir, spool) = on_disk_with(3).await;
    spool.remove(&oldest_stored(&spool, 3)).expect("remove");
    spool.append(record(None, "r3")).await.expect("append");
    assert_eq!(spool.detached(), None);
    assert_eq!(spool.failure(), None);
}

/// Only "not found" says the file left its path: another error (here a name too long to look
/// up; in production a permission changed or a transient I/O error) proves nothing, and
/// detaching the spool over it would refuse every append until a restart.
#[test]
fn only_a_path_that_leads_nowhere_counts_as_the_file_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let at = |path: std::path::PathBuf| super::FileId {
        path,
        dev: 0,
        ino: 0,
    };
    let missing = at(dir.path().join("spool.redb")).gone();
    assert!(
        missing
            .as_deref()
            .is_some_and(|r| r.contains("nothing is there now")),
        "{missing:?}"
    );
    let unreadable = dir.path().join("x".repeat(300));
    assert!(
        std::fs::metadata(&unreadable).is_err_and(|e| e.kind() != std::io::ErrorKind::NotFound),
        "the name is too long to look up"
    );
    assert_eq!(at(unreadable).gone(), None);
}

/// An append queued behind a commit after which the file is found gone is not written to it:
/// refused (503), it would be in the removed file all the same, replayed from it, and stored
/// twice once the client retries it; and a detached spool must only drain, not grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_queued_behind_the_commit_that_finds_the_file_gone_is_not_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 1 << 20, 1).expect("open");
    // The writer takes this lock inside its commit: held, it keeps r0's commit from ending.
    let (locked, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
    let holder = std::thread::spawn({
        let spool = spool.clone();
        move || {
            let _held = spool.holdings.deletes_durable_at.lock().expect("lock");
            locked.0.send(()).expect("locked");
            let _ = release.1.recv();
        }
    });
    locked.1.recv().expect("the writer's commit lock held");
    let first = tokio::spawn({
        let spool = spool.clone();
        async move { spool.append(record(Some("k0"), "r0")).await }
    });
    while spool.holdings.commit_began.lock().expect("lock").is_none() {
        tokio::task::yield_now().await;
    }
    let second = tokio::spawn({
        let spool = spool.clone();
        async move { spool.append(record(Some("k1"), "r1")).await }
    });
    // Counted under the writer's handle and handed over before that is let go: queued.
    while !spool.holds_key("k1") {
        tokio::task::yield_now().await;
    }
    drop(spool.writer.lock().expect("the writer's handle"));
    std::fs::remove_dir_all(dir.path()).expect("remove the directory");
    drop(release.0);
    holder.join().expect("holder");

    refused_as_detached(first.await.expect("r0"));
    refused_as_detached(second.await.expect("r1"));
    assert_eq!(
        oldest_bodies(&spool, 10),
        [b"r0".to_vec()],
        "r1 was written to the removed file"
    );
    assert_eq!(spool.records(), 1);
}

/// A detached spool refuses an append as detached even when it is also full: the refusal is
/// counted as an error (`spool_appends_total{result="error"}`), not as a full spool, which
/// would send an operator to grow a volume when the spool's file was removed.
#[tokio::test]
async fn a_full_spool_whose_file_is_removed_refuses_appends_as_detached_not_full() {
    let sizing = tempfile::tempdir().expect("tempdir");
    let one = Spool::open(sizing.path(), 1 << 20, 1).expect("open");
    one.append(record(None, "r0")).await.expect("append");
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), one.bytes(), 1).expect("open");
    spool.append(record(None, "r0")).await.expect("append");
    assert!(
        matches!(
            spool.append(record(None, "r1")).await,
            Err(SpoolError::Full { .. })
        ),
        "full for this test to mean anything"
    );
    std::fs::remove_dir_all(dir.path()).expect("remove the directory");
    spool.look_again_within(Duration::from_secs(10)).await;
    refused_as_detached(spool.append(record(None, "r1")).await);
}
