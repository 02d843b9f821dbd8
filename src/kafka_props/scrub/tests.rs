//! Unit tests of the scrubber: what librdkafka's words and the operator's values lose before they are shown.

use super::*;

fn scrubber(properties: &[(&str, &str)]) -> Scrubber {
    Scrubber::new(properties.iter().copied())
}

const OAUTH: &str = "principal=svc lifetime=3600 extension_apikey=SECRET_APIKEY_42";

#[test]
fn a_secret_value_is_hidden_whole() {
    let s = scrubber(&[
        ("sasl.password", "hunter2-pw"),
        ("client.id", "hunter2-pw-x"),
    ]);
    assert_eq!(
        s.scrub("auth with hunter2-pw failed"),
        "auth with <redacted> failed"
    );
    let s = scrubber(&[("sasl.oauthbearer.config", OAUTH)]);
    assert_eq!(s.scrub(&format!("config: {OAUTH}.")), "config: <redacted>.");
}

#[test]
fn the_basic_credentials_sent_to_the_token_endpoint_are_hidden_when_its_error_quotes_them() {
    let s = scrubber(&[
        ("sasl.oauthbearer.client.id", "bridge"),
        ("sasl.oauthbearer.client.secret", "Oidc-Secret-5b7e"),
    ]);
    // base64("bridge:Oidc-Secret-5b7e")
    let line = "Failed to retrieve OIDC token: {\"error_description\":\"unexpected \
                    Authorization: Basic YnJpZGdlOk9pZGMtU2VjcmV0LTViN2U=\"} (400)";
    assert_eq!(
        s.scrub(line),
        "Failed to retrieve OIDC token: {\"error_description\":\"unexpected \
             Authorization: Basic <redacted>\"} (400)"
    );
}

#[test]
fn the_start_of_the_basic_credentials_where_librdkafka_cut_a_long_line_is_hidden() {
    let secret = "Oidc-Secret-5b7e-long-enough-to-matter";
    let s = scrubber(&[
        ("sasl.oauthbearer.client.id", "bridge"),
        ("sasl.oauthbearer.client.secret", secret),
    ]);
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("bridge:{secret}"));
    // An endpoint's error that quotes the request's headers near the end of the 2 KiB line.
    let head = format!(
        "Failed to retrieve OIDC token from \"http://idp/token\": {{\"trace\":\"{}\",\
             \"headers\":\"Authorization: Basic ",
        "x".repeat(1800)
    );
    let line = format!("{head}{}", &basic[..40]);
    assert!(line.len() < 2048);
    assert_eq!(s.scrub(&line), format!("{head}<redacted>"));
}

#[test]
fn each_extension_of_sasl_oauthbearer_extensions_and_its_value_is_hidden() {
    let s = scrubber(&[(
        "sasl.oauthbearer.extensions",
        "apikey=KEY_1234,trace=TRACE_5678",
    )]);
    assert_eq!(
        s.scrub("bad extension apikey=KEY_1234 (value TRACE_5678)"),
        "bad extension <redacted> (value <redacted>)"
    );
}

#[test]
fn the_suffix_librdkafka_quotes_from_an_unknown_token_is_hidden() {
    let s = scrubber(&[("sasl.oauthbearer.config", OAUTH)]);
    let line = "Failed to acquire SASL OAUTHBEARER token: Unrecognized \
                    sasl.oauthbearer.config beginning at: lifetime=3600 \
                    extension_apikey=SECRET_APIKEY_42";
    let shown = s.scrub(line);
    assert_eq!(
        shown,
        "Failed to acquire SASL OAUTHBEARER token: Unrecognized sasl.oauthbearer.config \
             beginning at: <redacted>"
    );
    // An extension's value alone.
    assert_eq!(s.scrub("value: SECRET_APIKEY_42"), "value: <redacted>");
    assert_eq!(
        s.scrub("a\textension_apikey=SECRET_APIKEY_42\n"),
        "a\t<redacted>\n"
    );
}

#[test]
fn a_password_in_any_url_is_hidden_and_the_rest_of_the_url_kept() {
    let s = scrubber(&[(
        "sasl.oauthbearer.token.endpoint.url",
        "https://u:URLPW_5@idp.example/token",
    )]);
    assert_eq!(
        s.scrub(r#"Failed to retrieve OIDC token from "https://u:URLPW_5@idp.example/token""#),
        r#"Failed to retrieve OIDC token from "https://u:<redacted>@idp.example/token""#
    );
    let s = scrubber(&[("x.urls", "http://a:p@ss-1@h1/,https://b:second-pw@h2")]);
    assert_eq!(s.scrub("p@ss-1 second-pw"), "<redacted> <redacted>");
    let s = scrubber(&[("x.url", "https://user@idp/token?next=a:b@c")]);
    assert_eq!(s.needles, Vec::<String>::new(), "no password");
}

#[test]
fn a_line_without_a_secret_is_borrowed_as_it_is() {
    let s = scrubber(&[
        ("sasl.password", "hunter2-pw"),
        ("sasl.oauthbearer.config", OAUTH),
    ]);
    let line = "Connect to ipv4#127.0.0.1:9092 failed: Connection refused";
    assert!(matches!(s.scrub(line), Cow::Borrowed(l) if l == line));
    assert!(matches!(Scrubber::default().scrub(OAUTH), Cow::Borrowed(_)));
}

#[test]
fn short_tokens_and_plain_values_are_left_alone() {
    let s = scrubber(&[
        ("sasl.oauthbearer.config", "principal=svc x=1 abc"),
        ("sasl.password", "pw"),
        ("client.id", "qikchat-bridge"),
    ]);
    let line = "svc abc pw x=1 qikchat-bridge principal=svc";
    assert_eq!(s.scrub(line), line);
}

/// Only what may be secret: a log line about a broker named like the principal, or a
/// timeout equal to the token's lifetime, keeps its words.
#[test]
fn the_public_parts_of_an_oauthbearer_config_and_the_words_of_a_pem_key_are_not_hidden() {
    let s = scrubber(&[
        (
            "sasl.oauthbearer.config",
            "principal=kafka lifeSeconds=3600 extension_traceId=true",
        ),
        (
            "ssl.key.pem",
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",
        ),
    ]);
    for line in [
        "kafka-0.kafka.svc:9092/0: Connect to ipv4#10.0.0.7:9092 failed: Connection refused",
        "Metadata request timed out after 3600ms",
        "-----BEGIN PRIVATE KEY----- is not a certificate",
    ] {
        assert_eq!(s.scrub(line), line);
    }
    assert_eq!(
        s.scrub("extension_traceId=true"),
        "<redacted>",
        "an extension, which may be a key"
    );
}

/// librdkafka names a broker's thread after its first 63 bytes, cuts a broker's name at
/// about 253 characters and a log line at 2 KiB: the password of `user:pass@host` was
/// shown up to the cut (35 of a 59-character one in a thread name).
#[test]
fn the_start_of_a_secret_that_librdkafka_cut_off_is_hidden() {
    let pw = "kP9vQ2xR7mT4wZ8yB3nC6dF1gH5jL0sA2eU7iO4pY9tR3wQ8zX6cV1bN5mK";
    let s = scrubber(&[(
        "bootstrap.servers",
        &format!("USERNAME:{pw}@pkc.example:9092"),
    )]);
    let cut = &pw[..35];
    assert_eq!(
        s.scrub(&format!(
            "[thrd:sasl_ssl://USERNAME:{cut}]: sasl_ssl://USERNAME:{pw}@pkc"
        )),
        "[thrd:sasl_ssl://USERNAME:<redacted>]: sasl_ssl://USERNAME:<redacted>@pkc"
    );
    for after in ["'", ": Failed", "\"", "/0", "\u{fffd}", ""] {
        assert_eq!(
            s.scrub(&format!("to 'USERNAME:{cut}{after}")),
            format!("to 'USERNAME:<redacted>{after}"),
            "{after:?}"
        );
    }
    // After its user even a short start is a cut copy; elsewhere a start is no secret (the
    // host `kafka` beside the password `kafka-secret`), nor one that goes on with other text.
    assert_eq!(s.scrub("[thrd:USERNAME:kP9]"), "[thrd:USERNAME:<redacted>]");
    assert_eq!(s.scrub("kP9vQ2: and more"), "kP9vQ2: and more");
    assert_eq!(
        s.scrub("USERNAME:kP9vQ2 and more"),
        "USERNAME:kP9vQ2 and more"
    );
    // A password's own `:` that runs on into librdkafka's `: Failed` after the cut.
    let s = scrubber(&[("bootstrap.servers", "u:Qz7kL9vMn2Xq8:Rw4Tj6Hy@h:9092")]);
    assert_eq!(
        s.scrub("[thrd:u:Qz7kL9vMn2Xq8]: u:Qz7kL9vMn2Xq8: Failed"),
        "[thrd:u:<redacted>]: u:<redacted>: Failed"
    );
    let s = scrubber(&[("bootstrap.servers", "u:h\u{e9}-h\u{e9}-h\u{e9}@h:9092")]);
    assert_eq!(s.scrub("u:h\u{e9}-h\u{fffd}]"), "u:<redacted>\u{fffd}]");
}

/// What a review of the first versions found still shown, as librdkafka wrote it.
#[test]
fn cut_copies_in_a_list_after_a_blank_a_comma_or_no_user_are_hidden() {
    let pw = "kP9vQ2xR7mT4wZ8yB3nC6dF1gH5jL0sA2eU7iO4pY9tR3wQ8zX6cV1bN5mK";
    // A blank after the list's comma, which librdkafka skips.
    let s = scrubber(&[("bootstrap.servers", &format!("h:1, USER:{pw}@h:2"))]);
    assert_eq!(
        s.scrub(&format!("[thrd:USER:{}]: x", &pw[..58])),
        "[thrd:USER:<redacted>]: x"
    );
    // The piece of a password after a comma names a broker of its own.
    let piece = "Gf5Ds0Ya8Ue3Io7Qw2Er9Ty4Uo6Pa1Sd5Fg8Hj3Kl7Zx2Cv";
    let s = scrubber(&[(
        "bootstrap.servers",
        &format!("sasl_plaintext://USER:Zq7Wm3Kx9Pv2,{piece}@h:9092"),
    )]);
    assert_eq!(
        s.scrub(&format!("[thrd:sasl_plaintext://{}]: x", &piece[..46])),
        "[thrd:sasl_plaintext://<redacted>]: x"
    );
    // A whole piece that a longer cut copy starts with.
    let s = scrubber(&[("bootstrap.servers", "USER:ab:cd@efghijklmn,opqrstuv@h:9092")]);
    assert!(
        !s.scrub("[thrd:USER:ab:cd@efghijklmn:9092/bootstrap]")
            .contains("efghijklmn"),
        "{}",
        s.scrub("[thrd:USER:ab:cd@efghijklmn:9092/bootstrap]")
    );
    // No user: a port that begins like the password is left.
    let s = scrubber(&[("bootstrap.servers", ":44999xyzSecret@127.0.0.1:44999")]);
    assert_eq!(
        s.scrub("Failed to resolve ':<x>@127.0.0.1:44999:9092'"),
        "Failed to resolve ':<x>@127.0.0.1:44999:9092'"
    );
    assert_eq!(s.scrub("[thrd::44999xyzSe]"), "[thrd::<redacted>]");
    assert_eq!(s.scrub(":44999xyzSe: Failed"), ":<redacted>: Failed");
    // librdkafka reads no URL in a broker list: a `#`, `?` or `/` is part of the password.
    let s = scrubber(&[(
        "bootstrap.servers",
        "sasl_plaintext://user:%SNM_d$bi8#7d20gf2/Pb27Pd@nohost:9092",
    )]);
    assert_eq!(
            s.scrub("[thrd:sasl_plaintext://user:%SNM_d$bi8#7d20gf2/Pb2]: user:%SNM_d$bi8#7d20gf2/Pb27Pd@nohost"),
            "[thrd:sasl_plaintext://user:<redacted>]: user:<redacted>@nohost"
        );
}

/// A password too long for a thread's name (63 bytes) or a broker's (about 253), with no user
/// before it or after a list's comma, is cut where librdkafka names its broker: each such place
/// is looked for (found by mutation testing: the text before the copy could be dropped from the
/// places looked at, or a piece kept with the blank after its comma, and the copy was shown).
#[test]
fn a_long_password_without_a_user_or_after_a_comma_is_hidden_where_its_broker_is_named() {
    let pw: String = "Zq7Wm3Kx9Pv2Hr5TLq8Nd4Bc6".repeat(12);
    let s = scrubber(&[("bootstrap.servers", &format!("sasl_ssl://:{pw}@h:9092"))]);
    for (text, shown) in [
        (
            format!("[thrd:sasl_ssl://:{}]: x", &pw[..45]),
            "[thrd:sasl_ssl://:<redacted>]: x",
        ),
        (
            format!("Failed to resolve ':{}': x", &pw[..240]),
            "Failed to resolve ':<redacted>': x",
        ),
        (
            format!("[thrd:app]: :{}: Connect failed", &pw[..240]),
            "[thrd:app]: :<redacted>: Connect failed",
        ),
    ] {
        assert_eq!(s.scrub(&text), shown);
    }
    let piece: String = "Gf5Ds0Ya8Ue3Io7Qw2Er9Ty4U".repeat(12);
    let s = scrubber(&[(
        "bootstrap.servers",
        &format!("USER:Zq7Wm3Kx9Pv2, {piece}@127.0.0.1:48001"),
    )]);
    for (text, shown) in [
        (
            format!("[thrd:{}]: x", &piece[..57]),
            "[thrd:<redacted>]: x",
        ),
        (
            format!("Failed to resolve '{}': x", &piece[..240]),
            "Failed to resolve '<redacted>': x",
        ),
    ] {
        assert_eq!(s.scrub(&text), shown);
    }
}

#[test]
fn the_longest_secret_goes_first_and_nothing_cuts_into_the_placeholder() {
    let s = scrubber(&[
        ("sasl.password", "redacted"),
        ("ssl.key.password", "redacted-too"),
    ]);
    assert_eq!(s.scrub("redacted-too redacted"), "<redacted> <redacted>");
    assert_eq!(format!("{s:?}"), "Scrubber { secrets: 2 }");
}

/// librdkafka cuts a log line at 2 KiB: the start of a password, or of a URL's password, left
/// at the end of one is hidden (found by mutating `Scrubber::new` by hand: cargo-mutants
/// leaves constructors alone).
#[test]
fn the_start_of_a_password_or_a_urls_password_where_librdkafka_cut_a_long_line_is_hidden() {
    let s = scrubber(&[
        ("sasl.password", "Sasl-Pw-7c1d-long"),
        (
            "sasl.oauthbearer.token.endpoint.url",
            "https://u:Url-Pw-9e2f-long@idp/token",
        ),
    ]);
    let head = format!("error: {} ", "x".repeat(1100));
    for cut in ["Sasl-Pw-7c1", "Url-Pw-9e2"] {
        assert_eq!(
            s.scrub(&format!("{head}{cut}")),
            format!("{head}<redacted>"),
            "{cut}"
        );
    }
}

/// librdkafka reads the first `://` of a broker list's entry as its scheme, a password's too:
/// it quoted the whole entry (`Broker name "USER:Zq7Wm://3Kx9@h" parse error: unsupported
/// protocol "USER:ZQ7WM"`), or the piece before it as a host (`[thrd:sasl_plaintext://
/// USER:Zq7Wm::9092/bootstrap]`); the lines as librdkafka wrote them.
#[test]
fn a_password_holding_a_scheme_separator_is_hidden_where_librdkafka_quotes_it() {
    let s = scrubber(&[(
        "bootstrap.servers",
        "USER:Zq7Wm://3Kx9Pv2Hr5T@127.0.0.1:48590",
    )]);
    assert_eq!(
        s.scrub(
            "[thrd:app]: Broker name \"USER:Zq7Wm://3Kx9Pv2Hr5T@127.0.0.1:48590\" parse \
                 error: unsupported protocol \"USER:ZQ7WM\""
        ),
        "[thrd:app]: Broker name \"USER:<redacted>@127.0.0.1:48590\" parse error: \
             unsupported protocol \"USER:<redacted>\""
    );
    let s = scrubber(&[(
        "bootstrap.servers",
        "sasl_plaintext://USER:Zq7Wm://3Kx9Pv2Hr5T@127.0.0.1:48590",
    )]);
    assert_eq!(
        s.scrub(
            "[thrd:sasl_plaintext://USER:Zq7Wm::9092/bootstrap]: Failed to resolve \
                 'USER:Zq7Wm::9092'"
        ),
        "[thrd:sasl_plaintext://USER:<redacted>:9092/bootstrap]: Failed to resolve \
             'USER:<redacted>:9092'"
    );
}

/// `--check-config` prints the brokers as the scrubber hides them: a password holding `#`,
/// `?` or `/` after a scheme, and one holding `://`, were printed whole.
#[test]
fn check_config_hides_the_passwords_only_a_broker_list_has() {
    use super::super::passwords::broker_list_password_hidden;
    for (brokers, shown) in [
        (
            "sasl_ssl://USER:Zq7Wm#3Kx9/Pv2Hr5T@127.0.0.1:48590",
            "sasl_ssl://USER:<redacted>@127.0.0.1:48590",
        ),
        (
            "USER:Zq7Wm://3Kx9Pv2Hr5T@127.0.0.1:48590",
            "USER:<redacted>@127.0.0.1:48590",
        ),
        (
            "sasl_ssl://USER:Zq7Wm://3Kx9Pv2Hr5T@h:1, sasl_ssl://B:Pw2Hr5TLq8Nd@h:2",
            "sasl_ssl://USER:<redacted>@h:1, sasl_ssl://B:<redacted>@h:2",
        ),
        // A scheme librdkafka does not know is a user, and `//` begins the password...
        (
            "User://Zq7Wm3Kx9Pv2@h:1, sasl_ssl://B:Pw2Hr5TLq8Nd@h:2",
            "User:<redacted>@h:1, sasl_ssl://B:<redacted>@h:2",
        ),
        // ...nor does it end the password before it, which may hold a comma.
        (
            "sasl_ssl://A:Zq7Wm3,user://Kx9Pv2@h:1",
            "sasl_ssl://A:<redacted>@h:1",
        ),
        // ...but one it knows, in any case, leaves what follows it a host.
        ("SASL_SSL://Zq7Wm3Kx9Pv2@h:1", "SASL_SSL://Zq7Wm3Kx9Pv2@h:1"),
    ] {
        assert_eq!(broker_list_password_hidden(brokers), shown);
    }
}

/// An entry with a scheme librdkafka does not know (`kafka://`) whose password holds `?` (no
/// URL then) and a comma with a `:` after it: found walking back from its `@` alone, the
/// password was hidden only from that `:` (found by a review's fuzzing of the fix above).
#[test]
fn a_password_holding_a_comma_after_a_scheme_librdkafka_does_not_know_is_hidden_whole() {
    let list = "kafka://svc:Kx9?Pv2,Zq7W:m3@127.0.0.1:47411";
    assert_eq!(
        super::super::passwords::broker_list_password_hidden(list),
        "kafka://svc:<redacted>@127.0.0.1:47411"
    );
    let s = scrubber(&[("bootstrap.servers", list)]);
    assert_eq!(
        s.scrub(
            "[thrd:app]: Broker name \"kafka://svc:Kx9?Pv2,Zq7W:m3@127.0.0.1:47411\" parse \
                 error: unsupported protocol \"KAFKA\""
        ),
        "[thrd:app]: Broker name \"kafka://svc:<redacted>@127.0.0.1:47411\" parse error: \
             unsupported protocol \"KAFKA\""
    );
}

/// librdkafka takes the text before a broker list entry's first `://` for a scheme, and
/// refuses one it does not know quoting the rest of the list: `user://pw@host` is a user and
/// a password beginning with `//`, which it showed (the line as librdkafka wrote it).
#[test]
fn a_password_beginning_with_slashes_after_a_user_is_hidden_where_librdkafka_quotes_it() {
    let s = scrubber(&[(
        "bootstrap.servers",
        "User://Zq7Wm3Kx9Pv2@127.0.0.1:47050, sasl_ssl://B:Pw2Hr5TLq8Nd@127.0.0.1:47053",
    )]);
    assert_eq!(
        s.scrub(
            "[thrd:app]: Broker name \"User://Zq7Wm3Kx9Pv2@127.0.0.1:47050, \
                 sasl_ssl://B:Pw2Hr5TLq8Nd@127.0.0.1:47053\" parse error: unsupported protocol \
                 \"USER\""
        ),
        "[thrd:app]: Broker name \"User:<redacted>@127.0.0.1:47050, \
             sasl_ssl://B:<redacted>@127.0.0.1:47053\" parse error: unsupported protocol \"USER\""
    );
}

/// librdkafka skips the blanks after a broker list's comma, a password's too, and names a
/// broker after the piece without them: in its thread's name, its messages and /readyz
/// (found by mutation testing cut.rs; the lines as librdkafka wrote them).
#[test]
fn the_piece_of_a_password_after_a_comma_and_a_blank_is_hidden_where_librdkafka_quotes_it() {
    let piece = "Gf5Ds0Ya8Ue3Io7Qw2Er9";
    let s = scrubber(&[(
        "bootstrap.servers",
        &format!("USER:Zq7Wm3Kx9Pv2, {piece}@127.0.0.1:48001"),
    )]);
    let line = format!(
        "[thrd:{piece}@127.0.0.1:48001/bootstrap]: {piece}@127.0.0.1:48001/bootstrap: \
             Failed to resolve '{piece}@127.0.0.1:48001': Name or service not known"
    );
    assert_eq!(
        s.scrub(&line),
        "[thrd:<redacted>@127.0.0.1:48001/bootstrap]: <redacted>@127.0.0.1:48001/bootstrap: \
             Failed to resolve '<redacted>@127.0.0.1:48001': Name or service not known"
    );
    let s = scrubber(&[(
        "bootstrap.servers",
        &format!("sasl_plaintext://USER:Zq7Wm3Kx9Pv2, {piece}@h:9092"),
    )]);
    assert_eq!(
        s.scrub(&format!("[thrd:sasl_plaintext://{piece}@h:9092/bootstrap]")),
        "[thrd:sasl_plaintext://<redacted>@h:9092/bootstrap]"
    );
}

/// A needle or a cut copy that starts before a password and ends inside it must not leave
/// the rest of the password shown: the trimmed piece after ", " of one entry's password
/// (`:Kx9P`), a comma piece's cut copy after `://` (`u:Zq`), or a cut copy after `//:` of a
/// password found in an entry without a scheme's name, each hid the start of another
/// entry's password alone, in the line librdkafka writes for the list (all three were
/// hidden at c6489d8).
#[test]
fn a_match_overlapping_the_start_of_a_password_does_not_leave_the_rest_of_it_shown() {
    for (brokers, rest) in [
        (
            "ssl://USER:Kx9Pv2/abcd@127.0.0.1:48601, :Kx9P@127.0.0.1:48602",
            "v2/abcd",
        ),
        ("ssl://u:Zq'%40%40@h0:9092,u:Zq]://7W@h1:9092", "'%40%40"),
        (
            "sasl_ssl://:/'.#K@h0:9092,  ://svc.acct:--m3Zq@h2:9092",
            "'.#K",
        ),
    ] {
        let s = scrubber(&[("bootstrap.servers", brokers)]);
        let line = format!(
            "[thrd:app]: Broker name \"{brokers}\" parse error: protocol \"SSL\" does not \
                 match security.protocol setting \"plaintext\""
        );
        let shown = s.scrub(&line);
        assert!(!shown.contains(rest), "{shown}");
    }
}

/// A refusal loses the values it may quote of the properties librdkafka quotes when it refuses
/// them, and of a path property, its path without a `/`; not the words that only another
/// property's value matches, which are no secret (found by mutation testing: `&&` as `||` in
/// `quoted_when_refused` took every value without a `/` for one, and cut `library` out of
/// OpenSSL's words here).
#[test]
fn a_refusal_keeps_the_words_only_a_value_librdkafka_never_quotes_matches() {
    let scrubber = scrubber(&[
        ("client.id", "library"),
        ("ssl.ca.location", "/nonexistent/ca.pem"),
        ("ssl.key.location", "client-key.pem"),
    ]);
    assert_eq!(
        scrubber.scrub_refusal(
            "ssl.key.location failed: client-key.pem: error:80000002:system library::No such \
             file or directory"
        ),
        "ssl.key.location failed: <redacted>: error:80000002:system library::No such file or \
         directory"
    );
}

/// Four bytes is the least hidden (`MIN_LEN`), a secret's and a refused value's alike (found by
/// mutation testing: hiding from five bytes up showed both).
#[test]
fn a_secret_or_a_refused_value_of_four_bytes_is_hidden() {
    let s = scrubber(&[("sasl.password", "Zq7W"), ("sasl.mechanism", "Kx9P")]);
    assert_eq!(
        s.scrub("auth with Zq7W failed"),
        "auth with <redacted> failed"
    );
    assert_eq!(
        s.scrub_refusal("Unsupported SASL mechanism: Kx9P"),
        "Unsupported SASL mechanism: <redacted>"
    );
}

/// librdkafka cuts a log line at 2 KiB: the start of the OIDC client secret left at the end of
/// one is hidden, as a password's is (found by mutation testing: a key holding `secret` was not
/// taken for an opaque one, and the start was shown).
#[test]
fn the_start_of_a_client_secret_where_librdkafka_cut_a_long_line_is_hidden() {
    let s = scrubber(&[
        ("sasl.oauthbearer.client.id", "bridge"),
        ("sasl.oauthbearer.client.secret", "Oidc-Secret-5b7e-long"),
    ]);
    let head = format!("error: {} ", "x".repeat(1100));
    assert_eq!(
        s.scrub(&format!("{head}Oidc-Secret-5b")),
        format!("{head}<redacted>")
    );
}

/// A secret whose fourth byte is inside a character (`abcé…`): what the scrubber looks for first
/// ends after that character (found by mutation testing: cut at four bytes, it panicked on
/// every line).
#[test]
fn a_secret_whose_fourth_byte_is_inside_a_character_is_hidden() {
    let s = scrubber(&[("sasl.password", "abc\u{e9}-Zq7Wm3")]);
    assert_eq!(
        s.scrub("auth with abc\u{e9}-Zq7Wm3 failed"),
        "auth with <redacted> failed"
    );
    assert_eq!(s.scrub("abc\u{e9}"), "abc\u{e9}");
}

/// A secret that holds another (one property's password inside another's): the shorter one,
/// found inside the longer, does not end what is hidden before the longer one's end (found by
/// mutation testing: the rest of the longer one, `9Pv2`, was shown).
#[test]
fn a_secret_inside_a_longer_one_does_not_leave_the_rest_of_the_longer_one_shown() {
    let s = scrubber(&[
        ("sasl.password", "Zq7Wm3Kx9Pv2"),
        ("ssl.key.password", "m3Kx"),
    ]);
    assert_eq!(s.scrub("pw Zq7Wm3Kx9Pv2 m3Kx"), "pw <redacted> <redacted>");
}

/// librdkafka quotes the rest of `sasl.oauthbearer.config` from a token it does not know: a
/// blank of more than one byte (a no-break space) before one is stepped over whole (found by
/// mutation testing: stepping over one byte panicked making every client).
#[test]
fn an_oauthbearer_config_with_a_blank_of_more_than_one_byte_is_hidden() {
    let config = "principal=svc\u{a0}extension_apikey=SECRET_APIKEY_42";
    let s = scrubber(&[("sasl.oauthbearer.config", config)]);
    assert_eq!(s.scrub(&format!("config: {config}")), "config: <redacted>");
    assert_eq!(s.scrub("value SECRET_APIKEY_42"), "value <redacted>");
}

/// A refused list is hidden whole before its elements, which would leave the short ones shown
/// (`<redacted>:ab`), and an element after a blank is hidden without it, as librdkafka and
/// OpenSSL quote it (found by mutation testing: each was shown).
#[test]
fn a_refused_list_is_hidden_whole_and_an_element_without_its_blanks() {
    let s = scrubber(&[
        ("ssl.curves.list", "Zq7Wm3Kx9:ab"),
        ("partition.assignment.strategy", "range, Pv2Hr5TLq8"),
    ]);
    assert_eq!(
        s.scrub_refusal("ssl.curves.list failed: Zq7Wm3Kx9:ab"),
        "ssl.curves.list failed: <redacted>"
    );
    assert_eq!(
        s.scrub_refusal("Unsupported partition.assignment.strategy \"Pv2Hr5TLq8\""),
        "Unsupported partition.assignment.strategy \"<redacted>\""
    );
}

/// librdkafka reads `ssl.providers` as `rd_string_split` does and OpenSSL quotes the provider as
/// read: a `\t` a tab, a `\0` where the C string ends, a trailing `\` dropped, the blanks around
/// an element trimmed (found by mutation testing: each of these quoted elements was shown).
#[test]
fn an_escaped_ssl_provider_is_hidden_as_librdkafka_reads_it() {
    for (value, read) in [
        (r"Zq7W\tm3Kx9", "Zq7W\tm3Kx9"),
        (r"Zq7Wm3Kx9\0junk", "Zq7Wm3Kx9"),
        (r"legacy,Zq7Wm3Kx9\", "Zq7Wm3Kx9"),
        (r"legacy, \tZq7Wm3Kx9", "Zq7Wm3Kx9"),
    ] {
        let s = scrubber(&[("ssl.providers", value)]);
        let shown = s.scrub_refusal(&format!("Failed to load OpenSSL provider \"{read}\""));
        assert_eq!(
            shown, "Failed to load OpenSSL provider \"<redacted>\"",
            "{value}"
        );
    }
}

/// A mechanism's own name is no secret, in any case (`gssapi` as `GSSAPI`): the refusal that
/// names it tells why this build refuses it (found by mutation testing: compared with its case,
/// `gssapi` was hidden).
#[test]
fn a_refusal_keeps_a_mechanisms_name_in_any_case() {
    let s = scrubber(&[("sasl.mechanism", "gssapi")]);
    let refusal = "No provider for SASL mechanism gssapi: recompile librdkafka with libsasl2";
    assert_eq!(s.scrub_refusal(refusal), refusal);
}

/// Where librdkafka's 512-byte text was full, the start of a refused value that ends it is
/// hidden from four bytes (`MIN_LEN`) on, and a shorter one is left (found by mutation testing:
/// the four-byte start was shown, and starting from one byte hid the end of other texts).
#[test]
fn the_start_of_a_refused_value_where_librdkafka_cut_its_text_is_hidden_from_four_bytes() {
    let s = scrubber(&[("ssl.cipher.suites", "Zq7Wm3Kx9")]);
    let head = format!("{}: ", "x".repeat(500));
    assert_eq!(
        s.scrub_refusal(&format!("{head}Zq7W")),
        format!("{head}<redacted>")
    );
    assert_eq!(s.scrub_refusal(&format!("{head}Zq7")), format!("{head}Zq7"));
}
