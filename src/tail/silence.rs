//! Whether the brokers `tail` fetches from still answer, from librdkafka's statistics: a broker
//! that takes requests and never answers (a frozen host, a network dropping packets) fails no
//! fetch for a minute (`socket.timeout.ms`), so an idle timeout would take its silence for a
//! topic with no more records.
//!
//! A fetch waits at most `fetch.wait.max.ms` at the broker before it is answered, records or
//! not, so a leader that answers is never silent much longer than that; librdkafka's statistics
//! say, for each broker, how long since it last sent a byte (`rxidle`) and which partitions it
//! leads. Nothing is asked of the brokers: a question would queue behind each connection's
//! waiting fetch (an earlier check that asked for offsets failed healthy tails that way).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::statistics::Statistics;

/// How often librdkafka is asked for statistics while tail has an idle timeout.
pub(super) const STATS_INTERVAL_MS: &str = "500";

/// The leaders of the partitions tail reads, as the latest statistics saw them, and when.
#[derive(Default)]
pub(super) struct Silence {
    latest: Mutex<Option<(Instant, Vec<Leader>)>>,
}

struct Leader {
    /// librdkafka's name for it: `host:port/id`.
    name: String,
    silent: Duration,
}

/// What the idle timeout may conclude from the brokers' silence.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Every leader answered lately: the topics have no more records for now.
    Answering,
    /// A leader has been quiet longer than a fetch waits but not yet for good: wait and see.
    Unsure,
    /// A leader has answered nothing for this long.
    Silent(String, Duration),
}

impl Silence {
    pub(super) fn record(&self, stats: &Statistics, at: Instant) {
        let leaders = stats
            .brokers
            .values()
            // The bootstrap connections and the group's coordinator lead nothing tail reads;
            // a broker not connected fails its fetches, which tail hears of as errors.
            .filter(|b| b.state == "UP" && !b.toppars.is_empty())
            .map(|b| Leader {
                name: b.name.clone(),
                // -1 (in µs) until the connection's first answer: silent since it came up.
                silent: Duration::from_micros(
                    u64::try_from(if b.rxidle >= 0 { b.rxidle } else { b.stateage }).unwrap_or(0),
                ),
            })
            .collect();
        *self.lock() = Some((at, leaders));
    }

    /// The verdict at `now` for leaders that answer within `fetch_wait`: all answering when each
    /// was heard from in `fetch_wait` plus a second, counted to `now`; silent when the statistics
    /// themselves saw one quiet for `fetch_wait` plus `give_up` (the quietest), not counting their
    /// age, which late statistics would add to a leader that answers.
    pub(super) fn verdict(&self, now: Instant, fetch_wait: Duration, give_up: Duration) -> Verdict {
        let latest = self.lock();
        let Some((at, leaders)) = latest.as_ref() else {
            return Verdict::Unsure;
        };
        let since = now.saturating_duration_since(*at);
        let Some(quietest) = leaders.iter().max_by_key(|l| l.silent) else {
            // No leader connected: their fetches fail, and tail hears of that as errors.
            return Verdict::Answering;
        };
        if quietest.silent >= fetch_wait + give_up {
            Verdict::Silent(quietest.name.clone(), quietest.silent)
        } else if quietest.silent + since >= fetch_wait + Duration::from_secs(1) {
            Verdict::Unsure
        } else {
            Verdict::Answering
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Vec<Leader>)>> {
        self.latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(brokers: &[(&str, &str, i64, i64, usize)]) -> Statistics {
        let brokers: serde_json::Map<String, serde_json::Value> = brokers
            .iter()
            .map(|(name, state, rxidle, stateage, toppars)| {
                let toppars: serde_json::Map<_, _> = (0..*toppars)
                    .map(|p| {
                        (
                            format!("t-{p}"),
                            serde_json::json!({"topic": "t", "partition": p}),
                        )
                    })
                    .collect();
                let broker = serde_json::json!({
                    "name": name, "nodeid": 1, "nodename": name, "source": "learned",
                    "state": state, "stateage": stateage, "outbuf_cnt": 0, "outbuf_msg_cnt": 0,
                    "waitresp_cnt": 0, "waitresp_msg_cnt": 0, "tx": 0, "txbytes": 0,
                    "txerrs": 0, "txretries": 0, "txidle": 0, "req_timeouts": 0, "rx": 0,
                    "rxbytes": 0, "rxerrs": 0, "rxcorriderrs": 0, "rxpartial": 0, "rxidle": rxidle,
                    "zbuf_grow": 0, "buf_grow": 0, "wakeups": 0, "connects": 1,
                    "disconnects": 0, "req": {}, "toppars": toppars
                });
                (name.to_string(), broker)
            })
            .collect();
        let json = serde_json::json!({
            "name": "c", "client_id": "c", "type": "consumer", "ts": 0, "time": 0, "age": 0,
            "replyq": 0, "msg_cnt": 0, "msg_size": 0, "msg_max": 0, "msg_size_max": 0,
            "tx": 0, "tx_bytes": 0, "rx": 0, "rx_bytes": 0, "txmsgs": 0, "txmsg_bytes": 0,
            "rxmsgs": 0, "rxmsg_bytes": 0, "simple_cnt": 0, "metadata_cache_cnt": 0,
            "brokers": brokers, "topics": {}
        });
        serde_json::from_value(json).expect("statistics")
    }

    const WAIT: Duration = Duration::from_millis(500);
    const GIVE_UP: Duration = Duration::from_secs(5);

    #[test]
    fn leaders_heard_from_within_a_fetch_wait_are_answering_and_others_do_not_count() {
        let silence = Silence::default();
        let at = Instant::now();
        assert_eq!(
            silence.verdict(at, WAIT, GIVE_UP),
            Verdict::Unsure,
            "no stats yet"
        );
        silence.record(
            &stats(&[
                ("a:1/1", "UP", 400_000, 9_000_000, 2),
                ("b:1/2", "UP", 1_000, 9_000_000, 1),
                // Bootstrap and coordinator connections, quiet for long, lead nothing read.
                ("a:1/bootstrap", "UP", 60_000_000, 60_000_000, 0),
                ("c:1/3", "DOWN", -1, 60_000_000, 3),
            ]),
            at,
        );
        assert_eq!(silence.verdict(at, WAIT, GIVE_UP), Verdict::Answering);
        // Counted to now: statistics a second old are no news of the last second.
        let later = at + Duration::from_millis(1_100);
        assert_eq!(silence.verdict(later, WAIT, GIVE_UP), Verdict::Unsure);
    }

    #[test]
    fn a_leader_quiet_past_a_fetch_wait_is_waited_for_then_named_once_it_is_silent_for_good() {
        let silence = Silence::default();
        let at = Instant::now();
        silence.record(
            &stats(&[
                ("a:1/1", "UP", 100_000, 9_000_000, 1),
                ("b:1/2", "UP", 1_600_000, 9_000_000, 1),
            ]),
            at,
        );
        assert_eq!(silence.verdict(at, WAIT, GIVE_UP), Verdict::Unsure);
        // Late statistics are no silence of a leader's, only no news of it.
        let later = at + Duration::from_secs(60);
        assert_eq!(silence.verdict(later, WAIT, GIVE_UP), Verdict::Unsure);
        for (b, verdict) in [
            (5_499_999, Verdict::Unsure),
            (
                5_500_000,
                Verdict::Silent("b:1/2".into(), Duration::from_millis(5_500)),
            ),
        ] {
            silence.record(
                &stats(&[
                    ("a:1/1", "UP", 100_000, 9_000_000, 1),
                    ("b:1/2", "UP", b, 9_000_000, 1),
                ]),
                at,
            );
            assert_eq!(silence.verdict(at, WAIT, GIVE_UP), verdict, "{b}");
        }
    }

    #[test]
    fn a_leader_connected_but_never_heard_from_is_silent_since_it_came_up() {
        let silence = Silence::default();
        let at = Instant::now();
        silence.record(&stats(&[("a:1/1", "UP", -1, 7_000_000, 1)]), at);
        assert_eq!(
            silence.verdict(at, WAIT, GIVE_UP),
            Verdict::Silent("a:1/1".into(), Duration::from_secs(7))
        );
        silence.record(&stats(&[("a:1/1", "UP", -1, 200_000, 1)]), at);
        assert_eq!(silence.verdict(at, WAIT, GIVE_UP), Verdict::Answering);
    }
}
