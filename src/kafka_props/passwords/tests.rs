//! Unit tests of finding the passwords of URLs and broker lists, and of values shown without them.

use super::{broker_list_password_hidden, url_password_hidden};
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

/// A password may hold a `/`, `?` or `#`, which a URL's user information cannot hold unescaped:
/// no client reads such a URL as the operator meant, but librdkafka quotes it in its errors.
/// The password runs from the user's `:` to the `@` that follows where a URL has none of its
/// own (a path, a fragment, a query's name), or that follows an authority that is no host and
/// port; and across a list's `,NAME://` in a password.
#[test]
fn a_url_password_holding_a_slash_a_question_mark_or_a_hash_is_hidden_whole() {
    for (url, shown) in [
        (
            "https://u:pa/ss@idp/token",
            "https://u:<redacted>@idp/token",
        ),
        (
            "https://u:pa?ss@idp/token",
            "https://u:<redacted>@idp/token",
        ),
        (
            "https://u:pa#ss@idp/token",
            "https://u:<redacted>@idp/token",
        ),
        (
            "https://u:12/ss@idp/token",
            "https://u:<redacted>@idp/token",
        ),
        (
            "https://u:12?ss@idp/token",
            "https://u:<redacted>@idp/token",
        ),
        (
            "https://u:12#ss@idp/token",
            "https://u:<redacted>@idp/token",
        ),
        ("https://u:12?a=1&ss@idp/t", "https://u:<redacted>@idp/t"),
        ("https://u:p@ss/wo@rd@idp/t", "https://u:<redacted>@idp/t"),
        ("https://u:ab://cd@idp/t", "https://u:<redacted>@idp/t"),
        ("http://a:pa,x://ss@h/t", "http://a:<redacted>@h/t"),
        ("http://a:pa,x://,y://ss@h", "http://a:<redacted>@h"),
        (
            "http://a:pa/ss@h1/t,http://b:q?r@h2/t",
            "http://a:<redacted>@h1/t,http://b:<redacted>@h2/t",
        ),
    ] {
        assert_eq!(url_password_hidden(url), shown, "{url}");
    }
}

/// A URL's own port, path and query stay shown: an address in a query's value
/// (`login_hint=a@b`), an IPv6 address's colons, a list of URLs with ports.
#[test]
fn a_urls_own_port_path_and_query_are_shown() {
    for kept in [
        "https://idp:8443/t?login_hint=a@b",
        "https://idp:8443/t?x=1&login_hint=a@b#top",
        "https://idp:8443?login_hint=a@b",
        "https://idp:/t",
        "https://[::1]:8443/t?login_hint=a@b",
        "https://[::1]/t",
        "http://a:8080/t,x://ss@h",
        "https://idp:8443/t,https://idp2:9443/t",
    ] {
        assert_eq!(url_password_hidden(kept), kept);
    }
    assert_eq!(
        url_password_hidden("https://u:p@idp:8443/t?login_hint=a@b&x=1"),
        "https://u:<redacted>@idp:8443/t?login_hint=a@b&x=1"
    );
    assert_eq!(
        url_password_hidden("https://u:p@[::1]:8443/t"),
        "https://u:<redacted>@[::1]:8443/t"
    );
}

/// A password found twice, the URL's and the broker list's own reading, is hidden once, empty
/// too (it was shown as `<redacted><redacted>`).
#[test]
fn a_password_found_twice_is_hidden_once() {
    assert_eq!(
        broker_list_password_hidden("sasl_ssl://u:@h:9092"),
        "sasl_ssl://u:<redacted>@h:9092"
    );
    assert_eq!(
        broker_list_password_hidden("sasl_ssl://u:pw@h:9092"),
        "sasl_ssl://u:<redacted>@h:9092"
    );
}

/// Finding the passwords takes time in proportion to the value, however many `://`, `@` and
/// commas it holds: each of these took minutes or hours when every `@` or `://` read back or
/// on across the rest of the value (a 20 KB value of `,@` took 43 s). The deadline is no
/// measure of speed: it only stops a test that would otherwise run for hours.
#[test]
fn finding_passwords_takes_time_in_proportion_to_the_value() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let n = 100_000;
        for value in [
            format!("a:{}", ",@".repeat(n)),
            format!("{}@", "x://a".repeat(n)),
            format!("{}@h", ",x://a:b".repeat(n)),
            format!("https://u:p@h/{}", "a@b".repeat(n)),
            format!("https://u:p{}@h", "/?a=b@".repeat(n)),
            format!("sasl_ssl://u:p{}@h", ",kafka://".repeat(n)),
        ] {
            let _ = broker_list_password_hidden(&value);
            let _ = super::url_passwords(&value).count();
        }
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the passwords of six values of at most 900 KB, found in two minutes");
}

/// Of the passwords that start at the same place, the scrubber keeps the longest, and of URLs'
/// passwords none inside another: a value of many `@` or `://` gave passwords whose copies took
/// memory in the square of its length (1.2 GB for a 5 KB value of `,@`, and an abort for
/// 20 KB). Each of the four readings (URLs, broker entries with a scheme librdkafka knows, with
/// any scheme, without one) finds passwords apart, so together they take at most four times the
/// value. What the scrubber hides in a text that quotes such a list stays hidden.
#[test]
fn the_passwords_to_scrub_take_no_more_room_than_the_value() {
    for value in [
        format!("u:p{}", ",@".repeat(5_000)),
        format!("sasl_ssl://u:p{}", "@,".repeat(5_000)),
        format!("{}@h", "x://a".repeat(5_000)),
        format!("{}@h", "x://a:b".repeat(5_000)),
    ] {
        let room: usize = super::passwords_to_scrub(&value, true)
            .iter()
            .map(|p| p.len())
            .sum();
        assert!(room <= 4 * value.len(), "{room} bytes for {}", value.len());
    }
    let brokers = "k:9092,u:pa,ssWORD@h1:9092,x@h2:9092";
    let scrubber = Scrubber::new([("bootstrap.servers", brokers)]);
    for quoted in [
        "Failed to resolve 'ssWORD@h1:9092'",
        "[thrd:ssWORD@h1:9092/bootstrap]: ssWORD@h1:9092/bootstrap: Connect failed",
        "brokers \"k:9092,u:pa,ssWORD@h1:9092,x@h2:9092\"",
    ] {
        let shown = scrubber.scrub(quoted);
        assert!(!shown.contains("ssWORD"), "{shown}");
    }
}

/// A user holding an `@` (an e-mail address as a client id) and a password holding a `/`, `?` or
/// `#`: the authority's last `@` is the user's, and the password runs on to the `@` after it
/// (it was shown whole); a user with no password and a port stay shown.
#[test]
fn a_password_after_a_user_holding_an_at_is_hidden_whole() {
    for (url, shown) in [
        (
            "https://svc@corp.example:Xa9/Rgq+DU=@idp/token",
            "https://svc@corp.example:<redacted>@idp/token",
        ),
        (
            "https://svc@corp.example:pa?ss@idp/token",
            "https://svc@corp.example:<redacted>@idp/token",
        ),
        (
            "https://svc@corp.example:pa#ss@idp",
            "https://svc@corp.example:<redacted>@idp",
        ),
    ] {
        assert_eq!(url_password_hidden(url), shown, "{url}");
        let line = format!("Failed to acquire token from {url}: 401");
        let scrubbed = Scrubber::new([("sasl.oauthbearer.token.endpoint.url", url)]).scrub(&line);
        assert!(
            !scrubbed.contains("ss@idp") && !scrubbed.contains("DU="),
            "{scrubbed}"
        );
    }
    for kept in [
        "https://svc@idp:8443/t?login_hint=a@b",
        "https://svc@[::1]:8443/t",
        "https://svc@idp/t",
    ] {
        assert_eq!(url_password_hidden(kept), kept);
    }
}

/// A password may hold an `=` after a `/`, `#` or `?` (a base64 secret ends in `=`, holds `/`):
/// its `@` is in no query's value, so the password runs on to it, hidden whole; a password
/// holding a digit, or an `&` in a path before a query, is no port nor query either (found by
/// mutation testing: each of these was shown whole, taken for a port with a query's address).
#[test]
fn a_url_password_holding_an_equals_sign_is_hidden_whole() {
    for (url, shown) in [
        (
            "https://svc:8/Rgq+DU=@idp/token",
            "https://svc:<redacted>@idp/token",
        ),
        (
            "https://svc:8#Rg=x@idp/token",
            "https://svc:<redacted>@idp/token",
        ),
        (
            "https://svc:8?x#y=z@idp/token",
            "https://svc:<redacted>@idp/token",
        ),
        (
            "https://svc:8/a&b=c?d@idp/token",
            "https://svc:<redacted>@idp/token",
        ),
        (
            "https://svc:S3cr/et?x=1@idp/token",
            "https://svc:<redacted>@idp/token",
        ),
    ] {
        assert_eq!(url_password_hidden(url), shown, "{url}");
    }
}

/// A comma in a URL's password ends no entry unless a scheme follows it: a password that
/// begins with digits (`2024,Spring`) is no port before it (found by mutation testing: ending
/// the URL at every comma showed it whole).
#[test]
fn a_url_password_beginning_with_digits_and_a_comma_is_hidden_whole() {
    assert_eq!(
        url_password_hidden("https://svc:2024,Spring@idp/token"),
        "https://svc:<redacted>@idp/token"
    );
}

/// The password of an entry without a scheme runs back across every comma to its entry's `:`,
/// over pieces without one too (found by mutation testing: a piece without a `:` forgot the
/// one before it, and `pa,ss,wo` was shown).
#[test]
fn a_password_holding_two_commas_in_an_entry_without_a_scheme_is_hidden_whole() {
    for brokers in ["u:pa,ss,wo@h:9092", "k:9092,u:pa,ss,wo@h:9092"] {
        let hidden = broker_list_password_hidden(brokers);
        assert!(hidden.ends_with(":<redacted>@h:9092"), "{hidden}");
        assert!(!hidden.contains("wo"), "{hidden}");
        assert!(!url_password_hidden(brokers).contains("wo"), "{brokers}");
    }
}

/// A user with no password before an IPv6 address: the address's colons are no password's, and
/// its port, path and a query's address stay shown (found by mutation testing: reading the
/// address from the user's start took `:1]:8443/t?login_hint=a` for a password).
#[test]
fn a_user_before_an_ipv6_address_keeps_the_address_port_and_query_shown() {
    for kept in [
        "https://svc@[::1]:8443/t?login_hint=a@b",
        "https://svc@[fe80::1]:8443?login_hint=a@b",
    ] {
        assert_eq!(url_password_hidden(kept), kept);
    }
}

/// An entry with a `://` but no scheme's name before it (`://Zq7Wm3@h`, a scheme left out)
/// is no URL: librdkafka quotes it whole, so what runs from its `:` to the `@` is hidden
/// (found by mutation testing: an empty name taken for a scheme showed the password).
#[test]
fn an_entry_with_a_separator_but_no_scheme_name_hides_its_password() {
    let brokers = "://Zq7Wm3Kx9@127.0.0.1:9092";
    assert!(!url_password_hidden(brokers).contains("Zq7Wm3Kx9"));
    assert!(!broker_list_password_hidden(brokers).contains("Zq7Wm3Kx9"));
    let line = format!("Broker name \"{brokers}\" parse error: unsupported protocol \"\"");
    let shown = Scrubber::new([("bootstrap.servers", brokers)]).scrub(&line);
    assert!(!shown.contains("Zq7Wm3Kx9"), "{shown}");
}
