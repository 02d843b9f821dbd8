//! A client key encrypted with a password (`ssl.key.password`), right and wrong, and mTLS with
//! SASL_SSL: a client certificate and SCRAM credentials on one connection.
//!
//! rcgen writes no encrypted key: `openssl pkcs8 -topk8 -v2 aes-256-cbc` encrypts rcgen's
//! PKCS#8 key, as an operator's tooling (cert-manager's `encryptedKey`, a CA's export) would.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::front::{Ca, TlsFront};
use super::{file, CLIENT_CN};
use crate::common::{self, stop_with, OutputWithin};
use crate::sasl::front::Accepts;
use crate::sasl::{
    bridge, cluster, delivers_one, password_file, post, readyz, stored, KAFKA_PASSWORD, KAFKA_USER,
};

const KEY_PASSWORD: &str = "Key-Pw-7c1e9a3d";
const WRONG_KEY_PASSWORD: &str = "Wrong-Key-Pw-2b8f5e60";

/// `key_pem` (PKCS#8) encrypted with `password` (PBES2, AES-256-CBC). The password goes to
/// openssl through its environment, not its command line.
pub(super) fn encrypted(key_pem: &str, password: &str) -> String {
    let mut openssl = Command::new("openssl")
        .args(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout"])
        .arg("env:QIKCHAT_TEST_KEY_PASSWORD")
        .env("QIKCHAT_TEST_KEY_PASSWORD", password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl, to encrypt the client key (rcgen cannot)");
    let mut stdin = openssl.stdin.take().expect("stdin");
    stdin
        .write_all(key_pem.as_bytes())
        .expect("the key to openssl");
    drop(stdin);
    let out = openssl.wait_with_output().expect("openssl");
    assert!(out.status.success(), "openssl pkcs8: {:?}", out.status);
    let pem = String::from_utf8(out.stdout).expect("PEM");
    assert!(
        pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{pem}"
    );
    pem
}

/// The environment of a bridge over `protocol` that trusts `ca` and presents a client
/// certificate of `ca`'s (CN [`CLIENT_CN`]) whose key is encrypted with `KEY_PASSWORD`; the
/// files in `dir`; plus `more`.
fn encrypted_key_env(
    ca: &Ca,
    protocol: &str,
    dir: &tempfile::TempDir,
    more: &[(&str, &str)],
) -> Vec<(String, String)> {
    let client = ca.client(CLIENT_CN);
    let mut env = vec![
        ("KAFKA_SECURITY_PROTOCOL", protocol.to_string()),
        ("KAFKA_SSL_CA_LOCATION", file(dir, "ca.crt", &ca.pem)),
        (
            "KAFKA_SSL_CERTIFICATE_LOCATION",
            file(dir, "tls.crt", &client.cert_pem),
        ),
        (
            "KAFKA_SSL_KEY_LOCATION",
            file(dir, "tls.key", &encrypted(&client.key_pem, KEY_PASSWORD)),
        ),
    ];
    env.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The bridge against `brokers`, with `env` and then `args`, run until it exits by itself
/// (within 30 s, or it is killed and the test fails): its exit code, and stdout then stderr.
pub(super) fn run_to_exit(
    brokers: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Option<i32>, String) {
    let credential = format!("{}:{}", common::USER, common::PASS);
    let out = Command::new(env!("CARGO_BIN_EXE_qikchat-bridge"))
        .env_clear()
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied())
        .args(common::ANY_PORTS)
        .args(["--kafka-brokers", brokers, "--auth", &credential])
        .args(args)
        .output_within(Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text.into_owned())
}

/// mTLS with an encrypted key and its password: delivered; `--check-config` takes it and shows
/// the password redacted; neither the log (librdkafka's configuration dump and TLS debug lines
/// included), `/readyz` nor `/metrics` holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_client_key_delivers_and_its_password_shows_nowhere() {
    let started = Instant::now();
    let cluster = cluster();
    let ca = Ca::new("qikchat test CA");
    let front = TlsFront::start(&cluster.bootstrap_servers(), &ca.server(), Some(&ca), None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = encrypted_key_env(
        &ca,
        "SSL",
        &dir,
        &[("KAFKA_SSL_KEY_PASSWORD", KEY_PASSWORD)],
    );
    let brokers = front.addr.to_string();

    let (code, checked) = run_to_exit(&brokers, &refs(&env), &["--check-config"]);
    assert_eq!(code, Some(0), "{checked}");
    assert!(
        checked.contains(r#""ssl.key.password": "<redacted>""#),
        "{checked}"
    );
    assert!(!checked.contains(KEY_PASSWORD), "{checked}");

    let debug = ["-X", "debug=conf,security,broker"];
    let mut bridge = bridge(&brokers, &refs(&env), &debug, "debug");
    common::wait_ready_at(bridge.admin).await;
    let (status, ready) = readyz(bridge.admin).await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", bridge.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert_eq!(post(bridge.port).await.status(), 200);
    assert_eq!(stored(&cluster.bootstrap_servers()).await, common::TEXT);
    assert!(stop_with(&mut bridge.child, "-TERM").success());
    let log = bridge.log_to_end();

    assert_eq!(status, 200, "{ready}");
    front.all_admitted_as(Some(CLIENT_CN));
    // The dump of librdkafka's configuration was logged, so the password had a chance to show.
    assert!(log.contains("ssl.key.location"), "{log}");
    for (what, text) in [("log", &log), ("/readyz", &ready), ("/metrics", &metrics)] {
        assert!(
            !text.contains(KEY_PASSWORD),
            "the password in {what}:\n{text}"
        );
    }
    eprintln!("an encrypted key: {:?}", started.elapsed());
}

/// A wrong key password (from a file, as the chart mounts it): `--check-config` and start-up
/// both refuse it with exit status 2, naming the key; no connection is tried; neither password
/// is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_password_is_refused_at_start_up_and_never_printed() {
    let started = Instant::now();
    let cluster = cluster();
    let ca = Ca::new("qikchat test CA");
    let front = TlsFront::start(&cluster.bootstrap_servers(), &ca.server(), Some(&ca), None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = password_file(&dir, "key-password", WRONG_KEY_PASSWORD);
    let wrong = ("KAFKA_SSL_KEY_PASSWORD_FILE", wrong.to_str().expect("path"));
    let env = encrypted_key_env(&ca, "SSL", &dir, &[wrong]);
    let brokers = front.addr.to_string();

    let (checked, check_output) = run_to_exit(&brokers, &refs(&env), &["--check-config"]);
    let debug = ["-X", "debug=all"];
    let (started_code, log) = run_to_exit(&brokers, &refs(&env), &debug);

    for (code, text) in [(checked, &check_output), (started_code, &log)] {
        assert_eq!(code, Some(2), "{text}");
        assert!(text.contains("ssl.key.location failed"), "{text}");
        // librdkafka's own words are the same for a file that holds no key.
        let hint = "(the key is encrypted: check that ssl.key.password is its password";
        assert!(text.contains(hint), "{text}");
        for secret in [WRONG_KEY_PASSWORD, KEY_PASSWORD] {
            assert!(!text.contains(secret), "a password printed:\n{text}");
        }
    }
    assert!(log.contains("cannot start"), "{log}");
    assert!(front.connections().is_empty() && front.failed_handshakes() == 0);
    eprintln!("a wrong key password: {:?}", started.elapsed());
}

/// mTLS and SASL_SSL at once: the front requires the client certificate and then SCRAM-SHA-256;
/// every connection is the certificate's and authenticates as the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_sasl_ssl_scram_delivers_and_the_broker_sees_the_cn_and_the_user() {
    let started = Instant::now();
    let cluster = cluster();
    let ca = Ca::new("qikchat test CA");
    let accepts = Accepts::user(KAFKA_USER, KAFKA_PASSWORD);
    let bootstrap = cluster.bootstrap_servers();
    let front = TlsFront::start(&bootstrap, &ca.server(), Some(&ca), Some(accepts)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let password = password_file(&dir, "password", KAFKA_PASSWORD);
    let sasl = [
        ("KAFKA_SSL_KEY_PASSWORD", KEY_PASSWORD),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
        ("KAFKA_SASL_USERNAME", KAFKA_USER),
        ("KAFKA_SASL_PASSWORD_FILE", password.to_str().expect("path")),
    ];
    let env = encrypted_key_env(&ca, "SASL_SSL", &dir, &sasl);
    let mut bridge = bridge(
        &front.addr.to_string(),
        &refs(&env),
        &[],
        common::LOG_FILTER,
    );
    let log = delivers_one(&mut bridge, &cluster).await;
    front.all_admitted_as(Some(CLIENT_CN));
    front.all_authenticated_as("SCRAM-SHA-256", KAFKA_USER);
    for secret in [KAFKA_PASSWORD, KEY_PASSWORD] {
        assert!(!log.contains(secret), "{log}");
    }
    eprintln!("mTLS with SASL_SSL: {:?}", started.elapsed());
}
