//! What a replay pass holds back: topics that cannot take records now, and conversations
//! behind a record left in the spool, carried from pass to pass until that record is sent.

use std::collections::{HashMap, HashSet};

use crate::producer::ProduceError;
use crate::spool::SpooledRecord;

/// A conversation: a topic and a key, whose records keep their order in the spool.
type Conversation = (String, String);

/// What replay has learnt. Topics that refused a record in this pass (for a reason an operator
/// can fix, or because a partition of theirs is unavailable): the rest of the topic waits for the
/// next pass. Conversations with a record left behind — in this pass, or in an earlier one until
/// that record is sent again — which later records of theirs must not overtake: records of a
/// conversation sent together may be delivered out of order when the first fails alone, so the
/// one left behind is sent alone in the next pass that reaches it.
#[derive(Default)]
pub(super) struct Held {
    topics: HashSet<String>,
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
            || r.key.as_ref().is_some_and(|key| {
                let conversation = (r.topic.clone(), key.clone());
                self.behind.contains_key(&conversation)
                    || self
                        .before
                        .get(&conversation)
                        .is_some_and(|&first| seq > first)
            });
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
    pub(super) fn holds_topic(&self, topic: &str) -> bool {
        self.topics.contains(topic)
    }

    pub(super) fn left_behind(&mut self, seq: u64, r: &SpooledRecord, error: &ProduceError) {
        if let Some(key) = &r.key {
            self.behind
                .entry((r.topic.clone(), key.clone()))
                .or_insert(seq);
        }
        let refused = matches!(error, ProduceError::Refused(_));
        if refused || is_kafka_failure(error) {
            self.topics.insert(r.topic.clone());
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
