//! `--auth-file` read again every second, so rotating the credentials of a mounted Kubernetes
//! Secret takes effect without a restart (Kubernetes updates the mounted file in place).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::IntGauge;

use super::{parse_file, AuthReload, Credentials, FileDigest};

/// How often the file is read: a few syscalls a second, and a rotation takes effect at once.
const EVERY: Duration = Duration::from_secs(1);

/// How soon a changed file is read again, to be applied only if it reads the same: a writer that
/// truncates and then writes (`cp`, `echo >`, an editor; Kubernetes swaps a symlink and is not
/// one) can be caught half-way, and `alice:newp` parses as well as `alice:newpassword`. Applied,
/// it would answer Qikchat 401, which it does not retry.
const SETTLE: Duration = Duration::from_millis(200);

/// Reads `reload.path` every second until `stop`; when its text changes, reads the same twice
/// [`SETTLE`] apart, and is valid, the accepted credentials become the `--auth` ones plus the
/// file's. A file that is unreadable,
/// invalid or would leave no credential at all keeps the previous set, with one log line per
/// change of the file, and sets `stale` until the file reads as what is applied or is applied.
pub async fn watch_auth_file(
    reload: AuthReload,
    live: Arc<ArcSwap<Credentials>>,
    stale: IntGauge,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let read = |path: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || crate::operator_file::read_to_string(&path))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    // What start-up read: a file rotated since (while the spool recovered, say) is a change.
    let mut last = reload.started_with;
    // Whether `last` could not be used (start-up's could): the gauge while the file reads so.
    let mut unusable = false;
    let mut last_error: Option<String> = None;
    // A changed text seen once, waiting to be read the same again.
    let mut changed: Option<FileDigest> = None;
    loop {
        let wait = if changed.is_some() { SETTLE } else { EVERY };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = crate::admin::stopped(&mut stop) => return,
        }
        let text = match read(reload.path.clone()).await {
            Ok(text) => text,
            Err(e) => {
                stale.set(1);
                let reason = e.to_string();
                if last_error.as_ref() != Some(&reason) {
                    tracing::warn!(path = %reload.path.display(), %reason, "cannot read --auth-file; the accepted credentials stay as they are");
                    last_error = Some(reason);
                }
                continue;
            }
        };
        last_error = None;
        let digest = FileDigest::of(&text);
        if last == digest {
            changed = None;
            stale.set(i64::from(unusable));
            continue;
        }
        if changed.as_ref() != Some(&digest) {
            changed = Some(digest);
            continue;
        }
        changed = None;
        unusable = match parse_file(&text) {
            // An emptied file is far more often a Secret being replaced than a wish to lock out
            // every sender the file named, so it leaves them in force, even beside `--auth`.
            Ok(from_file) if from_file.is_empty() => {
                tracing::error!(path = %reload.path.display(), "--auth-file now holds no credential; the accepted credentials stay as they are");
                true
            }
            Ok(from_file) => {
                let mut accepted = reload.fixed.clone();
                accepted.extend(from_file);
                let credentials = Credentials::new(accepted);
                tracing::info!(users = ?credentials.users(), "webhook credentials reloaded from --auth-file");
                live.store(Arc::new(credentials));
                false
            }
            Err(reason) => {
                tracing::error!(path = %reload.path.display(), %reason, "--auth-file is invalid; the accepted credentials stay as they are");
                true
            }
        };
        stale.set(i64::from(unusable));
        last = digest;
    }
}
