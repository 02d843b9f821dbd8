//! Unit tests of the property sources: defaults, `KAFKA_*` variables, `-X` flags, secrets.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn no_files(_: &Path) -> std::io::Result<String> {
    Err(std::io::Error::other("no files here"))
}

#[test]
fn environment_names_map_like_confluent_images() {
    assert_eq!(
        env_to_property("KAFKA_SASL_MECHANISM").as_deref(),
        Some("sasl.mechanism")
    );
    assert_eq!(
        env_to_property("KAFKA_ENABLE_IDEMPOTENCE").as_deref(),
        Some("enable.idempotence")
    );
    assert_eq!(
        env_to_property("KAFKA_FOO__BAR").as_deref(),
        Some("foo_bar")
    );
    assert_eq!(
        env_to_property("KAFKA_FOO___BAR").as_deref(),
        Some("foo-bar")
    );
    assert_eq!(env_to_property("KAFKA_"), None);
    assert_eq!(env_to_property("OTHER_X"), None);
}

#[test]
fn flags_win_over_environment_which_wins_over_defaults() {
    let props = from_sources(
        env(&[
            ("KAFKA_ACKS", "all"),
            ("KAFKA_LINGER_MS", "5"),
            ("PATH", "/bin"),
        ]),
        &["linger.ms=0".to_string()],
        Duration::from_millis(1500),
        &no_files,
    )
    .expect("valid");
    assert_eq!(props.get("acks"), Some("all"));
    assert_eq!(props.get("linger.ms"), Some("0"));
    assert_eq!(props.get("message.timeout.ms"), Some("1500"));
    assert_eq!(props.get("path"), None);
}

#[test]
fn file_variables_read_the_secret_from_the_file() {
    let props = from_sources(
        env(&[("KAFKA_SASL_PASSWORD_FILE", "/secrets/pw")]),
        &[],
        Duration::from_secs(1),
        &|p: &Path| {
            assert_eq!(p, Path::new("/secrets/pw"));
            Ok("hunter2\n".to_string())
        },
    )
    .expect("valid");
    assert_eq!(props.get("sasl.password"), Some("hunter2"));
    assert!(!format!("{props:?}").contains("hunter2"));
}

#[test]
fn kubernetes_service_links_are_ignored() {
    let props = from_sources(
        env(&[
            ("KAFKA_PORT", "tcp://10.0.0.1:9092"),
            ("KAFKA_SERVICE_HOST", "10.0.0.1"),
        ]),
        &[],
        Duration::from_secs(1),
        &no_files,
    )
    .expect("valid");
    assert_eq!(props.get("port"), None);
    assert_eq!(props.get("service.host"), None);
}

#[test]
fn a_flag_without_equals_is_rejected() {
    let err = from_sources(
        env(&[]),
        &["acks".into()],
        Duration::from_secs(1),
        &no_files,
    );
    assert!(err.is_err());
}

#[test]
fn bootstrap_servers_must_come_from_the_brokers_setting() {
    let err = from_sources(
        env(&[]),
        &["bootstrap.servers=x:1".into()],
        Duration::from_secs(1),
        &no_files,
    );
    assert!(err.is_err());
}
