//! librdkafka quotes secrets in some of its log lines (the `sasl.oauthbearer.config` it cannot
//! parse, the token endpoint's URL with its password): the bridge logs them without.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, stop_with, Spawned};

/// The bridge's log, run with `env` and `args` until it logged `awaited` (at most 20 s).
fn log_until(env: &[(&str, &str)], args: &[&str], awaited: &str) -> String {
    // Nothing listens there: librdkafka asks for a token before it connects.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let brokers = unused.local_addr().expect("addr").to_string();
    drop(unused);
    let mut bridge = Spawned::start(
        Command::new(env!("CARGO_BIN_EXE_qikchat-bridge"))
            .env_clear()
            .env("RUST_LOG", common::LOG_FILTER)
            .env("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
            .env("KAFKA_SASL_MECHANISM", "OAUTHBEARER")
            .envs(env.iter().copied())
            .args(common::ANY_PORTS)
            .args(["--kafka-brokers", &brokers, "--auth", "qikchat:pass"])
            .args(["--shutdown-delay", "0s"])
            .args(args)
            .stdout(Stdio::null()),
    );
    let until = Instant::now() + Duration::from_secs(20);
    while !bridge.log_so_far().contains(awaited) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_with(&mut bridge.child, "-TERM");
    let log = bridge.log_to_end();
    assert!(
        log.contains(awaited),
        "not logged within 20 s: {awaited}\n{log}"
    );
    log
}

#[test]
fn an_oauthbearer_config_librdkafka_cannot_parse_is_not_quoted_in_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("oauthbearer-config");
    // `lifetime` is no key librdkafka knows: it quotes the value from there on.
    std::fs::write(
        &config,
        "principal=svc lifetime=3600 extension_apikey=SECRET_APIKEY_42\n",
    )
    .expect("write");
    let log = log_until(
        &[
            ("KAFKA_ENABLE_SASL_OAUTHBEARER_UNSECURE_JWT", "true"),
            (
                "KAFKA_SASL_OAUTHBEARER_CONFIG_FILE",
                config.to_str().expect("path"),
            ),
        ],
        &[],
        "Failed to acquire SASL OAUTHBEARER token",
    );
    assert!(log.contains("beginning at: <redacted>"), "{log}");
    assert!(
        !log.contains("SECRET_APIKEY_42") && !log.contains("lifetime=3600"),
        "the config reached the log:\n{log}"
    );
}

#[test]
fn the_password_in_the_token_endpoints_url_is_not_in_the_log() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let idp = unused.local_addr().expect("addr");
    drop(unused);
    let url = format!("sasl.oauthbearer.token.endpoint.url=http://u:URLPW_5@{idp}/token");
    let log = log_until(
        &[
            ("KAFKA_SASL_OAUTHBEARER_METHOD", "oidc"),
            ("KAFKA_SASL_OAUTHBEARER_CLIENT_ID", "qikchat-bridge"),
            ("KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET", "CLIENT_SECRET_7"),
        ],
        &["-X", &url],
        "Failed to retrieve OIDC token",
    );
    assert!(log.contains(&format!("u:<redacted>@{idp}/token")), "{log}");
    assert!(
        !log.contains("URLPW_5") && !log.contains("CLIENT_SECRET_7"),
        "a secret reached the log:\n{log}"
    );
}

/// `tail` prints librdkafka's warnings itself, having no log: the token endpoint's password and
/// the client secret stay hidden there too (found by mutation testing: unscrubbed, the password
/// was printed and no test noticed).
#[test]
fn tail_says_the_token_endpoint_failed_without_its_password() {
    use crate::common::{OutputWithin, EXIT_LIMIT};
    let unused = || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").to_string()
    };
    let (brokers, idp) = (unused(), unused());
    let url = format!("sasl.oauthbearer.token.endpoint.url=http://u:URLPW_5@{idp}/token");
    let output = Command::new(env!("CARGO_BIN_EXE_qikchat-bridge"))
        .env_clear()
        .env("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("KAFKA_SASL_MECHANISM", "OAUTHBEARER")
        .env("KAFKA_SASL_OAUTHBEARER_METHOD", "oidc")
        .env("KAFKA_SASL_OAUTHBEARER_CLIENT_ID", "qikchat-bridge")
        .env("KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET", "CLIENT_SECRET_7")
        .args(["tail", "--kafka-brokers", &brokers, "-X", &url])
        .args(["--idle-timeout", "3s", "t"])
        .output_within(EXIT_LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Failed to retrieve OIDC token"), "{stderr}");
    assert!(
        !stderr.contains("URLPW_5") && !stderr.contains("CLIENT_SECRET_7"),
        "a secret reached stderr:\n{stderr}"
    );
}
