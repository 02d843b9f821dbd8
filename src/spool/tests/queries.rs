//! What the spool answers of itself and of its errors: to the webhook path (a conversation held,
//! room, a queue bound), to replay (a wake-up), to shutdown (what stopping would lose), and to
//! an operator (an open's cause, a debug form).

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
