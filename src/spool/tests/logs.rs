//! What the spool logs when it opens, is scraped and closes: each line an operator acts on is
//! logged when its condition holds, and only then, so that an alert on it means something.

use super::*;
use crate::telemetry::Kept;

/// The lines of `kept` that contain `text`.
fn lines_with(kept: &Kept, text: &str) -> Vec<String> {
    kept.text()
        .lines()
        .filter(|l| l.contains(text))
        .map(str::to_string)
        .collect()
}

const SET_ASIDE: &str = "spool files moved aside as unreadable are in the spool directory";
const LEFT_OVER: &str = "spool holds records from an earlier run";

/// Records answered 200 and not in Kafka, in a file set aside: a start tells of it, with how many
/// files; a start without one says nothing of the kind.
#[test]
fn a_start_tells_of_files_set_aside_only_when_there_are_some() {
    let (kept, _default) = Kept::on_this_thread();
    let clean = tempfile::tempdir().expect("tempdir");
    Spool::open(clean.path(), 1 << 20, 1).expect("open").close();
    assert_eq!(lines_with(&kept, SET_ASIDE), Vec::<String>::new());

    let damaged = tempfile::tempdir().expect("tempdir");
    std::fs::write(damaged.path().join(FILE), b"not a redb file").expect("write");
    Spool::open(damaged.path(), 1 << 20, 1)
        .expect("opens anyway")
        .close();
    let told = lines_with(&kept, SET_ASIDE);
    assert_eq!(told.len(), 1, "{}", kept.text());
    assert!(told[0].contains("files=1"), "{}", told[0]);
}

/// Records an earlier run left are replayed from the start, and the log says how many; a start
/// with an empty spool says nothing of the kind.
#[tokio::test]
async fn a_start_tells_of_records_left_by_an_earlier_run_only_when_there_are_some() {
    let (kept, _default) = Kept::on_this_thread();
    let (dir, spool) = on_disk_with(2).await;
    spool.close();
    drop(spool);
    assert_eq!(lines_with(&kept, LEFT_OVER), Vec::<String>::new());

    Spool::open(dir.path(), 1 << 20, 1).expect("reopen").close();
    let told = lines_with(&kept, LEFT_OVER);
    assert_eq!(told.len(), 1, "{}", kept.text());
    assert!(told[0].contains("records=2"), "{}", told[0]);
}

/// "Can be listed again" is news only after a listing failed: scrapes of a directory that always
/// lists say nothing (the spool counts its files set aside at every scrape).
#[test]
fn scrapes_of_a_spool_directory_that_always_lists_say_nothing_of_it() {
    let (kept, _default) = Kept::on_this_thread();
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), 1 << 20, 1).expect("open");
    for _ in 0..3 {
        assert_eq!(spool.files_set_aside(), 0);
    }
    spool.close();
    assert_eq!(
        lines_with(&kept, "can be listed again"),
        Vec::<String>::new()
    );
}

/// This thread's log lines at `debug` and above while the guard lives: the close tells a failed
/// last commit with nothing to make durable at `debug` only.
fn kept_at_debug() -> (Kept, tracing::subscriber::DefaultGuard) {
    crate::telemetry::interest_of_every_thread();
    let kept = Kept::default();
    let writer = kept.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (kept, tracing::subscriber::set_default(subscriber))
}

/// A close whose last commit fails (a full disk) warns only when removals were waiting for it:
/// those records are sent again at the next start. With none, the appends were durable when
/// answered, and the failure is not worth a warning.
#[tokio::test]
async fn a_failed_last_commit_warns_only_when_it_leaves_removals_not_durable() {
    let (kept, _default) = kept_at_debug();
    const WARNED: &str = "the spool's last removals could not be made durable";
    const NOTHING: &str = "the spool's last commit failed, with nothing to make durable";

    let (storage, spool) = synced_spool_with(2).await;
    storage.fail_syncs.store(true, Ordering::SeqCst);
    spool.close();
    assert_eq!(spool.removals_not_durable(), 0);
    // The commit did fail: told, at debug.
    assert_eq!(lines_with(&kept, NOTHING).len(), 1, "{}", kept.text());
    assert!(lines_with(&kept, NOTHING)[0].contains("DEBUG"));
    assert_eq!(lines_with(&kept, WARNED), Vec::<String>::new());

    let (storage, spool) = synced_spool_with(3).await;
    hold_off_durable_removals(&spool);
    spool.remove(&oldest_stored(&spool, 2)).expect("remove");
    storage.fail_syncs.store(true, Ordering::SeqCst);
    spool.close();
    assert_eq!(spool.removals_not_durable(), 2);
    let warned = lines_with(&kept, WARNED);
    assert_eq!(warned.len(), 1, "{}", kept.text());
    assert!(
        warned[0].contains("WARN") && warned[0].contains("records=2"),
        "{}",
        warned[0]
    );
    assert_eq!(lines_with(&kept, NOTHING).len(), 1, "not told twice");
}

/// At shutdown the log says what the next start finds: the records still spooled and the
/// removals the close could not make durable, which come back; a spool closed empty says nothing
/// of the kind, and a writer that finished is not told as left behind.
#[tokio::test]
async fn a_shutdown_tells_what_the_next_start_finds_and_nothing_when_it_finds_nothing() {
    let (kept, _default) = Kept::on_this_thread();
    const LEFT: &str = "spool still holds records; they are replayed at the next start";
    const STUCK: &str = "the spool's writer did not finish";

    let (_storage, spool) = synced_spool_with(0).await;
    assert!(spool.close_within(Duration::from_secs(10)).await);
    assert_eq!(lines_with(&kept, LEFT), Vec::<String>::new());
    assert_eq!(lines_with(&kept, STUCK), Vec::<String>::new());

    // Three left, and two removed within the second since the last durable removal, whose
    // removal a full disk keeps from being made durable at the close.
    let (storage, spool) = synced_spool_with(5).await;
    hold_off_durable_removals(&spool);
    spool.remove(&oldest_stored(&spool, 2)).expect("remove");
    storage.fail_syncs.store(true, Ordering::SeqCst);
    assert!(spool.close_within(Duration::from_secs(10)).await);
    let left = lines_with(&kept, LEFT);
    assert_eq!(left.len(), 1, "{}", kept.text());
    assert!(left[0].contains("records=5"), "{}", left[0]);
    assert_eq!(lines_with(&kept, STUCK), Vec::<String>::new());
}

/// A shutdown that leaves records in a file removed from its path tells them lost, at `error`,
/// not that the next start replays them: that start makes a new, empty spool, and an operator
/// who reads "replayed at the next start" would not put the file back.
#[tokio::test]
async fn a_shutdown_of_a_removed_spool_tells_its_records_lost_not_replayed() {
    let (kept, _default) = Kept::on_this_thread();
    const LOST: &str = "in a file the next start will not find";
    const LEFT: &str = "spool still holds records; they are replayed at the next start";

    let (dir, spool) = on_disk_with(2).await;
    std::fs::remove_dir_all(dir.path()).expect("remove the directory");
    spool.look_again_within(Duration::from_secs(10)).await;
    assert!(spool.close_within(Duration::from_secs(10)).await);
    let lost = lines_with(&kept, LOST);
    assert_eq!(lost.len(), 1, "{}", kept.text());
    assert!(
        lost[0].contains("ERROR") && lost[0].contains("records=2"),
        "{}",
        lost[0]
    );
    assert_eq!(lines_with(&kept, LEFT), Vec::<String>::new());
}
