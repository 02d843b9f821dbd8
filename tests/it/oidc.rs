//! SASL/OAUTHBEARER's `oidc` method, which needs librdkafka built with libcurl: the bridge, run as
//! a process, asks an identity provider's token endpoint for a token with its client credentials
//! (the secret from a `KAFKA_*_FILE`, as a Kubernetes Secret gives it) and never logs the secret.

use crate::common;
use crate::common::{OutputWithin, EXIT_LIMIT};

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::common::{stop_with, Spawned};

const BIN: &str = env!("CARGO_BIN_EXE_qikchat-bridge");
const CLIENT_ID: &str = "qikchat-bridge";
const CLIENT_SECRET: &str = "s3cret-from-a-kubernetes-secret";

/// What the token endpoint saw of one request.
#[derive(Debug)]
struct TokenRequest {
    method: String,
    path: String,
    authorization: String,
    body: String,
}

/// An unsigned JWT: librdkafka reads `sub` and `exp` from the payload and leaves the signature
/// to the broker.
fn token() -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let header = b64(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(r#"{"sub":"qikchat-bridge","iat":1700000000,"exp":4102444800}"#);
    format!("{header}.{payload}.")
}

/// Serves `POST` token requests on a port of its own and reports each one.
async fn token_endpoint() -> (String, mpsc::UnboundedReceiver<TokenRequest>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/realms/kafka/token",
        listener.local_addr().expect("addr")
    );
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let header = |name| {
                        parts.headers.get(name).map_or(String::new(), |v| {
                            String::from_utf8_lossy(v.as_bytes()).into_owned()
                        })
                    };
                    let _ = tx.send(TokenRequest {
                        method: parts.method.to_string(),
                        path: parts.uri.path().to_string(),
                        authorization: header("authorization"),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    let answer = format!(
                        r#"{{"access_token":"{}","token_type":"Bearer","expires_in":3600}}"#,
                        token()
                    );
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(answer)))
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
    (url, rx)
}

/// librdkafka's `builtin.features` of this build.
fn builtin_features() -> String {
    rdkafka::ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .expect("builtin.features")
}

#[test]
fn this_build_of_librdkafka_has_the_oidc_method() {
    let features = builtin_features();
    assert!(
        features.split(',').any(|f| f == "oidc"),
        "librdkafka was built without libcurl (features: {features}): install its headers \
         (Debian: apt-get install libcurl4-openssl-dev) and rebuild it \
         (cargo clean -p curl-sys -p rdkafka-sys)"
    );
}

/// The bridge's OAUTHBEARER/oidc settings against `url`, the client secret in `secret_file`.
fn with_oidc<'c>(command: &'c mut Command, url: &str, secret_file: &Path) -> &'c mut Command {
    command
        .args(["-X", "sasl.oauthbearer.method=oidc"])
        .args(["-X", &format!("sasl.oauthbearer.token.endpoint.url={url}")])
        .args(["-X", "sasl.oauthbearer.scope=kafka"])
        .env_clear()
        .env("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("KAFKA_SASL_MECHANISM", "OAUTHBEARER")
        .env("KAFKA_SASL_OAUTHBEARER_CLIENT_ID", CLIENT_ID)
        .env("KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE", secret_file)
}

fn secret_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("client-secret");
    std::fs::write(&path, format!("{CLIENT_SECRET}\n")).expect("write secret");
    path
}

/// Kills the bridge if the test fails before it stops it.
struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_oidc_method_the_bridge_fetches_a_token_with_its_client_credentials_and_logs_no_secret(
) {
    let (url, mut requests) = token_endpoint().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = secret_file(&dir);
    // A "broker" that only accepts: librdkafka connects to a SASL broker once it holds a token,
    // so a connection here says the endpoint's answer was taken. (The mock cluster speaks no
    // SASL.)
    let broker = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let brokers = broker.local_addr().expect("addr").to_string();

    let mut bridge = Spawned::start(
        with_oidc(&mut Command::new(BIN), &url, &secret_file)
            .args(common::ANY_PORTS)
            .args(["--kafka-brokers", &brokers, "--auth", "qikchat:pass"])
            .args(["--shutdown-delay", "0s"])
            // librdkafka's own security and configuration lines in the log too.
            .args(["-X", "debug=security,conf"])
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null()),
    );
    let guard = KillOnDrop(&mut bridge.child);
    let request = tokio::time::timeout(Duration::from_secs(20), requests.recv())
        .await
        .expect("a token request within 20 s")
        .expect("the endpoint is running");
    let connected = tokio::time::timeout(Duration::from_secs(20), broker.accept()).await;
    assert!(stop_with(guard.0, "-TERM").success());
    drop(guard);
    let log = bridge.log_to_end();

    assert!(
        connected.is_ok(),
        "no broker connection within 20 s of the token: was it refused?\n{log}"
    );
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/realms/kafka/token");
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    assert_eq!(
        request.authorization,
        format!("Basic {credentials}"),
        "client credentials as HTTP Basic, the secret read from its file without the newline"
    );
    let form: Vec<&str> = request.body.split('&').collect();
    assert!(
        form.contains(&"grant_type=client_credentials") && form.contains(&"scope=kafka"),
        "body: {}",
        request.body
    );
    assert!(
        log.contains("OAUTHBEARER") || log.contains("oauthbearer"),
        "librdkafka's debug lines did not reach the log, so the next check would see nothing:\n{log}"
    );
    assert!(
        !log.contains(CLIENT_SECRET) && !log.contains(&credentials),
        "the client secret reached the log:\n{log}"
    );
}

/// `--check-config` with brokers that are never contacted.
const CHECK_CONFIG: [&str; 5] = [
    "--kafka-brokers",
    "kafka:9092",
    "--auth",
    "qikchat:pass",
    "--check-config",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_with_the_oidc_method_sends_nothing_to_the_identity_provider() {
    let (url, mut requests) = token_endpoint().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = secret_file(&dir);
    let out = with_oidc(&mut Command::new(BIN), &url, &secret_file)
        .args(CHECK_CONFIG)
        .output_within(EXIT_LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // librdkafka waits for a token request in flight before its client closes, so one sent
    // would have been answered, and reported, before the process exited.
    assert!(
        requests.try_recv().is_err(),
        "--check-config sent the client credentials to the token endpoint"
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!printed.contains(CLIENT_SECRET), "{printed}");

    // The method's own checks still run: without an endpoint it is refused.
    let refused = Command::new(BIN)
        .args(["-X", "sasl.oauthbearer.method=oidc"])
        .args(CHECK_CONFIG)
        .env_clear()
        .env("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("KAFKA_SASL_MECHANISM", "OAUTHBEARER")
        .output_within(EXIT_LIMIT);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("sasl.oauthbearer.token.endpoint.url"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// With the `oidc` method librdkafka aborts the process when making its client fails (an
/// assertion in a queue's teardown, librdkafka 2.12): a CA file that is not there, or a client
/// key that does not load, is a clear refusal instead, as without the method, by
/// `--check-config` and at start-up alike.
#[test]
fn with_the_oidc_method_a_client_that_cannot_be_made_is_a_clear_refusal_not_an_abort() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = secret_file(&dir);
    let missing = dir.path().join("ca.crt");
    let garbage = dir.path().join("tls.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    let missing_ca = [format!("ssl.ca.location={}", missing.display())];
    let garbage_pair = [
        format!("ssl.certificate.location={}", garbage.display()),
        format!("ssl.key.location={}", garbage.display()),
    ];
    let run = |properties: &[String], extra: &[&str]| {
        let mut command = Command::new(BIN);
        with_oidc(&mut command, "https://idp.example.com/token", &secret_file);
        for property in properties {
            command.args(["-X", property]);
        }
        command
            .args(["--kafka-brokers", "127.0.0.1:1", "--auth", "qikchat:pass"])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(extra)
            .env("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
            .output_within(EXIT_LIMIT)
    };
    for (properties, named) in [
        (&missing_ca[..], "ssl.ca.location failed"),
        (&garbage_pair[..], "ssl.certificate.location failed"),
    ] {
        for how in [&["--check-config"][..], &[]] {
            let out = run(properties, how);
            let said = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(2), "{how:?} {properties:?}: {said}");
            assert!(said.contains(named), "{how:?}: {said}");
        }
    }
}

/// `--check-config` puts an offline endpoint in place of the operator's, which must not make an
/// empty one, which start-up refuses (librdkafka: the endpoint is mandatory with `oidc`), valid.
#[test]
fn an_empty_token_endpoint_is_refused_by_check_config_as_at_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = secret_file(&dir);
    for how in [&["--check-config"][..], &[]] {
        let mut command = Command::new(BIN);
        with_oidc(&mut command, "", &secret_file);
        let out = command
            .args(["--kafka-brokers", "127.0.0.1:1", "--auth", "qikchat:pass"])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(how)
            .output_within(EXIT_LIMIT);
        let said = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{how:?}: {said}");
        assert!(said.contains("token.endpoint.url"), "{how:?}: {said}");
    }
}

/// `tail` makes a consumer with the operator's properties, `KAFKA_*` ones too, so a bridge's
/// `oidc` settings with a CA that is not there aborted it as they did the bridge.
#[test]
fn tail_with_the_oidc_method_and_a_client_that_cannot_be_made_is_a_clear_refusal_not_an_abort() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = secret_file(&dir);
    let missing = dir.path().join("ca.crt");
    let mut command = Command::new(BIN);
    // tail's own -X flags come after the subcommand.
    command.args(["tail", "--kafka-brokers", "127.0.0.1:1", "--count", "1"]);
    with_oidc(&mut command, "https://idp.example.com/token", &secret_file);
    let out = command
        .args(["--idle-timeout", "1s", "webhooks"])
        .args(["-X", &format!("ssl.ca.location={}", missing.display())])
        .env("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        .output_within(EXIT_LIMIT);
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.code().is_some_and(|code| code != 0),
        "{:?}: {said}",
        out.status
    );
    assert!(said.contains("ssl.ca.location failed"), "{said}");
}

/// librdkafka's destroy waits for its token request, up to curl's 20 s timeout: with an identity
/// provider that takes the connection and never answers, the bridge must still exit soon after
/// its drain, not at the end of a pod's grace period under SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_that_never_answers_does_not_hold_up_the_exit() {
    exits_soon_though_the_token_endpoint_never_answers(&[]).await;
}

/// The same with a spool, whose replay has a producer of its own: its last handle was dropped by
/// whichever background task ended last, on an async worker, which waited 11 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_that_never_answers_does_not_hold_up_the_exit_with_a_spool() {
    let spool = tempfile::tempdir().expect("tempdir");
    let dir = spool.path().to_str().expect("utf-8 path");
    exits_soon_though_the_token_endpoint_never_answers(&["--spool-dir", dir]).await;
}

async fn exits_soon_though_the_token_endpoint_never_answers(args: &[&str]) {
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/token", silent.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = secret_file(&dir);
    let mut bridge = Spawned::start(
        with_oidc(&mut Command::new(BIN), &url, &secret_file)
            .args(common::ANY_PORTS)
            // A broker that is never reached: without a token librdkafka does not connect.
            .args(["--kafka-brokers", "127.0.0.1:9", "--auth", "qikchat:pass"])
            .args(["--shutdown-delay", "0s"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null()),
    );
    let guard = KillOnDrop(&mut bridge.child);
    // The token request is in flight once its connection is taken.
    let (_held, _) = tokio::time::timeout(Duration::from_secs(20), silent.accept())
        .await
        .expect("a token request within 20 s")
        .expect("accept");
    // librdkafka's destroy waits for a token request only once it has run a few seconds (it
    // took 2-3 s to exit after a SIGTERM 2-4 s into the request, 14-16 s after one 6-8 s in):
    // librdkafka's own timing, which no paused clock reaches.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let stopping = std::time::Instant::now();
    let status = stop_with(guard.0, "-TERM");
    let took = stopping.elapsed();
    drop(guard);
    let log = bridge.log_to_end();
    assert!(status.success(), "{status}\n{log}");
    // The drain takes milliseconds here, and the wait for librdkafka and the runtime 1 s each;
    // librdkafka alone would have taken 14-20 s.
    assert!(
        took < Duration::from_secs(8),
        "exited {took:?} after SIGTERM\n{log}"
    );
}
