//! Build script: records the git commit for the `build_info` metric (or takes it from
//! `QIKCHAT_BRIDGE_GIT_COMMIT`, as container builds without `.git` do).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=QIKCHAT_BRIDGE_GIT_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let commit = std::env::var("QIKCHAT_BRIDGE_GIT_COMMIT").ok().or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    println!(
        "cargo:rustc-env=QIKCHAT_BRIDGE_GIT_COMMIT={}",
        commit
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "unknown".into())
    );
}
