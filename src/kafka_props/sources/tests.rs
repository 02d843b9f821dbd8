//! Kafka sources tests: properties made again from files, and the fingerprints that watch them.

use super::*;
use crate::kafka_props::tests::{env, limits};

#[test]
fn the_properties_are_made_again_from_the_files_as_they_are_now() {
    let sources = KafkaSources::new(
        env(&[
            ("KAFKA_SASL_PASSWORD_FILE", "/run/secrets/password"),
            ("HOME", "/root"),
        ]),
        &["sasl.username=bridge".to_string()],
        limits(Duration::from_secs(2)),
    );
    let read = |text: &'static str| move |_: &Path| Ok(format!("{text}\n"));
    let first = sources.properties(&read("first")).expect("valid");
    let second = sources.properties(&read("second")).expect("valid");
    assert_eq!(first.get("sasl.password"), Some("first"));
    assert_eq!(second.get("sasl.password"), Some("second"));
    assert_eq!(second.get("sasl.username"), Some("bridge"));
    assert_eq!(second.get("message.timeout.ms"), Some("2000"));
}

#[test]
fn a_file_changed_between_start_up_and_the_first_look_is_a_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("password");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&password, "first").expect("write");
    std::fs::write(&ca, "first CA").expect("write");
    let sources = KafkaSources::new(
        env(&[(
            "KAFKA_SASL_PASSWORD_FILE",
            password.to_str().expect("utf-8"),
        )]),
        &[format!("ssl.ca.location={}", ca.display())],
        limits(Duration::from_secs(2)),
    );
    let (props, watched) = sources
        .properties_watched(&|p: &Path| std::fs::read_to_string(p))
        .expect("valid");
    assert_eq!(watched.files(), sources.files(&props));
    assert_eq!(watched.now(), watched, "nothing changed");
    // Written again with the same text, as a new file renamed over it (as a Kubernetes volume's
    // update does): a new inode and time, the same contents, so no producer is made again.
    let next = dir.path().join("password.next");
    std::fs::write(&next, "first").expect("write");
    std::fs::rename(&next, &password).expect("rename");
    assert_eq!(watched.now(), watched, "the same text is no change");
    std::fs::write(&ca, "second CA").expect("write");
    assert_ne!(watched.now(), watched);
    std::fs::remove_file(&password).expect("remove");
    let gone = watched.now();
    std::fs::write(&password, "first").expect("write");
    assert_ne!(gone, gone.now(), "a file that comes back is a change");

    // A new location: the file watched before keeps its old fingerprint, so a rotation
    // between that fingerprint and the rebase is still a change.
    let key = dir.path().join("tls.key");
    std::fs::write(&key, "key").expect("write");
    let before = watched.clone();
    std::fs::write(&password, "rotated").expect("write");
    let rebased = before.rebase(vec![password.clone(), key.clone()]);
    assert_eq!(rebased.files(), [password, key]);
    assert_ne!(rebased.now(), rebased);
}

#[test]
fn a_ca_directory_changes_when_a_certificate_in_it_is_added_changed_or_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cas = dir.path().join("cas");
    std::fs::create_dir(&cas).expect("mkdir");
    std::fs::write(cas.join("1a2b3c4d.0"), "first CA").expect("write");
    let watched = Watched::read(vec![cas.clone()]);
    assert!(
        watched.0[0].1.is_some(),
        "a directory is read, not unreadable"
    );
    assert_eq!(watched.now(), watched, "nothing changed");
    std::fs::create_dir(cas.join("..data")).expect("a subdirectory is no certificate");
    assert_eq!(watched.now(), watched);

    std::fs::write(cas.join("5e6f7a8b.0"), "second CA").expect("write");
    let added = watched.now();
    assert_ne!(added, watched, "a certificate added");
    std::fs::write(cas.join("5e6f7a8b.0"), "second CA, renewed").expect("write");
    let changed = added.now();
    assert_ne!(changed, added, "a certificate changed");
    std::fs::remove_file(cas.join("5e6f7a8b.0")).expect("remove");
    assert_eq!(changed.now(), watched, "back to the first CA alone");

    // The same bytes split differently between name and contents are another directory.
    std::fs::remove_file(cas.join("1a2b3c4d.0")).expect("remove");
    std::fs::write(cas.join("1a2b3c4d.0f"), "irst CA").expect("write");
    assert_ne!(watched.now(), watched);
}

/// OpenSSL finds a certificate in a CA directory by its hashed name (`c_rehash`): the same
/// certificate under another name is another directory to librdkafka, so a change too.
#[test]
fn a_certificate_renamed_in_a_ca_directory_is_a_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cas = dir.path().join("cas");
    std::fs::create_dir(&cas).expect("mkdir");
    std::fs::write(cas.join("1a2b3c4d.0"), "first CA").expect("write");
    let watched = Watched::read(vec![cas.clone()]);
    std::fs::rename(cas.join("1a2b3c4d.0"), cas.join("5e6f7a8b.0")).expect("rename");
    assert_ne!(watched.now(), watched);
}

#[test]
fn the_watched_files_are_the_secret_files_and_the_ones_librdkafka_reads() {
    let sources = KafkaSources::new(
        env(&[
            ("KAFKA_SASL_PASSWORD_FILE", "/s/password"),
            ("KAFKA_SSL_KEY_LOCATION", "/tls/tls.key"),
            ("KAFKA_SSL_CA_LOCATION", "probe"),
            // Not a `.location`, and read by librdkafka too (found by mutation testing: left
            // out, a rotated keytab went unnoticed, though the README says it is watched).
            ("KAFKA_SASL_KERBEROS_KEYTAB", "/krb/bridge.keytab"),
        ]),
        &[
            "ssl.certificate.location=/tls/tls.crt".to_string(),
            "ssl.key.location=/tls/tls.key".to_string(),
        ],
        limits(Duration::from_secs(2)),
    );
    let props = sources
        .properties(&|_: &Path| Ok("pw".into()))
        .expect("valid");
    assert_eq!(
        sources.files(&props),
        [
            "/krb/bridge.keytab",
            "/s/password",
            "/tls/tls.crt",
            "/tls/tls.key"
        ]
        .map(PathBuf::from)
    );
}

/// The sources are kept beside the producer, in structures that are `Debug`: their variables and
/// flags hold secrets (`KAFKA_SASL_PASSWORD`, `-X sasl.oauthbearer.client.secret=...`), so only
/// their names are shown (found by mutation testing: nothing checked it).
#[test]
fn the_sources_show_the_names_of_their_variables_and_flags_never_the_values() {
    let sources = KafkaSources::new(
        env(&[("KAFKA_SASL_PASSWORD", "EnvS3cret-77")]),
        &["sasl.oauthbearer.client.secret=FlagS3cret-88".to_string()],
        limits(Duration::from_secs(2)),
    );
    let shown = format!("{sources:?}");
    assert!(!shown.contains("S3cret"), "{shown}");
    assert!(
        shown.contains("KAFKA_SASL_PASSWORD") && shown.contains("sasl.oauthbearer.client.secret"),
        "{shown}"
    );
}

/// Only `KAFKA_*_FILE` variables hold Kafka's secrets: the bridge's own `BRIDGE_AUTH_FILE`, or
/// another program's `SSL_CERT_FILE`, watched here, would make every producer again whenever
/// the webhook credentials rotate.
#[test]
fn file_variables_of_other_settings_are_not_watched_for_kafka() {
    let sources = KafkaSources::new(
        env(&[
            ("KAFKA_SASL_PASSWORD_FILE", "/s/password"),
            ("BRIDGE_AUTH_FILE", "/s/webhook-credentials"),
            ("SSL_CERT_FILE", "/etc/ssl/cert.pem"),
        ]),
        &[],
        limits(Duration::from_secs(2)),
    );
    let props = sources
        .properties(&|_: &Path| Ok("pw".into()))
        .expect("valid");
    assert_eq!(sources.files(&props), [PathBuf::from("/s/password")]);
    let (_, watched) = sources
        .properties_watched(&|_: &Path| Ok("pw".into()))
        .expect("valid");
    assert_eq!(watched.files(), [PathBuf::from("/s/password")]);
}

/// A secret rotated while the properties are being made from it (between the read of the file
/// and the fingerprint) must still be seen as a change: fingerprinted after the read, the new
/// text would pass for the one in use, and the producer keep the old password for good.
#[test]
fn a_secret_rotated_while_it_is_read_is_a_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("password");
    std::fs::write(&password, "first").expect("write");
    let sources = KafkaSources::new(
        env(&[(
            "KAFKA_SASL_PASSWORD_FILE",
            password.to_str().expect("utf-8"),
        )]),
        &[],
        limits(Duration::from_secs(2)),
    );
    let (props, watched) = sources
        .properties_watched(&|p: &Path| {
            let text = std::fs::read_to_string(p);
            std::fs::write(p, "second")?;
            text
        })
        .expect("valid");
    assert_eq!(props.get("sasl.password"), Some("first"));
    assert_ne!(watched.now(), watched, "the rotation is seen");
}
