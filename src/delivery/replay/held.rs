//! What a replay pass holds back: topics and partitions that cannot take records now, and
//! conversations behind a record left in the spool, carried from pass to pass until that record
//! is sent.

use std::collections::{HashMap, HashSet};

use crate::producer::spread::partition_of;
use crate::producer::ProduceError;
use crate::spool::{Spool, SpooledRecord};

/// A conversation: a topic and a key, whose records keep their order in the spool.
type Conversation = (String, String);

/// What replay has learnt. Topics that refused a record in this pass (for a reason an operator
/// can fix, or because Kafka could not take it now): the rest of the topic waits for the next
/// pass. Where replay can tell a keyed record's partition from its key (`spread`), a record
/// Kafka could not take now holds back only the rest of its partition, so one partition without
/// a leader does not hold back the topic's others. Conversations with a record left behind — in
/// this pass, or in an earlier one until that record is sent again — which later records of
/// theirs must not overtake: records of a conversation sent together may be delivered out of
/// order when the first fails alone, so the one left behind is sent alone in the next pass that
/// reaches it.
#[derive(Default)]
pub(super) struct Held {
    topics: HashSet<String>,
    /// Partitions that could not take a keyed record in this pass, by topic.
    partitions: HashMap<String, HashSet<i32>>,
    /// Topics whose records without a key wait for the next pass: one failed while the topic
    /// took others (librdkafka places them at random, so it is no partition's).
    keyless: HashSet<String>,
    /// Topics that took a record in this pass.
    took: HashSet<String>,
    /// Each topic's partition count, asked in this pass once a keyed record of it could not be
    /// delivered; `None` when the partition does not follow from the key, or a delivery to
    /// another partition than its key's showed that it did not.
    spread: HashMap<String, Option<u32>>,
    /// [`Held::holds_all_of`] as last found, by topic.
    all_held: HashMap<String, bool>,
    /// The first record of each conversation left behind in this pass.
    behind: HashMap<Conversation, u64>,
    /// The same, carried from earlier passes.
    before: HashMap<Conversation, u64>,
    /// The sequence numbers in `before`.
    heads: HashSet<u64>,
    /// The records of `before` this pass read, and whether it sent them.
    heads_read: HashMap<u64, bool>,
    /// The last sequence number this pass read.
    reached: Option<u64>,
}

impl Held {
    /// For the next pass: what this one left behind, and what it carried without sending (not
    /// reached, or held with its topic). A carried record this pass read past without finding
    /// has left the spool (set aside as unreadable) and is dropped.
    pub(super) fn next_pass(self) -> Held {
        let Held {
            before,
            behind,
            heads_read,
            reached,
            ..
        } = self;
        let mut carried: HashMap<Conversation, u64> = before
            .into_iter()
            .filter(|(_, first)| match heads_read.get(first) {
                Some(&sent) => !sent,
                None => reached.is_none_or(|r| *first > r),
            })
            .collect();
        carried.extend(behind);
        Held {
            heads: carried.values().copied().collect(),
            before: carried,
            ..Held::default()
        }
    }

    /// Whether `r` waits for a later pass; remembers what it read of the records carried.
    pub(super) fn holds(&mut self, seq: u64, r: &SpooledRecord) -> bool {
        self.reached = Some(seq);
        let held = self.topics.contains(&r.topic)
            || match &r.key {
                None => self.keyless.contains(&r.topic),
                Some(key) => {
                    let conversation = (r.topic.clone(), key.clone());
                    self.on_held_partition(&r.topic, key)
                        || self.behind.contains_key(&conversation)
                        || self
                            .before
                            .get(&conversation)
                            .is_some_and(|&first| seq > first)
                }
            };
        if self.heads.contains(&seq) {
            self.heads_read.insert(seq, !held);
        }
        held
    }

    /// The last sequence number this pass read.
    #[cfg(test)]
    pub(super) fn reached(&self) -> Option<u64> {
        self.reached
    }

    /// Whether the rest of `topic` waits for the next pass.
    #[cfg(test)]
    pub(super) fn holds_topic(&self, topic: &str) -> bool {
        self.topics.contains(topic)
    }

    /// Whether nothing of `topic` waiting in `spool` can be sent in the rest of this pass: the
    /// topic is held whole, or each of its records is on a held partition (by its key) or has no
    /// key while the topic's keyless records are held. Found again only after a record of the
    /// topic was delivered or left behind.
    pub(super) fn holds_all_of(&mut self, topic: &str, spool: &Spool) -> bool {
        if self.topics.contains(topic) {
            return true;
        }
        if let Some(&found) = self.all_held.get(topic) {
            return found;
        }
        let keyless = self.keyless.contains(topic);
        let found = (self.partitions.contains_key(topic) || keyless)
            && spool.all_held(topic, keyless, |key| self.on_held_partition(topic, key));
        self.all_held.insert(topic.to_owned(), found);
        found
    }

    /// Whether `topic`'s records with `key` go to a partition held in this pass.
    fn on_held_partition(&self, topic: &str, key: &str) -> bool {
        self.partitions.get(topic).is_some_and(|held| {
            self.partition(topic, key)
                .is_some_and(|p| held.contains(&p))
        })
    }

    /// The partition `topic`'s records with `key` go to, when replay can tell it.
    fn partition(&self, topic: &str, key: &str) -> Option<i32> {
        let partitions = self.spread.get(topic).copied().flatten()?;
        Some(partition_of(key.as_bytes(), partitions))
    }

    /// Whether `topic`'s partition count is yet to be asked in this pass.
    pub(super) fn needs_spread(&self, topic: &str) -> bool {
        !self.spread.contains_key(topic)
    }

    /// `topic`'s partition count ([`crate::producer::Sink::key_partitions`]).
    pub(super) fn set_spread(&mut self, topic: &str, partitions: Option<u32>) {
        self.spread.insert(topic.to_owned(), partitions);
    }

    /// `r` was delivered to `partition`. Another partition than its key's says the records'
    /// partitions do not follow from their keys here (another partitioner, or partitions added
    /// since replay asked): the topic's partitions are no longer told apart, and a partition
    /// held means the whole topic.
    pub(super) fn delivered(&mut self, r: &SpooledRecord, partition: i32) {
        self.all_held.remove(&r.topic);
        if !self.took.contains(&r.topic) {
            self.took.insert(r.topic.clone());
        }
        let Some(key) = &r.key else { return };
        let Some(expected) = self.partition(&r.topic, key) else {
            return;
        };
        if expected != partition {
            tracing::warn!(topic = %r.topic, partition, expected, "a replayed record went to another partition than its key's murmur2 hash; replay holds back this topic whole when one of its partitions fails");
            self.spread.insert(r.topic.clone(), None);
            if self.partitions.remove(&r.topic).is_some() {
                self.topics.insert(r.topic.clone());
            }
        }
    }

    /// `r`, without a key, failed again only for another record of its batch when sent again
    /// after the moves: its topic answered, so nothing of it is held.
    pub(super) fn answered_casualty(&mut self, r: &SpooledRecord) {
        self.all_held.remove(&r.topic);
    }

    pub(super) fn left_behind(&mut self, seq: u64, r: &SpooledRecord, error: &ProduceError) {
        if let Some(key) = &r.key {
            self.behind
                .entry((r.topic.clone(), key.clone()))
                .or_insert(seq);
        }
        let topic = r.topic.clone();
        self.all_held.remove(&topic);
        match error {
            // Failed only for another record of its batch and not sent again (behind an earlier
            // record of its conversation, or the moves were cut short): nothing says its topic or
            // partition cannot take records. A keyless one comes here only when it was not sent
            // again (the moves were cut short, or its topic is the dead-letter topic that just
            // failed a move), signs that Kafka cannot take records now: with no conversation to
            // hold, it holds its topic, below. One failed again at its re-send is not left behind
            // (see `answered_casualty`).
            e if e.is_batch_casualty() && r.key.is_some() => {}
            e if e.is_partition_failure() => {
                let partitions = self.spread.get(&topic).copied().flatten();
                match (&r.key, partitions) {
                    (Some(key), Some(count)) => {
                        let held = self.partitions.entry(topic.clone()).or_default();
                        held.insert(partition_of(key.as_bytes(), count));
                        if held.len() >= count as usize {
                            self.topics.insert(topic);
                        }
                    }
                    (None, _) if self.took.contains(&topic) => {
                        self.keyless.insert(topic);
                    }
                    _ => {
                        self.topics.insert(topic);
                    }
                }
            }
            // Whatever the partition: the topic's settings, the producer's queue, the producer
            // or the whole cluster.
            ProduceError::Refused(_)
            | ProduceError::QueueFull
            | ProduceError::Timeout
            | ProduceError::Unavailable(_) => {
                self.topics.insert(topic);
            }
            ProduceError::TooLarge | ProduceError::Rejected(_) => {}
        }
    }
}

/// Kafka could not take the record now (unavailable, timed out, queue full): not the record's
/// fault, nor a refusal of its topic.
pub(super) fn is_kafka_failure(error: &ProduceError) -> bool {
    matches!(
        error,
        ProduceError::Timeout | ProduceError::QueueFull | ProduceError::Unavailable(_)
    )
}

#[cfg(test)]
mod tests;
