//! What the spool holds per conversation (topic and key) and per topic: a webhook whose
//! conversation has records waiting queues behind them, and replay stops a pass once every topic
//! waiting is held back.

use std::collections::{HashMap, HashSet};

/// Records waiting, by topic and key (a conversation: order is kept per partition, so a
/// customer's records on another topic need not wait behind these), and by topic.
#[derive(Debug, Default)]
pub(super) struct Counts {
    keys: HashMap<String, HashMap<String, usize>>,
    topics: HashMap<String, usize>,
    /// Records without a key, by topic.
    keyless: HashMap<String, usize>,
}

impl Counts {
    pub(super) fn add(&mut self, topic: &str, key: Option<&str>) {
        add_one(&mut self.topics, topic);
        match key {
            Some(k) => match self.keys.get_mut(topic) {
                Some(keys) => add_one(keys, k),
                None => {
                    self.keys
                        .insert(topic.to_owned(), HashMap::from([(k.to_owned(), 1)]));
                }
            },
            None => add_one(&mut self.keyless, topic),
        }
    }

    /// A record left the spool (or never entered it). An entry of this process's that could not
    /// be decoded when replay read it (corrupted on disk) has no topic or key to give back: both
    /// stay counted until the next start (which counts only what it can decode), so webhooks of
    /// that key keep going to the spool, and replay reads to the end of its passes.
    pub(super) fn remove(&mut self, topic: Option<&str>, key: Option<&str>) {
        if let Some(t) = topic {
            take_one(&mut self.topics, t);
            match (key, self.keys.get_mut(t)) {
                (Some(k), Some(keys)) => {
                    take_one(keys, k);
                    if keys.is_empty() {
                        self.keys.remove(t);
                    }
                }
                (Some(_), None) => {}
                (None, _) => take_one(&mut self.keyless, t),
            }
        }
    }

    pub(super) fn holds(&self, topic: &str, key: &str) -> bool {
        self.keys
            .get(topic)
            .is_some_and(|keys| keys.contains_key(key))
    }

    /// Whether any topic holds records of `key`.
    #[cfg(test)]
    pub(super) fn holds_key(&self, key: &str) -> bool {
        self.keys.values().any(|keys| keys.contains_key(key))
    }

    pub(super) fn topics(&self) -> HashSet<String> {
        self.topics.keys().cloned().collect()
    }

    /// Whether every record of `topic` waiting is one that `held_key` holds by its key, or has
    /// no key while `keyless_held`. Stops at the first key not held.
    pub(super) fn all_held(
        &self,
        topic: &str,
        keyless_held: bool,
        mut held_key: impl FnMut(&str) -> bool,
    ) -> bool {
        (keyless_held || !self.keyless.contains_key(topic))
            && self
                .keys
                .get(topic)
                .is_none_or(|keys| keys.keys().all(|k| held_key(k)))
    }
}

fn add_one(counts: &mut HashMap<String, usize>, name: &str) {
    match counts.get_mut(name) {
        Some(n) => *n += 1,
        None => {
            counts.insert(name.to_owned(), 1);
        }
    }
}

fn take_one(counts: &mut HashMap<String, usize>, name: &str) {
    if let Some(n) = counts.get_mut(name) {
        *n -= 1;
        if *n == 0 {
            counts.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_and_a_key_are_counted_until_their_last_record_leaves() {
        let mut counts = Counts::default();
        counts.add("in", Some("k"));
        counts.add("status", Some("k"));
        counts.add("status", None);
        counts.remove(Some("status"), Some("k"));
        assert!(counts.holds_key("k"));
        assert!(counts.holds("in", "k"));
        assert!(
            !counts.holds("status", "k"),
            "a conversation is a topic's key"
        );
        assert_eq!(
            counts.topics(),
            names(&["in", "status"]),
            "status still waits"
        );
        counts.remove(Some("status"), None);
        assert_eq!(counts.topics(), names(&["in"]));
        counts.remove(Some("in"), Some("k"));
        assert!(!counts.holds_key("k"));
        assert_eq!(counts.topics(), names(&[]), "nothing waits");
        // More removals than additions never underflow.
        counts.remove(Some("in"), Some("k"));
        assert_eq!(counts.topics(), names(&[]));
    }

    #[test]
    fn a_topic_is_all_held_when_each_waiting_key_is_and_its_keyless_records_are() {
        let mut counts = Counts::default();
        counts.add("t", Some("a"));
        counts.add("t", Some("b"));
        counts.add("t", None);
        assert!(!counts.all_held("t", true, |k| k == "a"));
        assert!(!counts.all_held("t", false, |_| true), "its keyless record");
        assert!(counts.all_held("t", true, |_| true));
        counts.remove(Some("t"), Some("b"));
        counts.remove(Some("t"), None);
        assert!(counts.all_held("t", false, |k| k == "a"));
        assert!(counts.all_held("other", false, |_| false), "nothing waits");
    }

    fn names(topics: &[&str]) -> HashSet<String> {
        topics.iter().map(|t| t.to_string()).collect()
    }
}
