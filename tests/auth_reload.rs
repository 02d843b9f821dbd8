//! Rotating `--auth-file` (as Kubernetes does with a mounted Secret) takes effect without a
//! restart; an invalid, empty or missing file keeps the credentials in force. Its own test binary, because it
//! installs the process-wide log subscriber.

mod common;

use common::{eventually, rotate, Captured, TestApp, STATUS};

async fn status_as(app: &TestApp, user: &str, pass: &str) -> u16 {
    app.post_as(user, pass, STATUS).await.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_auth_file_takes_effect_without_a_restart_and_an_invalid_one_is_ignored() {
    let captured = Captured::install("info");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("credentials");
    rotate(&file, "# first\nalice:pw-first-7731\n");
    let app = TestApp::start(&["--auth-file", file.to_str().expect("utf-8")]).await;
    assert_eq!(status_as(&app, "alice", "pw-first-7731").await, 200);
    assert_eq!(status_as(&app, "bob", "pw-second-9902").await, 401);

    rotate(&file, "bob:pw-second-9902\n");
    eventually("the new credential accepted", async || {
        status_as(&app, "bob", "pw-second-9902").await == 200
    })
    .await;
    assert_eq!(status_as(&app, "alice", "pw-first-7731").await, 401);

    let before = captured.len();
    rotate(&file, "bob-without-a-password\n");
    eventually("the invalid file reported", async || {
        captured
            .text_from(before)
            .contains("--auth-file is invalid")
    })
    .await;
    assert_eq!(status_as(&app, "bob", "pw-second-9902").await, 200);
    // The --auth credential is accepted whatever the file holds.
    assert_eq!(app.post(STATUS).await.status(), 200);

    // Emptied (a Secret being replaced), the file's senders stay accepted beside --auth's.
    let before = captured.len();
    rotate(&file, "# nothing yet\n");
    eventually("the empty file reported", async || {
        captured
            .text_from(before)
            .contains("--auth-file now holds no credential")
    })
    .await;
    assert_eq!(status_as(&app, "bob", "pw-second-9902").await, 200);
    // Gone, too.
    let before = captured.len();
    std::fs::remove_file(&file).expect("remove");
    eventually("the missing file reported", async || {
        captured
            .text_from(before)
            .contains("cannot read --auth-file")
    })
    .await;
    assert_eq!(status_as(&app, "bob", "pw-second-9902").await, 200);
    assert_eq!(app.post(STATUS).await.status(), 200);

    let logs = captured.text_from(0);
    // The reload names who may post now (never a password).
    assert!(
        logs.lines()
            .any(|l| l.contains("webhook credentials reloaded") && l.contains("bob")),
        "{logs}"
    );
    for secret in ["pw-first-7731", "pw-second-9902", "bob-without-a-password"] {
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
    }
}
