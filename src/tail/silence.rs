//! Whether the partitions `tail` reads are being answered and read, from librdkafka's
//! statistics: a broker that takes requests and never answers (a frozen host, a network dropping
//! packets) fails no fetch for a minute (`socket.timeout.ms`), one down, a partition without a
//! leader, or a broker answering every fetch with an error librdkafka retries without telling
//! fails none at all, so an idle timeout would take any of them for a topic with no more records.
//!
//! A fetch waits at most `fetch.wait.max.ms` at the broker before it is answered, records or
//! not, so a partition's broker that answers is never silent much longer than that; librdkafka's
//! statistics say, for each partition tail reads, which broker it is fetched from, its fetch state
//! and how far it is fetched, and for each broker its state and how long since it last sent a
//! byte (`rxidle`). Nothing is asked of the brokers: a question would queue behind each
//! connection's waiting fetch (an earlier check that asked for offsets failed healthy tails).

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
    /// A partition not answered, or not fetched up to its end, for this long
    /// (`fetch.wait.max.ms` and the idle timeout or 5 s) is not waited for.
    give_up: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Since when each partition (by topic and number) has been fetched from its broker (-1:
    /// none), as the statistics saw it: a broker asked nothing before that was silent for no
    /// fault of its own (a leader moved back to a broker tail had not fetched from for a while).
    since: HashMap<(String, i32), (i32, Instant)>,
    /// When each partition was last seen fetched up to its end (or first seen).
    caught_up: HashMap<(String, i32), Instant>,
    /// When each broker (by node id) was last heard from: kept across its reconnections, whose
    /// states restart their ages (a broker that accepts connections and answers none cycles
    /// through them every ten seconds or so).
    heard: HashMap<i32, Instant>,
    /// The latest statistics, when they came.
    latest: Option<(Instant, Judged)>,
    /// Whether librdkafka's statistics came but could not be read.
    unreadable: bool,
    /// How many statistics in a row found a partition given up on: one alone may have been
    /// taken before the broker's thread read what came while tail itself was stopped.
    silent_in_a_row: u32,
}

#[derive(Default)]
struct Judged {
    /// Whether every partition is fetched up to its end from a broker connected and heard from,
    /// and how long ago the least recently heard of those brokers was.
    answering_within: Option<Duration>,
    /// The partition longest unanswered or behind: why, and for how long.
    quietest: Option<(String, Duration)>,
}

/// What the idle timeout may conclude.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Every partition's broker answered lately and it was fetched to its end: the topics have
    /// no more records for now.
    Answering,
    /// Not known yet: wait and see.
    Unsure,
    /// A partition has not been answered, or fetched to its end, for this long: the text says.
    Silent(String, Duration),
    /// The statistics came, but could not be read: nothing can be judged.
    Unreadable,
}

impl Silence {
    pub(super) fn new(fetch_wait: Duration, idle_timeout: Duration) -> Silence {
        Silence {
            answering: fetch_wait + Duration::from_secs(1),
            give_up: fetch_wait + idle_timeout.max(Duration::from_secs(5)),
            state: Mutex::new(State::default()),
        }
    }

    pub(super) fn unreadable(&self) {
        self.lock().unreadable = true;
    }

    pub(super) fn record(&self, stats: &Statistics, at: Instant) {
        let mut state = self.lock();
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        for b in stats.brokers.values() {
            if b.state == "UP" && b.rxidle >= 0 && b.nodeid >= 0 {
                let heard = at.checked_sub(micros(b.rxidle)).unwrap_or(at);
                state.heard.insert(b.nodeid, heard);
            }
        }
        let mut judged = Judged {
            answering_within: Some(Duration::ZERO),
            quietest: None,
        };
        let (mut since, mut caught_up) = (HashMap::new(), HashMap::new());
        let partitions = stats.topics.iter().flat_map(|(topic, t)| {
            let assigned = t
                .partitions
                .values()
                .filter(|p| p.partition >= 0 && p.desired);
            assigned.map(move |p| (topic, p))
        });
        for (topic, partition) in partitions {
            let key = (topic.clone(), partition.partition);
            let (_, taken) = *state
                .since
                .get(&key)
                .filter(|(broker, _)| *broker == partition.broker)
                .unwrap_or(&(partition.broker, at));
            // Fetched up to the last stable offset: to the end a consumer may read (the high
            // watermark, but for open transactions with read_committed, librdkafka's default).
            let at_end = partition.fetch_state == "active"
                && partition.ls_offset >= 0
                && partition.next_offset >= partition.ls_offset;
            let last_at_end = if at_end {
                at
            } else {
                *state.caught_up.get(&key).unwrap_or(&at)
            };
            let broker = (partition.broker >= 0)
                .then(|| {
                    stats
                        .brokers
                        .values()
                        .find(|b| b.nodeid == partition.broker)
                })
                .flatten();
            let heard = state.heard.get(&partition.broker).copied();
            let unanswered = at.saturating_duration_since(heard.map_or(taken, |h| h.max(taken)));
            let who = match broker {
                None => format!("partition {topic}/{} has no leader", partition.partition),
                Some(b) if b.state != "UP" => {
                    format!("broker {} is not connected ({})", b.name, b.state)
                }
                Some(b) => format!("broker {} has answered nothing", b.name),
            };
            let behind = at.saturating_duration_since(last_at_end);
            let (why, silent) = if unanswered >= behind || unanswered >= self.give_up {
                (who, unanswered)
            } else {
                let why = format!(
                    "partition {topic}/{} has not been fetched to its end (fetch state {})",
                    partition.partition, partition.fetch_state
                );
                (why, behind)
            };
            let up_and_heard = broker
                .filter(|b| b.state == "UP" && b.rxidle >= 0 && at_end)
                .map(|b| micros(b.rxidle));
            judged.answering_within = match (judged.answering_within, up_and_heard) {
                (Some(all), Some(this)) => Some(all.max(this)),
                _ => None,
            };
            if judged.quietest.as_ref().is_none_or(|(_, q)| silent > *q) {
                judged.quietest = Some((why, silent));
            }
            since.insert(key.clone(), (partition.broker, taken));
            caught_up.insert(key, last_at_end);
        }
        state.since = since;
        state.caught_up = caught_up;
        let silent = judged
            .quietest
            .as_ref()
            .is_some_and(|(_, q)| *q >= self.give_up);
        state.silent_in_a_row = if silent { state.silent_in_a_row + 1 } else { 0 };
        state.latest = Some((at, judged));
    }

    /// The verdict at `now`: answering when every partition is fetched to its end and its broker
    /// was heard from within a fetch's wait and a second, counted to `now`; silent when the last
    /// two statistics found a partition unanswered or behind past `give_up` (the quietest), not
    /// counting their age, which late statistics would add to a broker that answers.
    pub(super) fn verdict(&self, now: Instant) -> Verdict {
        let state = self.lock();
        let Some((at, judged)) = state.latest.as_ref() else {
            return if state.unreadable {
                Verdict::Unreadable
            } else {
                Verdict::Unsure
            };
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
