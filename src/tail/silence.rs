//! Whether the partitions `tail` reads are being answered, from librdkafka's statistics: a broker
//! that takes requests and never answers (a frozen host, a network dropping packets) fails no
//! fetch for a minute (`socket.timeout.ms`), and one down or a partition without a leader fails
//! none at all, so an idle timeout would take their silence for a topic with no more records.
//!
//! A fetch waits at most `fetch.wait.max.ms` at the broker before it is answered, records or
//! not, so a partition's broker that answers is never silent much longer than that; librdkafka's
//! statistics say, for each partition tail reads, which broker it is fetched from, and for each
//! broker its state and how long since it last sent a byte (`rxidle`). Nothing is asked of the
//! brokers: a question would queue behind each connection's waiting fetch (an earlier check
//! that asked for offsets failed healthy tails that way).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::statistics::Statistics;

/// How often librdkafka is asked for statistics while tail has an idle timeout.
pub(super) const STATS_INTERVAL_MS: &str = "500";

/// What the statistics said of the partitions tail reads, judged against how long a fetch waits.
pub(super) struct Silence {
    /// A broker that answers is heard from within this (`fetch.wait.max.ms` and a second).
    answering: Duration,
    /// A partition not answered for this long (`fetch.wait.max.ms` and the idle timeout or 5 s)
    /// is not waited for.
    give_up: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Since when each partition (by topic and number) has been fetched from its broker (-1:
    /// none), as the statistics saw it: a broker asked nothing before that was silent for no
    /// fault of its own (a leader moved back to a broker tail had not fetched from for a while).
    since: HashMap<(String, i32), (i32, Instant)>,
    /// The latest statistics, when they came.
    latest: Option<(Instant, Judged)>,
    /// How many statistics in a row found a partition silent past `give_up`: one alone may have
    /// been taken before the broker's thread read what came while tail itself was stopped.
    silent_in_a_row: u32,
}

#[derive(Default)]
struct Judged {
    /// Whether every partition's broker is connected and was heard from within `answering`.
    answering_within: Option<Duration>,
    /// The partition longest without an answer: what it waits on, and for how long.
    quietest: Option<(String, Duration)>,
}

/// What the idle timeout may conclude.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Every partition's broker answered lately: the topics have no more records for now.
    Answering,
    /// Not known yet: wait and see.
    Unsure,
    /// A partition has not been answered for this long, waiting on what the text says.
    Silent(String, Duration),
}

impl Silence {
    pub(super) fn new(fetch_wait: Duration, idle_timeout: Duration) -> Silence {
        Silence {
            answering: fetch_wait + Duration::from_secs(1),
            give_up: fetch_wait + idle_timeout.max(Duration::from_secs(5)),
            state: Mutex::new(State::default()),
        }
    }

    pub(super) fn record(&self, stats: &Statistics, at: Instant) {
        let mut state = self.lock();
        let mut judged = Judged {
            answering_within: Some(Duration::ZERO),
            quietest: None,
        };
        let mut seen = HashMap::new();
        let partitions = stats.topics.iter().flat_map(|(topic, t)| {
            let assigned = t
                .partitions
                .values()
                .filter(|p| p.partition >= 0 && p.desired);
            assigned.map(move |p| (topic, p))
        });
        for (topic, partition) in partitions {
            let key = (topic.clone(), partition.partition);
            let (_, since) = *state
                .since
                .get(&key)
                .filter(|(broker, _)| *broker == partition.broker)
                .unwrap_or(&(partition.broker, at));
            seen.insert(key, (partition.broker, since));
            let held = at.saturating_duration_since(since);
            let broker = (partition.broker >= 0)
                .then(|| {
                    stats
                        .brokers
                        .values()
                        .find(|b| b.nodeid == partition.broker)
                })
                .flatten();
            let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
            let (silent, heard, what) = match broker {
                None => (
                    held,
                    None,
                    format!("partition {topic}/{} has no leader", partition.partition),
                ),
                Some(b) if b.state != "UP" => (
                    held.min(micros(b.stateage)),
                    None,
                    format!("broker {} is not connected ({})", b.name, b.state),
                ),
                Some(b) => {
                    // -1 until the connection's first answer: not heard since it came up.
                    let heard = if b.rxidle >= 0 { b.rxidle } else { b.stateage };
                    let heard = micros(heard);
                    (
                        held.min(heard),
                        (b.rxidle >= 0).then_some(heard),
                        format!("broker {} has answered nothing", b.name),
                    )
                }
            };
            judged.answering_within = match (judged.answering_within, heard) {
                (Some(all), Some(this)) => Some(all.max(this)),
                _ => None,
            };
            if judged.quietest.as_ref().is_none_or(|(_, q)| silent > *q) {
                judged.quietest = Some((what, silent));
            }
        }
        state.since = seen;
        let silent = judged
            .quietest
            .as_ref()
            .is_some_and(|(_, q)| *q >= self.give_up);
        state.silent_in_a_row = if silent { state.silent_in_a_row + 1 } else { 0 };
        state.latest = Some((at, judged));
    }

    /// The verdict at `now`: answering when every partition's broker was heard from within a
    /// fetch's wait and a second, counted to `now`; silent when the last two statistics found a
    /// partition unanswered past `give_up` (the quietest), not counting their age, which late
    /// statistics would add to a broker that answers.
    pub(super) fn verdict(&self, now: Instant) -> Verdict {
        let state = self.lock();
        let Some((at, judged)) = state.latest.as_ref() else {
            return Verdict::Unsure;
        };
        if state.silent_in_a_row >= 2 {
            if let Some((what, silent)) = &judged.quietest {
                return Verdict::Silent(what.clone(), *silent);
            }
        }
        let since = now.saturating_duration_since(*at);
        match judged.answering_within {
            Some(heard) if heard + since < self.answering => Verdict::Answering,
            _ => Verdict::Unsure,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
