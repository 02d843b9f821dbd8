//! mTLS with a PKCS#12 keystore (`ssl.keystore.location`, `ssl.keystore.password`), as Strimzi's
//! KafkaUser Secrets carry it (`user.p12`, `user.password`): delivered, the password shown
//! nowhere; a wrong one refused at start-up.

use std::process::{Command, Stdio};
use std::time::Instant;

use super::front::{Ca, TlsFront};
use super::keys::run_to_exit;
use super::{file, CLIENT_CN};
use crate::sasl::{bridge, cluster, delivers_one, password_file};

const KEYSTORE_PASSWORD: &str = "Keystore-Pw-3a6e0f91";
const WRONG_KEYSTORE_PASSWORD: &str = "Wrong-Keystore-Pw-c25d7b";

/// A PKCS#12 keystore of a client certificate of `ca`'s (CN [`CLIENT_CN`]) in `dir`, encrypted
/// with `KEYSTORE_PASSWORD` (openssl's defaults: AES-256-CBC, PBKDF2): its path.
fn keystore(ca: &Ca, dir: &tempfile::TempDir) -> String {
    let client = ca.client(CLIENT_CN);
    let (cert, key) = (
        file(dir, "user.crt", &client.cert_pem),
        file(dir, "user.key", &client.key_pem),
    );
    let p12 = dir.path().join("user.p12");
    let status = Command::new("openssl")
        .args(["pkcs12", "-export", "-in", &cert, "-inkey", &key, "-out"])
        .arg(&p12)
        .args(["-passout", "env:QIKCHAT_TEST_KEYSTORE_PASSWORD"])
        .env("QIKCHAT_TEST_KEYSTORE_PASSWORD", KEYSTORE_PASSWORD)
        .stdin(Stdio::null())
        .status()
        .expect("openssl, to make a PKCS#12 keystore");
    assert!(status.success(), "openssl pkcs12: {status:?}");
    std::fs::remove_file(&key).expect("only the keystore holds the key");
    p12.to_str().expect("path").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_a_pkcs12_keystore_delivers_and_its_password_shows_nowhere() {
    let started = Instant::now();
    let cluster = cluster();
    let ca = Ca::new("qikchat test CA");
    let front = TlsFront::start(&cluster.bootstrap_servers(), &ca.server(), Some(&ca), None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let password = password_file(&dir, "user.password", KEYSTORE_PASSWORD);
    let env = [
        ("KAFKA_SECURITY_PROTOCOL", "SSL".to_string()),
        ("KAFKA_SSL_CA_LOCATION", file(&dir, "ca.crt", &ca.pem)),
        ("KAFKA_SSL_KEYSTORE_LOCATION", keystore(&ca, &dir)),
        (
            "KAFKA_SSL_KEYSTORE_PASSWORD_FILE",
            password.to_str().expect("path").to_string(),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let debug = ["-X", "debug=conf,security,broker"];
    let mut bridge = bridge(&front.addr.to_string(), &env, &debug, "debug");
    let log = delivers_one(&mut bridge, &cluster).await;
    front.all_admitted_as(Some(CLIENT_CN));
    assert!(log.contains("ssl.keystore.location"), "{log}");
    assert!(!log.contains(KEYSTORE_PASSWORD), "{log}");

    // The same keystore with a wrong password: `--check-config` refuses it (exit status 2).
    std::fs::write(&password, format!("{WRONG_KEYSTORE_PASSWORD}\n")).expect("write");
    let (code, text) = run_to_exit(&front.addr.to_string(), &env, &["--check-config"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("ssl.keystore.location"), "{text}");
    for secret in [KEYSTORE_PASSWORD, WRONG_KEYSTORE_PASSWORD] {
        assert!(!text.contains(secret), "{text}");
    }
    eprintln!("a PKCS#12 keystore: {:?}", started.elapsed());
}
