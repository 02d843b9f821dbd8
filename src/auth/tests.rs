//! Credential tests: parsing, the digest check, the refusal reasons.

use super::*;

fn stale() -> prometheus::IntGauge {
    prometheus::IntGauge::new("auth_file_stale", "test").expect("gauge")
}

fn creds(list: &[&str]) -> Credentials {
    Credentials::new(
        list.iter()
            .map(|c| Credential::parse(c).expect("valid"))
            .collect(),
    )
}

#[test]
fn the_header_from_qikchats_documentation_is_accepted() {
    let c = creds(&["testuser:testpass"]);
    assert_eq!(c.check(Some(b"Basic dGVzdHVzZXI6dGVzdHBhc3M=")), Ok(()));
}

#[test]
fn the_scheme_is_case_insensitive_and_padding_optional() {
    let c = creds(&["testuser:testpass"]);
    assert_eq!(c.check(Some(b"basic dGVzdHVzZXI6dGVzdHBhc3M")), Ok(()));
    assert_eq!(c.check(Some(b"BASIC  dGVzdHVzZXI6dGVzdHBhc3M= ")), Ok(()));
    // Blanks around the whole value are no part of it (found by mutation testing).
    assert_eq!(c.check(Some(b" \tBasic dGVzdHVzZXI6dGVzdHBhc3M=")), Ok(()));
}

#[test]
fn any_of_several_credentials_is_accepted_during_rotation() {
    let c = creds(&["old:one", "new:two"]);
    let header = |s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    assert_eq!(c.check(Some(header("old:one").as_bytes())), Ok(()));
    assert_eq!(c.check(Some(header("new:two").as_bytes())), Ok(()));
    assert_eq!(
        c.check(Some(header("new:one").as_bytes())),
        Err(AuthFailure::Wrong)
    );
}

/// PowerShell and some Windows editors start a file with a byte-order mark, which would otherwise
/// become part of the first user's name.
#[test]
fn a_credentials_file_that_starts_with_a_byte_order_mark_is_read_without_it() {
    let parsed = parse_file("\u{feff}testuser:testpass\r\nother:x\r\n").expect("valid");
    let c = Credentials::new(parsed);
    assert_eq!(c.users(), ["testuser", "other"]);
    assert_eq!(c.check(Some(b"Basic dGVzdHVzZXI6dGVzdHBhc3M=")), Ok(()));
}

#[test]
fn missing_malformed_and_wrong_are_told_apart() {
    let c = creds(&["testuser:testpass"]);
    assert_eq!(c.check(None), Err(AuthFailure::Missing));
    assert_eq!(c.check(Some(b"Bearer abc")), Err(AuthFailure::Malformed));
    assert_eq!(c.check(Some(b"Basic !!!")), Err(AuthFailure::Malformed));
    assert_eq!(
        c.check(Some(b"Basic bm9jb2xvbg==")),
        Err(AuthFailure::Malformed)
    );
    assert_eq!(c.check(Some(b"Basic")), Err(AuthFailure::Malformed));
    // What the webhook passes for an empty header, or two that differ.
    assert_eq!(c.check(Some(b"")), Err(AuthFailure::Malformed));
    assert_eq!(
        c.check(Some(b"Basic dGVzdHVzZXI6d3Jvbmc=")),
        Err(AuthFailure::Wrong)
    );
}

#[test]
fn credentials_longer_than_the_stack_buffer_are_checked_too() {
    for len in [
        STACK_CREDENTIAL - 8,
        STACK_CREDENTIAL,
        STACK_CREDENTIAL + 1,
        4000,
    ] {
        let credential = format!("user:{}", "p".repeat(len - 5));
        let c = creds(&[&credential]);
        let header = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert_eq!(
            c.check(Some(header(&credential).as_bytes())),
            Ok(()),
            "{len}"
        );
        let wrong = format!("{}q", &credential[..credential.len() - 1]);
        assert_eq!(
            c.check(Some(header(&wrong).as_bytes())),
            Err(AuthFailure::Wrong),
            "{len}"
        );
        let no_colon = "p".repeat(len);
        assert_eq!(
            c.check(Some(header(&no_colon).as_bytes())),
            Err(AuthFailure::Malformed),
            "{len}"
        );
    }
}

#[test]
fn passwords_may_contain_colons() {
    let c = creds(&["u:p:a:ss"]);
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("u:p:a:ss")
    );
    assert_eq!(c.check(Some(header.as_bytes())), Ok(()));
}

#[test]
fn disabled_auth_accepts_anything() {
    assert_eq!(Credentials::disabled().check(None), Ok(()));
}

#[test]
fn debug_shows_users_but_not_passwords() {
    let shown = format!("{:?}", creds(&["alice:topsecret"]));
    assert!(
        shown.contains("alice") && !shown.contains("topsecret"),
        "{shown}"
    );
    // Nor the digest, which is enough to try passwords offline (found by mutation testing).
    assert_eq!(shown, "[alice:<redacted>]");
}

/// A watcher of a credentials file holding `on_disk`, started from `alice:old-password` as
/// start-up read and applied it: what the tests look at (the file's path, the credentials in
/// force, the `auth_file_stale` gauge), and the [`Watch`] to stop it with.
fn watching(
    on_disk: &str,
) -> (
    Watch,
    std::path::PathBuf,
    std::sync::Arc<arc_swap::ArcSwap<Credentials>>,
    prometheus::IntGauge,
) {
    let at_start = "alice:old-password\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("credentials");
    std::fs::write(&path, on_disk).expect("write");
    let parsed = parse_file(at_start).expect("valid");
    let live = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(Credentials::new(parsed)));
    let reload = AuthReload {
        path: path.clone(),
        fixed: Vec::new(),
        started_with: FileDigest::of(at_start),
    };
    let gauge = stale();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(watch_auth_file(reload, live.clone(), gauge.clone(), stop));
    let watch = Watch {
        _dir: dir,
        stop_tx,
        watcher,
    };
    (watch, path, live, gauge)
}

/// A running watcher, and the directory of its file, which lives as long as it.
struct Watch {
    _dir: tempfile::TempDir,
    stop_tx: tokio::sync::watch::Sender<bool>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Watch {
    async fn stop(self) {
        self.stop_tx.send(true).expect("stop");
        self.watcher.await.expect("watcher");
    }
}

/// The file may be rotated between start-up's read and the watcher's first look (a long spool
/// recovery lies between them): what start-up applied is the baseline, so that is a change.
/// Paused clock: the watcher's reads run on blocking threads, which hold the clock still.
#[tokio::test(start_paused = true)]
async fn a_file_rotated_while_the_bridge_started_is_applied() {
    // Rotated before the watcher starts.
    let (watch, _, live, _) = watching("bob:new-password\n");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while live.load().users() != vec!["bob"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {:?}",
            live.load().users()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    watch.stop().await;
}

/// A file applied once is not applied again while it stays the same: each application replaces
/// the accepted set and logs "webhook credentials reloaded" (found by mutation testing: with the
/// baseline not moved on, the same file would be applied again every 1.2 s).
#[tokio::test(start_paused = true)]
async fn a_file_applied_once_is_not_applied_again_while_it_stays_the_same() {
    let (watch, _, live, _) = watching("bob:new-password\n");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while live.load().users() != vec!["bob"] {
        assert!(tokio::time::Instant::now() < deadline, "never applied");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let applied = live.load_full();
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    assert!(
        std::sync::Arc::ptr_eq(&applied, &live.load_full()),
        "the same file was applied again"
    );
    watch.stop().await;
}

/// A writer that truncates and then writes can be caught half-way, and the half parses: it is
/// applied only once the file reads the same twice, so senders never meet a truncated password.
#[tokio::test(start_paused = true)]
async fn a_file_caught_half_written_is_not_applied_until_it_reads_the_same_twice() {
    use std::time::Duration;
    let (watch, path, live, _) = watching("alice:old-password\n");
    let accepts = |pass: &str| {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("alice:{pass}"))
        );
        live.load().check(Some(header.as_bytes())).is_ok()
    };

    // Half-way through a rewrite, seen by one read.
    std::fs::write(&path, "alice:new-pa").expect("write");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The rest arrives before the read that would settle it.
    std::fs::write(&path, "alice:new-password\n").expect("write");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(accepts("old-password"), "nothing applied yet");
    assert!(!accepts("new-pa"), "the half-written password was applied");
    // Read the same twice: applied.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(accepts("new-password"), "{:?}", live.load().users());
    assert!(!accepts("new-pa") && !accepts("old-password"));
    watch.stop().await;
}

/// A removed credential keeps working while the file that removes it cannot be used, so the gauge
/// an alert watches says so for as long as it lasts, whatever made it unusable, and clears once a
/// usable file is applied.
#[tokio::test(start_paused = true)]
async fn an_auth_file_that_cannot_be_used_is_shown_as_stale_until_a_usable_one_is_applied() {
    use std::time::Duration;
    let (watch, path, live, gauge) = watching("alice:old-password\n");
    // Long enough for a change to be read twice and applied, and read a few times more.
    let settle = || tokio::time::sleep(Duration::from_millis(4500));

    settle().await;
    assert_eq!(gauge.get(), 0, "start-up's file");
    for unusable in ["alice\n", "# nothing\n"] {
        std::fs::write(&path, unusable).expect("write");
        settle().await;
        assert_eq!(gauge.get(), 1, "{unusable:?}, read many times over");
        assert_eq!(live.load().users(), vec!["alice"], "kept");
    }
    std::fs::remove_file(&path).expect("remove");
    settle().await;
    assert_eq!(gauge.get(), 1, "a file gone");
    std::fs::write(&path, "bob:new-password\n").expect("write");
    settle().await;
    assert_eq!(gauge.get(), 0, "applied");
    assert_eq!(live.load().users(), vec!["bob"]);
    std::fs::write(&path, "bob:new-password\nbroken\n").expect("write");
    settle().await;
    assert_eq!(gauge.get(), 1);
    std::fs::write(&path, "bob:new-password\n").expect("write");
    settle().await;
    assert_eq!(gauge.get(), 0, "back to the text in force");
    watch.stop().await;
}

/// A file in force that can no longer be read (its Secret unmounted, its permissions changed)
/// leaves its credentials accepted, one removed from it too, so the gauge an alert watches says
/// so at once, and clears as soon as a usable file is applied (found by mutation testing: a
/// watcher that set nothing on a failed read went unnoticed, the test above removing a file that
/// was already unusable, and so did one that cleared it a read after applying).
#[tokio::test(start_paused = true)]
async fn an_auth_file_in_force_that_becomes_unreadable_is_shown_as_stale() {
    use std::time::Duration;
    let (watch, path, live, gauge) = watching("alice:old-password\n");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(gauge.get(), 0, "start-up's file");
    std::fs::remove_file(&path).expect("remove");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(gauge.get(), 1, "a file in force, gone");
    assert_eq!(live.load().users(), vec!["alice"], "kept");
    std::fs::write(&path, "alice:old-password\n").expect("write");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(gauge.get(), 0, "back as the text in force");
    // Unreadable again, then rotated: cleared as the rotation is applied, not a read later.
    std::fs::remove_file(&path).expect("remove");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(gauge.get(), 1, "gone again");
    std::fs::write(&path, "bob:new-password\n").expect("write");
    while live.load().users() != vec!["bob"] {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gauge.get(), 0, "applied");
    watch.stop().await;
}

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

fn flag(values: &[&str]) -> Result<FlagCredentials, String> {
    parse_flag(&values.iter().map(ToString::to_string).collect::<Vec<_>>())
}

/// `eve:SECabc,SECdef:ghi` is eve's password `SECabc,SECdef:ghi` as much as two credentials: after
/// a comma, the text before a colon may be a piece of a password, so a refusal names the
/// credential by its place and says where a comma can go.
#[test]
fn a_refused_auth_credential_after_a_comma_is_named_by_its_place_and_never_quoted() {
    for value in [
        "eve:SECabc, SECdef:ghi",
        "eve:SECabc,SECdef:",
        "eve:SECabc,SECdef",
        "eve:SECabc,:SECdef",
    ] {
        let err = flag(&[value]).unwrap_err();
        assert!(err.starts_with("the 2nd credential "), "{value}: {err}");
        for secret in ["SECabc", "SECdef", "ghi"] {
            assert!(!err.contains(secret), "{value}: {secret} shown: {err}");
        }
        assert!(
            err.contains("a password there cannot contain one")
                && err.contains("--auth-file (one USER:PASS per line; a comma there is part"),
            "{value}: {err}"
        );
    }
    // Places count across values; the 1st credential of a value has a user for certain.
    let err = flag(&["a:b", "eve:,SECdef:ghi"]).unwrap_err();
    assert!(
        err.starts_with("the 2nd credential (user \"eve\") has an empty password. "),
        "{err}"
    );
    assert!(
        !err.contains("SECdef") && err.contains("--auth-file"),
        "{err}"
    );
    // A value without a comma needs no word about commas.
    let err = flag(&["a:b", " eve:pw"]).unwrap_err();
    assert_eq!(
        err,
        "the 2nd credential (user \"eve\") has white space at its start or end, or before its colon (a space, a tab, a newline)"
    );
    assert_eq!(
        flag(&["SECabc"]).unwrap_err(),
        "the 1st credential is not USER:PASS (it has no colon)"
    );
}

/// A value split at commas is accepted as the documented list (rotation through `BRIDGE_AUTH`),
/// but only the first user of each value is shown: the others may be pieces of a password.
#[test]
fn credentials_after_a_comma_are_accepted_but_their_users_are_not_shown() {
    let parsed = flag(&["x:y", "eve:SECabc,SECdef:ghi,jkl:mno"]).expect("valid");
    assert_eq!(parsed.comma_splits, vec![CommaSplit { first: 2, count: 3 }]);
    let c = Credentials::new(parsed.credentials);
    assert_eq!(
        c.users(),
        [
            "x",
            "eve",
            "<the 3rd --auth credential, user not shown>",
            "<the 4th --auth credential, user not shown>"
        ]
    );
    let shown = format!("{c:?}");
    for secret in ["SECabc", "SECdef", "ghi", "jkl", "mno"] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
    }
    for accepted in ["x:y", "eve:SECabc", "SECdef:ghi", "jkl:mno"] {
        assert_eq!(
            c.check(Some(basic(accepted).as_bytes())),
            Ok(()),
            "{accepted}"
        );
    }
    // Repeated values without commas: every user is one.
    let parsed = flag(&["old:one", "new:two"]).expect("valid");
    assert!(parsed.comma_splits.is_empty());
    assert_eq!(Credentials::new(parsed.credentials).users(), ["old", "new"]);
}

#[test]
fn the_warning_of_a_split_value_points_to_the_auth_file() {
    let two = CommaSplit { first: 1, count: 2 }.to_string();
    assert!(
        two.contains("split into 2 credentials (the 1st to the 2nd)")
            && two.contains("a password cannot contain a comma there")
            && two.contains("Put a credential whose password has a comma in --auth-file")
            && two.contains("The 2nd's user is not shown"),
        "{two}"
    );
    let more = CommaSplit {
        first: 11,
        count: 3,
    }
    .to_string();
    assert!(
        more.contains("(the 11th to the 13th)")
            && more.contains("The users of the 12th to the 13th are not shown"),
        "{more}"
    );
}

/// What the messages promise: in `--auth-file` a comma is part of the password.
#[test]
fn a_password_with_a_comma_is_one_credential_in_the_auth_file() {
    let c = Credentials::new(parse_file("eve:SECabc,SECdef:ghi\n").expect("valid"));
    assert_eq!(c.users(), ["eve"]);
    assert_eq!(
        c.check(Some(basic("eve:SECabc,SECdef:ghi").as_bytes())),
        Ok(())
    );
    assert_eq!(
        c.check(Some(basic("SECdef:ghi").as_bytes())),
        Err(AuthFailure::Wrong)
    );
}

/// The same credential in `--auth` and `--auth-file`, or twice in a file during a rotation, must
/// not cancel itself out (found by mutation testing: an XOR there went unnoticed).
#[test]
fn a_credential_configured_twice_is_still_accepted() {
    let c = creds(&["a:b", "a:b"]);
    assert_eq!(c.check(Some(basic("a:b").as_bytes())), Ok(()));
    let c = creds(&["a:b", "c:d", "a:b"]);
    assert_eq!(c.check(Some(basic("a:b").as_bytes())), Ok(()));
}

/// A space at the end of a user name, or of a password before a comma, is refused as one at the
/// start (only `" eve:pw"`, a space on both readings, was tested).
#[test]
fn a_space_at_either_end_of_a_user_or_a_password_is_refused() {
    let err = parse_file("eve :pw").unwrap_err();
    assert!(
        err.contains(
            "has white space at its start or end, or before its colon (a space, a tab, a newline)"
        ),
        "{err}"
    );
    let err = flag(&["a:b ,c:d"]).unwrap_err();
    assert!(
        err.contains(
            "has white space at its start or end, or before its colon (a space, a tab, a newline)"
        ),
        "{err}"
    );
    let err = parse_file("bob:").unwrap_err();
    assert_eq!(err, "line 1: the password of user \"bob\" cannot be empty");
}

#[test]
fn auth_is_required_once_a_credential_is_configured() {
    assert!(creds(&["a:b"]).required());
}

/// Any of many credentials is accepted and a wrong one refused, by a lookup of the presented
/// digest rather than a comparison with each (whose cost a stranger chose: 0.9 ms a 401 at
/// 20,000 users).
#[test]
fn any_of_many_credentials_is_accepted_and_a_wrong_one_refused() {
    let lines: Vec<String> = (0..20_000).map(|n| format!("user{n}:pw{n}")).collect();
    let c = Credentials::new(
        lines
            .iter()
            .map(|l| Credential::parse(l).expect("valid"))
            .collect(),
    );
    for n in [0, 7_777, 19_999] {
        let header = basic(&format!("user{n}:pw{n}"));
        assert_eq!(c.check(Some(header.as_bytes())), Ok(()), "user{n}");
    }
    let wrong = basic("user5:pw6");
    assert_eq!(c.check(Some(wrong.as_bytes())), Err(AuthFailure::Wrong));
}

/// An `--auth-file` that cannot be read is told of once, not at every read a second, and told of
/// again once it has been readable in between: the log line is what says why `auth_file_stale`
/// is 1 (found by mutation testing: the unit tests missed a watcher that never logged it, which
/// only tests/auth_reload.rs caught, and nothing caught one that logged it at every read).
#[tokio::test(start_paused = true)]
async fn an_auth_file_that_cannot_be_read_is_logged_once_per_change_not_at_every_read() {
    use std::time::Duration;
    const CANNOT_READ: &str = "cannot read --auth-file";
    let (kept, _default) = crate::telemetry::Kept::on_this_thread();
    let told = || kept.text().matches(CANNOT_READ).count();
    let (watch, path, live, _) = watching("alice:old-password\n");
    let settle = || tokio::time::sleep(Duration::from_millis(4500));

    settle().await;
    assert_eq!(told(), 0, "{}", kept.text());
    std::fs::remove_file(&path).expect("remove");
    settle().await;
    assert_eq!(told(), 1, "gone, read four times over: {}", kept.text());
    std::fs::write(&path, "alice:old-password\n").expect("write");
    settle().await;
    std::fs::remove_file(&path).expect("remove");
    settle().await;
    assert_eq!(told(), 2, "gone again after a read: {}", kept.text());
    assert_eq!(live.load().users(), vec!["alice"], "kept");
    watch.stop().await;
}
