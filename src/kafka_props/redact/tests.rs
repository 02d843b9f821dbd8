//! Unit tests of redaction: secrets in librdkafka's errors, log lines and URLs hidden.

use super::super::passwords::url_password_hidden;
use super::{hide, redacted, Scrubber};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaConfRes;

#[test]
fn a_value_out_of_librdkafka_s_range_is_refused_on_one_line_naming_the_property_once() {
    let refused = rdkafka::ClientConfig::new()
        .set("message.max.bytes", "500")
        .create::<rdkafka::producer::BaseProducer>()
        .map(drop)
        .expect_err("below librdkafka's minimum");
    let shown = redacted(&refused, &Scrubber::default());
    assert_eq!(
        shown,
        "Client config error: Configuration property \"message.max.bytes\" value 500 is \
             outside allowed range 1000..1000000000"
    );
}

#[test]
fn an_unknown_name_that_may_be_a_secret_is_not_shown() {
    let unknown = |name: &str, value: &str| {
        redacted(
            &KafkaError::ClientConfig(
                RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN,
                format!("No such configuration property: \"{name}\""),
                name.to_string(),
                value.to_string(),
            ),
            &Scrubber::default(),
        )
    };
    // `-X "c2VjcmV0MTIz=="`: a base64 password, split at its padding.
    let shown = unknown("c2VjcmV0MTIz", "=");
    assert!(!shown.contains("c2VjcmV0MTIz"), "{shown}");
    assert!(shown.contains("No such configuration property"), "{shown}");
    // A mistyped property is named, so it can be fixed.
    let shown = unknown("lingr.ms", "5");
    assert!(shown.contains("\"lingr.ms\""), "{shown}");
    assert!(!shown.contains('5'), "{shown}");
}

/// librdkafka takes the user information of a broker without a scheme for part of its host
/// name, and quotes it when the name does not resolve.
#[test]
fn a_brokers_password_without_a_scheme_is_scrubbed_from_librdkafkas_texts() {
    let scrubber = Scrubber::new([("bootstrap.servers", "k:9092,user:S3cretPW@127.0.0.1:9")]);
    let shown = scrubber.scrub("Failed to resolve 'user:S3cretPW@127.0.0.1:9:9092'");
    assert_eq!(
        shown,
        "Failed to resolve 'user:<redacted>@127.0.0.1:9:9092'"
    );
    // A comma in the password splits the list there: librdkafka quotes the rest alone.
    let brokers = "k1:22150,user:pa,ssWORD@127.0.0.1:22151";
    assert_eq!(
        url_password_hidden(brokers),
        "k1:22150,user:<redacted>@127.0.0.1:22151"
    );
    let shown = Scrubber::new([("bootstrap.servers", brokers)])
        .scrub("Failed to resolve 'ssWORD@127.0.0.1:22151'");
    assert!(!shown.contains("ssWORD"), "{shown}");
}

#[test]
fn a_url_password_in_a_refused_value_is_not_shown() {
    // As a build without libcurl refuses the OIDC endpoint: rdkafka's text ends with
    // `key value`, and the value is not added.
    let url = "https://u:URLPW_5@idp.example/token";
    let key = "sasl.oauthbearer.token.endpoint.url";
    let refused = KafkaError::ClientConfig(
        RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
        "Unsupported value: not supported in this build".into(),
        key.into(),
        url.into(),
    );
    let shown = redacted(&refused, &Scrubber::new([(key, url)]));
    assert!(!shown.contains("URLPW_5"), "{shown}");
    assert!(
        shown.ends_with("(set as sasl.oauthbearer.token.endpoint.url)"),
        "{shown}"
    );
    let shown = super::ClientError::new(refused, Scrubber::new([(key, url)]).into());
    assert!(
        !format!("{shown} {shown:?}").contains("URLPW_5"),
        "{shown:?}"
    );
}

#[test]
fn a_value_is_hidden_where_librdkafka_puts_it_without_garbling_the_text() {
    let end = r#"Invalid value for configuration property "ssl.key.password": e"#;
    assert_eq!(
        hide(end, "e"),
        r#"Invalid value for configuration property "ssl.key.password": <redacted>"#
    );
    let quoted = r#"Invalid value "e" for configuration property "sasl.password""#;
    assert_eq!(
        hide(quoted, "e"),
        r#"Invalid value "<redacted>" for configuration property "sasl.password""#
    );
    // Anywhere else, every occurrence goes: garbled text rather than a secret shown.
    assert_eq!(
        hide("a hunter2 b hunter2", "hunter2"),
        "a <redacted> b <redacted>"
    );
    assert_eq!(
        hide("value: s3cret s3cret", "s3cret"),
        "value: <redacted> <redacted>"
    );
    assert_eq!(hide("nothing here", "e2"), "nothing here");
    assert_eq!(hide("nothing here", ""), "nothing here");
}

/// A name without a dot is no property of librdkafka's, even in lower case: a password
/// given to -X without its `KEY=` split at its `=` (found by mutation testing: with
/// `&&` as `||` a lower-case password was quoted).
#[test]
fn an_unknown_name_in_lower_case_without_a_dot_is_not_shown() {
    let refused = KafkaError::ClientConfig(
        RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN,
        "No such configuration property: \"hunter2horse\"".into(),
        "hunter2horse".into(),
        "battery".into(),
    );
    let shown = redacted(&refused, &Scrubber::default());
    assert!(!shown.contains("hunter2horse"), "{shown}");
    assert!(!shown.contains("battery"), "{shown}");
}

/// However short a refused secret is (the scrubber leaves values under four bytes), its
/// value is never shown (found by mutation testing: without the secret's own branch it was).
#[test]
fn a_refused_secret_is_hidden_however_short_it_is() {
    for (desc, key) in [
        (
            "Unsupported value: not supported in this build",
            "sasl.password",
        ),
        (
            "Invalid value \"pw1\" for configuration property \"ssl.key.password\"",
            "ssl.key.password",
        ),
        // Quoted in words of its own, neither closed set nor property check: the secret's own
        // branch is all that hides a value this short (found by mutation testing: without it,
        // this one was shown).
        (
            "Configuration property \"sasl.password\" cannot be used: pw1",
            "sasl.password",
        ),
    ] {
        let refused = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            desc.into(),
            key.into(),
            "pw1".into(),
        );
        let shown = redacted(&refused, &Scrubber::new([(key, "pw1")]));
        assert!(!shown.contains("pw1"), "{shown}");
        assert!(shown.contains(key), "{shown}");
    }
}

/// `Display` and `Debug` show the redacted text; a refused property or a client the
/// properties cannot make is a setting at fault (exit code 2), the cluster's errors not.
#[test]
fn a_client_error_shows_the_redacted_text_and_tells_settings_from_the_cluster() {
    use rdkafka::types::RDKafkaErrorCode;
    let key = "sasl.oauthbearer.token.endpoint.url";
    let url = "https://u:URLPW_5@idp.example/token";
    let scrubber = std::sync::Arc::new(Scrubber::new([(key, url)]));
    let refused = KafkaError::ClientConfig(
        RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
        "Unsupported value: not supported in this build".into(),
        key.into(),
        url.into(),
    );
    let text = redacted(&refused, &scrubber);
    let error = super::ClientError::new(refused, scrubber.clone());
    assert_eq!(error.to_string(), text);
    assert_eq!(format!("{error:?}"), format!("ClientError({text:?})"));
    assert!(error.is_settings());
    let creation = KafkaError::ClientCreation(format!("ssl.ca.location failed: {url}"));
    assert!(super::ClientError::new(creation, scrubber.clone()).is_settings());
    let cluster = KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure);
    assert!(!super::ClientError::new(cluster, scrubber).is_settings());
}

/// librdkafka's closing words inside a refused value, its text cut after a run of quotes:
/// what follows the value's own closing words is no property's name, and is not shown
/// (found by mutation testing: a name of any bytes was taken, and the value shown).
#[test]
fn a_refused_value_ending_in_quotes_is_not_shown_as_the_propertys_name() {
    let value = format!(
        "a\" for configuration property \"Hunter8Secret{}",
        "\"".repeat(600)
    );
    let mut config = rdkafka::ClientConfig::new();
    config.set("security.protocol", &value);
    let Err(refused) = config.create_native_config() else {
        panic!("librdkafka took {value:?}");
    };
    let shown = redacted(&refused, &Scrubber::default());
    assert!(!shown.contains("Hunter8Secret"), "{shown}");
    assert!(
        shown.contains(
            r#"Invalid value (not shown) for configuration property "security.protocol""#
        ),
        "{shown}"
    );
}
