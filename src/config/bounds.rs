//! The checks on single settings and their bounds: values that cannot work, or are so far out
//! that they must be typos, are refused at start-up with the setting's name.

use std::net::SocketAddr;
use std::time::Duration;

use super::{invalid, Args, ConfigError};

/// Upper bounds that catch typos (and keep deadlines from overflowing the clock).
const MAX_ACK_TIMEOUT: Duration = Duration::from_secs(60);
/// The shortest `--ack-timeout`: librdkafka's message timeout is in whole milliseconds (and with
/// the spool a quarter of the timeout is kept for its write), so below this the wait for Kafka
/// rounds to nothing, every request gets 503, and the start-up warning blamed a
/// `message.timeout.ms` the bridge had chosen itself. A Kafka round trip takes a few ms at best.
const MIN_ACK_TIMEOUT: Duration = Duration::from_millis(10);
/// The least of `--ack-timeout` that `--spool-write-budget` must leave Kafka: a Kafka round trip
/// takes a few ms at best, and librdkafka's message timeout is in whole milliseconds.
const MIN_KAFKA_WAIT: Duration = Duration::from_millis(5);
/// The least `--spool-write-budget`: tokio's timers fire on whole milliseconds, rounding a
/// deadline up, so Kafka's wait for a record ends up to 1 ms after it was due. A budget below that
/// leaves the spool nothing: every record Kafka is late with was answered 503 unstored, as at zero,
/// and uncounted (not even as a late spool write).
const MIN_SPOOL_WRITE_BUDGET: Duration = Duration::from_millis(1);
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// The longest `--webhook-path`: a request's whole head must fit in 16 KiB.
const MAX_WEBHOOK_PATH: usize = 4096;
const MAX_COUNT: usize = 1_000_000;
/// A webhook body is a few KiB; the bound keeps the Kafka record limit made from it
/// (`message.max.bytes`, body + 64 KiB) inside librdkafka's own maximum of 1000000000, and the
/// sums made from it from overflowing.
const MAX_BODY_BYTES: usize = 512 << 20;

/// Whether two listeners would ask for the same socket, so the second bind would fail at start-up
/// (after `--check-config` said the settings were valid). Port 0 asks for a free port each. An
/// IPv4-mapped IPv6 address (`[::ffff:127.0.0.1]`) binds its IPv4 address, so it counts as that.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    let (a, b) = (canonical(a), canonical(b));
    let any_of_its_family = |x: SocketAddr, y: SocketAddr| {
        x.ip().is_unspecified() && (x.is_ipv4() == y.is_ipv4() || x.is_ipv6())
    };
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || any_of_its_family(a, b) || any_of_its_family(b, a))
}

/// `[::ffff:a.b.c.d]:port` as `a.b.c.d:port`; any other address as it is.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

pub(super) fn check(args: &Args) -> Result<(), ConfigError> {
    // First: the other checks add to it.
    if args.max_body_bytes == 0 {
        return Err(invalid("--max-body-bytes", "must be greater than zero"));
    }
    if args.max_body_bytes > MAX_BODY_BYTES {
        return Err(invalid(
            "--max-body-bytes",
            format!("must be at most {MAX_BODY_BYTES} (512 MiB)"),
        ));
    }
    // A request line carries its path percent-encoded, in visible ASCII: a path with anything
    // else (a space, a control character, non-ASCII) or a query or fragment never matches it.
    let matchable = |b: u8| b.is_ascii_graphic() && b != b'?' && b != b'#';
    // And one hyper parses: the `http` crate refuses some visible ASCII in a path (`<`, `>`, a
    // backquote), and hyper answers a bare 400 before the bridge sees the request.
    let parsed = args.webhook_path.parse::<http::uri::PathAndQuery>().is_ok();
    // Within a request head hyper takes (16 KiB, `READ_BUFFER_BYTES`) beside the other fields:
    // a longer path got 431 on every request.
    let fits = args.webhook_path.len() <= MAX_WEBHOOK_PATH;
    if !args.webhook_path.starts_with('/')
        || !args.webhook_path.bytes().all(matchable)
        || !parsed
        || !fits
    {
        return Err(invalid(
            "--webhook-path",
            format!(
                "{:?} must be an absolute path like /webhook, in visible ASCII (percent-encode \
                 anything else, as a request line carries it), of at most {MAX_WEBHOOK_PATH} bytes",
                args.webhook_path
            ),
        ));
    }
    let positive = [
        ("--ack-timeout", args.ack_timeout),
        ("--header-read-timeout", args.header_read_timeout),
        ("--idle-timeout", args.idle_timeout),
        ("--body-read-timeout", args.body_read_timeout),
    ];
    for (setting, value) in positive {
        if value.is_zero() {
            return Err(invalid(setting, "must be greater than zero"));
        }
    }
    // Qikchat waits 2 s; an answer after a minute is read by no one, and a deadline that
    // far out is a typo (one large enough would overflow the clock).
    if args.ack_timeout > MAX_ACK_TIMEOUT {
        return Err(invalid("--ack-timeout", "must be at most 60s"));
    }
    if args.ack_timeout < MIN_ACK_TIMEOUT {
        return Err(invalid("--ack-timeout", "must be at least 10ms"));
    }
    if let Some(budget) = args.spool_write_budget {
        if budget < MIN_SPOOL_WRITE_BUDGET {
            return Err(invalid(
                "--spool-write-budget",
                "must be at least 1ms (less leaves no time for the spool's write, the timers \
                 being in whole milliseconds, and would answer every record Kafka is late with \
                 503, as without a spool)",
            ));
        }
        let most = args.ack_timeout - MIN_KAFKA_WAIT;
        if budget > most {
            return Err(invalid(
                "--spool-write-budget",
                format!(
                    "{budget:?} must leave Kafka at least {MIN_KAFKA_WAIT:?} of --ack-timeout \
                     ({:?}): at most {most:?}",
                    args.ack_timeout
                ),
            ));
        }
    }
    let bounded = [
        ("--header-read-timeout", args.header_read_timeout),
        ("--idle-timeout", args.idle_timeout),
        ("--body-read-timeout", args.body_read_timeout),
        ("--shutdown-delay", args.shutdown_delay),
        ("--shutdown-grace", args.shutdown_grace),
        ("--flush-timeout", args.flush_timeout),
    ];
    for (setting, value) in bounded {
        if value > MAX_WAIT {
            return Err(invalid(setting, "must be at most 1h"));
        }
    }
    // CloudEvents' `source` is a non-empty URI-reference (RFC 3986), which strict consumers check
    // (the JavaScript SDK refuses `{`, `|`, `^` or a `%` without two hex digits): one they refuse
    // would be on every record.
    let source = args.cloudevents_source.as_str();
    if args.cloudevents {
        let grammar = "must be a URI reference (RFC 3986: ASCII letters, digits and \
                       -._~:/?#[]@!$&'()*+,;= in their places, a % followed by two hex digits), \
                       e.g. /qikchat/prod";
        if source.is_empty() {
            return Err(invalid(
                "--cloudevents-source",
                format!("{grammar}; it is empty"),
            ));
        }
        // Where it fails, since the characters alone may all be allowed: `a_b:c` starts with a
        // scheme, which takes no `_`; a port takes digits only; `[` opens an IPv6 address.
        let parsed = match fluent_uri::UriRef::parse(source) {
            Ok(parsed) => parsed,
            Err(e) => {
                return Err(invalid(
                    "--cloudevents-source",
                    format!(
                        "{grammar}; {e} (from 0; a `:` before any `/` ends a scheme, which holds \
                         only letters, digits, `+`, `-` and `.`)"
                    ),
                ))
            }
        };
        // It goes into every record, where no password belongs (and --check-config prints it).
        if parsed.authority().is_some_and(|a| a.userinfo().is_some()) {
            return Err(invalid(
                "--cloudevents-source",
                "holds user information (`user:password@`), which would go into every record: \
                 leave it out",
            ));
        }
    }
    if args.spool_dir.is_some() && args.spool_max_bytes < args.max_body_bytes as u64 + 4096 {
        return Err(invalid(
            "--spool-max-bytes",
            "must hold at least one body of --max-body-bytes (plus 4 KiB for its headers)",
        ));
    }
    for (setting, value) in [
        ("--max-in-flight", args.max_in_flight),
        ("--max-connections", args.max_connections),
    ] {
        if value == 0 {
            return Err(invalid(setting, "must be greater than zero"));
        }
        if value > MAX_COUNT {
            return Err(invalid(setting, "must be at most 1000000"));
        }
    }
    if args.max_in_flight_bytes < args.max_body_bytes as u64 {
        return Err(invalid(
            "--max-in-flight-bytes",
            "must hold at least one body of --max-body-bytes",
        ));
    }
    if overlap(args.listen, args.admin_listen) {
        return Err(invalid(
            "--admin-listen",
            format!(
                "{} takes the port of --listen ({}): give the admin listener a port of its own",
                args.admin_listen, args.listen
            ),
        ));
    }
    if !(1..=1000).contains(&args.embedded_partitions) {
        return Err(invalid(
            "--embedded-partitions",
            "must be between 1 and 1000",
        ));
    }
    Ok(())
}
