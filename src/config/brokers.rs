//! A `--kafka-brokers` list read entry by entry as librdkafka reads it (`rd_kafka_broker_name_parse`),
//! refused where an entry can never work: librdkafka only logs such an entry (or, for a scheme it
//! does not know, every entry after it too) and the bridge would wait for Kafka for ever.

use crate::words::ordinal;

/// The schemes librdkafka takes, in any case.
pub(crate) const SCHEMES: [&str; 4] = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];

/// C's blanks (`isspace`), which librdkafka's parsers skip: Rust's ASCII white space and the
/// vertical tab.
pub(crate) const C_BLANKS: [char; 6] = [' ', '\t', '\n', '\x0b', '\x0c', '\r'];

/// Whether `list` names a broker at all: one of nothing but commas and spaces (a template whose
/// variables were all missing) is as empty as an empty one.
fn names_a_broker(list: &str) -> bool {
    list.split(',').any(|broker| !broker.trim().is_empty())
}

/// Why `list` can never work: `empty` when it names no broker, else the entry that cannot, named
/// by its place, never quoted (it may hold a password); None when each entry is one librdkafka
/// can use.
pub(crate) fn refusal(list: &str, empty: &str) -> Option<String> {
    if !names_a_broker(list) {
        return Some(empty.to_string());
    }
    entries(list).enumerate().find_map(|(n, entry)| {
        why_not(entry).map(|why| format!("the {} broker {why}", ordinal(n + 1)))
    })
}

/// Why an entry's scheme is not `security.protocol` (librdkafka's default: plaintext), which
/// librdkafka requires of it: it connects neither to that broker nor to any named after it, and
/// the bridge would wait for Kafka for ever. For a list [`refusal`] takes; None too when
/// `protocol` is no value librdkafka takes, which it refuses itself (hiding the value).
pub(crate) fn scheme_mismatch(list: &str, protocol: Option<&str>) -> Option<String> {
    // librdkafka skips the value's leading blanks (C's isspace), not its trailing ones.
    // A blank value sets nothing: the default stays.
    let protocol = protocol.unwrap_or("plaintext").trim_start_matches(C_BLANKS);
    let protocol = if protocol.is_empty() {
        "plaintext"
    } else {
        protocol
    };
    let protocol = SCHEMES.iter().find(|s| s.eq_ignore_ascii_case(protocol))?;
    entries(list).enumerate().find_map(|(n, entry)| {
        let (scheme, _) = entry.split_once("://")?;
        (!scheme.eq_ignore_ascii_case(protocol)).then(|| {
            format!(
                "the {} broker's scheme, {}://, is not security.protocol ({protocol}), which \
                 librdkafka requires: it would connect to none of the brokers from there on; set \
                 security.protocol (-X security.protocol=..., KAFKA_SECURITY_PROTOCOL) or drop \
                 the scheme",
                ordinal(n + 1),
                scheme.to_ascii_lowercase()
            )
        })
    })
}

/// The list's entries as librdkafka reads them: between commas, spaces before them skipped (but
/// no other blank: `\tssl://` is the scheme `\tSSL`, which it does not take).
fn entries(list: &str) -> impl Iterator<Item = &str> {
    list.split(',')
        .map(|e| e.trim_start_matches(' '))
        .filter(|e| !e.is_empty())
}

fn why_not(entry: &str) -> Option<&'static str> {
    // No host, port or path of a broker holds `@`, so one is user information wherever it
    // stands: `alice:2024/x@kafka` is host `alice`, port 2024 to librdkafka's atoi, and a
    // password may hold `://`, which librdkafka then takes for a scheme. As the chart refuses.
    if entry.contains('@') {
        return Some(USER_INFORMATION);
    }
    let host_port = match entry.split_once("://") {
        Some((scheme, rest)) => {
            if !SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
                return Some(
                    "has a scheme librdkafka does not take (it takes plaintext://, ssl://, \
                     sasl_plaintext:// and sasl_ssl://, which must match security.protocol; \
                     the list is refused from there on)",
                );
            }
            // librdkafka ignores a path after a scheme's authority.
            rest.split('/').next().unwrap_or(rest)
        }
        None => entry,
    };
    // librdkafka's reading: a port after the only `:`, or after `]:` (an IPv6 address in
    // brackets); an unbracketed IPv6 address has none, nor does a host holding user
    // information's `:` as well.
    let last = host_port.rfind(':');
    let port_at =
        last.filter(|&at| host_port.find(':') == Some(at) || host_port[..at].ends_with(']'));
    let (host, port) = match port_at {
        Some(at) => (&host_port[..at], Some(&host_port[at + 1..])),
        None => (host_port, None),
    };
    // A list written a line per broker is one entry to librdkafka, a host that never resolves;
    // nor does one with a blank before its port, or at its end (librdkafka keeps both).
    // librdkafka writes broker names into its statistics unescaped: a `"` or `\` made every
    // report unreadable while the broker was listed (the queue metrics then read 0). No host
    // name holds either, nor a control character.
    if host.contains(['"', '\\'])
        || host.contains(|c: char| c.is_ascii_control() && !c.is_ascii_whitespace())
    {
        return Some("has a character no host name has (`\"`, `\\` or a control character)");
    }
    if host.contains(|c: char| c.is_ascii_whitespace()) {
        return Some(
            "has a blank in its host name, which never resolves (a line break between brokers \
             instead of a comma? a blank before the port?)",
        );
    }
    let port = port?;
    (!(1..=65535).contains(&atoi(port)))
        .then_some("has a port that is not a number from 1 to 65535")
}

const USER_INFORMATION: &str = "holds user information (`user:password@`), which librdkafka \
                                never reads: give credentials in sasl.username and \
                                sasl.password (KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD_FILE)";

/// C's `atoi`, which librdkafka reads a port with: blanks, a sign and the digits that follow
/// (`9092/`, ` 9092` and `+9092` are 9092; a word is 0), here without its overflow.
fn atoi(text: &str) -> i64 {
    let text = text.trim_start_matches(C_BLANKS);
    let (sign, digits) = match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    };
    let value = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |n, d| (n * 10 + i64::from(d - b'0')).min(1 << 32));
    sign * value
}

#[cfg(test)]
mod tests {
    use super::refusal;

    const EMPTY: &str = "is empty";

    #[test]
    fn lists_librdkafka_can_use_are_taken() {
        for list in [
            "kafka:9092",
            "kafka-0.kafka-headless.ns.svc.cluster.local:9092,kafka-1:9092",
            " a:1 , b:65535 ,",
            "SASL_SSL://broker:9093, ssl://b2:9094/",
            "plaintext://h:9092,Sasl_Plaintext://h2:9092",
            "[::1]:9092",
            "[fe80::1]",
            "fe80::1",
            // Unbracketed, a last group that is no number is no port (found by mutation testing).
            "fe80::abcd",
            "127.0.0.1",
            "kafka",
            // librdkafka reads a port with atoi: what follows the digits, blanks and a sign
            // before them, a path after a scheme (a review found these refused).
            "kafka:9092/",
            "kafka: 9092",
            "kafka:+9092",
            "kafka:9092?x",
            // librdkafka ignores a path after a scheme's authority.
            "ssl://kafka/x",
        ] {
            assert_eq!(refusal(list, EMPTY), None, "{list}");
        }
    }

    #[test]
    fn a_scheme_that_is_not_security_protocol_is_refused_by_its_place() {
        use super::scheme_mismatch;
        for (list, protocol) in [
            ("kafka:9092,SASL_SSL://b:9093", None),
            ("ssl://a:1", Some("plaintext")),
            ("plaintext://a:1", Some("SASL_PLAINTEXT")),
            ("sasl_ssl://a:1", Some("ssl")),
        ] {
            let said = scheme_mismatch(list, protocol).unwrap_or_else(|| panic!("{list} taken"));
            assert!(said.contains("scheme, "), "{said}");
            assert!(said.contains("is not security.protocol"), "{said}");
        }
        // librdkafka skips the value's leading blanks (a second look found this one taken), and
        // a blank value sets nothing (a third look found it taken).
        assert!(scheme_mismatch("plaintext://a:1", Some(" \tssl")).is_some());
        assert!(scheme_mismatch("ssl://a:1", Some(" ")).is_some());
        assert!(scheme_mismatch("ssl://a:1", Some("")).is_some());
        let said = scheme_mismatch("kafka:9092, SASL_SSL://b:9093", None).unwrap();
        assert!(
            said.starts_with(
                "the 2nd broker's scheme, sasl_ssl://, is not security.protocol (plaintext)"
            ),
            "{said}"
        );
        for (list, protocol) in [
            ("kafka:9092,plaintext://b:1", None),
            ("PlainText://b:1", Some("plaintext")),
            ("SASL_SSL://a:1, sasl_ssl://b:2/", Some("sasl_ssl")),
            ("Ssl://a:1", Some("SSL")),
            ("kafka:9092", Some("sasl_ssl")),
            // A value librdkafka does not take: it refuses it when the client is made.
            ("ssl://a:1", Some("tls")),
            ("ssl://a:1", Some("ssl ")),
            // librdkafka skips a value's leading blanks (a second look found this one refused).
            ("ssl://a:1", Some(" \tssl")),
        ] {
            assert_eq!(scheme_mismatch(list, protocol), None, "{list} {protocol:?}");
        }
    }

    #[test]
    fn a_list_of_nothing_but_commas_and_blanks_names_no_broker() {
        for list in ["", " ", ",", " , ,\t"] {
            assert_eq!(refusal(list, EMPTY).as_deref(), Some(EMPTY), "{list:?}");
        }
    }

    #[test]
    fn an_entry_that_can_never_work_is_refused_by_its_place_without_being_quoted() {
        for (list, place, why) in [
            ("alice:Zq7Wm3Kx9Pv2@h:9092", "1st", "holds user information"),
            (
                "a:1,sasl_ssl://u:Zq7Wm3@h:1",
                "2nd",
                "holds user information",
            ),
            ("u:ab://Zq7Wm3@h", "1st", "holds user information"),
            // A password with a `/` after digits: librdkafka's atoi reads port 2024 of host
            // `alice`, and start-up took the list the scrubber hid a password of.
            ("alice:2024/x@kafka", "1st", "holds user information"),
            (
                "k:1,sasl_ssl://alice:2024/Zq7@kafka:9092",
                "2nd",
                "holds user information",
            ),
            // No broker's port or path holds `@`: refused as the chart refuses it.
            ("kafka:9092/@x", "1st", "holds user information"),
            ("ssl://kafka/x@y", "1st", "holds user information"),
            (
                "a:1, b:2, http://h:9092",
                "3rd",
                "scheme librdkafka does not take",
            ),
            (
                "kafka://Zq7Wm3Kx9Pv2:1",
                "1st",
                "scheme librdkafka does not take",
            ),
            ("://h:1", "1st", "scheme librdkafka does not take"),
            // A line per broker is one entry (a third look found it taken).
            ("a:1\nb:2", "1st", "blank in its host name"),
            ("a:1, b:2\r\nc:3", "2nd", "blank in its host name"),
            ("ssl://a b:1", "1st", "blank in its host name"),
            // librdkafka keeps blanks before a port, or at the end of a host without one.
            ("localhost :9092", "1st", "blank in its host name"),
            ("kafka \t:9092", "1st", "blank in its host name"),
            ("kafka , b:1", "1st", "blank in its host name"),
            // librdkafka writes them into its statistics unescaped (a review found the queue
            // metrics then 0).
            ("k:1,bad\"host:9092", "2nd", "character no host name has"),
            ("CORP\\kafka:9092", "1st", "character no host name has"),
            ("ssl://a\u{1}b:1", "1st", "character no host name has"),
            // librdkafka skips only spaces before an entry: the scheme is `\tSSL` (a second
            // look found it taken).
            (
                "ssl://a:1,\tssl://b:2",
                "2nd",
                "scheme librdkafka does not take",
            ),
            ("kafka:notaport", "1st", "port that is not"),
            ("kafka:99999", "1st", "port that is not"),
            ("kafka:65536", "1st", "port that is not"),
            ("kafka:0", "1st", "port that is not"),
            ("kafka:", "1st", "port that is not"),
            ("ssl://h:O992/", "1st", "port that is not"),
            ("[::1]:x", "1st", "port that is not"),
            ("kafka:-1", "1st", "port that is not"),
            ("kafka:4294967297", "1st", "port that is not"),
            ("u@kafka:9092", "1st", "holds user information"),
            // No port: the password's digits read as one (a third look found it taken).
            ("alice:2024Secret@kafka", "1st", "holds user information"),
            (
                "sasl_ssl://alice:2024Secret@kafka",
                "1st",
                "holds user information",
            ),
            (
                "kafka:9092,alice:9092@kafka",
                "2nd",
                "holds user information",
            ),
            // A `/` in a password, with no port: all of it is the host (a last look found it
            // taken).
            ("alice:pa/ss@kafka:9092", "1st", "holds user information"),
            ("kafka/x@y", "1st", "holds user information"),
        ] {
            let said = refusal(list, EMPTY).unwrap_or_else(|| panic!("{list} taken"));
            assert!(
                said.starts_with(&format!("the {place} broker ")) && said.contains(why),
                "{list}: {said}"
            );
            assert!(
                !said.contains("Zq7Wm3") && !said.contains("notaport"),
                "{said}"
            );
        }
    }
}
