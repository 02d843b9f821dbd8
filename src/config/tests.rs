//! Unit tests of settings validation.

use super::*;

fn args(extra: &[&str]) -> Args {
    let mut v = vec!["qikchat-bridge"];
    v.extend_from_slice(extra);
    Args::try_parse_from(v).expect("flags parse")
}

fn no_files(_: &Path) -> std::io::Result<String> {
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "no such file",
    ))
}

fn build(extra: &[&str]) -> Result<Config, ConfigError> {
    Config::from_args(args(extra), std::iter::empty(), no_files)
}

/// What the binary prints for the command line `argv` (its program name first), which clap and
/// then [`refusal`] refuse.
fn refused(argv: &[&str]) -> String {
    let err = Cli::try_parse_from(argv).expect_err("refused");
    let argv: Vec<std::ffi::OsString> = argv.iter().map(Into::into).collect();
    refusal(&err, &argv).unwrap_or_else(|| panic!("{argv:?}: taken for help or version"))
}

#[test]
fn defaults_start_embedded_kafka_with_the_seed_credential() {
    let config = build(&[]).expect("defaults are valid");
    assert_eq!(config.kafka, KafkaMode::Embedded);
    assert!(config.seed_credential_in_use);
    assert_eq!(config.webhook_path, "/webhook");
    // Metrics made outside the app (tests, examples) assume the same default.
    assert_eq!(config.ack_timeout, crate::metrics::DEFAULT_ACK_TIMEOUT);
    assert_eq!(config.ack_timeout, Duration::from_millis(1500));
    assert_eq!(config.max_body_bytes, 1 << 20);
}

#[test]
fn settings_of_a_real_deployment_without_brokers_refuse_the_in_memory_kafka() {
    for (flags, env, sign) in [
        (vec!["--auth", "a:b"], vec![], "--auth"),
        (
            vec!["--insecure-disable-auth"],
            vec![],
            "--insecure-disable-auth",
        ),
        (
            vec!["--auth-file", "/run/secrets/auth"],
            vec![],
            "--auth-file",
        ),
        (vec!["-X", "sasl.mechanism=PLAIN"], vec![], "sasl.mechanism"),
        // TLS to the brokers without SASL (found by mutation testing: `ssl.` went unchecked).
        (
            vec!["-X", "ssl.endpoint.identification.algorithm=https"],
            vec![],
            "ssl.endpoint.identification.algorithm",
        ),
        (
            vec![],
            vec![("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")],
            "security.protocol",
        ),
    ] {
        let env = env.into_iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let err = Config::from_args(args(&flags), env, |_| Ok("a:b".into())).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("--kafka-brokers:"), "{text}");
        assert!(text.contains(sign), "{text}");
        assert!(text.contains("dev-kafka"), "{text}");
    }
    // Other client properties are fine with it (the CI's metrics check sets one).
    let config = build(&["-X", "statistics.interval.ms=200"]).expect("valid");
    assert_eq!(config.kafka, KafkaMode::Embedded);
}

#[test]
fn real_brokers_without_credentials_refuse_to_start() {
    assert_eq!(
        build(&["--kafka-brokers", "k:9092"]).unwrap_err(),
        ConfigError::NoCredentials
    );
}

#[test]
fn empty_brokers_are_refused_rather_than_taken_for_the_embedded_kafka() {
    for empty in ["", "  ", ",", " , ,"] {
        let err = build(&["--kafka-brokers", empty]).expect_err("refused");
        assert!(err.to_string().contains("--kafka-brokers"), "{err}");
        assert!(err.to_string().contains("is empty"), "{err}");
    }
}

/// A value from a YAML block scalar or `$(cat file)` ends with a line break, and a template may
/// leave a blank before it: trimmed, not taken for a host name with a blank in it, which would
/// refuse a deployment that works (found by mutation testing: the trim went unnoticed).
#[test]
fn a_broker_list_with_blanks_around_it_is_taken_trimmed() {
    for brokers in ["kafka\n", " kafka:9092\n", "\tkafka:9092 ", "a:1,b:2\r\n"] {
        let config = build(&["--kafka-brokers", brokers, "--auth", "a:b"])
            .unwrap_or_else(|e| panic!("{brokers:?}: {e}"));
        assert_eq!(config.kafka, KafkaMode::Brokers(brokers.trim().to_string()));
    }
}

/// Said as empty whatever else is set: it read as a credential without a colon with brokers, as
/// "webhook credentials are configured" without, and as credentials set together with
/// --insecure-disable-auth.
#[test]
fn an_empty_auth_value_is_refused_as_empty_whatever_else_is_set() {
    for others in [
        &[][..],
        &["--kafka-brokers", "k:9092"][..],
        &["--kafka-brokers", "k:9092", "--insecure-disable-auth"][..],
        &["--insecure-disable-auth"][..],
        &["--kafka-brokers", "k:9092", "--auth", "a:b"][..],
    ] {
        for empty in ["", " ", ",", " , "] {
            let mut flags = others.to_vec();
            flags.extend(["--auth", empty]);
            let err = build(&flags).expect_err("refused").to_string();
            assert!(err.starts_with("--auth: is empty"), "{flags:?}: {err}");
        }
    }
    // An entry left empty between others is not the whole value empty: its place is named.
    let err = build(&["--kafka-brokers", "k:9092", "--auth", "a:b,"]).unwrap_err();
    assert!(err.to_string().contains("the 2nd credential"), "{err}");
}

/// `--check-config` prints the configuration's `Debug`: the embedded Kafka's partitions were
/// left out of it.
#[test]
fn the_summary_shows_the_embedded_partitions_in_embedded_mode_only() {
    let embedded = build(&["--embedded-partitions", "7"]).expect("valid");
    let shown = format!("{embedded:#?}");
    assert!(shown.contains("embedded_partitions: 7,"), "{shown}");
    let brokers = build(&["--kafka-brokers", "k:9092", "--auth", "a:b"]).expect("valid");
    let shown = format!("{brokers:#?}");
    assert!(!shown.contains("embedded_partitions"), "{shown}");
}

#[test]
fn real_brokers_start_without_credentials_only_with_the_insecure_flag() {
    let config = build(&["--kafka-brokers", "k:9092", "--insecure-disable-auth"]).expect("valid");
    assert!(!config.credentials.required());
    assert!(!config.seed_credential_in_use);
}

#[test]
fn credentials_come_from_flags_and_a_file_together() {
    let config = Config::from_args(
        args(&[
            "--kafka-brokers",
            "k:9092",
            "--auth",
            "a:1",
            "--auth-file",
            "/s/auth",
        ]),
        std::iter::empty(),
        |p: &Path| {
            assert_eq!(p, Path::new("/s/auth"));
            Ok("# rotated 2026-11\nb:2\n\n c:3:with:colons \n".to_string())
        },
    )
    .expect("valid");
    assert_eq!(config.credentials.users(), vec!["a", "b", "c"]);
    // What the reload starts from: the file as read (found by mutation testing: a baseline of
    // nothing went unnoticed, with which the watcher would apply the same file again), and
    // the --auth credentials it keeps whatever the file holds.
    let reload = config.auth_reload.expect("reloaded");
    assert_eq!(
        reload.started_with,
        FileDigest::of("# rotated 2026-11\nb:2\n\n c:3:with:colons \n")
    );
    assert_eq!(format!("{:?}", reload.fixed), "[a:<redacted>]");
}

/// A broker's scheme that is not `security.protocol` is refused by the settings themselves, not
/// only by the list's own check: librdkafka would connect to no broker and the bridge would wait
/// for Kafka for ever (found by mutation testing: `from_args` could skip the check).
#[test]
fn a_broker_scheme_other_than_the_security_protocol_refuses_to_start() {
    let err = build(&["--kafka-brokers", "SASL_SSL://k:9093", "--auth", "a:b"])
        .expect_err("refused")
        .to_string();
    assert!(
        err.starts_with("--kafka-brokers: the 1st broker's scheme, sasl_ssl://"),
        "{err}"
    );
    build(&[
        "--kafka-brokers",
        "SSL://k:9093",
        "--auth",
        "a:b",
        "-X",
        "security.protocol=ssl",
    ])
    .expect("matching");
}

/// CloudEvents headers go on every record only when asked for (found by mutation testing: a
/// source set without `--cloudevents` went unnoticed).
#[test]
fn cloudevents_headers_are_off_unless_asked_for() {
    assert_eq!(build(&[]).expect("defaults").cloudevents_source, None);
    let config = build(&["--cloudevents-source", "/qikchat/prod"]).expect("valid");
    assert_eq!(config.cloudevents_source, None);
    let config = build(&["--cloudevents", "--cloudevents-source", "/qikchat/prod"]).expect("valid");
    assert_eq!(config.cloudevents_source.as_deref(), Some("/qikchat/prod"));
}

#[test]
fn a_missing_auth_file_names_the_file() {
    let err = build(&["--kafka-brokers", "k:9092", "--auth-file", "/nope"]).unwrap_err();
    assert!(err.to_string().contains("/nope"), "{err}");
}

#[test]
fn a_credential_without_a_colon_is_rejected() {
    let err = build(&["--kafka-brokers", "k:9092", "--auth", "justauser"]).unwrap_err();
    assert!(err.to_string().starts_with("--auth:"), "{err}");
}

#[test]
fn a_relative_webhook_path_is_rejected() {
    let err = build(&["--webhook-path", "webhook"]).expect_err("relative");
    assert!(err.to_string().contains("--webhook-path"), "{err}");
    // A query, a fragment or a space could never match a request's path.
    for path in [
        "/webhook?x=1",
        "/webhook#x",
        "/web hook",
        "/wébhook",
        "/web\thook",
        "/a<b",
        "/a>b",
        "/a`b",
        "*",
    ] {
        let err = build(&["--webhook-path", path]).expect_err("refused");
        assert!(err.to_string().contains("--webhook-path"), "{err}");
    }
    assert!(build(&["--webhook-path", "/hooks/qikchat"]).is_ok());
    assert!(build(&["--webhook-path", "/w%C3%A9bhook"]).is_ok());
    // A request's whole head must fit in 16 KiB: a longer path got 431 every time.
    let longest = format!("/{}", "a".repeat(4095));
    assert!(build(&["--webhook-path", &longest]).is_ok());
    let err = build(&["--webhook-path", &format!("{longest}a")]).expect_err("too long");
    assert!(err.to_string().contains("at most 4096 bytes"), "{err}");
    // What hyper takes in a request line, however unusual.
    assert!(build(&["--webhook-path", "/a{b}^|~!$&'()*+,;=:@"]).is_ok());
}

#[test]
fn timeouts_and_limits_beyond_any_use_are_rejected_with_the_setting_named() {
    let too_big = [
        ("--ack-timeout", "61s"),
        ("--header-read-timeout", "2h"),
        ("--body-read-timeout", "2h"),
        ("--shutdown-delay", "2h"),
        ("--shutdown-grace", "100000000years"),
        ("--flush-timeout", "2h"),
        ("--max-connections", "1000001"),
        ("--max-in-flight", "18446744073709551615"),
    ];
    for (flag, value) in too_big {
        let err = build(&[flag, value]).expect_err(flag);
        assert!(err.to_string().contains(flag), "{flag}: {err}");
    }
    assert!(build(&["--ack-timeout", "60s", "--max-connections", "1000000"]).is_ok());
    assert!(build(&["--ack-timeout", "10ms"]).is_ok(), "the shortest");
}

/// The settings that are waits of at most an hour; the first three, timeouts, also more than 0.
const WAITS: [&str; 6] = [
    "--header-read-timeout",
    "--idle-timeout",
    "--body-read-timeout",
    "--shutdown-delay",
    "--shutdown-grace",
    "--flush-timeout",
];

/// "At most 1h", as the README says: 1h itself is taken (found by mutation testing: `>=` went
/// unnoticed).
#[test]
fn waits_of_exactly_an_hour_are_accepted() {
    for setting in WAITS {
        assert!(build(&[setting, "1h"]).is_ok(), "{setting} 1h");
    }
}

#[test]
fn an_in_flight_bytes_limit_below_one_body_is_rejected() {
    let err =
        build(&["--max-body-bytes", "4096", "--max-in-flight-bytes", "4095"]).expect_err("refused");
    assert!(err.to_string().contains("--max-in-flight-bytes"), "{err}");
    let config =
        build(&["--max-body-bytes", "4096", "--max-in-flight-bytes", "4096"]).expect("one body");
    assert_eq!(config.max_in_flight_bytes, 4096);
    assert_eq!(build(&[]).expect("defaults").max_in_flight_bytes, 96 << 20);
}

#[test]
fn zero_or_out_of_range_timeouts_and_limits_are_rejected_with_the_setting_named() {
    let refused = [
        ("--ack-timeout", "0s"),
        ("--ack-timeout", "500us"),
        ("--ack-timeout", "9ms"),
        ("--max-body-bytes", "0"),
        ("--max-in-flight", "0"),
        ("--max-connections", "0"),
        ("--embedded-partitions", "0"),
        ("--embedded-partitions", "1001"),
    ];
    for (flag, value) in refused {
        let err = build(&[flag, value]).expect_err(flag).to_string();
        assert!(
            err.starts_with(&format!("{flag}:")),
            "{flag} {value}: {err}"
        );
    }
    for (flag, value) in [("--max-in-flight", "1"), ("--embedded-partitions", "1000")] {
        assert!(build(&[flag, value]).is_ok(), "{flag} {value}");
    }
}

/// Each bound the README documents, one step past it and at it. Found by mutation testing: the
/// ack timeout's 60 s and the waits' 1 h could move up by a millisecond, the smallest body limit
/// (1) be refused, 512 MiB and 1,000,000 be off by one, and an idle timeout of zero be taken,
/// with no test noticing.
#[test]
fn every_documented_bound_refuses_one_step_past_it_and_takes_the_bound_itself() {
    let mut refused = vec![
        (vec!["--ack-timeout", "60001ms"], "--ack-timeout"),
        (vec!["--ack-timeout", "9999us"], "--ack-timeout"),
        (
            vec![
                "--max-body-bytes",
                "536870913",
                "--max-in-flight-bytes",
                "1073741824",
            ],
            "--max-body-bytes",
        ),
        (vec!["--max-connections", "1000001"], "--max-connections"),
        (vec!["--max-in-flight", "1000001"], "--max-in-flight"),
        (
            vec!["--embedded-partitions", "1001"],
            "--embedded-partitions",
        ),
        (vec!["--embedded-partitions", "0"], "--embedded-partitions"),
    ];
    for setting in &WAITS[..3] {
        refused.push((vec![setting, "0s"], setting));
    }
    for setting in WAITS {
        refused.push((vec![setting, "3600001ms"], setting));
    }
    for (flags, setting) in refused {
        let err = build(&flags).expect_err(setting).to_string();
        assert!(err.starts_with(&format!("{setting}:")), "{flags:?}: {err}");
    }
    for flags in [
        &["--ack-timeout", "60s"][..],
        &["--ack-timeout", "10ms"][..],
        &["--max-body-bytes", "1"][..],
        &[
            "--max-body-bytes",
            "536870912",
            "--max-in-flight-bytes",
            "536870912",
        ][..],
        &["--max-connections", "1", "--max-in-flight", "1"][..],
        &["--max-connections", "1000000", "--max-in-flight", "1000000"][..],
        &["--embedded-partitions", "1"][..],
    ] {
        build(flags).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
    }
}

/// A broker with user information can never work (librdkafka takes credentials only from
/// `sasl.*`, and the bridge would wait for Kafka for ever): refused, without quoting it.
#[test]
fn a_broker_with_user_information_is_refused_without_being_quoted() {
    for brokers in [
        "k:9092,SASL_SSL://u:hunter2pw@127.0.0.1:21499",
        "k:9092, v:hunter2pw@127.0.0.2:9",
    ] {
        let err = build(&["--kafka-brokers", brokers, "--auth", "a:b"])
            .expect_err("refused")
            .to_string();
        assert!(
            err.starts_with("--kafka-brokers: the 2nd broker holds user information"),
            "{err}"
        );
        assert!(!err.contains("hunter2pw"), "{err}");
    }
}

#[test]
fn debug_output_never_shows_passwords() {
    let config = Config::from_args(
        args(&[
            "--kafka-brokers",
            "k:9092",
            "--auth",
            "alice:s3cret-pw",
            "-X",
            "sasl.password=kafka-pw",
        ]),
        vec![("KAFKA_SSL_KEY_PASSWORD".to_string(), "key-pw".to_string())],
        no_files,
    )
    .expect("valid");
    let shown = format!("{config:?}");
    assert!(shown.contains("alice"), "{shown}");
    for secret in ["s3cret-pw", "kafka-pw", "key-pw"] {
        assert!(!shown.contains(secret), "{secret} leaked in {shown}");
    }
    // A password in a broker list's path, which librdkafka ignores, is refused like any user
    // information, and not quoted (the brokers' own redaction in `Debug` stays as a second
    // guard that no valid list reaches).
    let refused = build(&[
        "--kafka-brokers",
        "plaintext://kafka:9092/alice:hunter2pw@x",
        "--auth",
        "a:b",
    ])
    .expect_err("refused")
    .to_string();
    assert!(refused.contains("holds user information"), "{refused}");
    assert!(!refused.contains("hunter2pw"), "leaked in {refused}");
}

#[test]
fn a_message_timeout_longer_than_the_wait_for_kafka_is_a_caveat() {
    let plain = build(&[]).expect("valid");
    assert!(plain.caveats().is_empty(), "{:?}", plain.caveats());
    let longer = build(&["-X", "message.timeout.ms=30000"]).expect("valid");
    let caveats = longer.caveats();
    assert_eq!(caveats.len(), 1);
    assert!(caveats[0].contains("duplicate"), "{caveats:?}");
    let shorter = build(&["-X", "message.timeout.ms=1000"]).expect("valid");
    assert!(shorter.caveats().is_empty());
}

/// The Kafka caveats start exactly where their promise breaks (found by mutation testing: each
/// bound could move by one, the spool's shorter wait for Kafka be forgotten, the room for the
/// key and headers be left out of the record limit, and the spool go unmentioned, with no test
/// noticing).
#[test]
fn the_kafka_caveats_start_exactly_where_their_promise_breaks() {
    let caveats = |flags: &[&str]| build(flags).expect("valid").caveats();
    // The wait for Kafka: the ack timeout (1500 ms), or 1250 ms with a spool.
    assert!(caveats(&["-X", "message.timeout.ms=1500"]).is_empty());
    let said = caveats(&["-X", "message.timeout.ms=1501"]);
    assert!(
        said.len() == 1 && said[0].contains("(1501)") && !said[0].contains("spooled"),
        "{said:?}"
    );
    let spooled = ["--spool-dir", "/s", "-X"];
    assert!(caveats(&[&spooled[..], &["message.timeout.ms=1250"]].concat()).is_empty());
    let said = caveats(&[&spooled[..], &["message.timeout.ms=1251"]].concat());
    assert!(
        said.len() == 1 && said[0].contains("answered 503 or spooled"),
        "{said:?}"
    );
    // The record limit: the body limit plus 64 KiB for the key and headers (1114112).
    assert!(caveats(&["-X", "message.max.bytes=1114112"]).is_empty());
    let said = caveats(&["-X", "message.max.bytes=1114111"]);
    assert!(said.len() == 1 && said[0].contains("(1114111)"), "{said:?}");
}

/// A weak `acks` is warned of however it is written: librdkafka reads it with `strtol`.
#[test]
fn acks_of_0_or_1_are_a_caveat_in_any_spelling_librdkafka_reads() {
    for (acks, says) in [
        ("0", "acks is 0"),
        ("0x0", "acks is 0"),
        ("00", "acks is 0"),
        ("+0", "acks is 0"),
        ("1", "acks is 1"),
        ("0x1", "acks is 1"),
        ("01", "acks is 1"),
    ] {
        let config = build(&["-X", &format!("acks={acks}")]).expect("valid");
        let caveats = config.caveats();
        assert!(
            caveats.len() == 1 && caveats[0].starts_with(says),
            "{acks}: {caveats:?}"
        );
    }
    for acks in ["all", "-1"] {
        let config = build(&["-X", &format!("acks={acks}")]).expect("valid");
        assert!(
            config.caveats().is_empty(),
            "{acks}: {:?}",
            config.caveats()
        );
    }
}

/// The Kafka metrics and two alerts depend on librdkafka's statistics: turned off or rare, said.
#[test]
fn statistics_turned_off_or_rarer_than_a_minute_are_a_caveat() {
    let off = build(&["-X", "statistics.interval.ms=0"]).expect("valid");
    let caveats = off.caveats();
    assert!(
        caveats.len() == 1 && caveats[0].contains("cannot fire"),
        "{caveats:?}"
    );
    let rare = build(&["-X", "statistics.interval.ms=120000"]).expect("valid");
    let caveats = rare.caveats();
    assert!(
        caveats.len() == 1 && caveats[0].contains("over a minute"),
        "{caveats:?}"
    );
    let minute = build(&["-X", "statistics.interval.ms=60000"]).expect("valid");
    assert!(minute.caveats().is_empty(), "{:?}", minute.caveats());
}

/// Accepted with no word: answers after Qikchat's 2 s are failures to it, and sent again.
#[test]
fn an_ack_timeout_not_below_qikchat_s_two_seconds_is_a_caveat() {
    for (timeout, caveat) in [("1999ms", false), ("2s", true), ("10s", true)] {
        // Without a spool message.timeout.ms follows the ack timeout: that is the only caveat.
        let caveats = build(&["--ack-timeout", timeout]).expect("valid").caveats();
        assert_eq!(caveats.len(), usize::from(caveat), "{timeout}: {caveats:?}");
        if caveat {
            assert!(caveats[0].starts_with("--ack-timeout ("), "{caveats:?}");
            assert!(caveats[0].contains("arrives twice"), "{caveats:?}");
        }
    }
}

#[test]
fn acks_below_all_is_a_caveat_since_a_200_then_promises_less() {
    for (acks, says) in [("0", "sent, not stored"), ("1", "leader")] {
        let config = build(&["-X", &format!("acks={acks}")]).expect("valid");
        let caveats = config.caveats();
        assert_eq!(caveats.len(), 1, "{caveats:?}");
        assert!(caveats[0].contains(says), "{caveats:?}");
    }
    assert!(build(&["-X", "acks=all"])
        .expect("valid")
        .caveats()
        .is_empty());
    assert!(build(&["-X", "acks=-1"])
        .expect("valid")
        .caveats()
        .is_empty());
}

#[test]
fn a_record_size_limit_below_the_body_limit_is_a_caveat() {
    let lower = build(&["-X", "message.max.bytes=1000000"]).expect("valid");
    let caveats = lower.caveats();
    assert_eq!(caveats.len(), 1, "{caveats:?}");
    assert!(caveats[0].contains("413"), "{caveats:?}");
    let fits = build(&[
        "-X",
        "message.max.bytes=1000000",
        "--max-body-bytes",
        "900000",
    ]);
    assert!(fits.expect("valid").caveats().is_empty());
    // librdkafka reads 0x80000 as 524288: a decimal parse failed and warned of nothing.
    let hex = build(&["-X", "message.max.bytes=0x80000"]).expect("valid");
    let caveats = hex.caveats();
    assert_eq!(caveats.len(), 1, "{caveats:?}");
    assert!(caveats[0].contains("(524288)"), "{caveats:?}");
}

#[test]
fn a_producer_queue_smaller_than_the_largest_record_is_refused() {
    let err = build(&["-X", "queue.buffering.max.kbytes=512"]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("queue.buffering.max.kbytes: 512 KiB"),
        "{text}"
    );
    assert!(text.contains("at least 1088"), "{text}");
    // It follows the body limit, and message.max.bytes.
    assert!(build(&["-X", "queue.buffering.max.kbytes=1088"]).is_ok());
    assert!(build(&[
        "-X",
        "queue.buffering.max.kbytes=512",
        "--max-body-bytes",
        "400000",
        "-X",
        "message.max.bytes=500000"
    ])
    .is_ok());
}

/// The queue's default followed `--max-body-bytes` but not `message.max.bytes`: raising that
/// alone refused the start, blaming a queue setting the operator never gave.
#[test]
fn the_default_queue_grows_with_a_raised_message_max_bytes() {
    let config = build(&["-X", "message.max.bytes=70000000"]).expect("valid");
    let props = config.producer_properties("k:9092");
    assert_eq!(
        props["queue.buffering.max.kbytes"], "68360",
        "70000000 bytes"
    );
    let config = build(&["-X", "message.max.bytes=2000000"]).expect("valid");
    let props = config.producer_properties("k:9092");
    assert_eq!(
        props["queue.buffering.max.kbytes"], "65536",
        "never below 64 MiB"
    );
    let err = build(&[
        "-X",
        "message.max.bytes=70000000",
        "-X",
        "queue.buffering.max.kbytes=65536",
    ])
    .unwrap_err();
    assert!(err.to_string().contains("at least 68360"), "one set: {err}");
    // In librdkafka's other spellings of the same number too.
    for spelled in ["0x42C1D80", "0413016600"] {
        let config = build(&["-X", &format!("message.max.bytes={spelled}")]).expect("valid");
        let props = config.producer_properties("k:9092");
        assert_eq!(props["queue.buffering.max.kbytes"], "68360", "{spelled}");
    }
}

#[test]
fn a_credential_list_written_with_spaces_is_refused_not_half_accepted() {
    let err = build(&[
        "--kafka-brokers",
        "k:9092",
        "--auth",
        "alice:pw-1, bob:pw-2",
    ])
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("--auth: the 2nd credential "),
        "named by its place: {err}"
    );
    // "bob" may as well be a piece of alice's password `pw-1, bob:pw-2`.
    for secret in ["pw-1", "bob", "pw-2"] {
        assert!(!text.contains(secret), "{secret} shown: {err}");
    }
    let config =
        build(&["--kafka-brokers", "k:9092", "--auth", "alice:one,bob:two"]).expect("valid");
    assert_eq!(
        config.credentials.users(),
        vec!["alice", "<the 2nd --auth credential, user not shown>"]
    );
}

/// `eve:SECabc,SECdef:ghi` is two credentials (the documented list) or eve's password with a
/// comma: it cannot be told, so it is taken as documented and said at start-up, and the text
/// after the comma is never shown as a user.
#[test]
fn an_auth_value_split_at_commas_is_warned_of_and_what_follows_a_comma_is_never_shown() {
    let config = build(&[
        "--kafka-brokers",
        "k:9092",
        "--auth",
        "eve:SECabc,SECdef:ghi",
    ])
    .expect("valid, as documented");
    let warned: Vec<_> = config
        .caveats()
        .into_iter()
        .filter(|c| c.contains("--auth-file"))
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", config.caveats());
    assert!(warned[0].contains("split into 2 credentials"), "{warned:?}");
    let shown = format!("{config:#?}");
    assert!(
        shown.contains("eve:<redacted>")
            && shown.contains("<the 2nd --auth credential, user not shown>:<redacted>"),
        "{shown}"
    );
    for secret in ["SECabc", "SECdef", "ghi"] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
        assert!(!warned[0].contains(secret), "{secret} in the warning");
    }
    // Kept for an --auth-file reload too, which logs the users.
    let reload = Config::from_args(
        args(&[
            "--kafka-brokers",
            "k:9092",
            "--auth",
            "eve:SECabc,SECdef:ghi",
            "--auth-file",
            "/s/auth",
        ]),
        std::iter::empty(),
        |_: &Path| Ok("bob:x\n".to_string()),
    )
    .expect("valid")
    .auth_reload
    .expect("reloaded");
    assert!(!format!("{:?}", reload.fixed).contains("SECdef"));
    // The same credentials as repeated flags: nothing to warn of.
    let config = build(&[
        "--kafka-brokers",
        "k:9092",
        "--auth",
        "eve:SECabc",
        "--auth",
        "SECdef:ghi",
    ])
    .expect("valid");
    assert!(
        config.caveats().iter().all(|c| !c.contains("--auth")),
        "{:?}",
        config.caveats()
    );
}

#[test]
fn with_a_spool_librdkafka_gives_up_before_the_ack_deadline_leaving_time_for_the_fsync() {
    let timeout = |extra: &[&str]| {
        build(extra).expect("valid").producer_properties("k:9092")["message.timeout.ms"].clone()
    };
    assert_eq!(timeout(&[]), "1500");
    // The ack timeout minus min(250 ms, a quarter of it).
    assert_eq!(timeout(&["--spool-dir", "/s"]), "1250");
    assert_eq!(
        timeout(&["--spool-dir", "/s", "--ack-timeout", "400ms"]),
        "300"
    );
    // An operator's budget is kept whole, a short ack timeout or not.
    let set = ["--spool-dir", "/s", "--spool-write-budget", "600ms"];
    assert_eq!(timeout(&set), "900");
    assert_eq!(
        timeout(&[&set[..], &["--ack-timeout", "700ms"]].concat()),
        "100"
    );
    // It keeps time only for a spool there is.
    assert_eq!(timeout(&set[2..]), "1500");
}

/// `--spool-write-budget` must keep time for the spool and leave Kafka some: zero would answer
/// every late record 503 as if there were no spool, and a budget of the whole ack timeout would
/// send nothing to Kafka at all; both are refused at start-up, naming the setting.
#[test]
fn a_spool_write_budget_must_leave_kafka_at_least_5_ms_of_the_ack_timeout() {
    let with = |budget: &str| {
        build(&[
            "--spool-dir",
            "/s",
            "--ack-timeout",
            "1s",
            "--spool-write-budget",
            budget,
        ])
    };
    // Below a millisecond the spool gets nothing: tokio's timers round Kafka's deadline up to one.
    for refused in ["0s", "1ns", "999us", "996ms", "1s", "2s"] {
        let err = with(refused).expect_err(refused);
        assert!(
            err.to_string().starts_with("--spool-write-budget: "),
            "{refused}: {err}"
        );
    }
    assert!(with("996ms")
        .expect_err("refused")
        .to_string()
        .contains("at most 995ms"));
    for taken in ["1ms", "995ms"] {
        let config = with(taken).expect(taken);
        assert_eq!(
            config.spool_budget(),
            Some(SpoolBudget::Set(
                humantime::parse_duration(taken).expect("duration")
            ))
        );
    }
    assert_eq!(
        build(&["--spool-dir", "/s"]).expect("valid").spool_budget(),
        Some(SpoolBudget::Default)
    );
}

/// librdkafka refuses a linger.ms not below message.timeout.ms, which the bridge derives from
/// --ack-timeout less --spool-write-budget: the refusal names the setting the timeout came from,
/// not only a message.timeout.ms the operator never set.
#[test]
fn a_linger_not_below_the_wait_left_to_kafka_names_the_setting_that_left_it() {
    let refusal = |flags: &[&str]| build(flags).expect_err("refused").to_string();
    let budget = ["--spool-dir", "/s", "--spool-write-budget", "1495ms"];
    let said = refusal(&[&budget[..], &["-X", "linger.ms=5"]].concat());
    assert!(
        said.starts_with("--spool-write-budget: leaves Kafka 5 ms"),
        "{said}"
    );
    let said = refusal(&["--ack-timeout", "10ms", "-X", "linger.ms=10"]);
    assert!(
        said.starts_with("--ack-timeout: leaves Kafka 10 ms"),
        "{said}"
    );
    // Below it, or with the operator's own message.timeout.ms, the bridge says nothing.
    build(&[&budget[..], &["-X", "linger.ms=4.9"]].concat()).expect("valid");
    build(
        &[
            &budget[..],
            &["-X", "linger.ms=5", "-X", "message.timeout.ms=6"],
        ]
        .concat(),
    )
    .expect("valid");
}

/// A budget without a spool does nothing; said at start-up, so an operator who meant to keep
/// time for a spool learns there is none.
#[test]
fn a_spool_write_budget_without_a_spool_is_a_caveat() {
    let caveats = |flags: &[&str]| build(flags).expect("valid").caveats();
    let said = caveats(&["--spool-write-budget", "500ms"]);
    assert!(
        said.len() == 1 && said[0].starts_with("--spool-write-budget is set without --spool-dir"),
        "{said:?}"
    );
    assert!(caveats(&["--spool-write-budget", "500ms", "--spool-dir", "/s"]).is_empty());
    assert!(caveats(&["--spool-dir", "/s"]).is_empty());
}

#[test]
fn a_spool_smaller_than_one_body_and_its_headers_is_rejected() {
    // The default body limit, 1 MiB, plus 4 KiB.
    let err = build(&["--spool-dir", "/s", "--spool-max-bytes", "1052671"]).expect_err("refused");
    assert!(err.to_string().contains("--spool-max-bytes"), "{err}");
    assert!(build(&["--spool-dir", "/s", "--spool-max-bytes", "1052672"]).is_ok());
    // Without a spool the bound is unused.
    assert!(build(&["--spool-max-bytes", "1"]).is_ok());
}

#[test]
fn a_cloudevents_source_must_be_a_uri_reference() {
    for bad in [
        "",
        " ",
        "my source",
        "caf\u{e9}",
        "a\tb",
        "/qikchat/{prod}",
        "/a|b",
        "/a^b",
        "/a<b>",
        "/a%zz",
        "/a%2",
        "http://[::1/x",
    ] {
        let err = build(&["--cloudevents", "--cloudevents-source", bad]).expect_err(bad);
        assert!(err.to_string().contains("--cloudevents-source"), "{err}");
    }
    // A password would go into every record (a review found it printed by --check-config too).
    for bad in ["https://alice:Hunter2Secret@example.com/src", "//u@h/x"] {
        let err = build(&["--cloudevents", "--cloudevents-source", bad])
            .expect_err(bad)
            .to_string();
        assert!(
            err.contains("--cloudevents-source: holds user information")
                && !err.contains("Hunter2"),
            "{err}"
        );
    }
    let fine = build(&[
        "--cloudevents",
        "--cloudevents-source",
        "https://example.com/src",
    ]);
    assert!(fine.is_ok(), "{fine:?}");
    // Of RFC 3986's characters only, and refused all the same: the message says where.
    for (bad, at) in [
        ("qikchat_bridge:prod", 14),
        ("https://example.com:abc/", 20),
        ("a[b", 1),
        ("a#b#c", 3),
        (":x", 0),
    ] {
        let err = build(&["--cloudevents", "--cloudevents-source", bad]).expect_err(bad);
        assert!(
            err.to_string().contains(&format!("at index {at} (from 0;")),
            "{bad}: {err}"
        );
    }
    for good in [
        "/qikchat/prod",
        "urn:qikchat:acme",
        "https://example.com/hooks?x=%20",
        "qikchat-bridge",
        "//host:8080/p;a=b?q=1#f",
        "/a/b/../c~d_e.f!$&'()*+,=@",
    ] {
        assert!(
            build(&["--cloudevents", "--cloudevents-source", good]).is_ok(),
            "{good}"
        );
    }
    // Unused without --cloudevents.
    assert!(build(&["--cloudevents-source", "my source"]).is_ok());
}

#[test]
fn zero_read_timeouts_are_rejected_and_zero_shutdown_waits_accepted() {
    for setting in ["--header-read-timeout", "--body-read-timeout"] {
        let err = build(&[setting, "0s"]).expect_err("refused");
        assert!(err.to_string().contains(setting), "{err}");
        assert!(err.to_string().contains("greater than zero"), "{err}");
    }
    for setting in ["--shutdown-delay", "--shutdown-grace", "--flush-timeout"] {
        assert!(build(&[setting, "0s"]).is_ok(), "{setting} 0s");
    }
}

#[test]
fn an_infinite_message_timeout_is_a_caveat_too() {
    let zero = build(&["-X", "message.timeout.ms=0"]).expect("valid");
    let caveats = zero.caveats();
    assert_eq!(caveats.len(), 1, "{caveats:?}");
    assert!(caveats[0].contains("without end"), "{caveats:?}");
    // Under librdkafka's other name for it, too.
    let alias = build(&["-X", "delivery.timeout.ms=30000"]).expect("valid");
    assert_eq!(alias.caveats().len(), 1, "{:?}", alias.caveats());
}

#[test]
fn a_body_limit_beyond_what_kafka_takes_is_refused_before_anything_adds_to_it() {
    for huge in ["18446744073709551615", "1000000000", "536870913"] {
        let err =
            build(&["--max-body-bytes", huge, "--max-in-flight-bytes", huge]).expect_err("refused");
        assert!(
            err.to_string().contains("--max-body-bytes"),
            "{huge}: {err}"
        );
    }
    build(&[
        "--max-body-bytes",
        "536870912",
        "--max-in-flight-bytes",
        "536870912",
    ])
    .expect("the bound itself is valid");
}

#[test]
fn an_empty_spool_dir_is_refused_rather_than_made_in_the_working_directory() {
    // clap's path parser refuses it, also from BRIDGE_SPOOL_DIR (it reads both the same way).
    let err = Args::try_parse_from(["qikchat-bridge", "--spool-dir", ""]).expect_err("refused");
    assert!(err.to_string().contains("--spool-dir"), "{err}");
}

#[test]
fn an_auth_file_without_a_credential_is_named_in_the_refusal() {
    let err = Config::from_args(
        args(&["--kafka-brokers", "k:9092", "--auth-file", "/secrets/auth"]),
        std::iter::empty(),
        |_: &Path| Ok("# filled in later\n\n".to_string()),
    )
    .expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("/secrets/auth"), "{text}");
    assert!(text.contains("holds no credential"), "{text}");
}

/// Refused command lines, each with a password clap could not place: as a stray subcommand, as a
/// stray argument of one, beside another flag.
#[test]
fn a_refused_command_line_never_quotes_a_stray_argument_back() {
    for argv in [
        &["qikchat-bridge", "-X", "sasl.password", "hunter2"][..],
        &["qikchat-bridge", "--auth", "a:b", "hunter2"][..],
        &["qikchat-bridge", "hunter2"][..],
        &["qikchat-bridge", "dev-kafka", "hunter2"][..],
    ] {
        let text = refused(argv);
        assert!(!text.contains("hunter2"), "{argv:?}: {text}");
        assert!(text.contains("not shown"), "{argv:?}: {text}");
        assert!(text.contains("Usage:"), "{argv:?}: {text}");
    }
}

/// `--help` shows the value of a flag's variable: not of one that may hold a secret, in any
/// command. A variable of a closed set of values (a yes/no one) holds a secret only when set
/// wrong, which is when `usage_error` hides it. `BRIDGE_CLOUDEVENTS_SOURCE` is a URI that may
/// carry `user:password@`, which start-up refuses without quoting it: `--help` printed it whole.
#[test]
fn help_hides_the_value_of_every_variable_that_may_hold_a_secret() {
    use clap::CommandFactory;
    fn each(command: &clap::Command, hidden: &mut Vec<String>, shown: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let Some(env) = arg.get_env() else { continue };
            let env = env.to_string_lossy().into_owned();
            let secret = !arg.get_possible_values().is_empty()
                || [
                    "KAFKA_BOOTSTRAP_SERVERS",
                    "BRIDGE_AUTH",
                    "BRIDGE_AUTH_FILE",
                    "BRIDGE_CLOUDEVENTS_SOURCE",
                ]
                .contains(&env.as_str());
            if secret && !arg.is_hide_env_values_set() {
                shown.push(format!("{} {env}", command.get_name()));
            }
            hidden.extend(arg.is_hide_env_values_set().then_some(env));
        }
        for sub in command.get_subcommands() {
            each(sub, hidden, shown);
        }
    }
    let (mut hidden, mut shown) = (Vec::new(), Vec::new());
    each(&Cli::command(), &mut hidden, &mut shown);
    assert!(shown.is_empty(), "shown in --help: {shown:?}");
    // The check above found them: both commands' brokers, the yes/no flags.
    for env in [
        "KAFKA_BOOTSTRAP_SERVERS",
        "BRIDGE_HTTP1_ONLY",
        "BRIDGE_LOG_FORMAT",
    ] {
        assert!(hidden.contains(&env.to_string()), "{env}: {hidden:?}");
    }
    assert_eq!(
        hidden
            .iter()
            .filter(|e| *e == "KAFKA_BOOTSTRAP_SERVERS")
            .count(),
        2,
        "--kafka-brokers of the bridge and of tail"
    );
}

/// A password given to a flag that takes no value, or outside a flag's closed set of values, is
/// not quoted back either: the flag is named, with what it takes.
#[test]
fn a_value_a_flag_cannot_take_is_not_quoted_back() {
    for (argv, flag) in [
        (
            &["qikchat-bridge", "--insecure-disable-auth=a:hunter2"][..],
            "--insecure-disable-auth",
        ),
        (
            &["qikchat-bridge", "--check-config=hunter2"][..],
            "--check-config",
        ),
        (
            &["qikchat-bridge", "tail", "--from-beginning=hunter2"][..],
            "--from-beginning",
        ),
        (
            &["qikchat-bridge", "--log-format=hunter2"][..],
            "--log-format",
        ),
    ] {
        let text = refused(argv);
        assert!(!text.contains("hunter2"), "{argv:?}: {text}");
        assert!(text.contains("not shown"), "{argv:?}: {text}");
        assert!(text.contains(flag), "{argv:?}: {text}");
    }
}

/// A password that starts with `-` looks like a flag to clap (`-X sasl.password --hunter2`, a
/// space for the `=`): it is not quoted back either, whole or as the short flag clap took from it
/// (`-Z` of `-Zhunter2`), nor in clap's tip (`use '-- -Z'`). Its place in the command line is
/// said, when one argument alone can be it.
#[test]
fn a_stray_argument_that_looks_like_a_flag_is_named_by_its_place_not_quoted_back() {
    for (argv, stray, place) in [
        (
            &["qikchat-bridge", "-X", "sasl.password", "--hunter2"][..],
            "--hunter2",
            Some(3),
        ),
        (
            &["qikchat-bridge", "--auth", "alice", "--hunter2"][..],
            "--hunter2",
            Some(3),
        ),
        (&["qikchat-bridge", "--hunter2=x"][..], "--hunter2", Some(1)),
        (
            &["qikchat-bridge", "-X", "sasl.password", "-Zhunter2"][..],
            "-Z",
            Some(3),
        ),
        (
            &["qikchat-bridge", "tail", "-Zhunter2", "topic"][..],
            "-Z",
            Some(2),
        ),
        (
            &["qikchat-bridge", "dev-kafka", "--hunter2"][..],
            "--hunter2",
            Some(2),
        ),
        (
            &["qikchat-bridge", "--", "--hunter2"][..],
            "--hunter2",
            Some(2),
        ),
        // Twice: which one clap refused cannot be told.
        (
            &["qikchat-bridge", "--auth", "hunter2", "hunter2"][..],
            "hunter2",
            None,
        ),
    ] {
        let text = refused(argv);
        assert!(!text.contains(stray), "{argv:?}: {text}");
        let shown = match place {
            Some(n) => format!("(argument {n}, not shown: it may hold a secret)"),
            None => "(an argument not shown: it may hold a secret)".into(),
        };
        assert!(text.contains(&shown), "{argv:?}: {text}");
        assert!(text.contains("Usage:"), "{argv:?}: {text}");
    }
}

/// `-h` and `-V` are help and version alone: at the head of a longer cluster (`-hunter2`, a
/// password put where a flag was expected) they are refused, not taken for a request that would
/// exit 0 as though nothing were wrong.
#[test]
fn a_help_or_version_flag_joined_to_more_letters_is_refused() {
    for argv in [
        &["qikchat-bridge", "-X", "sasl.password", "-hunter2"][..],
        &["qikchat-bridge", "-X", "sasl.password", "-Vunter2"][..],
        &[
            "qikchat-bridge",
            "tail",
            "-X",
            "sasl.password",
            "-hunter2",
            "t",
        ][..],
        &["qikchat-bridge", "--auth", "alice", "-help"][..],
        // A `-h` after `--` is a topic's name, no request for help (found by mutation testing:
        // read as one, the joined `-hunter2` printed the help and exited 0).
        &[
            "qikchat-bridge",
            "tail",
            "-X",
            "sasl.password",
            "-hunter2",
            "--",
            "-h",
        ][..],
        // The shortest such cluster (found by mutation testing: `> 3` went unnoticed).
        &["qikchat-bridge", "--auth", "alice", "-hx"][..],
        // A value `help` is no request for help.
        &[
            "qikchat-bridge",
            "--cloudevents-source",
            "help",
            "-X",
            "sasl.password",
            "-hunter2",
        ][..],
    ] {
        let text = refused(argv);
        assert!(!text.contains("unter2"), "{argv:?}: {text}");
        let place = argv
            .iter()
            .position(|a| a.starts_with("-h") || a.starts_with("-V"));
        assert!(
            text.contains(&format!(
                "(argument {}, not shown: it may hold a secret)",
                place.unwrap_or_default()
            )),
            "{argv:?}: {text}"
        );
        assert!(text.contains("-h and -V ask for help"), "{argv:?}: {text}");
    }
    // Alone they still are help and version, also after a `--`-free command line's flags.
    for argv in [
        &["qikchat-bridge", "-h"][..],
        &["qikchat-bridge", "--help"][..],
        &["qikchat-bridge", "-V"][..],
        &["qikchat-bridge", "tail", "-h"][..],
        &["qikchat-bridge", "--auth", "a:b", "--help"][..],
        // A value of another flag that starts with `-h` does not take help away.
        &["qikchat-bridge", "--help", "--webhook-path", "-hook"][..],
        &["qikchat-bridge", "-V", "--auth", "-hunter2"][..],
    ] {
        let err = Cli::try_parse_from(argv).expect_err("help or version");
        let argv: Vec<std::ffi::OsString> = argv.iter().map(Into::into).collect();
        assert_eq!(refusal(&err, &argv), None, "{argv:?}");
    }
}

/// A value refused from the environment names its variable, which the flag alone does not: the
/// command line here lacks the flag, as when `BRIDGE_MAX_BODY_BYTES` gave the value.
#[test]
fn a_value_refused_from_the_environment_names_its_variable() {
    for (argv, variable) in [
        (
            &["qikchat-bridge", "--max-body-bytes", "10MiB"][..],
            "BRIDGE_MAX_BODY_BYTES",
        ),
        (
            &["qikchat-bridge", "--http1-only=1"][..],
            "BRIDGE_HTTP1_ONLY",
        ),
    ] {
        let err = Cli::try_parse_from(argv).expect_err("refused");
        let on_the_line: Vec<std::ffi::OsString> = argv.iter().map(Into::into).collect();
        let text = usage_error(&err, &on_the_line);
        assert!(!text.contains(variable), "{text}");
        let text = usage_error(&err, &["qikchat-bridge".into()]);
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.ends_with(&format!("(the value of {variable})")),
            "{text}"
        );
    }
}

/// Values of flags that parse them freely are no secret, and say what was wrong; a misspelt flag
/// is not quoted (a password may look like one), but clap's tip names the flag meant.
#[test]
fn a_refused_command_line_still_names_the_flag_meant_and_a_bad_value() {
    let text = refused(&["qikchat-bridge", "--lisen", "x"]);
    assert!(
        text.contains("a similar argument exists: '--listen'"),
        "{text}"
    );
    assert!(!text.contains("--lisen"), "{text}");
    let text = refused(&["qikchat-bridge", "--listen", "nowhere"]);
    assert!(text.contains("'nowhere'"), "{text}");
}

#[test]
fn credentials_and_the_insecure_flag_together_are_refused() {
    for credentials in [
        &["--auth", "a:b"][..],
        &["--auth-file", "/run/secrets/auth"][..],
    ] {
        let mut flags = vec!["--kafka-brokers", "k:9092", "--insecure-disable-auth"];
        flags.extend(credentials);
        let err = Config::from_args(args(&flags), Vec::new(), |_| Ok("a:b".into())).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("--insecure-disable-auth:"), "{text}");
        assert!(text.contains("keep one of the two"), "{text}");
    }
}

/// `refused` pairs of `--listen` and `--admin-listen` clash; `accepted` ones do not.
fn listener_pairs(refused: &[(&str, &str)], accepted: &[(&str, &str)]) {
    for (listen, admin) in refused {
        let err = build(&["--listen", listen, "--admin-listen", admin]).expect_err(listen);
        assert!(err.to_string().starts_with("--admin-listen:"), "{err}");
    }
    for (listen, admin) in accepted {
        build(&["--listen", listen, "--admin-listen", admin]).expect(listen);
    }
}

#[test]
fn an_admin_listener_on_the_webhook_listeners_port_is_refused() {
    listener_pairs(
        &[
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("127.0.0.1:8080", "0.0.0.0:8080"),
            ("[::]:8080", "127.0.0.1:8080"),
            ("[::1]:8080", "[::]:8080"),
        ],
        &[
            ("127.0.0.1:8080", "127.0.0.1:9464"),
            ("127.0.0.1:8080", "127.0.0.2:8080"),
            ("0.0.0.0:8080", "[::1]:8080"),
            ("127.0.0.1:0", "127.0.0.1:0"),
        ],
    );
}

/// An IPv4-mapped IPv6 address binds its IPv4 address: `--check-config` passed such a clash,
/// and start-up then failed with "Address already in use".
#[test]
fn an_ipv4_mapped_address_clashes_with_its_ipv4_address_on_one_port() {
    listener_pairs(
        &[
            ("127.0.0.1:8080", "[::ffff:127.0.0.1]:8080"),
            ("[::ffff:127.0.0.1]:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "[::ffff:127.0.0.1]:8080"),
            ("[::ffff:0.0.0.0]:8080", "127.0.0.1:8080"),
            ("[::]:8080", "[::ffff:127.0.0.1]:8080"),
            ("[::ffff:0.0.0.0]:8080", "[::]:8080"),
        ],
        &[
            ("127.0.0.1:8080", "[::ffff:127.0.0.2]:8080"),
            ("[::ffff:127.0.0.1]:8080", "[::1]:8080"),
            ("[::ffff:0.0.0.0]:8080", "[::1]:8080"),
            ("[::ffff:127.0.0.1]:0", "127.0.0.1:0"),
        ],
    );
}

/// A secret set in a `*_FILE` variable by mistake names no file: the refusal does not print it.
/// A path that looks like one (a `/` in it) is shown, as it says which file is missing.
#[test]
fn a_missing_file_is_named_unless_its_path_may_be_a_secret_set_in_the_wrong_variable() {
    let refused = |flags: &[&str], env: &[(&str, &str)]| {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut all = vec!["--kafka-brokers", "k:9092"];
        all.extend_from_slice(flags);
        Config::from_args(args(&all), env, no_files)
            .expect_err("refused")
            .to_string()
    };
    for text in [
        refused(&["--auth-file", "qikchat:hunter2"], &[]),
        refused(
            &["--auth", "a:b"],
            &[("KAFKA_SASL_PASSWORD_FILE", "hunter2")],
        ),
    ] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("not shown"), "{text}");
        assert!(text.contains("no such file"), "{text}");
    }
    let text = refused(&["--auth-file", "/run/secrets/auth"], &[]);
    assert!(text.contains("/run/secrets/auth"), "{text}");
    let text = refused(
        &["--auth", "a:b"],
        &[("KAFKA_SASL_PASSWORD_FILE", "./kafka/password")],
    );
    assert!(text.contains("./kafka/password"), "{text}");
    // A file that is there but cannot be read is named, `/` or not: its name is no secret, and
    // the operator must know which one to fix (found by mutation testing).
    let denied = |_: &Path| -> std::io::Result<String> {
        Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
    };
    let flags = ["--kafka-brokers", "k:9092", "--auth-file", "auth.txt"];
    let text = Config::from_args(args(&flags), std::iter::empty(), denied)
        .expect_err("refused")
        .to_string();
    assert!(
        text.contains("cannot read --auth-file file auth.txt"),
        "{text}"
    );
}

mod places;

/// A rotation of the Kafka client files logs only the caveats start-up (or the last rotation) did
/// not: each once, and one that went away and comes back again (found by mutation testing: only
/// an integration test noticed `new_in` saying nothing, or everything again).
#[test]
fn a_rotation_says_only_the_caveats_not_said_before() {
    let properties = |extra: &[&str]| build(extra).expect("valid").kafka_properties;
    let mut caveats = build(&["-X", "acks=1"]).expect("valid").kafka_caveats();
    assert_eq!(caveats.said().len(), 1, "{:?}", caveats.said());
    // The same value again: nothing new.
    assert!(caveats.new_in(&properties(&["-X", "acks=1"])).is_empty());
    // A new caveat beside the old one: only it.
    let new = caveats.new_in(&properties(&[
        "-X",
        "acks=1",
        "-X",
        "statistics.interval.ms=0",
    ]));
    assert!(
        new.len() == 1 && new[0].starts_with("statistics.interval.ms is 0"),
        "{new:?}"
    );
    // Gone, then back: said again.
    assert!(caveats.new_in(&properties(&[])).is_empty());
    let again = caveats.new_in(&properties(&["-X", "acks=1"]));
    assert!(
        again.len() == 1 && again[0].starts_with("acks is 1"),
        "{again:?}"
    );
}
