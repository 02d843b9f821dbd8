//! `ssl.ca.location` naming a directory of CA certificates under OpenSSL's hashed names (as
//! `/etc/ssl/certs`, or a Secret's CAs after `openssl rehash`), which librdkafka accepts: the
//! broker's CA found there, and a CA added there later taken without a restart (README: a CA
//! directory is watched as a whole).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::front::{Ca, TlsFront};
use super::keys::run_to_exit;
use crate::common::{self, stop_with};
use crate::sasl::rotation::{metric, reloads};
use crate::sasl::{bridge, cluster, delivers_one, post, read_back, readyz, Outage};

/// Writes each CA to `dir/NAME.pem` and runs `openssl rehash` there: the `HASH.0` links OpenSSL
/// looks a certificate's issuer up by.
fn rehashed(dir: &Path, cas: &[(&str, &Ca)]) {
    for (name, ca) in cas {
        std::fs::write(dir.join(format!("{name}.pem")), &ca.pem).expect("write a CA");
    }
    let status = Command::new("openssl")
        .arg("rehash")
        .arg(dir)
        .status()
        .expect("openssl, to name the CA directory's certificates by hash");
    assert!(status.success(), "openssl rehash: {status:?}");
}

fn ssl_with_ca_directory(dir: &Path) -> [(&'static str, String); 2] {
    [
        ("KAFKA_SECURITY_PROTOCOL", "SSL".to_string()),
        (
            "KAFKA_SSL_CA_LOCATION",
            dir.to_str().expect("path").to_string(),
        ),
    ]
}

/// The broker's CA among others in the directory: `--check-config` takes it, the record is
/// delivered, and the directory, left alone, is no change (no reload, nothing stale).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_with_a_ca_directory_delivers_the_record() {
    let started = Instant::now();
    let cluster = cluster();
    let ca = Ca::new("qikchat test CA");
    let front = TlsFront::start(&cluster.bootstrap_servers(), &ca.server(), None, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let other = Ca::new("another CA");
    rehashed(dir.path(), &[("another", &other), ("qikchat", &ca)]);
    let env = ssl_with_ca_directory(dir.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let brokers = front.addr.to_string();

    let (code, checked) = run_to_exit(&brokers, &env, &["--check-config"]);
    assert_eq!(code, Some(0), "{checked}");

    let mut bridge = bridge(&brokers, &env, &[], common::LOG_FILTER);
    common::wait_ready_at(bridge.admin).await;
    // Files are read every second: a directory read differently each time would be a change.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for result in ["rebuilt", "failed"] {
        let count = metric(bridge.admin, &reloads(result)).await;
        assert_eq!(count.as_deref(), Some("0"), "{result}");
    }
    delivers_one(&mut bridge, &cluster).await;
    front.all_admitted_as(None);
    eprintln!("SSL with a CA directory: {:?}", started.elapsed());
}

/// The broker's CA renewed in place (the same name, a new key: one hash name for both), as
/// cert-manager renews a CA: OpenSSL's lookup in a directory keeps the certificate it cached for
/// that name, so only a producer made again (the directory watched as a whole) trusts the new
/// one. Before the renewal an outage (every handshake refused); after it, delivered without a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_renewed_in_the_directory_is_taken_without_a_restart() {
    let started = Instant::now();
    let cluster = cluster();
    let renewed = Ca::new("qikchat test CA");
    let front = TlsFront::start(&cluster.bootstrap_servers(), &renewed.server(), None, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    rehashed(dir.path(), &[("qikchat", &Ca::new("qikchat test CA"))]);
    let env = ssl_with_ca_directory(dir.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut bridge = bridge(&front.addr.to_string(), &env, &[], common::LOG_FILTER);
    common::eventually("a refused handshake", async || {
        front.failed_handshakes() > 0
    })
    .await;
    let outage = Outage::seen(&bridge).await;
    outage.holds();
    let (_, reason) = readyz(bridge.admin).await;
    assert!(reason.contains("certificate verify failed"), "{reason}");

    let renewal = Instant::now();
    // The same name, so the same hash: its link names the renewed file, no rehash needed.
    common::rotate(&dir.path().join("qikchat.pem"), &renewed.pem);
    common::eventually("ready with the renewed CA", async || {
        readyz(bridge.admin).await.0 == 200
    })
    .await;
    let took = renewal.elapsed();
    let rebuilt = metric(bridge.admin, &reloads("rebuilt")).await;
    assert_eq!(post(bridge.port).await.status(), 200);
    assert!(stop_with(&mut bridge.child, "-TERM").success());
    let got = read_back(&cluster.bootstrap_servers(), 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].value, common::TEXT);
    assert_eq!(rebuilt.as_deref(), Some("1"));
    assert!(front.connections().iter().all(|c| c.admitted));
    eprintln!(
        "the renewed CA taken {took:?} after the renewal; {:?} in all",
        started.elapsed()
    );
}
