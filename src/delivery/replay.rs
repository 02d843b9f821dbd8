//! Replay: the spool sent to Kafka in order, in passes over what it held when each began, so
//! records that cannot be delivered yet hold back only what would fail as they did (their
//! partition, topic or conversation), never the records of others behind them.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::producer::{Delivered, ProduceError, Sink};
use crate::spool::{Spool, SpoolError, SpooledRecord, Stored};

mod batch;
mod held;
mod send;
pub use batch::Batch;
use held::{is_kafka_failure, Held};
use send::{divert_refused, send_batch, Sent};

/// How one pass over the spool ended.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    /// Nothing was waiting.
    Empty,
    /// Every record sent was delivered.
    Clean,
    /// This many sends failed (or the spool could not delete what was delivered); the records
    /// stay spooled for the next pass, after a pause.
    Failed(u64),
}

/// Replays the spool to Kafka in order until `stop`, deleting records only once acknowledged:
/// by their topic, or — for a record its topic refuses for good — by the `deadletter` topic.
pub async fn replay<K: Sink>(
    batch: Batch,
    spool: Arc<Spool>,
    kafka: Arc<K>,
    deadletter: String,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut held = Held::default();
    loop {
        if *stop.borrow() {
            return;
        }
        if spool.failure().is_some() {
            // Nothing it sends could be deleted, so every pass would send the same records
            // again; the bridge is stopping to open the file anew.
            crate::admin::stopped(&mut stop).await;
            return;
        }
        let ended = pass(
            batch,
            &spool,
            &*kafka,
            &deadletter,
            &metrics,
            &mut held,
            &stop,
        )
        .await;
        held = std::mem::take(&mut held).next_pass();
        match ended {
            Pass::Empty => {
                tokio::select! {
                    () = spool.appended().notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = crate::admin::stopped(&mut stop) => return,
                }
            }
            Pass::Clean => backoff = Duration::from_millis(100),
            Pass::Failed(failed) => {
                metrics.spool.replay_failures.inc_by(failed);
                tracing::warn!(failed, retry_in = ?backoff, "replay left records in the spool; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = crate::admin::stopped(&mut stop) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One pass over the spool, a batch at a time. A pass stops early when Kafka itself seems down
/// (a batch failed whole, unavailable, timed out or queue full, while a second topic had failed
/// so in the pass), or when every topic it began with that still waits is held; one topic or
/// partition that cannot take records is only held. It also stops after the batch it is sending
/// when the bridge is stopping: cut off at the flush timeout in the middle of a batch, its
/// records Kafka took would stay in the spool, and be sent again by the next start.
async fn pass<K: Sink>(
    limits: Batch,
    spool: &Arc<Spool>,
    kafka: &K,
    deadletter: &str,
    metrics: &Metrics,
    held: &mut Held,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Pass {
    // The pass ends at the record that was newest when it began: under steady spooling, a pass
    // reading on to the records appended meanwhile would never end, and what it holds back (its
    // topics, its conversations) would never be tried again.
    let Some(Some(end)) = read(spool, |s| s.last_seq()).await else {
        return Pass::Empty;
    };
    // Every record up to `end` was counted under its topic before it was written.
    let topics = spool.topics();
    let mut next = 0;
    let (mut read_any, mut failed, mut delete_failed) = (false, 0u64, false);
    let mut kafka_failed_topics = HashSet::new();
    // The dead-letter topic failed a move, or one of its own records, for Kafka's sake in this
    // pass (see `divert_refused`).
    let mut deadletter_down = false;
    // Read but not sent yet: a paced batch sends only a second's worth of a read, and the rest
    // wait here rather than be read again.
    let mut unsent = VecDeque::new();
    while next <= end || !unsent.is_empty() {
        if unsent.is_empty() {
            let batch = read(spool, move |s| {
                s.from_seq(next..=end, limits.records, limits.bytes)
            })
            .await
            .unwrap_or_default();
            let Some((last, ..)) = batch.last() else {
                break;
            };
            next = last + 1;
            unsent = batch.into();
        }
        read_any = true;
        let mut taken = Vec::new();
        while taken.len() < limits.sends() {
            let Some(item) = unsent.pop_front() else {
                break;
            };
            if !held.holds(item.0, &item.1) {
                taken.push(item);
            }
        }
        let todo: Vec<_> = taken.iter().collect();
        let sent = todo.len();
        let began = tokio::time::Instant::now();
        let Sent {
            mut results,
            removed,
        } = send_batch(spool, kafka, &todo, metrics).await;
        let (diverted, extra_sends, resent) = divert_refused(
            kafka,
            &todo,
            &mut results,
            deadletter,
            &mut deadletter_down,
            stop,
        )
        .await;
        learn_partitions(kafka, held, &todo, &results).await;
        // `delivered` is what leaves the spool; `acknowledged` what its own topic took, and
        // `deadlettered` what the dead-letter topic took instead (counted once they are gone, or a
        // failed delete would count them again at the next pass).
        let mut delivered = Vec::new();
        let (mut acknowledged, mut deadlettered) = (0u64, 0u64);
        let (mut kafka_failures, mut casualties) = (0, 0);
        let outcomes = results.into_iter().zip(removed).zip(diverted).zip(resent);
        for ((seq, r, len), (((result, gone), diverted), resent)) in todo.into_iter().zip(outcomes)
        {
            let error = match result {
                Ok(_) if gone => continue,
                Ok(_) => {
                    acknowledged += 1;
                    delivered.push(Stored::of(*seq, r, *len));
                    continue;
                }
                Err(e) => e,
            };
            if let Some(diverted) = diverted {
                match diverted {
                    Ok(_) => {
                        tracing::error!(seq, topic = %r.topic, %error, %deadletter, "Kafka refuses a spooled record on its topic for good; moved it to the dead-letter topic");
                        deadlettered += 1;
                        delivered.push(Stored::of(*seq, r, *len));
                        continue;
                    }
                    Err(d) => {
                        tracing::error!(seq, topic = %r.topic, %error, %deadletter, deadletter_error = %d, "Kafka refuses a spooled record on its topic and on the dead-letter topic; it stays spooled");
                    }
                }
            }
            failed += 1;
            // A casualty of another's refusal was answered by its broker: no sign of Kafka
            // down, and a keyed one holds only its conversation, so counted here its topic,
            // never held, kept the outage check below from ever passing.
            if error.is_batch_casualty() {
                casualties += 1;
            } else if is_kafka_failure(&error) {
                kafka_failures += 1;
                kafka_failed_topics.insert(r.topic.clone());
                // The dead-letter topic failed one of its own records for Kafka's sake: as
                // down for the moves as when it fails a copy.
                deadletter_down |= r.topic == deadletter;
            }
            // A keyless casualty its topic answered again at the re-send (failed there for
            // another record's refusal once more) is no sign Kafka cannot take records now.
            if resent && r.key.is_none() && error.is_batch_casualty() {
                held.answered_casualty(r);
            } else {
                held.left_behind(*seq, r, &error);
            }
        }
        match send::remove(spool, delivered).await {
            Ok(()) => {
                metrics.spool.replayed.inc_by(acknowledged);
                metrics.spool.deadlettered.inc_by(deadlettered);
            }
            Err(e) => {
                delete_failed = true;
                tracing::error!(error = %e, "spool delete failed; records will be replayed again");
            }
        }
        // Between whole batches, so that a batch keeps the order and the outage checks below
        // as it would unpaced; the records sent again alone and the dead-letter moves are sends
        // too.
        if let Some(resume) = limits.next_after(began, sent + extra_sends) {
            let mut stop = stop.clone();
            tokio::select! {
                () = tokio::time::sleep_until(resume) => {}
                () = crate::admin::stopped(&mut stop) => {}
            }
        }
        if *stop.borrow() {
            break;
        }
        // Held whole: failures of one partition of each are no sign of Kafka down.
        // A casualty left behind (the moves cut short) says nothing either way: the rest of
        // the batch decides.
        if kafka_failures > 0
            && kafka_failures + casualties == sent
            && kafka_failed_topics.len() > 1
            && kafka_failed_topics
                .iter()
                .all(|t| held.holds_all_of(t, spool))
        {
            break;
        }
        // Nothing left in the pass could be sent: every topic it began with that still has
        // records is held. Without this, a spool of one topic Kafka cannot take would be read
        // to its end in every pass of an outage, competing with the webhooks spooled meanwhile.
        let waiting = spool.topics();
        if topics
            .iter()
            .all(|t| !waiting.contains(t) || held.holds_all_of(t, spool))
        {
            break;
        }
    }
    match (read_any, failed, delete_failed) {
        (false, ..) => Pass::Empty,
        (true, 0, false) => Pass::Clean,
        // A failed delete leaves delivered records behind: waiting keeps them from being sent
        // again in a tight loop.
        (true, n, _) => Pass::Failed(n),
    }
}

/// Tells `held` where the batch's records went: asks the partition count of each topic that
/// could not take a keyed record now (once a pass), and checks each delivery against it.
async fn learn_partitions<K: Sink>(
    kafka: &K,
    held: &mut Held,
    sent: &[&(u64, SpooledRecord, u64)],
    results: &[Result<Delivered, ProduceError>],
) {
    let mut ask: Vec<&str> = Vec::new();
    for ((_, r, _), result) in sent.iter().zip(results) {
        let topic = r.topic.as_str();
        let failed_now = matches!(result, Err(e) if e.is_partition_failure());
        if failed_now && r.key.is_some() && held.needs_spread(topic) && !ask.contains(&topic) {
            ask.push(topic);
        }
    }
    let counts = futures_util::future::join_all(ask.iter().map(|t| kafka.key_partitions(t))).await;
    for (topic, partitions) in ask.into_iter().zip(counts) {
        held.set_spread(topic, partitions);
    }
    for ((_, r, _), result) in sent.iter().zip(results) {
        if let Ok(Delivered::Kafka { partition, .. }) = result {
            held.delivered(r, *partition);
        }
    }
}

/// A blocking read of the spool, off the async workers; `None` (logged) when it failed.
async fn read<T: Send + 'static>(
    spool: &Arc<Spool>,
    f: impl FnOnce(&Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Option<T> {
    let spool = spool.clone();
    match tokio::task::spawn_blocking(move || f(&spool)).await {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "spool read failed");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "spool read task failed");
            None
        }
    }
}

#[cfg(test)]
mod tests;
