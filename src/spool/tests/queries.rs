//! What the spool answers of itself and of its errors: to the webhook path (a conversation held,
//! a queue bound), to replay (a wake-up), to shutdown (what stopping would lose), and to an
//! operator (an open's cause, a debug form, a volume too small).

use super::*;

/// An open that fails is told as "cannot open the spool in --spool-dir …: <cause>": the cause
/// alone, without the "spool write failed" of a write; a full or busy spool is told as itself.
#[test]
fn an_errors_cause_is_what_went_wrong_without_the_words_of_a_failed_write() {
    let denied = "Permission denied (os error 13)";
    assert_eq!(SpoolError::Io(denied.into()).cause(), denied);
    assert_eq!(
        SpoolError::Full { max: 5 }.cause(),
        "spool is full (5 bytes)"
    );
    assert_eq!(
        SpoolError::Busy { waiting: 7 }.cause(),
        "spool writes waiting for the disk hold 7 bytes"
    );
}

/// The debug form names the spool's file (what a `?spool` in a log or a panic shows).
#[tokio::test]
async fn a_spools_debug_form_names_its_file() {
    let (_storage, spool) = synced_spool_with(0).await;
    assert_eq!(format!("{spool:?}"), r#"Spool { path: "memory", .. }"#);
    spool.close();
}

/// The webhook path sends a keyed record behind its conversation's spooled records while the
/// spool holds any: held only while one waits, and only its own (another key, another topic, a
/// record without a key hold nothing). A conversation wrongly held sends its records through the
/// spool, refused with 503 when it is full, where Kafka would have taken them.
#[tokio::test]
async fn a_conversation_is_held_only_while_its_own_records_wait() {
    let (_storage, spool) = synced_spool_with(1).await;
    assert!(
        !spool.holds("t", "k"),
        "a record without a key holds no conversation"
    );
    spool.append(record(Some("k"), "r1")).await.expect("append");
    assert!(spool.holds("t", "k"));
    assert!(!spool.holds("t", "other"), "another key");
    assert!(!spool.holds("u", "k"), "the key on another topic");
    spool.remove(&oldest_stored(&spool, 2)).expect("remove");
    assert!(!spool.holds("t", "k"), "delivered");
    spool.close();
}

/// Replay sleeps on `appended` between passes: an append wakes it (a record spooled to an idle
/// replayer would otherwise wait for its fallback poll). The writer notifies before it answers,
/// so the wake-up is there once the append is.
#[tokio::test(start_paused = true)]
async fn an_append_wakes_whoever_waits_for_records() {
    let (_storage, spool) = synced_spool_with(0).await;
    let woken = spool.appended().notified();
    spool.append(record(None, "r0")).await.expect("append");
    // The clock is paused: a wake-up that never comes fails this at once, not after a second.
    tokio::time::timeout(Duration::from_secs(1), woken)
        .await
        .expect("woken by the append");
    spool.close();
}

/// Copies of appends whose callers gave up, queued behind a stalled disk: they may fill
/// [`MAX_WAITING_BYTES`] exactly, and only the append that would pass it is refused.
#[tokio::test]
async fn writes_waiting_for_the_disk_may_fill_their_bound_exactly_and_not_a_byte_more() {
    let (_storage, spool) = synced_spool_with(0).await;
    let r = record(None, "r");
    let len = postcard::to_allocvec(&r).expect("encode").len() as u64;
    // Stands for the queued copies, without a stalled disk holding 64 MiB of them.
    let queued = MAX_WAITING_BYTES - len;
    spool
        .holdings
        .waiting
        .fetch_add(queued + 1, Ordering::SeqCst);
    assert_eq!(
        spool.append(r.clone()).await,
        Err(SpoolError::Busy {
            waiting: queued + 1
        }),
        "one byte past the bound"
    );
    spool.holdings.waiting.fetch_sub(1, Ordering::SeqCst);
    spool.append(r).await.expect("the bound reached exactly");
    assert_eq!(spool.holdings.waiting.load(Ordering::SeqCst), queued);
    spool.holdings.waiting.fetch_sub(queued, Ordering::SeqCst);
    spool.close();
}

/// The bound is on the queue, not on a record: with nothing waiting, a record larger than
/// [`MAX_WAITING_BYTES`] (`--max-body-bytes` allows up to 512 MiB) is written, not refused as if
/// the disk were stalled.
#[tokio::test]
async fn a_lone_record_larger_than_the_queue_bound_is_written_not_refused_as_busy() {
    let db = redb::Builder::new()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .expect("database");
    let spool =
        Spool::with_database(db, "memory".into(), 1 << 30, 1, None, None, None).expect("spool");
    let big = SpooledRecord {
        value: vec![b'x'; MAX_WAITING_BYTES as usize + 1],
        ..record(None, "big")
    };
    spool.append(big).await.expect("written");
    assert_eq!(spool.records(), 1);
    assert!(spool.bytes() > MAX_WAITING_BYTES);
    assert_eq!(spool.holdings.waiting.load(Ordering::SeqCst), 0);
    spool.close();
}

/// Stopping with records in a file that left its path loses them, and the spool says so with why;
/// once they are replayed, or while the file is in place, stopping loses nothing.
#[tokio::test]
async fn stopping_loses_records_only_while_a_detached_file_holds_some() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 1 << 20, 1).expect("open");
    spool.append(record(Some("k"), "r0")).await.expect("append");
    assert_eq!(spool.lost_if_stopped(), None, "the file is in place");
    std::fs::remove_dir_all(dir.path()).expect("remove the directory");
    // Noticed after the append's fsync: r1 is in the open file, refused all the same.
    let _ = spool.append(record(Some("k"), "r1")).await;
    let reason = spool.detached().expect("detached");
    assert_eq!(
        spool.lost_if_stopped(),
        Some(format!(
            "{reason}; the records it still held are lost with it"
        ))
    );
    spool.remove(&oldest_stored(&spool, 10)).expect("replayed");
    assert_eq!(spool.records(), 0);
    assert_eq!(spool.lost_if_stopped(), None, "nothing left to lose");
}

/// `--check-config` prints what start-up would warn of the spool's volume: the warning start-up
/// logs, for a limit the volume holds and for one it cannot (`dir`'s own tests check the words,
/// and that a volume of no stated size, a tmpfs without a limit, holds any).
#[test]
fn a_check_warns_of_the_spools_volume_as_start_up_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (at, max) in [
        (dir.path().to_path_buf(), 1 << 20),
        (dir.path().join("not/yet"), u64::MAX),
    ] {
        let said = volume_warning(&at, max);
        assert_eq!(said, super::dir::volume_warning(&at, max), "{max}");
        assert_ne!(said.as_deref(), Some(""), "an empty warning");
    }
}
