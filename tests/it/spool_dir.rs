//! A `--spool-dir` that start-up could not use, refused by `--check-config` and by start-up alike
//! (exit 2, naming the path and why): the attributes that refuse even root, and a file that is
//! no regular file where the spool's own should be.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{OutputWithin, EXIT_LIMIT};
use rustix::fs::IFlags;

const BIN: &str = env!("CARGO_BIN_EXE_qikchat-bridge");

/// An attribute (`chattr +i`, `+a`) set on a path for as long as it is held, taken off again when
/// dropped (also while a failed assertion unwinds), or the temporary directory could never be
/// removed.
struct Attribute(std::fs::File, IFlags);

impl Attribute {
    fn set(path: &Path, attribute: IFlags) -> Attribute {
        use rustix::fs::{ioctl_getflags, ioctl_setflags};
        let file = std::fs::File::open(path).expect("open");
        let flags = ioctl_getflags(&file).expect("the filesystem's attributes");
        ioctl_setflags(&file, flags | attribute)
            .expect("chattr: the tests run as root, on a filesystem with attributes");
        Attribute(file, attribute)
    }
}

impl Drop for Attribute {
    fn drop(&mut self) {
        use rustix::fs::{ioctl_getflags, ioctl_setflags};
        if let Ok(flags) = ioctl_getflags(&self.0) {
            _ = ioctl_setflags(&self.0, flags - self.1);
        }
    }
}

/// Only root may set these attributes (CAP_LINUX_IMMUTABLE); CI runs the tests as root.
fn may_set_attributes() -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("not run: setting file attributes takes root");
    }
    root
}

/// `--check-config`, then a start-up, with `--spool-dir spool`, run by `command` (the binary, or
/// `runuser` before it): each must exit 2 saying it cannot write to `refused`, and why.
fn both_refuse(command: impl Fn() -> Command, spool: &Path, refused: &Path, why: &str) {
    let mut start = common::ANY_PORTS.to_vec();
    start.extend(["--kafka-brokers", "127.0.0.1:1", "--auth", "u:Zq7Wm3Kx9Pv2"]);
    for args in [vec!["--check-config"], start] {
        let output = command()
            .args(&args)
            .arg("--spool-dir")
            .arg(spool)
            .env_clear()
            // For `runuser`.
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output_within(EXIT_LIMIT);
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{refused:?} {args:?}: {err}");
        let said = format!(
            "--spool-dir: this process cannot write to {}: {why}",
            refused.display()
        );
        assert!(err.contains(&said), "{refused:?} {args:?}: {err}");
    }
}

/// A spool directory with `files` (empty) in it, under a temporary directory.
fn spool_with(files: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).expect("spool dir");
    for name in files {
        std::fs::write(spool.join(name), "").expect("spool file");
    }
    (dir, spool)
}

const FILES: [&str; 2] = ["spool.redb", "spool.lock"];

/// The immutable attribute on the directory, or on its spool file: the access check's EPERM for
/// it was taken for a container's seccomp profile refusing the check, so `--check-config`
/// passed it and start-up then failed to open the spool with exit code 1.
#[test]
fn a_spool_dir_or_file_with_the_immutable_attribute_is_refused_by_check_config_and_at_start_up() {
    if !may_set_attributes() {
        return;
    }
    let why = "it has the immutable attribute (chattr +i), which refuses every write, even root's";
    each_refused_with(
        IFlags::IMMUTABLE,
        why,
        &[(&[], None), (&FILES, Some("spool.redb"))],
    );
}

/// For each case, a spool directory holding its files, with `attribute` set on the directory
/// (None) or on the file named: both `--check-config` and start-up refuse it, saying `why`.
fn each_refused_with(attribute: IFlags, why: &str, cases: &[(&[&str], Option<&str>)]) {
    for (files, refused) in cases {
        let (_dir, spool) = spool_with(files);
        let refused = refused.map_or_else(|| spool.clone(), |name| spool.join(name));
        let _attribute = Attribute::set(&refused, attribute);
        both_refuse(|| Command::new(BIN), &spool, &refused, why);
    }
}

/// The append-only attribute on a directory that holds no spool yet, or on its spool file or
/// lock: the access check grants the write, so `--check-config` passed it, and start-up failed
/// with exit code 1 ("cannot rename …/spool.redb.new to …/spool.redb", then at every start
/// "cannot remove …/spool.redb.new"; or "cannot open" the file, which redb and the lock open for
/// writing without O_APPEND). Found by a review of the fix for the immutable attribute.
#[test]
fn a_spool_dir_or_file_with_the_append_only_attribute_is_refused_by_check_config_and_at_start_up() {
    if !may_set_attributes() {
        return;
    }
    each_refused_with(
        IFlags::APPEND,
        "it has the append-only attribute (chattr +a)",
        &[
            (&[], None),
            (&FILES, Some("spool.redb")),
            (&FILES, Some("spool.lock")),
        ],
    );
}

/// Another user's directory is refused (`cli.rs`), but the same directory with the immutable
/// attribute as well was passed by `--check-config`: telling the attribute's EPERM from a seccomp
/// profile's opened the directory, which this user may not read. Start-up then failed with exit
/// code 1 ("cannot open …/spool.lock: Permission denied"). Found by a review.
#[test]
fn another_users_spool_dir_with_the_immutable_attribute_is_refused_by_check_config_and_at_start_up()
{
    use std::os::unix::fs::PermissionsExt;
    if !may_set_attributes() {
        return;
    }
    let (dir, spool) = spool_with(&[]);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // `nobody` may not reach the build's directory: a copy it can run.
    let copy = dir.path().join("qikchat-bridge");
    std::fs::copy(BIN, &copy).expect("copy");
    let _immutable = Attribute::set(&spool, IFlags::IMMUTABLE);
    let as_nobody = || {
        let mut runuser = Command::new("runuser");
        runuser.args(["-u", "nobody", "--"]).arg(&copy);
        runuser
    };
    both_refuse(as_nobody, &spool, &spool, "it has the immutable attribute");
}

/// A spool directory another user may write in but not search (mode 722), and a spool file it
/// may write but not read (622): the check asks for what start-up needs (searching the
/// directory to open its files, reading the file redb opens), or it would pass them and
/// start-up fail with exit code 1 ("Permission denied" opening the lock, or the file).
#[test]
fn a_spool_dir_another_user_cannot_search_or_a_file_it_cannot_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("not run: running as another user takes root");
        return;
    }
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    for (dir_mode, file_mode, refused) in [(0o722, 0o666, None), (0o777, 0o622, Some(FILES[0]))] {
        let (dir, spool) = spool_with(&FILES);
        mode(dir.path(), 0o755);
        mode(&spool, dir_mode);
        mode(&spool.join(FILES[0]), file_mode);
        mode(&spool.join(FILES[1]), 0o666);
        // `nobody` may not reach the build's directory: a copy it can run.
        let copy = dir.path().join("qikchat-bridge");
        std::fs::copy(BIN, &copy).expect("copy");
        let as_nobody = || {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", "nobody", "--"]).arg(&copy);
            runuser
        };
        let refused = refused.map_or_else(|| spool.clone(), |name| spool.join(name));
        both_refuse(as_nobody, &spool, &refused, "Permission denied");
    }
}

/// A FIFO where the spool's lock file goes: start-up's open of it waited for a reader that never
/// came, so the bridge never became ready and ignored the first SIGTERM, while `--check-config`
/// passed it (found by a review). A directory where the spool's file goes failed start-up with
/// exit code 1. Both are refused now.
#[test]
fn a_fifo_or_directory_where_a_spool_file_goes_is_refused_by_check_config_and_at_start_up() {
    let (_dir, spool) = spool_with(&FILES[..1]);
    let fifo = spool.join("spool.lock");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    let why = "it is not a regular file";
    both_refuse(|| Command::new(BIN), &spool, &fifo, why);
    let (_dir, spool) = spool_with(&[]);
    let directory = spool.join("spool.redb");
    std::fs::create_dir(&directory).expect("a directory where the file goes");
    both_refuse(|| Command::new(BIN), &spool, &directory, why);
}

/// Links that lead somewhere (to the spool's file, or its directory, on another volume) are not
/// links to nothing: `--check-config` passes them, as start-up opens the spool through them.
#[test]
fn symbolic_links_that_lead_to_the_spool_file_or_dir_are_passed_by_check_config() {
    let (dir, spool) = spool_with(&FILES);
    let file_linked = dir.path().join("file-linked");
    std::fs::create_dir(&file_linked).expect("dir");
    for name in FILES {
        std::os::unix::fs::symlink(spool.join(name), file_linked.join(name)).expect("link");
    }
    let dir_linked = dir.path().join("dir-linked");
    std::os::unix::fs::symlink(&spool, &dir_linked).expect("link");
    for linked in [file_linked, dir_linked] {
        let output = Command::new(BIN)
            .arg("--check-config")
            .arg("--spool-dir")
            .arg(&linked)
            .env_clear()
            .output_within(EXIT_LIMIT);
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{linked:?}: {err}");
    }
}

/// A directory under the name start-up makes a new spool file with (`spool.redb.new`), and no
/// spool file: start-up could not remove it and failed with exit code 1, while `--check-config`
/// passed it. Beside a spool file it is in nobody's way (the file is opened).
#[test]
fn a_directory_where_a_new_spool_file_is_made_is_refused_by_check_config_and_at_start_up() {
    let (_dir, spool) = spool_with(&[]);
    let unfinished = spool.join("spool.redb.new");
    std::fs::create_dir(&unfinished).expect("a directory where the new file is made");
    let why = "it is a directory, where start-up makes the spool's new file";
    both_refuse(|| Command::new(BIN), &spool, &unfinished, why);
}

/// A symbolic link to nothing where the spool's lock goes, or at the spool directory itself: the
/// checks took it for nothing there, so `--check-config` passed it, while start-up failed with
/// exit code 1 ("cannot open …/spool.lock: No such file or directory", "File exists" making the
/// directory). Found by a review. Both are refused now, naming what the link points to, and so is
/// a link that cannot be followed (a loop).
#[test]
fn a_symbolic_link_to_nothing_in_the_spool_is_refused_by_check_config_and_at_start_up() {
    let (dir, spool) = spool_with(&FILES[..1]);
    let nowhere = dir.path().join("gone/spool.lock");
    let lock = spool.join("spool.lock");
    std::os::unix::fs::symlink(&nowhere, &lock).expect("symlink");
    let why = format!(
        "it is a symbolic link to {}, which leads to nothing that exists",
        nowhere.display()
    );
    both_refuse(|| Command::new(BIN), &spool, &lock, &why);
    let link = dir.path().join("linked-spool");
    std::os::unix::fs::symlink(&nowhere, &link).expect("symlink");
    both_refuse(|| Command::new(BIN), &link.join("spool"), &link, &why);
    // A chain: the first link is named, with where it points, though it is the last that
    // points to nothing.
    let chain = dir.path().join("chain");
    std::os::unix::fs::symlink(&link, &chain).expect("symlink");
    let why = format!(
        "it is a symbolic link to {}, which leads to nothing that exists",
        link.display()
    );
    both_refuse(|| Command::new(BIN), &chain.join("spool"), &chain, &why);
    let (_dir, spool) = spool_with(&FILES[..1]);
    let lock = spool.join("spool.lock");
    std::os::unix::fs::symlink("spool.lock", &lock).expect("symlink");
    let why = "it is a symbolic link to spool.lock, which cannot be reached: Too many levels of \
               symbolic links";
    both_refuse(|| Command::new(BIN), &spool, &lock, why);
}

/// A bridge started on `spool` (Kafka unreachable: ready on the spool alone), once ready.
async fn ready_on(spool: &Path) -> common::Spawned {
    let spawned = common::Spawned::start(
        Command::new(BIN)
            .args(common::ANY_PORTS)
            .args(["--kafka-brokers", "127.0.0.1:1", "--auth", "u:Zq7Wm3Kx9Pv2"])
            .arg("--spool-dir")
            .arg(spool)
            .env_clear()
            .env("RUST_LOG", common::LOG_FILTER)
            .stdout(std::process::Stdio::null()),
    );
    common::wait_ready_at(spawned.admin).await;
    spawned
}

/// The append-only attribute on the nearest existing parent of a spool directory not made yet:
/// the attribute allows new entries, and the spool renames and removes nothing in a parent, so
/// start-up makes the directory and the spool in it. eccf1d2 refused it with exit 2, where it had
/// worked (found by a review of that commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_only_parent_of_a_spool_dir_not_made_yet_is_passed() {
    if !may_set_attributes() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let parent = dir.path().join("parent");
    std::fs::create_dir(&parent).expect("parent");
    let spool = parent.join("a").join("spool");
    let _append_only = Attribute::set(&parent, IFlags::APPEND);
    let output = Command::new(BIN)
        .arg("--check-config")
        .arg("--spool-dir")
        .arg(&spool)
        .env_clear()
        .output_within(EXIT_LIMIT);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{err}");
    let _bridge = ready_on(&spool).await;
    assert!(spool.join("spool.redb").is_file());
}

/// A FIFO where the note of the spool's last commit goes (`spool.last-append`): start-up read it,
/// waiting for a writer that never came, and was never ready (found by a review). The note is
/// only a safeguard: start-up warns that it cannot keep one, and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_where_the_spools_commit_note_goes_is_warned_of_and_start_up_serves() {
    let (_dir, spool) = spool_with(&[]);
    let fifo = spool.join("spool.last-append");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    let bridge = ready_on(&spool).await;
    let log = bridge.log_so_far();
    assert!(
        log.contains("cannot note the spool's commits beside it")
            && log.contains("is not a regular file"),
        "{log}"
    );
}
