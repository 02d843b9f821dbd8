//! What keeps a new spool file through a power loss beyond redb's own fsyncs: the entries of its
//! directory and of the directories made for it. No test here can cut the power, so strace shows
//! the calls, in their order.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Spawned, PASS, USER};

const BIN: &str = env!("CARGO_BIN_EXE_qikchat-bridge");

/// The bridge strace runs, killed when dropped (a test that fails before it exits): killing strace
/// would leave it running.
struct Traced(String);

impl Drop for Traced {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.0]).status();
    }
}

/// strace's lines (without their pids, which it pads) for a bridge started with `--spool-dir spool` (Kafka
/// unreachable: the spool takes the webhooks), until it accepts webhooks.
fn traced_start(spool: &Path, trace: &Path) -> Vec<String> {
    let mut bridge = Spawned::start(
        Command::new("strace")
            .args(["-f", "-qq", "-y", "-o"])
            .arg(trace)
            .args([
                "-e",
                "trace=fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat",
            ])
            .arg(BIN)
            .args([
                "--kafka-brokers",
                "127.0.0.1:1",
                "--auth",
                &format!("{USER}:{PASS}"),
            ])
            .args(common::ANY_PORTS)
            .arg("--spool-dir")
            .arg(spool)
            .env("RUST_LOG", common::LOG_FILTER)
            .stdout(Stdio::null()),
    );
    let strace = bridge.child.id();
    let children = format!("/proc/{strace}/task/{strace}/children");
    let traced = Traced(
        std::fs::read_to_string(&children)
            .expect("strace's children")
            .trim()
            .to_string(),
    );
    assert!(
        !traced.0.is_empty() && !traced.0.contains(' '),
        "{children}: {:?}",
        traced.0
    );
    // strace ends with the process it runs.
    let sent = Command::new("kill")
        .args(["-TERM", &traced.0])
        .status()
        .expect("kill");
    assert!(sent.success());
    common::exited_within(&mut bridge.child, Duration::from_secs(30)).expect("strace exits");
    // Gone with strace: its number may be another process's by now.
    std::mem::forget(traced);
    std::fs::read_to_string(trace)
        .expect("strace's output")
        .lines()
        .filter(|line| !line.contains("--- SIG") && !line.contains("+++ "))
        .map(|line| {
            line.split_once(' ')
                .map_or(line, |(_, call)| call)
                .trim_start()
                .to_string()
        })
        .collect()
}

/// redb fsyncs a file's contents, never the directory that names it: without the syncs of the
/// directories, records answered 200 in a new spool file could vanish with the file.
#[test]
fn a_new_spool_file_is_put_in_place_and_then_its_directory_and_those_made_for_it_are_synced() {
    let root = tempfile::tempdir().expect("tempdir");
    // strace names a descriptor by its resolved path.
    let root = root.path().canonicalize().expect("canonical");
    let (made, spool) = (root.join("a"), root.join("a/b"));
    let calls = traced_start(&spool, &root.join("trace"));
    let first = |what: &str, found: &dyn Fn(&str) -> bool| {
        calls
            .iter()
            .position(|call| found(call))
            .unwrap_or_else(|| panic!("no {what} in:\n{}", calls.join("\n")))
    };
    let named = |call: &str, path: &Path| call.contains(&format!("\"{}\"", path.display()));
    let file = spool.join("spool.redb");
    let put_in_place = first("rename into place", &|c| {
        c.starts_with("rename") && named(c, &spool.join("spool.redb.new")) && named(c, &file)
    });
    let synced = |dir: &Path| {
        first(&format!("fsync of {}", dir.display()), &|c| {
            c.starts_with("fsync(")
                && c.contains(&format!("<{}>)", dir.display()))
                && c.ends_with("= 0")
        })
    };
    assert!(
        synced(&spool) > put_in_place,
        "the spool's directory synced before its file was put in place:\n{}",
        calls.join("\n")
    );
    let made_at = first("mkdir", &|c| {
        c.starts_with("mkdir") && named(c, &spool) && c.ends_with("= 0")
    });
    for dir in [&root, &made] {
        assert!(
            synced(dir) > made_at,
            "{}:\n{}",
            dir.display(),
            calls.join("\n")
        );
    }
}
