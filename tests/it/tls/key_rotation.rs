//! An encrypted client key renewed together with its password, each in a file of its own
//! (`ssl.key.location`, `KAFKA_SSL_KEY_PASSWORD_FILE`), which two Secrets update one after the
//! other: the new key with the old password cannot be used, so the working producer stays; once
//! the password follows, the new certificate is taken without a restart.

use std::time::{Duration, Instant};

use super::front::{Ca, TlsFront};
use super::keys::encrypted;
use super::{file, CLIENT_CN};
use crate::common::{self, stop_with};
use crate::sasl::rotation::{metric, reloads};
use crate::sasl::{bridge, cluster, password_file, post, read_back};

const FIRST_PASSWORD: &str = "Key-Pw-first-4d0b71";
const SECOND_PASSWORD: &str = "Key-Pw-second-9e52c8";
const RENEWED_CN: &str = "qikchat-bridge-renewed";
const STALE: &str = "qikchat_bridge_kafka_client_files_stale{role=\"webhooks\"} ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_renewed_before_its_password_keeps_the_producer_until_the_password_follows() {
    let started = Instant::now();
    let cluster = cluster();
    let ca = Ca::new("qikchat test CA");
    let front = TlsFront::start(&cluster.bootstrap_servers(), &ca.server(), Some(&ca), None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let first = ca.client(CLIENT_CN);
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let password = password_file(&dir, "key-password", FIRST_PASSWORD);
    let path = |p: &std::path::Path| p.to_str().expect("path").to_string();
    let env = [
        ("KAFKA_SECURITY_PROTOCOL", "SSL".to_string()),
        ("KAFKA_SSL_CA_LOCATION", file(&dir, "ca.crt", &ca.pem)),
        (
            "KAFKA_SSL_CERTIFICATE_LOCATION",
            file(&dir, "tls.crt", &first.cert_pem),
        ),
        (
            "KAFKA_SSL_KEY_LOCATION",
            file(&dir, "tls.key", &encrypted(&first.key_pem, FIRST_PASSWORD)),
        ),
        ("KAFKA_SSL_KEY_PASSWORD_FILE", path(&password)),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut bridge = bridge(&front.addr.to_string(), &env, &[], common::LOG_FILTER);
    common::wait_ready_at(bridge.admin).await;
    assert_eq!(post(bridge.port).await.status(), 200, "before the renewal");

    // The certificate and its key first, the key encrypted with a password not there yet.
    let renewed = ca.client(RENEWED_CN);
    common::rotate(&cert, &renewed.cert_pem);
    common::rotate(&key, &encrypted(&renewed.key_pem, SECOND_PASSWORD));
    common::eventually("the unusable key refused", async || {
        metric(bridge.admin, &reloads("failed")).await.as_deref() != Some("0")
    })
    .await;
    assert_eq!(metric(bridge.admin, STALE).await.as_deref(), Some("1"));
    assert_eq!(
        metric(bridge.admin, &reloads("rebuilt")).await.as_deref(),
        Some("0")
    );
    assert_eq!(post(bridge.port).await.status(), 200, "between the two");

    // Then the password: the renewed certificate is taken, and only it is admitted from now on.
    let followed = Instant::now();
    common::rotate(&password, &format!("{SECOND_PASSWORD}\n"));
    common::eventually("the renewed key taken", async || {
        metric(bridge.admin, &reloads("rebuilt")).await.as_deref() == Some("1")
    })
    .await;
    let took = followed.elapsed();
    assert_eq!(metric(bridge.admin, STALE).await.as_deref(), Some("0"));
    front.admit_only(RENEWED_CN);
    assert_eq!(post(bridge.port).await.status(), 200, "after the renewal");
    assert!(stop_with(&mut bridge.child, "-TERM").success());
    let log = bridge.log_to_end();

    let got = read_back(&cluster.bootstrap_servers(), 3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|r| r.value == common::TEXT));
    assert!(
        front
            .connections()
            .iter()
            .any(|c| c.cn.as_deref() == Some(RENEWED_CN) && c.admitted),
        "{:?}",
        front.connections()
    );
    assert!(log.contains("ssl.key.location failed"), "{log}");
    for secret in [FIRST_PASSWORD, SECOND_PASSWORD] {
        assert!(!log.contains(secret), "a key password in the log:\n{log}");
    }
    eprintln!(
        "the renewed key taken {took:?} after its password; {:?} in all",
        started.elapsed()
    );
}
