//! Unit tests of the property sources: defaults, `KAFKA_*` variables, `-X` flags, secrets.

use super::*;

/// The defaults for a Kafka wait of `wait` and the default 1 MiB body limit.
pub(super) fn limits(wait: Duration) -> Defaults {
    Defaults {
        wait,
        max_body_bytes: 1 << 20,
    }
}

pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
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
            ("KAFKA_ACKS", "1"),
            ("KAFKA_LINGER_MS", "5"),
            ("PATH", "/bin"),
        ]),
        &["linger.ms=0".to_string()],
        limits(Duration::from_millis(1500)),
        &no_files,
    )
    .expect("valid");
    assert_eq!(props.get("acks"), Some("1"));
    assert_eq!(props.get("linger.ms"), Some("0"));
    assert_eq!(props.get("message.timeout.ms"), Some("1500"));
    assert_eq!(props.get("path"), None);
}

#[test]
fn file_variables_read_the_secret_from_the_file() {
    let props = from_sources(
        env(&[("KAFKA_SASL_PASSWORD_FILE", "/secrets/pw")]),
        &[],
        limits(Duration::from_secs(1)),
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
fn two_variables_that_set_one_property_are_refused_naming_both() {
    for (first, second) in [
        ("KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD_FILE"),
        ("KAFKA_LINGER_MS", "KAFKA_QUEUE_BUFFERING_MAX_MS"),
    ] {
        let err = from_sources(
            env(&[(second, "/secrets/pw"), (first, "5")]),
            &[],
            limits(Duration::from_secs(1)),
            &|_: &Path| Ok("5\n".to_string()),
        )
        .expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains(first) && text.contains(second) && text.contains("keep one"),
            "{text}"
        );
        assert!(!text.contains("/secrets"), "{text}");
    }
}

/// The process environment comes in no set order: the same variables are refused with the same
/// words however they are listed, so a refusal reads the same from one start to the next.
#[test]
fn two_variables_that_set_one_property_are_named_in_one_order_whatever_the_environments() {
    let refusal = |pairs: &[(&str, &str)]| {
        from_sources(
            env(pairs),
            &[],
            limits(Duration::from_secs(1)),
            &|_: &Path| Ok("5\n".to_string()),
        )
        .expect_err("refused")
        .to_string()
    };
    let listed = refusal(&[
        ("KAFKA_SASL_PASSWORD", "5"),
        ("KAFKA_SASL_PASSWORD_FILE", "/pw"),
    ]);
    let reversed = refusal(&[
        ("KAFKA_SASL_PASSWORD_FILE", "/pw"),
        ("KAFKA_SASL_PASSWORD", "5"),
    ]);
    assert_eq!(listed, reversed);
    assert!(
        listed.contains("KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE both set"),
        "{listed}"
    );
}

#[test]
fn a_secret_file_that_starts_with_a_byte_order_mark_is_read_without_it() {
    let props = from_sources(
        env(&[("KAFKA_SASL_PASSWORD_FILE", "/secrets/pw")]),
        &[],
        limits(Duration::from_secs(1)),
        &|_: &Path| Ok("\u{feff}hunter2\r\n".to_string()),
    )
    .expect("valid");
    assert_eq!(props.get("sasl.password"), Some("hunter2"));
}

#[test]
fn an_empty_secret_file_is_refused_naming_the_variable_and_the_file() {
    for contents in ["", "\n", "\u{feff}\r\n"] {
        let err = from_sources(
            env(&[("KAFKA_SASL_PASSWORD_FILE", "/secrets/pw")]),
            &[],
            limits(Duration::from_secs(1)),
            &|_: &Path| Ok(contents.to_string()),
        )
        .expect_err("an empty secret is refused");
        let text = err.to_string();
        assert!(
            text.contains("KAFKA_SASL_PASSWORD_FILE")
                && text.contains("/secrets/pw")
                && text.contains("empty"),
            "{contents:?}: {text}"
        );
    }
}

/// As an empty file is: and `-X sasl.password= hunter2` would leave the password as a stray
/// argument. A property that is no secret may be empty.
#[test]
fn an_empty_secret_in_a_variable_or_a_flag_is_refused_naming_where_it_was_set() {
    for (vars, flags, names) in [
        (
            &[("KAFKA_SASL_PASSWORD", "")][..],
            &[][..],
            "KAFKA_SASL_PASSWORD",
        ),
        (&[], &["ssl.key.password="][..], "-X ssl.key.password="),
        (&[], &["sasl.oauthbearer.client.secret="][..], "-X"),
    ] {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let err = from_sources(env(vars), &flags, limits(Duration::from_secs(1)), &no_files)
            .expect_err("an empty secret is refused");
        assert!(err.to_string().contains(names), "{err}");
        assert!(err.to_string().contains("to nothing"), "{err}");
    }
    let flags = vec!["client.rack=".to_string()];
    from_sources(env(&[]), &flags, limits(Duration::from_secs(1)), &no_files)
        .expect("an empty value that is no secret");
}

/// librdkafka takes C strings: a NUL byte in a file's secret is refused naming the variable and
/// the file, not as librdkafka's bare "FFI nul error" when the producer is made.
#[test]
fn a_secret_file_holding_a_nul_byte_is_refused_naming_the_variable_and_the_file() {
    let err = from_sources(
        env(&[("KAFKA_CLIENT_ID_FILE", "/secrets/id")]),
        &[],
        limits(Duration::from_secs(1)),
        &|_: &Path| Ok("abc\0def\n".to_string()),
    )
    .expect_err("refused")
    .to_string();
    assert!(
        err.contains("KAFKA_CLIENT_ID_FILE") && err.contains("/secrets/id") && err.contains("NUL"),
        "{err}"
    );
}

/// librdkafka would refuse it too, but only when it makes the producer, without naming the
/// variable, and without the name when it has no dot (it may be a secret given to -X).
#[test]
fn a_variable_that_names_no_librdkafka_property_is_refused_naming_it() {
    for (variable, property) in [
        ("KAFKA_ACKZ", "ackz"),
        ("KAFKA_LINGERMS", "lingerms"),
        ("KAFKA_COMPRESION_TYPE", "compresion.type"),
    ] {
        let err = from_sources(
            env(&[(variable, "1")]),
            &[],
            limits(Duration::from_secs(1)),
            &no_files,
        )
        .expect_err("unknown")
        .to_string();
        assert!(
            err.contains(variable) && err.contains(&format!("{property:?}")),
            "{err}"
        );
    }
    let known = env(&[
        ("KAFKA_LINGER_MS", "1"),
        ("KAFKA_TOPIC_MESSAGE_TIMEOUT_MS", "1"),
    ]);
    assert!(from_sources(known, &[], limits(Duration::from_secs(1)), &no_files).is_ok());
}

#[test]
fn kubernetes_service_links_are_ignored() {
    let props = from_sources(
        env(&[
            ("KAFKA_PORT", "tcp://10.0.0.1:9092"),
            ("KAFKA_SERVICE_HOST", "10.0.0.1"),
            ("KAFKA_PORT_9092_TCP_ADDR", "10.0.0.1"),
            // Another Service whose name starts with kafka, in the same namespace.
            ("KAFKA_UI_SERVICE_HOST", "10.0.0.9"),
            ("KAFKA_UI_SERVICE_PORT_HTTP", "8080"),
            ("KAFKA_UI_PORT", "tcp://10.0.0.9:8080"),
            ("KAFKA_UI_PORT_8080_TCP_PROTO", "tcp"),
            ("KAFKA_SASL_KERBEROS_SERVICE_NAME", "kafka"),
        ]),
        &[],
        limits(Duration::from_secs(1)),
        &no_files,
    )
    .expect("valid");
    let set: Vec<String> = props.to_map().into_keys().collect();
    assert!(
        set.iter()
            .all(|k| !k.contains("port") && !k.contains("host")),
        "{set:?}"
    );
    assert_eq!(props.get("sasl.kerberos.service.name"), Some("kafka"));
}

/// librdkafka takes `topic.acks` for `acks` (kcat's spelling): kept beside the bridge's `acks`,
/// the two would be applied in no fixed order, and idempotence would stay on with `acks=1`.
#[test]
fn topic_prefixed_names_replace_the_bridges_defaults_and_global_topic_names_stay() {
    let props = from_sources(
        env(&[("KAFKA_TOPIC_MESSAGE_TIMEOUT_MS", "30000")]),
        &[
            "topic.acks=1".into(),
            "topic.request.required.acks=1".into(),
            "topic.compression.codec=lz4".into(),
            "topic.metadata.refresh.interval.ms=60000".into(),
        ],
        limits(Duration::from_secs(1)),
        &no_files,
    )
    .expect("valid");
    let set: Vec<String> = props.to_map().into_keys().collect();
    assert!(
        !set.iter().any(|k| k.starts_with("topic.")
            && k != "topic.metadata.refresh.interval.ms"
            && k != "topic.metadata.propagation.max.ms"),
        "{set:?}"
    );
    assert_eq!(props.get("acks"), Some("1"));
    assert_eq!(props.get("enable.idempotence"), Some("false"));
    assert_eq!(props.get("message.timeout.ms"), Some("30000"));
    assert_eq!(props.get("compression.type"), Some("lz4"));
    assert_eq!(
        props.get("topic.metadata.refresh.interval.ms"),
        Some("60000")
    );
}

#[test]
fn librdkafkas_other_names_replace_the_bridges_defaults_instead_of_racing_them() {
    let props = from_sources(
        env(&[("KAFKA_DELIVERY_TIMEOUT_MS", "30000")]),
        &[
            "queue.buffering.max.ms=2".into(),
            "compression.codec=lz4".into(),
            "request.required.acks=1".into(),
        ],
        limits(Duration::from_secs(1)),
        &no_files,
    )
    .expect("valid");
    let set: Vec<String> = props.to_map().into_keys().collect();
    for alias in [
        "delivery.timeout.ms",
        "queue.buffering.max.ms",
        "compression.codec",
        "request.required.acks",
    ] {
        assert!(
            !set.iter().any(|k| k == alias),
            "{alias} kept beside its name: {set:?}"
        );
    }
    assert_eq!(props.get("message.timeout.ms"), Some("30000"));
    assert_eq!(props.get("linger.ms"), Some("2"));
    assert_eq!(props.get("compression.type"), Some("lz4"));
    assert_eq!(props.get("acks"), Some("1"));
    assert_eq!(props.get("enable.idempotence"), Some("false"));
}

#[test]
fn acks_all_in_capitals_keeps_idempotence() {
    let props = from_sources(
        env(&[("KAFKA_ACKS", "ALL")]),
        &[],
        limits(Duration::from_secs(1)),
        &no_files,
    )
    .expect("valid");
    assert_eq!(props.get("enable.idempotence"), Some("true"));
}

#[test]
fn private_keys_and_passphrases_are_redacted() {
    let props = from_sources(
        env(&[
            (
                "KAFKA_SASL_OAUTHBEARER_ASSERTION_PRIVATE_KEY_PASSPHRASE",
                "pp-4411",
            ),
            (
                "KAFKA_SASL_OAUTHBEARER_ASSERTION_PRIVATE_KEY_PEM",
                "-----BEGIN PRIVATE KEY-----x",
            ),
            (
                "KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL",
                "https://client:UrlPw-77@idp.example/token",
            ),
        ]),
        &[],
        limits(Duration::from_secs(1)),
        &no_files,
    )
    .expect("valid");
    let shown = format!("{props:?}");
    assert!(
        !shown.contains("pp-4411") && !shown.contains("BEGIN PRIVATE KEY"),
        "{shown}"
    );
    assert!(
        shown.contains("https://client:<redacted>@idp.example/token") && !shown.contains("UrlPw"),
        "a URL's password: {shown}"
    );
}

#[test]
fn every_secret_librdkafka_property_is_one_and_its_addresses_and_paths_are_not() {
    for secret in [
        "sasl.password",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.extensions",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
        "sasl.jaas.config",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl.keystore.password",
        "ssl_key",
    ] {
        assert!(redact::is_secret(secret), "{secret}");
    }
    for plain in [
        "sasl.oauthbearer.token.endpoint.url",
        "sasl.oauthbearer.client.id",
        "sasl.oauthbearer.scope",
        "sasl.username",
        "ssl.key.location",
        "ssl.ca.location",
        "acks",
    ] {
        assert!(!redact::is_secret(plain), "{plain}");
    }
}

#[test]
fn a_flag_without_equals_is_rejected() {
    let err = from_sources(
        env(&[]),
        &["acks".into()],
        limits(Duration::from_secs(1)),
        &no_files,
    );
    assert!(err.is_err());
    // A ':' for the '=', or a bare secret, must not be printed: the flag is named by position.
    for secret in ["sasl.password:hunter2", "hunter2"] {
        let err = from_sources(
            env(&[]),
            &["acks=all".into(), secret.into()],
            limits(Duration::from_secs(1)),
            &no_files,
        )
        .expect_err("not KEY=VALUE")
        .to_string();
        assert!(err.contains("2nd -X flag"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

/// `-X =hunter2` (the key left out, or only spaces) names no property: taken, it went to
/// librdkafka under an empty name, and the start failed there, far from the flag and with the
/// value unchecked.
#[test]
fn a_flag_without_a_key_is_rejected_without_its_value() {
    for flag in ["=hunter2", " =hunter2"] {
        let err = from_sources(
            env(&[]),
            &["acks=all".into(), flag.into()],
            limits(Duration::from_secs(1)),
            &no_files,
        )
        .expect_err("no key")
        .to_string();
        assert!(err.contains("2nd -X flag"), "{flag:?}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

/// librdkafka takes both, and the bridge would answer no webhook 200: each waits for a success
/// report `delivery.report.only.error` never sends, and a transactional producer refuses records
/// sent outside a transaction.
#[test]
fn properties_that_would_break_the_acknowledgement_are_refused() {
    let build = |env: &[(&str, &str)], flags: &[&str]| {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        from_sources(
            self::env(env),
            &flags,
            limits(Duration::from_secs(1)),
            &no_files,
        )
    };
    for (env, flags, named) in [
        (
            &[][..],
            &["delivery.report.only.error=true"][..],
            "delivery.report.only.error",
        ),
        (
            &[("KAFKA_DELIVERY_REPORT_ONLY_ERROR", "1")][..],
            &[][..],
            "delivery.report.only.error",
        ),
        (
            &[][..],
            &["transactional.id=bridge-0"][..],
            "transactional.id",
        ),
        (
            &[("KAFKA_TRANSACTIONAL_ID", "bridge-0")][..],
            &[][..],
            "transactional.id",
        ),
        // Brokers refuse every produce request with another acks (INVALID_REQUIRED_ACKS).
        (&[][..], &["acks=2"][..], "acks=2"),
        (&[("KAFKA_ACKS", "1000")][..], &[][..], "acks=1000"),
        (&[][..], &["request.required.acks=0x2"][..], "acks=2"),
    ] {
        let err = build(env, flags).expect_err("refused").to_string();
        assert!(err.contains(named), "{env:?} {flags:?}: {err}");
    }
    assert!(build(&[], &["delivery.report.only.error=false"]).is_ok());
    for acks in ["all", "-1", "1", "0"] {
        assert!(build(&[], &[&format!("acks={acks}")]).is_ok(), "{acks}");
    }
}

#[test]
fn the_propagation_wait_is_a_third_of_the_message_timeout_the_operator_set() {
    let with = |flags: &[&str]| {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let props = from_sources(
            env(&[]),
            &flags,
            limits(Duration::from_millis(1500)),
            &no_files,
        )
        .expect("valid");
        props
            .get("topic.metadata.propagation.max.ms")
            .map(str::to_string)
    };
    assert_eq!(with(&[]).as_deref(), Some("500"));
    assert_eq!(with(&["message.timeout.ms=300"]).as_deref(), Some("100"));
    assert_eq!(with(&["delivery.timeout.ms=900"]).as_deref(), Some("300"));
    // A longer one, or none at all, keeps the wait's: records of a missing topic are still
    // failed as such before the answer is due.
    assert_eq!(with(&["delivery.timeout.ms=30000"]).as_deref(), Some("500"));
    assert_eq!(with(&["message.timeout.ms=0"]).as_deref(), Some("500"));
    // Never 0, which is not a third of anything the operator set.
    assert_eq!(with(&["message.timeout.ms=2"]).as_deref(), Some("1"));
    // One the operator set is kept as set.
    assert_eq!(
        with(&[
            "message.timeout.ms=300",
            "topic.metadata.propagation.max.ms=50"
        ])
        .as_deref(),
        Some("50")
    );
}

#[test]
fn a_first_reconnect_backoff_above_the_bridges_cap_raises_the_cap_instead_of_being_refused() {
    let with = |flags: &[&str]| {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        from_sources(env(&[]), &flags, limits(Duration::from_secs(1)), &no_files).expect("valid")
    };
    let p = with(&["reconnect.backoff.ms=2000"]);
    assert_eq!(p.get("reconnect.backoff.max.ms"), Some("2000"));
    let p = with(&["reconnect.backoff.ms=500"]);
    assert_eq!(p.get("reconnect.backoff.max.ms"), Some("1000"));
    let p = with(&["reconnect.backoff.ms=2000", "reconnect.backoff.max.ms=3000"]);
    assert_eq!(p.get("reconnect.backoff.max.ms"), Some("3000"));
    // tail's consumer keeps librdkafka's 10 s cap: raised only above it.
    let set = |flags: &[&str]| {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        overrides(env(&[]), &flags, &no_files).expect("valid")
    };
    let cap = LIBRDKAFKA_RECONNECT_BACKOFF_MAX_MS;
    assert_eq!(backoff_cap(&set(&["reconnect.backoff.ms=2000"]), cap), None);
    assert_eq!(
        backoff_cap(&set(&["reconnect.backoff.ms=0x4e20"]), cap).as_deref(),
        Some("20000")
    );
    // What librdkafka itself says of the bridge's cap is checked when the producer is made.
    for p in [with(&["reconnect.backoff.ms=2000"]), with(&[])] {
        let mut config = rdkafka::ClientConfig::new();
        for (k, v) in p.to_map() {
            config.set(k, v);
        }
        let made: Result<rdkafka::producer::BaseProducer, _> = config.create();
        assert!(made.is_ok(), "{:?}", made.err());
    }
}

#[test]
fn a_file_variable_for_a_property_a_flag_sets_is_neither_read_nor_watched() {
    let vars = env(&[
        ("KAFKA_CLIENT_ID_FILE", "/run/secrets/gone"),
        ("KAFKA_SASL_PASSWORD_FILE", "/run/secrets/password"),
        ("KAFKA_SSL_KEY_PASSWORD_FILE", "/run/secrets/gone-too"),
    ]);
    let flags = vec![
        " client.id =fixed".to_string(),
        "ssl.key.password=from-a-flag".to_string(),
    ];
    let read = |p: &Path| {
        assert_eq!(p, Path::new("/run/secrets/password"), "only the one used");
        Ok("hunter2".to_string())
    };
    let props =
        from_sources(vars.clone(), &flags, limits(Duration::from_secs(1)), &read).expect("valid");
    assert_eq!(props.get("client.id"), Some("fixed"));
    assert_eq!(props.get("sasl.password"), Some("hunter2"));
    assert_eq!(props.get("ssl.key.password"), Some("from-a-flag"));
    let sources = KafkaSources::new(vars, &flags, limits(Duration::from_secs(1)));
    assert_eq!(
        sources.files(&props),
        vec![std::path::PathBuf::from("/run/secrets/password")]
    );
    // Still one property set twice by variables: refused, flag or not.
    let twice = env(&[
        ("KAFKA_CLIENT_ID", "a"),
        ("KAFKA_CLIENT_ID_FILE", "/run/secrets/gone"),
    ]);
    let err = from_sources(twice, &flags, limits(Duration::from_secs(1)), &read)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("KAFKA_CLIENT_ID_FILE"), "{err}");
}

#[test]
fn bootstrap_servers_must_come_from_the_brokers_setting() {
    let err = from_sources(
        env(&[]),
        &["bootstrap.servers=x:1".into()],
        limits(Duration::from_secs(1)),
        &no_files,
    );
    assert!(err.is_err());
    // librdkafka's own name for it, which would otherwise pass for "no brokers: embedded".
    // The refusal names what set it, as the operator wrote it.
    for (env, flags, named) in [
        (
            vec![("KAFKA_METADATA_BROKER_LIST", "x:1")],
            vec![],
            "KAFKA_METADATA_BROKER_LIST sets",
        ),
        (
            vec![("KAFKA_BOOTSTRAP_SERVERS_FILE", "/brokers")],
            vec![],
            "KAFKA_BOOTSTRAP_SERVERS_FILE sets",
        ),
        (
            vec![],
            vec!["metadata.broker.list=x:1".to_string()],
            "-X metadata.broker.list sets",
        ),
        (
            vec![("KAFKA_METADATA_BROKER_LIST", "x:1")],
            vec![" bootstrap.servers =x:1".to_string()],
            "-X bootstrap.servers sets",
        ),
    ] {
        let err = from_sources(
            self::env(&env),
            &flags,
            limits(Duration::from_secs(1)),
            &|_: &Path| Ok("x:1".to_string()),
        )
        .expect_err("refused")
        .to_string();
        assert!(err.contains(named), "{env:?} {flags:?}: {err}");
        assert!(err.contains("--kafka-brokers"), "{err}");
    }
}

#[test]
fn the_defaults_wait_for_every_in_sync_replica_with_idempotence() {
    let props =
        from_sources(env(&[]), &[], limits(Duration::from_secs(1)), &no_files).expect("valid");
    assert_eq!(props.get("acks"), Some("all"));
    assert_eq!(props.get("enable.idempotence"), Some("true"));
}

#[test]
fn the_defaults_are_the_ones_the_readme_documents() {
    let props = from_sources(
        env(&[]),
        &[],
        limits(Duration::from_millis(1500)),
        &no_files,
    )
    .expect("valid");
    for (name, value) in [
        ("linger.ms", "0.25"),
        ("compression.type", "none"),
        ("partitioner", "murmur2_random"),
        ("socket.nagle.disable", "true"),
        ("message.timeout.ms", "1500"),
        ("message.max.bytes", "1114112"),
        ("queue.buffering.max.kbytes", "65536"),
        ("batch.size", "1000000"),
        ("reconnect.backoff.ms", "20"),
        ("reconnect.backoff.max.ms", "1000"),
        ("statistics.interval.ms", "5000"),
        ("client.id", "qikchat-bridge"),
    ] {
        assert_eq!(props.get(name), Some(value), "{name}");
    }
}

/// A topic's limit bounds a whole batch: batches no larger than the largest record the bridge
/// takes fit a topic sized for it.
#[test]
fn a_lower_body_limit_makes_smaller_batches() {
    assert_eq!(batch_bytes(1 << 20), 1_000_000);
    assert_eq!(batch_bytes(256 << 10), (256 + 64) << 10);
}

#[test]
fn the_default_queue_holds_one_record_of_the_largest_size() {
    assert_eq!(queue_kbytes(1 << 20), 65536);
    // 100 MiB bodies: the record is 100 MiB + 64 KiB, which a 64 MiB queue would never take.
    assert_eq!(queue_kbytes(100 << 20), 102464);
    assert!(queue_kbytes(512 << 20) * 1024 >= max_record_bytes(512 << 20));
}

/// A body limit written in decimal (`--max-body-bytes 100000000`) makes a largest record that is
/// no whole number of KiB: a queue rounded down would be a few bytes short of it, and the bridge
/// would refuse to start over its own defaults.
#[test]
fn a_body_limit_that_is_no_whole_number_of_kib_still_makes_a_queue_that_takes_its_record() {
    for max_body_bytes in [100_000_000, (100 << 20) + 1] {
        assert!(queue_kbytes(max_body_bytes) * 1024 >= max_record_bytes(max_body_bytes));
        let limits = Defaults {
            wait: Duration::from_secs(1),
            max_body_bytes,
        };
        from_sources(env(&[]), &[], limits, &no_files).expect("the defaults are taken");
    }
}

#[test]
fn a_weaker_acks_turns_the_default_idempotence_off_but_never_an_explicit_one() {
    let with = |vars: &[(&str, &str)], flags: &[&str]| {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        from_sources(env(vars), &flags, limits(Duration::from_secs(1)), &no_files).expect("valid")
    };
    let p = with(&[("KAFKA_ACKS", "1")], &[]);
    assert_eq!(p.get("enable.idempotence"), Some("false"));
    let p = with(&[], &["request.required.acks=0"]);
    assert_eq!(p.get("enable.idempotence"), Some("false"));
    let p = with(&[("KAFKA_ACKS", "-1")], &[]);
    assert_eq!(p.get("enable.idempotence"), Some("true"));
    // As librdkafka reads it (`strtol`, and its names): all of these are `all`, or 0 and 1.
    for all in ["ALL", "-01", "-0x1"] {
        let p = with(&[("KAFKA_ACKS", all)], &[]);
        assert_eq!(p.get("enable.idempotence"), Some("true"), "{all:?}");
    }
    for weaker in ["0x0", "01", "+1"] {
        let p = with(&[("KAFKA_ACKS", weaker)], &[]);
        assert_eq!(p.get("enable.idempotence"), Some("false"), "{weaker:?}");
    }
    // Contradictory on purpose: librdkafka's own error at start-up says why.
    let p = with(
        &[("KAFKA_ACKS", "1"), ("KAFKA_ENABLE_IDEMPOTENCE", "true")],
        &[],
    );
    assert_eq!(p.get("enable.idempotence"), Some("true"));
}

/// Idempotence also needs retries and at most 5 requests in flight per broker: setting
/// `retries=0` or `max.in.flight` above 5 alone turns the default off, as a weaker `acks` does,
/// rather than librdkafka refusing the start over `enable.idempotence`, which the operator never
/// set (found by mutation testing of follow.rs). Under either name, as librdkafka reads numbers.
#[test]
fn no_retries_or_more_than_5_in_flight_turn_the_default_idempotence_off_but_never_an_explicit_one()
{
    let idempotence = |vars: &[(&str, &str)], flags: &[&str]| {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let p = from_sources(env(vars), &flags, limits(Duration::from_secs(1)), &no_files)
            .expect("valid");
        p.get("enable.idempotence").map(str::to_string)
    };
    let off = Some("false".to_string());
    let on = Some("true".to_string());
    assert_eq!(idempotence(&[("KAFKA_RETRIES", "0")], &[]), off);
    assert_eq!(idempotence(&[], &["message.send.max.retries=0x0"]), off);
    assert_eq!(idempotence(&[], &["retries=1"]), on);
    assert_eq!(idempotence(&[], &["max.in.flight=6"]), off);
    assert_eq!(
        idempotence(&[], &["max.in.flight.requests.per.connection=10"]),
        off
    );
    assert_eq!(idempotence(&[], &["max.in.flight=5"]), on);
    // Contradictory on purpose: librdkafka's own error at start-up says why.
    assert_eq!(
        idempotence(&[], &["retries=0", "enable.idempotence=true"]),
        on
    );
}

#[test]
fn message_max_bytes_takes_the_largest_body_with_room_for_its_key_and_headers() {
    let with = |max_body_bytes: usize, flags: &[&str]| {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let limits = Defaults {
            wait: Duration::from_secs(1),
            max_body_bytes,
        };
        let props = from_sources(env(&[]), &flags, limits, &no_files).expect("valid");
        props.get("message.max.bytes").map(str::to_string)
    };
    assert_eq!(with(1 << 20, &[]).as_deref(), Some("1114112"));
    assert_eq!(with(8 << 20, &[]).as_deref(), Some("8454144"));
    // Never below librdkafka's own default.
    assert_eq!(with(1024, &[]).as_deref(), Some("1000000"));
    assert_eq!(
        with(1 << 20, &["message.max.bytes=2000000"]).as_deref(),
        Some("2000000")
    );
}

/// The queue follows a `message.max.bytes` the operator raised, rounded up to whole KiB: rounded
/// down, a record of that size would not fit the queue, and the start would be refused over a
/// queue the operator never set. A lower one leaves the 64 MiB queue as it is: a queue of one
/// such record (under 2 MiB) fills in a burst and answers 503 (found by mutation testing: both
/// survived).
#[test]
fn the_queue_takes_a_raised_message_max_bytes_rounded_up_and_a_lower_one_keeps_64_mib() {
    let with = |flags: &[&str]| {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let limits = Defaults {
            wait: Duration::from_secs(1),
            max_body_bytes: 1 << 20,
        };
        let props = from_sources(env(&[]), &flags, limits, &no_files).expect("valid");
        props.get("queue.buffering.max.kbytes").map(str::to_string)
    };
    assert_eq!(
        with(&["message.max.bytes=100000001"]).as_deref(),
        Some("97657")
    );
    assert_eq!(
        with(&["message.max.bytes=2000000"]).as_deref(),
        Some("65536")
    );
}

/// librdkafka's error for `sasl.pasword` (a misspelt property) set to `value`.
fn misspelt(value: &str) -> rdkafka::error::KafkaError {
    let mut config = rdkafka::ClientConfig::new();
    config.set("sasl.pasword", value);
    let Err(e) = config.create_native_config() else {
        panic!("librdkafka took an unknown property");
    };
    e
}

#[test]
fn a_misspelt_property_is_named_in_the_error_but_its_value_is_not() {
    let shown = redacted(&misspelt("hunter2-very-secret"), &Scrubber::default());
    assert!(shown.contains("sasl.pasword"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// A value outside a property's closed set is not quoted: like the bridge's own closed-set
/// flags', a wrong one may be a secret set in the wrong variable (found by a review of the tools).
#[test]
fn a_value_outside_a_propertys_closed_set_is_not_quoted() {
    // librdkafka quotes the value without its leading blanks, and one token of a list (a
    // second look found both shown).
    // One too long for librdkafka's 512-byte message, which then lacks its closing words (a
    // third look found it shown whole).
    let long = format!("Hunter8Secret{}", "x".repeat(600));
    for (property, value, named) in [
        ("security.protocol", "Hunter8Secret", "security.protocol"),
        ("security.protocol", " Hunter8Secret", "security.protocol"),
        ("debug", "broker,Hunter8Secret", "debug"),
        ("security.protocol", long.as_str(), "security.protocol"),
        // librdkafka's closing words inside a value cut off (a last look found the rest shown).
        (
            "security.protocol",
            &format!(
                "a\" for configuration property \"Hunter8Secret{}",
                "x".repeat(600)
            ),
            "security.protocol",
        ),
        // Refused by the property's own check, which librdkafka words otherwise, and under an
        // alias, which librdkafka names by its own name (found by mutation testing: shown twice).
        ("sasl.mechanisms", "Hunter8 Secret", "sasl.mechanisms"),
        ("sasl.mechanism", "PLAIN,Hunter8Secret", "sasl.mechanisms"),
    ] {
        let mut config = rdkafka::ClientConfig::new();
        config.set(property, value);
        let Err(e) = config.create_native_config() else {
            panic!("librdkafka took {value:?}");
        };
        let shown = redacted(&e, &Scrubber::default());
        assert!(!shown.contains("Hunter8"), "{shown}");
        assert!(
            shown.contains(&format!(
                r#"Invalid value (not shown) for configuration property "{named}""#
            )),
            "{shown}"
        );
    }
}

/// Free text librdkafka quotes in its refusal, of a property it checks as it is set or of one it
/// refuses making the client, is not shown: no secret, but possibly one set in the wrong variable
/// (a second look found these shown, `sasl.mechanism`'s without a space among them). A path with
/// a `/` is.
#[test]
fn free_text_librdkafka_quotes_in_a_refusal_is_not_shown() {
    // One too long for librdkafka's 512-byte text, which then ends inside it (a third look found
    // 491 bytes of it shown).
    let long = format!("Hunter8{}", "K".repeat(700));
    let wide = format!("Hunter8{}", "\u{e9}".repeat(400));
    let overlapping = format!("Hunt,Hunter8Secret({}", "K".repeat(600));
    for (property, value) in [
        ("topic.blacklist", "Hunter8(Secret"),
        ("plugin.library.paths", "Hunter8Secret"),
        ("ssl.truststore.location", "Hunter8Secret"),
        // librdkafka quotes the element of a list it refused (a third look found them shown).
        ("topic.blacklist", "ok,Hunter8(Secret"),
        ("plugin.library.paths", "Hunter8Secret;x"),
        ("plugin.library.paths", long.as_str()),
        // Cut inside a character, and a short element beginning a long one (a fourth look
        // found both shown).
        ("plugin.library.paths", wide.as_str()),
        ("topic.blacklist", overlapping.as_str()),
    ] {
        let mut config = rdkafka::ClientConfig::new();
        config.set(property, value);
        let Err(e) = config.create_native_config() else {
            panic!("librdkafka took {value:?}");
        };
        let shown = redacted(&e, &Scrubber::default());
        assert!(!shown.contains("Hunter8"), "{property}: {shown}");
        assert!(shown.ends_with(&format!("(set as {property})")), "{shown}");
    }
    for (property, value, protocol) in [
        ("sasl.mechanism", "Hunter8Secret", "SASL_PLAINTEXT"),
        ("sasl.mechanism", long.as_str(), "SASL_PLAINTEXT"),
        (
            "sasl.mechanism",
            &format!("Hunter8x{}", "\u{e9}".repeat(400)),
            "SASL_PLAINTEXT",
        ),
        // Checked when any client is made, a producer too (a third look found it shown).
        (
            "partition.assignment.strategy",
            "range,Hunter8Secret",
            "PLAINTEXT",
        ),
        // OpenSSL splits a curve list at colons (a fifth look found the element shown).
        ("ssl.curves.list", "P-256:Hunter8Secret", "SSL"),
        ("ssl.curves.list", "Hunter8Secret", "SSL"),
        ("ssl.keystore.location", "Hunter8Secret", "SSL"),
        ("ssl.keystore.location", "/no/such/Hunter8Secret", "SSL"),
    ] {
        let properties = [
            ("security.protocol", protocol),
            ("ssl.keystore.password", "Kx9Pv2Zq7W"),
            (property, value),
        ];
        let mut config = rdkafka::ClientConfig::new();
        for (k, v) in properties {
            config.set(k, v);
        }
        let e = config
            .create::<rdkafka::producer::BaseProducer>()
            .map(drop)
            .expect_err("refused");
        assert!(e.to_string().contains("Hunter8"), "{e}");
        let shown = redacted(&e, &Scrubber::new(properties));
        assert_eq!(
            shown.contains("Hunter8"),
            value.contains('/'),
            "{property}: {shown}"
        );
    }
}

/// A plugin path with a `/` is shown, as the README says, each of a list (a fifth look found them
/// hidden).
#[test]
fn a_plugin_path_with_a_slash_is_shown() {
    let mut config = rdkafka::ClientConfig::new();
    config.set(
        "plugin.library.paths",
        "/opt/plugins/libmonitoring.so;/opt/plugins/libtrace.so",
    );
    let Err(e) = config.create_native_config() else {
        panic!("librdkafka took it");
    };
    let shown = redacted(&e, &Scrubber::default());
    assert!(shown.contains("/opt/plugins/libmonitoring.so"), "{shown}");
    // librdkafka splits it at `;` alone: a path holding `:` or `,` is one path (a sixth look
    // found a part of it hidden).
    for path in [
        "/opt/plugins/lib:monitoring.so",
        "/opt/plugins/libmon,v2.so",
    ] {
        let mut config = rdkafka::ClientConfig::new();
        config.set("plugin.library.paths", path);
        let Err(e) = config.create_native_config() else {
            panic!("librdkafka took it");
        };
        let shown = redacted(&e, &Scrubber::default());
        assert!(shown.contains(path), "{shown}");
    }
}

/// A number in a range librdkafka states is no secret's (a fourth look found the range's end
/// hidden as the start of the value `9000000ms`).
#[test]
fn a_range_librdkafka_states_is_shown() {
    let mut config = rdkafka::ClientConfig::new();
    config.set("linger.ms", "9000000ms");
    let Err(e) = config.create_native_config() else {
        panic!("librdkafka took it");
    };
    let shown = redacted(&e, &Scrubber::default());
    assert!(shown.contains("allowed range 0..900000"), "{shown}");
}

/// A SASL mechanism's own name is no secret: it is shown where librdkafka says this build has none
/// of it, or that another cannot be used.
#[test]
fn a_known_sasl_mechanism_is_named_in_a_refusal() {
    let properties = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
    ];
    let shown = Scrubber::new(properties)
        .scrub_refusal("Unsupported SASL mechanism: SCRAM-SHA-512 (PLAIN, SCRAM-SHA-512)");
    assert_eq!(
        shown,
        "Unsupported SASL mechanism: SCRAM-SHA-512 (PLAIN, SCRAM-SHA-512)"
    );
}

/// librdkafka names a property set under an alias by its own name; the alias is named beside it,
/// and the value, which librdkafka's text leaves out, is not added (found by mutation testing:
/// `acks=$VALUE` was).
#[test]
fn a_value_refused_under_an_alias_is_not_added_to_librdkafkas_words() {
    for (alias, named) in [
        ("acks", "request.required.acks"),
        ("linger.ms", "queue.buffering.max.ms"),
        ("retries", "message.send.max.retries"),
    ] {
        let mut config = rdkafka::ClientConfig::new();
        config.set(alias, "Hunter8Secret");
        let Err(e) = config.create_native_config() else {
            panic!("librdkafka took {alias}");
        };
        let shown = redacted(&e, &Scrubber::default());
        assert!(!shown.contains("Hunter8Secret"), "{shown}");
        assert!(shown.contains(&format!("\"{named}\"")), "{shown}");
        assert!(shown.ends_with(&format!("(set as {alias})")), "{shown}");
    }
}

#[test]
fn a_misspelt_property_with_a_one_letter_value_keeps_librdkafkas_words_whole() {
    assert_eq!(
        redacted(&misspelt("o"), &Scrubber::default()),
        r#"No such configuration property: "sasl.pasword""#
    );
}

#[test]
fn a_number_is_read_as_librdkafka_reads_it_in_hex_octal_or_with_text_after_it() {
    let read = |value| super::number::<u64>("message.max.bytes", value);
    assert_eq!(read("1000000"), Some(1_000_000));
    assert_eq!(read("0x80000"), Some(524_288));
    assert_eq!(read("0400000"), Some(131_072));
    assert_eq!(read(" 2000000"), Some(2_000_000));
    assert_eq!(
        read("2000000 bytes"),
        Some(2_000_000),
        "strtol stops at the text"
    );
    assert_eq!(read("a lot"), None, "refused by librdkafka");
    assert_eq!(read("1"), None, "below librdkafka's range");
}

/// The properties a rotated file makes again go through the same check as start-up's: a queue
/// smaller than the largest record was put in place by a rebuild, its webhooks then spooled for
/// good (or answered 503) while the reload counted as a success.
#[test]
fn a_queue_smaller_than_the_largest_record_is_refused_wherever_the_properties_are_made() {
    let made = from_sources(
        env(&[("KAFKA_QUEUE_BUFFERING_MAX_KBYTES", "1")]),
        &[],
        limits(Duration::from_secs(1)),
        &no_files,
    );
    let Err(refused) = made else {
        panic!("a queue of 1 KiB was taken");
    };
    assert!(
        refused
            .to_string()
            .contains("queue.buffering.max.kbytes: 1 KiB is less than"),
        "{refused}"
    );
}

/// Only Kubernetes' `_PORT_<number>_<protocol>` shape is a service link: a variable with a number
/// but no protocol after `_PORT_`, or a protocol but no number, is no Service's, and is refused
/// as any other name of no property is, not silently dropped.
#[test]
fn a_variable_that_only_looks_like_a_service_link_is_refused_naming_it() {
    for variable in ["KAFKA_LISTENER_PORT_9092_PLAIN", "KAFKA_LISTENER_PORT__TCP"] {
        let err = from_sources(
            env(&[(variable, "1")]),
            &[],
            limits(Duration::from_secs(1)),
            &no_files,
        )
        .expect_err("no librdkafka property")
        .to_string();
        assert!(
            err.contains(variable) && err.contains("no property named"),
            "{err}"
        );
    }
}

/// A refusal of what a variable set names the `KAFKA_*` environment as the setting, and one of
/// what a flag set names `-X`: an operator told "-X" looks for a flag that is not there.
#[test]
fn a_refused_property_names_the_kind_of_setting_that_set_it() {
    let long = "c".repeat(MAX_CLIENT_ID_BYTES + 1);
    for (variables, flags, setting) in [
        (
            vec![("KAFKA_METADATA_BROKER_LIST", "x:1")],
            vec![],
            "KAFKA_* environment: KAFKA_METADATA_BROKER_LIST sets",
        ),
        (
            vec![],
            vec!["metadata.broker.list=x:1".to_string()],
            "-X: -X metadata.broker.list sets",
        ),
        (
            vec![("KAFKA_CLIENT_ID", long.as_str())],
            vec![],
            "KAFKA_* environment: KAFKA_CLIENT_ID sets",
        ),
        (
            vec![],
            vec![format!("client.id={long}")],
            "-X: -X client.id sets",
        ),
    ] {
        let err = overrides(env(&variables), &flags, &no_files)
            .expect_err("refused")
            .to_string();
        assert!(err.starts_with(setting), "{err}");
    }
}

#[test]
fn a_client_id_longer_than_librdkafkas_statistics_can_hold_is_refused_naming_its_setter() {
    let fits = "c".repeat(MAX_CLIENT_ID_BYTES);
    let long = "c".repeat(MAX_CLIENT_ID_BYTES + 1);
    for (variables, flags) in [
        (vec![("KAFKA_CLIENT_ID", fits.as_str())], vec![]),
        (vec![], vec![format!("client.id={fits}")]),
    ] {
        overrides(env(&variables), &flags, &no_files).expect("a client.id of 1 KiB is taken");
    }
    for (variables, flags, named) in [
        (
            vec![("KAFKA_CLIENT_ID", long.as_str())],
            vec![],
            "KAFKA_CLIENT_ID sets client.id to 1025 bytes",
        ),
        (
            vec![("KAFKA_CLIENT_ID", "short")],
            vec![format!(" client.id ={long}")],
            "-X client.id sets client.id to 1025 bytes",
        ),
    ] {
        // Both the producer's properties and the tail consumer's (`overrides` alone) refuse it.
        let from_sources = from_sources(
            env(&variables),
            &flags,
            limits(Duration::from_secs(1)),
            &no_files,
        );
        let overrides = overrides(env(&variables), &flags, &no_files).map(|_| ());
        for err in [from_sources.map(|_| ()), overrides] {
            let err = err.expect_err("refused").to_string();
            assert!(err.contains(named), "{err}");
            assert!(!err.contains(&long[..64]), "the value is not shown: {err}");
        }
    }
}
