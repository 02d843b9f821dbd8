//! Unit tests of the spool's directory: made private, its entries durable, its limit against the volume.

use super::*;

#[test]
fn a_spool_limit_is_too_large_when_its_file_would_outgrow_the_volume() {
    let gib = 1 << 30;
    assert!(too_small(gib, 3 << 20), "1 GiB on a 3 MiB volume");
    assert!(too_small(gib, gib), "the file outgrows the limit");
    assert!(!too_small(gib, 2 * gib));
    assert!(
        !too_small(13 * gib / 10, 2 * gib),
        "65% of the volume, as the chart sets"
    );
    assert!(!too_small(u64::MAX, 0), "a filesystem that reports no size");
    assert!(too_small(u64::MAX, u64::MAX), "no overflow");
}

/// `--check-config` and start-up ask of the nearest directory that exists (write and search)
/// and of the spool's files that exist (read and write), in that order, and name the first
/// refused; the nearest directory of a relative path none of which exists is `.`.
#[test]
fn the_nearest_existing_directory_and_the_spool_files_must_be_writable() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("spool");
    std::fs::create_dir(&dir).expect("dir");
    std::fs::write(dir.join("spool.redb"), "").expect("file");
    let asked = std::cell::RefCell::new(Vec::new());
    let refusing = |refused: Option<PathBuf>| {
        let asked = &asked;
        move |path: &Path, file: bool| {
            asked.borrow_mut().push((path.to_path_buf(), file));
            if Some(path) == refused.as_deref() {
                Err(std::io::Error::from_raw_os_error(30))
            } else {
                Ok(())
            }
        }
    };
    let files = ["spool.redb", "spool.lock"];
    assert!(unwritable(&dir, &files, refusing(None)).is_none());
    assert_eq!(
        asked.take(),
        [(dir.clone(), false), (dir.join("spool.redb"), true)],
        "the lock file does not exist yet"
    );
    let (path, e) =
        unwritable(&dir, &files, refusing(Some(dir.join("spool.redb")))).expect("the file refused");
    assert_eq!(path, dir.join("spool.redb"));
    assert_eq!(e.raw_os_error(), Some(30));
    let not_yet = dir.join("a/b");
    let (path, _) = unwritable(&not_yet, &files, refusing(Some(dir.clone())))
        .expect("the nearest existing directory refused");
    assert_eq!(path, dir);
    asked.take();
    assert!(unwritable(Path::new("not-here-xyz/spool"), &files, refusing(None)).is_none());
    assert_eq!(asked.take(), [(PathBuf::from("."), false)]);
    // Both files there: opening them writes nothing in the directory, which may be
    // another's (a review found such a spool, usable, refused).
    std::fs::write(dir.join("spool.lock"), "").expect("lock file");
    assert!(unwritable(&dir, &files, refusing(Some(dir.clone()))).is_none());
    assert_eq!(
        asked.take(),
        [
            (dir.join("spool.redb"), true),
            (dir.join("spool.lock"), true)
        ]
    );
}

#[test]
fn a_path_is_stood_for_by_its_nearest_existing_parent_and_a_relative_one_by_dot() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(nearest_existing(dir.path()), dir.path());
    assert_eq!(nearest_existing(&dir.path().join("a/b")), dir.path());
    assert_eq!(
        nearest_existing(Path::new("no-such-dir-here/spool")),
        Path::new(".")
    );
    assert_eq!(nearest_existing(Path::new("/")), Path::new("/"));
}

/// `--check-config`'s warning: none for a limit the volume holds, and for one it does not,
/// the volume's size, looked up at the nearest directory that exists.
#[test]
fn a_limit_the_volume_holds_is_not_warned_of_and_one_it_does_not_names_the_volume() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(volume_warning(dir.path(), 1 << 20), None);
    let stat = rustix::fs::statvfs(dir.path()).expect("statvfs");
    let volume = stat.f_blocks * stat.f_frsize;
    let said = volume_warning(&dir.path().join("not/yet"), u64::MAX);
    // A volume of no stated size (a tmpfs without a limit) holds any.
    if volume == 0 {
        assert_eq!(said, None);
        return;
    }
    let said = said.expect("warned");
    assert!(
        said.starts_with(VOLUME_TOO_SMALL)
            && said.ends_with(&format!("on a volume of {volume} bytes)")),
        "{said}"
    );
}

/// The file takes a quarter more than the limit: a limit whose file would just fill the
/// volume fits, one whose records alone would fit but not its file does not.
#[test]
fn a_spool_limit_fits_while_its_file_a_quarter_larger_fits_the_volume() {
    let gib = 1 << 30;
    assert!(
        !too_small(4 * gib, 5 * gib),
        "a file of exactly the volume's size"
    );
    assert!(
        too_small(9 * gib / 10, gib),
        "90% of the volume: its file takes 112.5%"
    );
}

#[test]
fn creating_a_directory_changes_the_entries_of_each_parent_down_from_one_that_exists() {
    let exists = |p: &Path| p == Path::new("/data") || p == Path::new("/");
    assert_eq!(
        changed_by_creating(Path::new("/data/a/b"), exists),
        [PathBuf::from("/data"), PathBuf::from("/data/a")]
    );
    assert_eq!(
        changed_by_creating(Path::new("/data/a"), exists),
        [PathBuf::from("/data")]
    );
    assert!(changed_by_creating(Path::new("/data"), exists).is_empty());
    // A relative path's first directory is an entry of the working directory.
    assert_eq!(
        changed_by_creating(Path::new("spool/x"), |_| false),
        [PathBuf::from("."), PathBuf::from("spool")]
    );
}

#[test]
fn a_new_spool_directory_and_its_parents_are_private_to_the_bridges_user() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("a").join("b");
    let changed = create(&dir).expect("create");
    assert_eq!(changed, [root.path().to_path_buf(), root.path().join("a")]);
    for d in [root.path().join("a"), dir.clone()] {
        let mode = std::fs::metadata(&d)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{}", d.display());
    }
    assert!(create(&dir).expect("again").is_empty());
}

/// A file gone is no news (nothing of it to make private); any other failure (here a path
/// under a file) is warned of, the file staying as readable as it was.
#[test]
fn a_spool_file_that_cannot_be_made_private_is_warned_of_and_a_missing_one_is_not() {
    const CANNOT: &str = "cannot make the spool file private to the bridge's user";
    let (kept, _default) = crate::telemetry::Kept::on_this_thread();
    let dir = tempfile::tempdir().expect("tempdir");
    make_private(&dir.path().join("gone"));
    assert_eq!(kept.text(), "", "a missing file");
    let file = dir.path().join("file");
    std::fs::write(&file, "").expect("file");
    make_private(&file.join("under"));
    let said = kept.text();
    assert_eq!(said.matches(CANNOT).count(), 1, "{said}");
    assert!(said.contains("WARN"), "{said}");
}

#[test]
fn a_second_holder_of_the_spool_directory_is_refused_until_the_first_lets_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = lock(dir.path()).expect("first");
    let second = lock(dir.path()).expect_err("a second holder");
    assert!(
        second
            .to_string()
            .contains("another process holds the spool"),
        "{second}"
    );
    drop(first);
    lock(dir.path()).expect("free again");
}
