//! Unit tests of finding the passwords of URLs and broker lists, and of values shown without them.

use super::url_password_hidden;
use crate::kafka_props::Scrubber;

#[test]
fn a_url_keeps_its_user_but_not_its_password() {
    assert_eq!(
        url_password_hidden("https://client:S3cret@idp.example/token?x=y"),
        "https://client:<redacted>@idp.example/token?x=y"
    );
    assert_eq!(
        url_password_hidden("https://client:p@ss@idp/token"),
        "https://client:<redacted>@idp/token",
        "an @ in the password"
    );
    assert_eq!(
        url_password_hidden("http://a:p,1@h1,http://b:q 2@h2/t"),
        "http://a:<redacted>@h1,http://b:<redacted>@h2/t",
        "each URL of a list, a comma and a space in a password"
    );
    for kept in [
        "https://idp.example/token",
        "https://user@idp/token",
        "https://idp/token?next=a:b@c",
        "kafka-1:9092",
        "",
    ] {
        assert_eq!(url_password_hidden(kept), kept);
    }
}

/// Whatever the value, finding its passwords never panics, and what it hides lies inside it.
#[test]
fn hiding_passwords_takes_any_value() {
    let parts = ["k", ":", "@", ",", "://", " ", "é", "p", "/", "?"];
    let mut seed = 7u64;
    for _ in 0..20_000 {
        let mut value = String::new();
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        for _ in 0..(seed >> 60) {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            value.push_str(parts[(seed >> 33) as usize % parts.len()]);
        }
        let _ = url_password_hidden(&value);
        for password in super::url_passwords(&value) {
            let at = password.as_ptr() as usize - value.as_ptr() as usize;
            assert!(at + password.len() <= value.len(), "{value:?}");
        }
    }
}

/// An entry with a scheme ends at the last comma before the next scheme, wherever that
/// scheme is: right after a long one, or at the end of the list with nothing after its `://`
/// (found by mutation testing: an entry's end counted from the wrong place panicked there).
#[test]
fn each_password_of_a_broker_list_is_hidden_whatever_the_length_of_its_schemes() {
    use super::broker_list_password_hidden;
    for (brokers, shown) in [
        (
            "sasl_plaintext://u:Zq7Wm3@h,ssl://k",
            "sasl_plaintext://u:<redacted>@h,ssl://k",
        ),
        (
            "sasl_ssl://u:Zq7Wm3@h,ssl://",
            "sasl_ssl://u:<redacted>@h,ssl://",
        ),
        (
            "sasl_ssl://u:Zq7Wm3@h,ssl://v:Kx9Pv2@k",
            "sasl_ssl://u:<redacted>@h,ssl://v:<redacted>@k",
        ),
    ] {
        assert_eq!(broker_list_password_hidden(brokers), shown);
    }
}

/// A scheme librdkafka does not know may hold `-`, `+` or `.` (`sasl-ssl://`, a typo of
/// `sasl_ssl://`): its entry's password is hidden whole, a `?` and a comma in it too (found by
/// mutation testing: without those characters in a scheme's name, `Kx9?Pv2,Zq7W:` was shown).
#[test]
fn a_password_after_a_scheme_with_a_dash_a_plus_or_a_dot_is_hidden_whole() {
    for scheme in ["sasl-ssl", "kafka+ssl", "kafka.tls"] {
        let brokers = format!("{scheme}://svc:Kx9?Pv2,Zq7W:m3@127.0.0.1:47411");
        let hidden = format!("{scheme}://svc:<redacted>@127.0.0.1:47411");
        assert_eq!(super::broker_list_password_hidden(&brokers), hidden);
        let line = format!("Broker name \"{brokers}\" parse error: unsupported protocol");
        let shown = Scrubber::new([("bootstrap.servers", brokers.as_str())]).scrub(&line);
        assert!(!shown.contains("Kx9?Pv2"), "{shown}");
    }
}

/// A `://` with no name before it after a comma starts no entry of its own: the password
/// before it, which holds that comma, is hidden whole, after a scheme librdkafka does not
/// know too (found by mutation testing: taken for a scheme, it left `pa,` shown).
#[test]
fn a_separator_without_a_scheme_name_does_not_end_the_password_before_it() {
    for scheme in ["sasl_ssl", "kafka"] {
        assert_eq!(
            super::broker_list_password_hidden(&format!("{scheme}://u:pa,://x@h:9092")),
            format!("{scheme}://u:<redacted>@h:9092")
        );
    }
}
