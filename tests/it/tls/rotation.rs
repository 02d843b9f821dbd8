//! The client certificate renewed in place, as cert-manager does through a Kubernetes Secret
//! volume: the files are links into `..data`, a link swapped atomically to a new directory; the
//! broker then takes only the new certificate, and the bridge goes on delivering with it.

use std::path::Path;
use std::time::{Duration, Instant};

use super::front::{Ca, Leaf, TlsFront};
use super::CLIENT_CN;
use crate::common::{self, stop_with};
use crate::sasl::rotation::{metric, reloads};
use crate::sasl::{bridge, cluster, post, read_back};

const RENEWED_CN: &str = "qikchat-bridge-renewed";

/// A Secret volume's version: `dir/..NAME/{ca.crt,tls.crt,tls.key}`, which `dir/..data` is made
/// to name by a link renamed over it (the kubelet's atomic swap); the one it named is removed.
fn publish(dir: &Path, name: &str, ca: &Ca, leaf: &Leaf) {
    let version = dir.join(format!("..{name}"));
    std::fs::create_dir(&version).expect("a version directory");
    for (file, text) in [
        ("ca.crt", &ca.pem),
        ("tls.crt", &leaf.cert_pem),
        ("tls.key", &leaf.key_pem),
    ] {
        std::fs::write(version.join(file), text).expect("write");
    }
    let data = dir.join("..data");
    let before = std::fs::read_link(&data).ok();
    let next = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{name}"), &next).expect("link");
    std::fs::rename(&next, &data).expect("swap ..data");
    if let Some(before) = before {
        std::fs::remove_dir_all(dir.join(before)).expect("the old version removed");
    }
    for file in ["ca.crt", "tls.crt", "tls.key"] {
        let link = dir.join(file);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{file}"), &link).expect("link");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_client_certificate_is_used_without_a_restart() {
    let started = Instant::now();
    let cluster = cluster();
    let ca = Ca::new("qikchat test CA");
    let front = TlsFront::start(&cluster.bootstrap_servers(), &ca.server(), Some(&ca), None).await;
    front.admit_only(CLIENT_CN);
    let dir = tempfile::tempdir().expect("tempdir");
    publish(
        dir.path(),
        "2026_12_06_10_00_00.1",
        &ca,
        &ca.client(CLIENT_CN),
    );
    let at = |file: &str| dir.path().join(file).to_str().expect("path").to_string();
    let mut bridge = bridge(
        &front.addr.to_string(),
        &[
            ("KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("KAFKA_SSL_CA_LOCATION", &at("ca.crt")),
            ("KAFKA_SSL_CERTIFICATE_LOCATION", &at("tls.crt")),
            ("KAFKA_SSL_KEY_LOCATION", &at("tls.key")),
        ],
        &[],
        common::LOG_FILTER,
    );
    common::wait_ready_at(bridge.admin).await;
    assert_eq!(post(bridge.port).await.status(), 200, "before the renewal");

    let renewed = ca.client(RENEWED_CN);
    let swapped = Instant::now();
    publish(dir.path(), "2026_12_06_11_00_00.2", &ca, &renewed);
    // The old certificate is no longer taken (its connections dropped, as by a broker whose
    // truststore or ACLs moved on), so only the new producer can deliver.
    let before = front.admit_only(RENEWED_CN);
    // Files are read every second; the new producer takes over once it has read the topic's
    // metadata and has not failed for a second.
    common::eventually("the renewed certificate taken", async || {
        metric(bridge.admin, &reloads("rebuilt")).await.as_deref() == Some("1")
    })
    .await;
    let took_over = swapped.elapsed();
    assert_eq!(post(bridge.port).await.status(), 200, "after the renewal");
    assert!(stop_with(&mut bridge.child, "-TERM").success());
    let log = bridge.log_to_end();

    let got = read_back(&cluster.bootstrap_servers(), 2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|r| r.value == common::TEXT));
    let seen = front.connections();
    let (old, new) = seen.split_at(before);
    assert!(old
        .iter()
        .any(|c| c.cn.as_deref() == Some(CLIENT_CN) && c.admitted));
    assert!(
        new.iter()
            .any(|c| c.cn.as_deref() == Some(RENEWED_CN) && c.admitted),
        "{seen:?}"
    );
    assert!(
        new.iter()
            .all(|c| c.admitted == (c.cn.as_deref() == Some(RENEWED_CN))),
        "{seen:?}"
    );
    assert!(!log.contains("PRIVATE KEY"), "{log}");
    eprintln!(
        "renewal taken {took_over:?} after the swap; {:?} in all",
        started.elapsed()
    );
}
