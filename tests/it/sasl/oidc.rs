//! SASL/OAUTHBEARER with the `oidc` method end to end: a token endpoint that issues a token for
//! the client credentials (or refuses them, hangs, or quotes them back in its error), and a broker
//! that takes only that token.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tokio::net::TcpListener;

use super::front::{Accepts, SaslFront};
use super::rotation::{metric, reloads};
use super::{bridge, cluster, delivers_one, password_file, post, readyz, stored, Outage};
use crate::common::{self, stop_with, Spawned, TEXT};

const CLIENT_ID: &str = "qikchat-bridge";
const CLIENT_SECRET: &str = "Oidc-Secret-5b7e19d2";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What the token endpoint does.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Idp {
    Token,
    /// A token only for this client secret, 401 for any other.
    TokenFor(&'static str),
    Unauthorized,
    Silent,
    /// 400, its error naming the client credentials it got, as some gateways' errors do.
    Echo,
}

/// An unsigned JWT: librdkafka reads `sub` and `exp` and leaves the signature to the broker.
fn jwt() -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let header = b64(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(r#"{"sub":"qikchat-bridge","iat":1700000000,"exp":4102444800}"#);
    format!("{header}.{payload}.")
}

/// A token endpoint: its URL, and the `Authorization` of every request it got.
async fn token_endpoint(idp: Idp) -> (String, Arc<Mutex<Vec<String>>>, Arc<Mutex<Idp>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/token", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let mode = Arc::new(Mutex::new(idp));
    let switch = mode.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            let idp = *mode.lock().expect("mode");
            if idp == Idp::Silent {
                kept.lock().expect("seen").push(String::new());
                held.push(stream);
                continue;
            }
            let kept = kept.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let kept = kept.clone();
                async move {
                    let authorization = req
                        .headers()
                        .get("authorization")
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        .unwrap_or_default();
                    let _ = req.into_body().collect().await;
                    kept.lock().expect("seen").push(authorization.clone());
                    let secret_ok = match idp {
                        Idp::Token => true,
                        Idp::TokenFor(secret) => {
                            authorization
                                == format!("Basic {}", B64.encode(format!("{CLIENT_ID}:{secret}")))
                        }
                        _ => false,
                    };
                    let (status, body) = match secret_ok {
                        true => (
                            200,
                            format!(
                                r#"{{"access_token":"{}","token_type":"Bearer","expires_in":3600}}"#,
                                jwt()
                            ),
                        ),
                        false if idp == Idp::Echo => (
                            400,
                            format!(
                                r#"{{"error":"invalid_request","error_description":"unexpected Authorization: {authorization} ({})"}}"#,
                                String::from_utf8_lossy(
                                    &B64.decode(authorization.trim_start_matches("Basic "))
                                        .unwrap_or_default()
                                )
                            ),
                        ),
                        false => (
                            401,
                            r#"{"error":"invalid_client","error_description":"Invalid client or Invalid client credentials"}"#
                                .to_string(),
                        ),
                    };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .expect("response"),
                    )
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (url, seen, switch)
}

fn oidc_env(secret_file: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".into()),
        ("KAFKA_SASL_MECHANISM", "OAUTHBEARER".into()),
        ("KAFKA_SASL_OAUTHBEARER_METHOD", "oidc".into()),
        ("KAFKA_SASL_OAUTHBEARER_CLIENT_ID", CLIENT_ID.into()),
        (
            "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE",
            secret_file.into(),
        ),
    ]
}

type Oidc = (
    SaslFront,
    MockCluster<'static, DefaultProducerContext>,
    Spawned,
    Arc<Mutex<Vec<String>>>,
    tempfile::TempDir,
    Arc<Mutex<Idp>>,
);

async fn start_oidc(idp: Idp) -> Oidc {
    start_oidc_with(idp, &[]).await
}

async fn start_oidc_with(idp: Idp, args: &[&str]) -> Oidc {
    let (url, seen, mode) = token_endpoint(idp).await;
    let cluster = cluster();
    let accepts = Accepts {
        users: Vec::new(),
        bearer: Some(jwt()),
    };
    let front = SaslFront::start(&cluster.bootstrap_servers(), accepts).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = password_file(&dir, "client-secret", CLIENT_SECRET);
    let env = oidc_env(file.to_str().expect("path"));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let endpoint = format!("sasl.oauthbearer.token.endpoint.url={url}");
    let bridge = bridge(
        &front.addr.to_string(),
        &env,
        &[&["-X", &endpoint, "-X", "debug=security,broker"], args].concat(),
        "debug",
    );
    (front, cluster, bridge, seen, dir, mode)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_token_from_the_endpoint_is_presented_to_the_broker_and_records_are_delivered() {
    let started = Instant::now();
    // Every debug context of librdkafka's: the token and the secret must stay out of all.
    let (front, cluster, mut bridge, seen, _dir, _) =
        start_oidc_with(Idp::Token, &["-X", "debug=all"]).await;
    let log = delivers_one(&mut bridge, &cluster).await;
    let credentials = B64.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let seen = seen.lock().expect("seen").clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|a| *a == format!("Basic {credentials}")),
        "{seen:?}"
    );
    let outcomes = front.outcomes();
    assert!(!outcomes.is_empty());
    assert!(
        outcomes
            .iter()
            .all(|(m, t, ok)| m == "OAUTHBEARER" && *t == jwt() && *ok),
        "{outcomes:?}"
    );
    assert!(
        !log.contains(CLIENT_SECRET) && !log.contains(&credentials),
        "{log}"
    );
    let payload = jwt().split('.').nth(1).expect("payload").to_string();
    let leaked: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&payload))
        .take(3)
        .collect();
    assert!(
        leaked.is_empty(),
        "the access token reached the log: {leaked:#?}"
    );
    eprintln!("OIDC: {:?}", started.elapsed());
}

/// A token endpoint that refuses the client (401) or never answers: no token, so no broker is
/// contacted; not ready, webhooks 503 in time, the secret not logged.
async fn without_a_token(idp: Idp) {
    let (front, _cluster, mut bridge, seen, _dir, _) = start_oidc(idp).await;
    common::eventually("a token request", async || {
        !seen.lock().expect("seen").is_empty()
    })
    .await;
    if idp != Idp::Silent {
        common::eventually("librdkafka's reason", async || {
            bridge
                .log_so_far()
                .contains("Failed to retrieve OIDC token")
        })
        .await;
    }
    let outage = Outage::seen(&bridge).await;
    let stopping = Instant::now();
    assert!(stop_with(&mut bridge.child, "-TERM").success());
    let stop_took = stopping.elapsed();
    let log = bridge.log_to_end();
    outage.holds();
    assert!(front.outcomes().is_empty(), "{:?}", front.outcomes());
    assert!(
        stop_took < Duration::from_secs(8),
        "stopped in {stop_took:?}"
    );
    let credentials = B64.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    assert!(
        !log.contains(CLIENT_SECRET) && !log.contains(&credentials),
        "{log}"
    );
    // `/readyz` says why (once librdkafka has: a hanging endpoint takes its timeout), scrubbed.
    let why = &outage.ready.1;
    assert!(
        idp == Idp::Silent || why.contains("Failed to acquire SASL OAUTHBEARER token: {"),
        "{why}"
    );
    assert!(
        !why.contains(CLIENT_SECRET) && !why.contains(&credentials),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_answering_401_is_an_outage_without_the_secret_in_the_log() {
    without_a_token(Idp::Unauthorized).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_that_hangs_is_an_outage_without_the_secret_in_the_log() {
    without_a_token(Idp::Silent).await;
}

/// An endpoint whose error quotes the `Authorization: Basic base64(id:secret)` librdkafka sent,
/// as some gateways' do: librdkafka logs that error whole, so the encoded secret is hidden too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_quoting_the_credentials_in_its_error_is_not_logged_with_them() {
    without_a_token(Idp::Echo).await;
}

/// A client secret rotated while the identity provider hangs: the candidate producer never gets
/// a token, the rotation fails after the warm-up (10 s), not when the candidate's destroy is done
/// waiting for its token request (curl's 20 s timeout), the working producer goes on answering
/// 200, and a SIGTERM then still ends the process soon, that destroy still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_rotated_while_the_identity_provider_hangs_keeps_the_producer_and_exits_soon() {
    let started = Instant::now();
    let (_front, _cluster, mut bridge, seen, dir, mode) = start_oidc(Idp::Token).await;
    common::wait_ready_at(bridge.admin).await;
    *mode.lock().expect("mode") = Idp::Silent;
    let before = seen.lock().expect("seen").len();
    common::rotate(
        &dir.path().join("client-secret"),
        "Oidc-Secret-Rotated-77aa\n",
    );
    common::eventually("the candidate's token request", async || {
        seen.lock().expect("seen").len() > before
    })
    .await;
    // Webhooks while the candidate waits for its token, and after its warm-up failed.
    let mut slowest = Duration::ZERO;
    let mut statuses = Vec::new();
    let failed = reloads("failed");
    // The warm-up, and room for a busy host: a failure counted at its destroy came at 20 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(bridge.admin, &failed).await.as_deref() != Some("1") {
        assert!(Instant::now() < deadline, "the rotation never failed");
        let asked = Instant::now();
        statuses.push(post(bridge.port).await.status().as_u16());
        slowest = slowest.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed_after = started.elapsed();
    let asked = Instant::now();
    statuses.push(post(bridge.port).await.status().as_u16());
    slowest = slowest.max(asked.elapsed());
    let stopping = Instant::now();
    let status = stop_with(&mut bridge.child, "-TERM");
    let stop_took = stopping.elapsed();
    let log = bridge.log_to_end();
    eprintln!(
        "rotation failed at {failed_after:?}; {} webhooks, slowest {slowest:?}; stop {stop_took:?} ({status})",
        statuses.len()
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(status.success(), "{status}\n{log}");
    assert!(
        stop_took < Duration::from_secs(8),
        "exited {stop_took:?} after SIGTERM"
    );
    assert!(!log.contains("Oidc-Secret-Rotated-77aa") && !log.contains(CLIENT_SECRET));
}

/// A client secret the identity provider refuses, fixed in its file: the bridge recovers
/// without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_secret_fixed_in_its_file_recovers_without_a_restart() {
    let started = Instant::now();
    let next = "Oidc-Secret-Next-3a8f";
    let (front, cluster, mut bridge, seen, dir, _) = start_oidc(Idp::TokenFor(next)).await;
    common::eventually("a token request", async || {
        !seen.lock().expect("seen").is_empty()
    })
    .await;
    assert_eq!(readyz(bridge.admin).await.0, 503);
    common::rotate(&dir.path().join("client-secret"), &format!("{next}\n"));
    common::eventually("ready after the fix", async || {
        readyz(bridge.admin).await.0 == 200
    })
    .await;
    assert_eq!(post(bridge.port).await.status(), 200);
    assert_eq!(stored(&cluster.bootstrap_servers()).await, TEXT);
    assert!(stop_with(&mut bridge.child, "-TERM").success());
    let log = bridge.log_to_end();
    assert!(front.outcomes().iter().any(|(_, _, ok)| *ok));
    for secret in [CLIENT_SECRET, next] {
        assert!(!log.contains(secret), "a secret reached the log:\n{log}");
    }
    eprintln!("OIDC secret fixed: {:?}", started.elapsed());
}
