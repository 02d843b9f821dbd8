//! TLS end to end: the bridge, run as a process with `security.protocol` SSL or SASL_SSL, produces
//! through a broker that speaks TLS and checks its certificates, and a consumer reads the record
//! back from the mock cluster.
//!
//! librdkafka's mock cluster speaks no TLS (nor SASL), so [`TlsFront`] is the TLS half of a broker
//! in front of it: a certificate of the test's own CA (made with rcgen), optionally a client
//! certificate required and its subject CN recorded, and then the SASL front's relay, which names
//! the front in the mock's Metadata answers. Here: a CA file (SSL), mTLS, and SASL_SSL with
//! SCRAM; a CA that signed another broker (an outage) in `outage`, the client certificate renewed
//! in place (cert-manager) in `rotation`, an encrypted client key (its password right and wrong)
//! and mTLS with SASL_SSL in `keys`, such a key renewed before its password in `key_rotation`, a
//! PKCS#12 keystore in `keystore`, a directory of CAs in `ca_dir`.

mod ca_dir;
mod front;
mod key_rotation;
mod keys;
mod keystore;
mod outage;
mod rotation;

use std::path::PathBuf;
use std::time::Instant;

use crate::common::{self, Spawned};
use crate::sasl::front::Accepts;
use crate::sasl::{bridge, cluster, delivers_one, password_file, KAFKA_PASSWORD, KAFKA_USER};
use front::{Ca, TlsFront};

/// The client certificate's subject CN in the mTLS tests.
const CLIENT_CN: &str = "qikchat-bridge";

fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path: PathBuf = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("path").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_with_a_ca_file_delivers_the_record() {
    let started = Instant::now();
    let cluster = cluster();
    let ca = Ca::new("qikchat test CA");
    let front = TlsFront::start(&cluster.bootstrap_servers(), &ca.server(), None, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = file(&dir, "ca.crt", &ca.pem);
    let mut bridge = bridge(
        &front.addr.to_string(),
        &[
            ("KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("KAFKA_SSL_CA_LOCATION", &ca_file),
        ],
        &[],
        common::LOG_FILTER,
    );
    delivers_one(&mut bridge, &cluster).await;
    front.all_admitted_as(None);
    eprintln!("SSL: {:?}", started.elapsed());
}

/// The bridge against `front` over SSL, trusting `trusted`, with a client certificate of
/// `signer`'s (CN [`CLIENT_CN`]), its files in `dir`; and the client's key, in PEM.
fn with_client_certificate(
    front: &TlsFront,
    trusted: &Ca,
    signer: &Ca,
    dir: &tempfile::TempDir,
) -> (Spawned, String) {
    let client = signer.client(CLIENT_CN);
    let (ca_file, cert_file, key_file) = (
        file(dir, "ca.crt", &trusted.pem),
        file(dir, "tls.crt", &client.cert_pem),
        file(dir, "tls.key", &client.key_pem),
    );
    let bridge = bridge(
        &front.addr.to_string(),
        &[
            ("KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("KAFKA_SSL_CA_LOCATION", &ca_file),
            ("KAFKA_SSL_CERTIFICATE_LOCATION", &cert_file),
            ("KAFKA_SSL_KEY_LOCATION", &key_file),
        ],
        &[],
        common::LOG_FILTER,
    );
    (bridge, client.key_pem)
}

/// mTLS: the front requires a client certificate its CA signed; the bridge presents the one in
/// `ssl.certificate.location` and `ssl.key.location`, and every connection the front took was
/// that certificate's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_a_client_certificate_delivers_and_the_broker_sees_its_cn() {
    let started = Instant::now();
    let cluster = cluster();
    let ca = Ca::new("qikchat test CA");
    let front = TlsFront::start(&cluster.bootstrap_servers(), &ca.server(), Some(&ca), None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut bridge, _) = with_client_certificate(&front, &ca, &ca, &dir);
    let log = delivers_one(&mut bridge, &cluster).await;
    front.all_admitted_as(Some(CLIENT_CN));
    assert!(!log.contains("PRIVATE KEY"), "{log}");
    eprintln!("mTLS: {:?}", started.elapsed());
}

/// SASL_SSL: SCRAM-SHA-512 inside TLS, through the same front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_with_scram_sha_512_delivers_the_record() {
    let started = Instant::now();
    let cluster = cluster();
    let ca = Ca::new("qikchat test CA");
    let accepts = Accepts::user(KAFKA_USER, KAFKA_PASSWORD);
    let bootstrap = cluster.bootstrap_servers();
    let front = TlsFront::start(&bootstrap, &ca.server(), None, Some(accepts)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = file(&dir, "ca.crt", &ca.pem);
    let password = password_file(&dir, "password", KAFKA_PASSWORD);
    let mut bridge = bridge(
        &front.addr.to_string(),
        &[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SSL_CA_LOCATION", &ca_file),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", KAFKA_USER),
            ("KAFKA_SASL_PASSWORD_FILE", password.to_str().expect("path")),
        ],
        &[],
        common::LOG_FILTER,
    );
    let log = delivers_one(&mut bridge, &cluster).await;
    front.all_authenticated_as("SCRAM-SHA-512", KAFKA_USER);
    front.all_admitted_as(None);
    assert!(!log.contains(KAFKA_PASSWORD), "{log}");
    eprintln!("SASL_SSL: {:?}", started.elapsed());
}
