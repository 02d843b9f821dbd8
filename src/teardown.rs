//! The last step of a stop: the Kafka producers destroyed within a bound, each once no one else
//! holds it.

use std::sync::Arc;
use std::time::Duration;

use crate::producer::KafkaSink;

/// Drops the producers' last handles on blocking threads, waiting for them together at most
/// `wait`: librdkafka's destroy joins its threads, and one in a request to an identity provider
/// that does not answer (OAUTHBEARER's `oidc` method) holds it up to curl's timeout, 14 s
/// measured, past a pod's grace period. A handle still held elsewhere (a blocking metadata
/// request of the start-up topic check, up to 5 s) is waited for within the same time: dropping
/// ours then destroyed nothing. What the webhook producer held was delivered by the flush, or
/// belongs to requests answered with an error or left unanswered (the grace's end, a drain cut
/// short), whose senders retry; what replay's held is still spooled, and sent again at the next
/// start. The process's exit ends their threads (see `main`).
pub(crate) async fn destroy_within(
    sinks: impl IntoIterator<Item = Arc<KafkaSink>>,
    wait: Duration,
) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut destroying = tokio::task::JoinSet::new();
    for sink in sinks {
        let until = deadline.into_std();
        destroying.spawn_blocking(move || destroy_once_last(sink, until));
    }
    let mut destroyed = true;
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, destroying.join_next()).await {
        destroyed &= done.unwrap_or(false);
    }
    if !destroying.is_empty() || !destroyed {
        // Not dropped: that would cancel a destroy not yet begun, dropping its producer here.
        destroying.detach_all();
        tracing::warn!(
            timeout = ?wait,
            "the Kafka client did not shut down in time (a token request, a DNS lookup or a metadata request may hang); exiting without it"
        );
    }
}

/// Destroys `sink`'s producer once this is its last handle, checking until `until`; whether it
/// was. Blocking.
fn destroy_once_last(mut sink: Arc<KafkaSink>, until: std::time::Instant) -> bool {
    loop {
        match Arc::try_unwrap(sink) {
            Ok(last) => {
                drop(last);
                return true;
            }
            Err(shared) if std::time::Instant::now() < until => {
                sink = shared;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::BTreeMap;

    use crate::metrics::Metrics;
    use crate::producer::ProducerRole;

    fn sink() -> Arc<KafkaSink> {
        let properties =
            BTreeMap::from([("bootstrap.servers".to_string(), "127.0.0.1:9".to_string())]);
        let metrics = Arc::new(Metrics::new(&["t".to_string()]).expect("metrics"));
        Arc::new(KafkaSink::new(&properties, metrics, ProducerRole::Webhooks).expect("producer"))
    }

    /// Dropping a handle someone else still held destroyed nothing, and the stop went on as if
    /// it had: the producer outlived the shutdown.
    #[test]
    fn a_producer_held_elsewhere_is_destroyed_once_its_other_handle_goes() {
        let sink = sink();
        let (held, gone) = (sink.clone(), Arc::downgrade(&sink));
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        let until = std::time::Instant::now() + Duration::from_secs(10);
        assert!(destroy_once_last(sink, until));
        assert!(gone.upgrade().is_none());
        holder.join().expect("holder");
    }

    /// The warning is the only trace of a stop that went on without destroying a producer (its
    /// threads then run into the exit): given for one held past the wait, and not for one destroyed.
    #[tokio::test]
    async fn a_producer_not_destroyed_within_the_wait_is_warned_of_and_one_destroyed_is_not() {
        // The test's runtime has one thread, so the thread's default covers the warning.
        let (kept, _default) = crate::telemetry::Kept::on_this_thread();
        let alone = sink();
        let gone = Arc::downgrade(&alone);
        destroy_within([alone], Duration::from_secs(10)).await;
        assert!(gone.upgrade().is_none(), "not destroyed");
        assert_eq!(kept.text(), "", "a destroyed producer is no warning");

        let shared = sink();
        let (held, kept_alive) = (shared.clone(), Arc::downgrade(&shared));
        destroy_within([shared], Duration::from_millis(100)).await;
        let warned = kept.text();
        assert!(
            warned.contains("WARN") && warned.contains("did not shut down in time"),
            "{warned}"
        );
        assert!(kept_alive.upgrade().is_some());
        drop(held);
    }

    #[test]
    fn a_producer_still_held_at_the_deadline_is_left_and_said_so() {
        let sink = sink();
        let (held, kept) = (sink.clone(), Arc::downgrade(&sink));
        let until = std::time::Instant::now() + Duration::from_millis(100);
        assert!(!destroy_once_last(sink, until));
        assert!(kept.upgrade().is_some());
        drop(held);
    }
}
