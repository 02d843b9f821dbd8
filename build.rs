//! Build script: records the git commit for the `build_info` metric (or takes it from
//! `QIKCHAT_BRIDGE_GIT_COMMIT`, as container builds without `.git` do), with `-dirty` when the
//! sources differ from that commit, so a benchmark of uncommitted code never wears a commit's name.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=QIKCHAT_BRIDGE_GIT_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    // The dirty mark must follow edits of the sources too, not only commits.
    for path in SOURCES {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = std::env::var("QIKCHAT_BRIDGE_GIT_COMMIT").ok().or_else(|| {
        let head = git(&["rev-parse", "--short=12", "HEAD"])?;
        let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
        status.extend(SOURCES);
        let dirty = git(&status).is_some_and(|s| !s.is_empty());
        Some(if dirty { format!("{head}-dirty") } else { head })
    });
    println!(
        "cargo:rustc-env=QIKCHAT_BRIDGE_GIT_COMMIT={}",
        commit
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "unknown".into())
    );
}

/// What the binary is built from: a change here makes the build differ from its commit.
const SOURCES: [&str; 4] = ["src", "Cargo.toml", "Cargo.lock", "build.rs"];

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
