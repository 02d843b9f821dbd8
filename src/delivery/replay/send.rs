//! What one replay batch sends: its records together and in spool order, the delivered ones
//! removed from the spool while others still wait, and the dead-letter copies of refused ones.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::held::is_kafka_failure;
use crate::delivery::REPLAY_TIMEOUT;
use crate::metrics::Metrics;
use crate::producer::{Delivered, ProduceError, Sink};
use crate::record::{
    Record, RecordHeaders, HEADER_BODY_SHA256, HEADER_CONTENT_TYPE, HEADER_DEADLETTER_REASON,
    HEADER_DEADLETTER_TOPIC, HEADER_RECEIVED_AT, HEADER_REQUEST_ID,
};
use crate::spool::{Spool, SpooledRecord, Stored};

/// How often records delivered while others of their batch still wait leave the spool.
const REMOVE_EVERY: Duration = Duration::from_secs(1);

/// A batch's outcome, in the order its records were given.
pub(super) struct Sent {
    pub(super) results: Vec<Result<Delivered, ProduceError>>,
    /// Delivered and already out of the spool (and counted as replayed); the others delivered
    /// are left for the batch's own removal, which also tries again any that failed here.
    pub(super) removed: Vec<bool>,
}

/// Sends `todo` together, so librdkafka batches them, enqueued in spool order, so each partition
/// receives them in order (a future's first poll hands its record to librdkafka, and the first
/// polls follow the order they were pushed in). A batch lasts as long as its slowest record —
/// up to replay's 30 s timeout for one on a partition without a leader — so what Kafka took
/// meanwhile leaves the spool every second rather than at the end: otherwise `spool_records`
/// would count it as waiting, its conversations would stay held, and a shutdown that cuts the
/// batch off at `--flush-timeout` would leave it to be sent again. (A crash may still send it
/// again: deletes are not fsynced.)
pub(super) async fn send_batch<K: Sink>(
    spool: &Arc<Spool>,
    kafka: &K,
    todo: &[&(u64, SpooledRecord, u64)],
    metrics: &Metrics,
) -> Sent {
    let deadline = Instant::now() + REPLAY_TIMEOUT;
    let mut pending: FuturesUnordered<_> = todo
        .iter()
        .enumerate()
        .map(|(i, (_, r, _))| async move { (i, replay_one(kafka, r, deadline).await) })
        .collect();
    let mut results: Vec<Option<Result<Delivered, ProduceError>>> = Vec::new();
    results.resize_with(todo.len(), || None);
    let mut removed = vec![false; todo.len()];
    let mut taken = Vec::new();
    let mut tick = tokio::time::interval_at(Instant::now() + REMOVE_EVERY, REMOVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = pending.next() => {
                let Some((i, result)) = next else { break };
                if result.is_ok() {
                    taken.push(i);
                }
                results[i] = Some(result);
            }
            _ = tick.tick(), if !taken.is_empty() => {
                let stored = taken
                    .iter()
                    .map(|&i| {
                        let (seq, r, len) = todo[i];
                        Stored::of(*seq, r, *len)
                    })
                    .collect();
                match remove(spool, stored).await {
                    Ok(()) => {
                        metrics.spool.replayed.inc_by(taken.len() as u64);
                        for i in taken.drain(..) {
                            removed[i] = true;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "spool delete failed; tried again when the batch ends");
                        taken.clear();
                    }
                }
            }
        }
    }
    let results = results
        .into_iter()
        .map(|r| r.unwrap_or(Err(ProduceError::Timeout)))
        .collect();
    Sent { results, removed }
}

/// Moves the records their topic refused for good (invalid, too large) to the dead-letter
/// topic; `None` for the others. It was answered 200: it leaves the spool only for a topic that
/// holds it; a refusal an operator can fix (authorization, a missing topic) is retried, not moved.
///
/// A broker refuses a whole batch for one record it finds invalid or too large (KIP-467), and
/// librdkafka fails every record of that batch: the refused one with its error (each with
/// `InvalidRecord` when several are refused), the others with the batch's error or
/// `InvalidDifferentRecord`. A refusal met in a batch says nothing of the record itself. So each
/// refused record is first sent again on its own, and only one its topic refuses alone is moved
/// (its `results` entry becomes that second answer). One at a time: nothing else of replay's
/// producer is in flight then, so each is a batch of its own, and so is each dead-letter copy (a
/// batch of them refused whole would keep them all spooled). That costs two round trips per
/// refused record, so the loop is bounded: by one deadline for them all to be handed over (up to
/// 2048 refused records, each with a deadline of its own, held the round for 30 s a record once
/// Kafka went quiet; each handed over is then waited for a whole replay timeout, as librdkafka
/// may deliver it until then; lengthened once by what a failed move waited, the dead-letter
/// topic's time, not theirs), by the first that Kafka itself fails (late, away), and by `stop`,
/// at once (what went alone so far then leaves the spool with the batch, rather than be sent again
/// by the next start). The records not tried keep their batch's refusal and stay spooled for the
/// next pass. Unless it was cut short by the deadline, `stop` or a try alone Kafka failed (a
/// failed move ends the moves only), the records failed only for another's refusal go again
/// after ([`resend_casualties`]).
///
/// The dead-letter topic's own records (invalid bodies spooled when Kafka was late) have no
/// further topic to move to; but one refused there for its time alone is sent again with the
/// current time, as a record of another topic refused for its time is moved with it, rather than
/// stay spooled for good.
///
/// `deadletter_down` says the dead-letter topic failed a move (or, as `pass` tells, one of its
/// own records) for Kafka's sake (late, away) in an earlier batch of this pass; set here when a
/// move fails so. The moves then end at the first record that would need that topic (refused
/// alone too, or one of its own), in the batch of that failure too: otherwise each later refused
/// record waited a whole replay timeout more on the topic that just failed. A record refused only
/// with its batch (a batch too large together) is still tried alone: its own topic takes it, and
/// skipped it waited on the dead-letter topic it never needed. The next pass tries that topic
/// again.
///
/// Returns the dead-letter moves, the sends made, and which records were sent again as
/// casualties (their topic answered them after the moves).
pub(super) async fn divert_refused<K: Sink>(
    kafka: &K,
    todo: &[&(u64, SpooledRecord, u64)],
    results: &mut [Result<Delivered, ProduceError>],
    deadletter: &str,
    deadletter_down: &mut bool,
    stop: &watch::Receiver<bool>,
) -> (
    Vec<Option<Result<Delivered, ProduceError>>>,
    usize,
    Vec<bool>,
) {
    // After the whole batch: under the batch's deadline, one record of the batch timing out left
    // them no time at all, and a refused record then waited on an unrelated outage, blamed on
    // the dead-letter topic.
    let mut deadline = Instant::now() + REPLAY_TIMEOUT;
    let mut stop = stop.clone();
    let mut diverted = vec![None; todo.len()];
    // The casualties sent again after the moves (their topic answered them there).
    let mut resent = vec![false; todo.len()];
    // Sends made here: each record sent again alone, each dead-letter copy.
    let mut sends = 0;
    let mut cut_off = false;
    // The dead-letter topic, once a copy or a re-send with a new time to it failed for Kafka's
    // sake: its own casualties are not sent again to wait on it a whole replay timeout more.
    let mut down: Option<&str> = deadletter_down.then_some(deadletter);
    // Conversations with a record not delivered yet (refused, alone too, and not moved; failed
    // for Kafka's sake; or failed for another's refusal, sent again only after this loop): a later
    // record of theirs sent alone would go ahead of it. It keeps its batch's refusal and is left
    // behind with it, to be sent alone in a later pass.
    let mut stays: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    for (i, ((_, r, _), result)) in todo.iter().zip(results.iter_mut()).enumerate() {
        let refused = matches!(result, Err(e) if e.is_record_fault());
        let own = r.topic == deadletter;
        let conversation = r.key.as_deref().map(|key| (r.topic.as_str(), key));
        // Not only a refusal for its time: with more than one record of a batch refused,
        // librdkafka reports each as `InvalidRecord` (KIP-467 record errors), and after a long
        // outage a batch of the dead-letter topic's own records is all old. Alone, it is told.
        if !refused {
            if result.is_err() {
                stays.extend(conversation);
            }
            continue;
        }
        if conversation.is_some_and(|c| stays.contains(&c)) {
            continue;
        }
        // The dead-letter topic is down: its own record would wait on it even alone.
        if own && down.is_some() {
            break;
        }
        if *stop.borrow() || Instant::now() >= deadline {
            cut_off = true;
            break;
        }
        // The shared deadline bounds when a record is handed over; once handed over it is waited
        // for as long as librdkafka may still deliver it (`message.timeout.ms`, replay's timeout,
        // counted from the hand-over): given up on sooner, a record Kafka then takes stays
        // spooled and goes twice.
        let alone = tokio::select! {
            alone = replay_one(kafka, r, Instant::now() + REPLAY_TIMEOUT) => alone,
            () = crate::admin::stopped(&mut stop) => {
                cut_off = true;
                break;
            }
        };
        sends += 1;
        *result = alone;
        // The copies, and the re-sends with a new time, are handed over within the shared
        // deadline too: handed over after it, a round lasted up to three replay timeouts here.
        let follows = match result {
            Err(error) if own => for_its_time(error),
            Err(error) => error.is_record_fault(),
            Ok(_) => false,
        };
        // Refused alone too, it needs the dead-letter topic, which failed a move for Kafka's
        // sake earlier in the pass: the moves end here, as at that failure. One its topic took
        // alone (refused before only with its batch: too large together, say) needed none.
        if follows && down.is_some() {
            break;
        }
        if follows && (*stop.borrow() || Instant::now() >= deadline) {
            cut_off = true;
            break;
        }
        let moving = Instant::now();
        match result {
            Err(error) if own && for_its_time(error) => {
                sends += 1;
                let wait = Instant::now() + REPLAY_TIMEOUT;
                *result = replay_at(kafka, r, now_ms(r.timestamp_ms), wait).await;
            }
            Err(error) if !own && error.is_record_fault() => {
                sends += 1;
                let wait = Instant::now() + REPLAY_TIMEOUT;
                diverted[i] = Some(divert(kafka, r, deadletter, error, wait).await);
            }
            Err(error) if is_kafka_failure(error) => {
                cut_off = true;
                break;
            }
            _ => {}
        }
        // A copy, or a re-send with a new time, that Kafka itself failed (late, away) marks the
        // dead-letter topic down: the moves end at the next record that needs it, which would
        // only wait on it again. The records after it are still tried alone, as in a later batch
        // of the pass: ended here, those their own topic takes alone met this record first in
        // the same batch at every pass, stranded for as long as the dead-letter topic was down.
        // Nor does it end the casualties' re-send: their own topic just answered, and left failed
        // they would meet the refused record in every later batch (a keyless one holding its
        // whole topic back).
        let moved_failed = match (&*result, &diverted[i]) {
            (_, Some(Err(error))) => is_kafka_failure(error),
            (Err(error), None) if own => is_kafka_failure(error),
            _ => false,
        };
        if moved_failed {
            down = Some(deadletter);
            // What the failed move waited (up to a whole replay timeout, late) was the dead-letter
            // topic's, not the tries alone's: taken from their shared deadline, it cut off the
            // next refused record as if Kafka were slow, which left the casualties failed and
            // the records their own topic takes alone untried, at every pass. At most once: no
            // move follows it.
            deadline += moving.elapsed();
        }
        if result.is_err() && !matches!(diverted[i], Some(Ok(_))) {
            stays.extend(conversation);
        }
    }
    if !cut_off && !*stop.borrow() {
        // A whole replay timeout of their own, as the batch had: with what the moves left of
        // theirs, librdkafka (whose `message.timeout.ms` is replay's timeout, counted from the
        // hand-over) went on to deliver records replay had stopped waiting for, which then stayed
        // spooled and were sent again.
        let deadline = Instant::now() + REPLAY_TIMEOUT;
        resent = resend_casualties(kafka, todo, results, &diverted, down, deadline).await;
        sends += resent.iter().filter(|&&again| again).count();
    }
    *deadletter_down = down.is_some();
    (diverted, sends, resent)
}

/// Sends again, together and in spool order, the records of a batch that failed only for
/// another record in it (`InvalidDifferentRecord`: a broker that names the records it refuses
/// fails the rest of their batch so), once those were tried alone. Nothing was wrong with them:
/// left failed, they counted as Kafka unavailable, held their topic back for the rest of the pass
/// and waited out a retry pause, counted in `spool_replay_failures_total`. Within `deadline`, a
/// whole replay timeout of their own. Not cut off at `stop`, as the batch itself is not: Kafka may
/// take what was sent, which must then leave the spool rather than be sent again by the next start.
///
/// Except those behind an earlier record of their conversation that stays spooled (refused, and
/// not moved to the dead-letter topic; or failed otherwise): sent, they would reach Kafka ahead
/// of it. They stay failed, and are left behind with it.
async fn resend_casualties<K: Sink>(
    kafka: &K,
    todo: &[&(u64, SpooledRecord, u64)],
    results: &mut [Result<Delivered, ProduceError>],
    diverted: &[Option<Result<Delivered, ProduceError>>],
    down: Option<&str>,
    deadline: Instant,
) -> Vec<bool> {
    let mut stays: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    let mut casualties = Vec::new();
    for (i, ((_, r, _), result)) in todo.iter().zip(results.iter()).enumerate() {
        let Err(error) = result else { continue };
        let conversation = r.key.as_deref().map(|key| (r.topic.as_str(), key));
        let behind = conversation.is_some_and(|c| stays.contains(&c));
        if error.is_batch_casualty() && !behind && down != Some(r.topic.as_str()) {
            casualties.push(i);
        } else if !matches!(diverted[i], Some(Ok(_))) {
            stays.extend(conversation);
        }
    }
    let again = casualties
        .iter()
        .map(|&i| replay_one(kafka, &todo[i].1, deadline));
    let answers = futures_util::future::join_all(again).await;
    let mut resent = vec![false; todo.len()];
    for (&i, answer) in casualties.iter().zip(answers) {
        results[i] = answer;
        resent[i] = true;
    }
    resent
}

/// Removes delivered records, off the async workers.
pub(super) async fn remove(spool: &Arc<Spool>, delivered: Vec<Stored>) -> Result<(), String> {
    let remover = spool.clone();
    match tokio::task::spawn_blocking(move || remover.remove(&delivered)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the delete task failed: {e}")),
    }
}

/// Sends a spooled record to the dead-letter topic as a dead-letter record (no key, the
/// dead-letter headers of the consumer contract), saying why its own topic refused it.
async fn divert<K: Sink>(
    kafka: &K,
    r: &SpooledRecord,
    deadletter: &str,
    error: &ProduceError,
    deadline: Instant,
) -> Result<Delivered, ProduceError> {
    let reason = format!("Kafka refused the record on topic {}: {error}", r.topic);
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .filter(|(k, _)| {
            [
                HEADER_REQUEST_ID,
                HEADER_RECEIVED_AT,
                HEADER_CONTENT_TYPE,
                HEADER_BODY_SHA256,
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([
            (HEADER_DEADLETTER_REASON, reason.as_str()),
            (HEADER_DEADLETTER_TOPIC, r.topic.as_str()),
        ])
        .collect();
    // Refused for its time, the record moves with the time of the move, which the dead-letter
    // topic may take where it would refuse the original too; `received-at` keeps the original.
    let timestamp_ms = if for_its_time(error) {
        now_ms(r.timestamp_ms)
    } else {
        r.timestamp_ms
    };
    let record = Record {
        topic: deadletter,
        key: None,
        value: &r.value,
        timestamp_ms,
        headers: RecordHeaders::Raw(&headers),
    };
    kafka.send(&record, deadline).await
}

/// Whether Kafka refused a record for its time (older than its topic allows).
fn for_its_time(error: &ProduceError) -> bool {
    matches!(error, ProduceError::Rejected(code) if code == "InvalidTimestamp")
}

/// Now, in ms since the epoch (`fallback` for a clock before 1970).
fn now_ms(fallback: i64) -> i64 {
    crate::record::timestamp_ms(std::time::SystemTime::now()).unwrap_or(fallback)
}

async fn replay_one<K: Sink>(
    kafka: &K,
    r: &SpooledRecord,
    deadline: Instant,
) -> Result<Delivered, ProduceError> {
    replay_at(kafka, r, r.timestamp_ms, deadline).await
}

/// `r` as spooled, with the time `timestamp_ms`.
async fn replay_at<K: Sink>(
    kafka: &K,
    r: &SpooledRecord,
    timestamp_ms: i64,
    deadline: Instant,
) -> Result<Delivered, ProduceError> {
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let record = Record {
        topic: &r.topic,
        key: r.key.as_deref().map(std::borrow::Cow::Borrowed),
        value: &r.value,
        timestamp_ms,
        headers: RecordHeaders::Raw(&headers),
    };
    kafka.send(&record, deadline).await
}
