//! The open-file limit: raised as far as the system allows at start-up, and checked against
//! the connections the bridge may hold.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors besides the listeners' connections: librdkafka's sockets and wake-up pipes (a
/// few per broker for each producer), the spool's file, the runtime's epoll and the files read
/// again every second, with room to spare.
pub const OTHER_FILES: u64 = 256;

/// Raises the soft limit of open files to the hard one, as Go's runtime does: systemd and most
/// shells start services at 1024, a quarter of `--max-connections`' default, while the hard
/// limit is usually far higher. Then warns when the limit is still below what the listeners may
/// hold: at the limit every `accept` fails, on the admin listener too, so `/livez` stops
/// answering and a liveness probe restarts a bridge that was only busy.
pub fn raise_limit(max_connections: usize) {
    let before = getrlimit(Resource::Nofile);
    let after = match raised(before) {
        Some(raised) if setrlimit(Resource::Nofile, raised).is_ok() => raised,
        _ => before,
    };
    let Some(limit) = after.current else {
        return;
    };
    let needed = needed(max_connections);
    if let Some(warning) = shortfall(limit, max_connections) {
        tracing::warn!(limit, needed, max_connections, "{warning}");
    } else if after != before {
        tracing::debug!(from = ?before.current, to = limit, "raised the open-file limit");
    }
}

/// What start-up would warn of with this process's limit (raised as [`raise_limit`] would), for
/// `--check-config`, which changes nothing.
pub fn warning(max_connections: usize) -> Option<String> {
    let before = getrlimit(Resource::Nofile);
    let limit = raised(before).unwrap_or(before).current?;
    shortfall(limit, max_connections).map(|warning| format!("{warning} (the limit: {limit} files)"))
}

/// The warning for an open-file `limit` below what `max_connections` need; none when it holds.
fn shortfall(limit: u64, max_connections: usize) -> Option<String> {
    (limit < needed(max_connections)).then(|| {
        format!(
            "the open-file limit is below what --max-connections needs ({max_connections}, plus \
             {admin} for the admin listener and about {OTHER_FILES} for Kafka and files): when \
             it runs out, accepting fails on both listeners and /livez stops answering; raise the \
             limit (ulimit -n, systemd's LimitNOFILE=) or lower --max-connections",
            admin = crate::admin::MAX_CONNECTIONS,
        )
    })
}

/// The soft limit raised to the hard one, if that is higher and finite (the kernel refuses an
/// unlimited number of files).
fn raised(limit: Rlimit) -> Option<Rlimit> {
    let hard = limit.maximum?;
    limit
        .current
        .is_some_and(|soft| soft < hard)
        .then_some(Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        })
}

/// Descriptors the bridge may hold with `max_connections` webhook connections.
fn needed(max_connections: usize) -> u64 {
    (max_connections + crate::admin::MAX_CONNECTIONS) as u64 + OTHER_FILES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(current: Option<u64>, maximum: Option<u64>) -> Rlimit {
        Rlimit { current, maximum }
    }

    #[test]
    fn the_soft_limit_is_raised_to_a_higher_finite_hard_limit_only() {
        assert_eq!(
            raised(limit(Some(1024), Some(524_288))),
            Some(limit(Some(524_288), Some(524_288)))
        );
        assert_eq!(raised(limit(Some(4096), Some(4096))), None, "already there");
        assert_eq!(
            raised(limit(Some(1024), None)),
            None,
            "unlimited is refused"
        );
        assert_eq!(raised(limit(None, None)), None);
    }

    /// A limit of exactly what the connections need holds them: warning of it would send
    /// operators to raise a limit that is enough (found by mutation testing).
    #[test]
    fn a_limit_of_exactly_what_is_needed_is_no_shortfall_and_one_fewer_is() {
        assert_eq!(shortfall(needed(4096), 4096), None);
        let warning = shortfall(needed(4096) - 1, 4096).expect("one file short");
        assert!(
            warning.contains("--max-connections needs (4096"),
            "{warning}"
        );
    }

    #[test]
    fn the_default_connections_need_more_than_systemds_default_soft_limit() {
        assert_eq!(needed(4096), 4096 + 256 + OTHER_FILES);
        assert!(needed(4096) > 1024);
        assert!(needed(4096) < 524_288, "systemd's default hard limit");
    }
}
