//! The tasks beside the server (spool replay, producer replacement, the file watches, readiness,
//! the topic check): started together once the producer and the spool exist, stopped in order
//! after the drain.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::Health;
use crate::auth::Credentials;
use crate::config::Config;
use crate::drain::Cut;
use crate::metrics::Metrics;
use crate::producer::{self, KafkaSink, ProducerRole, Rebuilt};
use crate::spool::Spool;
use crate::supervise::{self, GiveUp, Supervisor};
use crate::{auth, delivery, topics, StartError};

/// How often readiness asks Kafka for metadata.
const READINESS_INTERVAL: Duration = Duration::from_secs(1);

/// How long a probe at shutdown waits for a connected broker, and how long after an answer the
/// next one asks.
const SHUTDOWN_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const SHUTDOWN_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long shutdown waits for the file watches and producer replacements, together, to notice
/// the stop (a rebuild in progress stops at once; a read from a hung mount would not).
const WATCH_STOP_WAIT: Duration = Duration::from_secs(2);

/// What the tasks work on.
#[derive(Debug)]
pub(crate) struct Wiring<'a> {
    pub config: &'a Config,
    pub bootstrap: &'a str,
    pub sink: &'a Arc<KafkaSink>,
    pub spool: Option<&'a Arc<Spool>>,
    pub metrics: &'a Arc<Metrics>,
    /// The credentials the webhooks are checked against, swapped when `--auth-file` changes.
    pub credentials: Arc<ArcSwap<Credentials>>,
    /// Set once the drain is over: every task then stops.
    pub stop: &'a watch::Receiver<bool>,
    /// Readiness's Kafka check, started before the spool was opened (see [`watch_readiness`]).
    pub readiness: JoinHandle<()>,
}

/// The running tasks, to wait for at shutdown.
#[derive(Debug)]
pub(crate) struct Background {
    /// Producer replacement (on a fatal error, after a rotation) and the watches of the files.
    watches: Vec<(&'static str, JoinHandle<()>)>,
    readiness: JoinHandle<()>,
    replay: Option<JoinHandle<()>>,
    /// Kept here so that the last handle of replay's producer is not dropped by whichever task
    /// ends last, on an async worker: librdkafka's destroy blocks, for up to curl's timeout while
    /// a token request hangs. `run` destroys it off the workers, in bounded time.
    replay_sink: Option<Arc<KafkaSink>>,
    /// The topic whose metadata shows whether a broker answers.
    probe_topic: String,
}

impl Background {
    /// Spawns every task under `supervisor`. Fails only if librdkafka refuses the replay
    /// producer's properties.
    pub fn spawn(supervisor: &Supervisor, with: Wiring<'_>) -> Result<Background, StartError> {
        let Wiring {
            config,
            bootstrap,
            sink,
            spool,
            metrics,
            credentials,
            stop,
            readiness,
        } = with;
        let mut watches = Vec::new();
        let mut rebuilt = vec![Rebuilt {
            sink: sink.clone(),
            overrides: |_| BTreeMap::new(),
        }];
        // Replay gets a producer of its own: the webhook producer's message timeout is the ack
        // deadline, which a slow broker can exceed for every record; replay can wait longer.
        let mut replay_sink = None;
        let replay = match spool {
            Some(spool) => {
                let mut props = config.producer_properties(bootstrap);
                let overrides = delivery::replay_overrides(&props);
                props.extend(overrides);
                let sink = Arc::new(KafkaSink::new(
                    &props,
                    metrics.clone(),
                    ProducerRole::Replay,
                )?);
                replay_sink = Some(sink.clone());
                rebuilt.push(Rebuilt {
                    sink: sink.clone(),
                    overrides: delivery::replay_overrides,
                });
                watches.push(named(
                    supervisor,
                    "replay producer replacement",
                    producer::replace_on_fatal(sink.clone(), stop.clone()),
                ));
                Some(supervisor.spawn(
                    "replay",
                    delivery::replay(
                        delivery::Batch::for_queue(&props).paced(config.replay_max_rate),
                        spool.clone(),
                        sink,
                        config.topics.deadletter().topic.clone(),
                        metrics.clone(),
                        stop.clone(),
                    ),
                ))
            }
            None => None,
        };
        watches.push(named(
            supervisor,
            "webhook producer replacement",
            producer::replace_on_fatal(sink.clone(), stop.clone()),
        ));
        // Before a producer made from rotated credentials takes over, as for readiness.
        let probe_topic = probe_topic(config);
        watches.push(named(
            supervisor,
            "Kafka file watch",
            producer::watch_kafka_files(
                producer::ClientFiles {
                    sources: config.kafka_sources.clone(),
                    watched: config.kafka_watched.clone(),
                    caveats: config.kafka_caveats(),
                },
                bootstrap.to_string(),
                probe_topic.clone(),
                rebuilt,
                metrics.clone(),
                stop.clone(),
            ),
        ));
        if let Some(reload) = config.auth_reload.clone() {
            watches.push(named(
                supervisor,
                "auth file watch",
                auth::watch_auth_file(
                    reload,
                    credentials,
                    metrics.auth_file_stale.clone(),
                    stop.clone(),
                ),
            ));
        }
        drop(supervisor.spawn(
            "topic check",
            producer::warn_of_missing_topics(
                sink.clone(),
                config.topics.all_topics(),
                stop.clone(),
            ),
        ));
        Ok(Background {
            watches,
            readiness,
            replay,
            replay_sink,
            probe_topic,
        })
    }

    /// Waits for the tasks, once told to stop: the watches together for at most
    /// [`WATCH_STOP_WAIT`], replay's round for at most `replay_wait`, until `cut`, or until no
    /// broker is connected. Returns replay's producer, now its last handle, for the caller to destroy.
    pub async fn stopped(self, replay_wait: Duration, cut: &Cut) -> Option<Arc<KafkaSink>> {
        let _ = self.readiness.await;
        let watches_stop_by = tokio::time::Instant::now() + WATCH_STOP_WAIT;
        for (name, watch) in self.watches {
            supervise::join_by(watch, watches_stop_by, name).await;
        }
        if let Some(replay) = self.replay {
            // A replay round can wait two minutes (30 s for its batch, 30 more for handing over
            // its dead-letter moves and up to 30 for the last one handed over, 30 more for the
            // records failed only for another of their batch);
            // records are deleted only after delivery, so cutting it short costs at most
            // a repeat at the next start. Waited for once cancelled, so the spool file is closed
            // when `run` returns.
            // With no broker connected, no delivery can end the round: waiting for it only
            // delayed the exit (by `--flush-timeout`, 5 s by default, while Kafka was down).
            let cut_at = tokio::time::Instant::now() + replay_wait;
            let mut probing = None;
            let given_up = async {
                tokio::select! {
                    () = tokio::time::sleep_until(cut_at) => GiveUp::Late,
                    () = cut.wait() => GiveUp::Late,
                    () = no_broker_connected(self.replay_sink.as_ref(), &self.probe_topic, &mut probing) => {
                        tracing::info!("no Kafka broker is connected: replay's round is not waited for, its records stay spooled");
                        GiveUp::Explained
                    }
                }
            };
            supervise::join_until(replay, given_up, "replay").await;
            // The probe holds a handle of replay's producer, which must not outlive the caller's
            // destroy; it ends within its timeout.
            if let Some(probe) = probing {
                let _ = probe.await;
            }
        }
        self.replay_sink
    }
}

/// The topic whose metadata shows a producer can reach Kafka.
fn probe_topic(config: &Config) -> String {
    config.topics.route(topics::EVENT_MESSAGE_IN).topic.clone()
}

/// Starts readiness's Kafka check with the webhook producer, before the spool is opened: a large
/// spool's recovery can take minutes, during which `kafka_reachable` (and the alert on it) should
/// say whether Kafka answers, not 0 for a question not yet asked. Stops with `stop`, or when its
/// sender is gone (a start that ends early).
pub(crate) fn watch_readiness(
    supervisor: &Supervisor,
    config: &Config,
    sink: &Arc<KafkaSink>,
    health: &Health,
    stop: &watch::Receiver<bool>,
) -> JoinHandle<()> {
    supervisor.spawn(
        "readiness",
        producer::watch_readiness(
            sink.clone(),
            probe_topic(config),
            health.kafka.clone(),
            READINESS_INTERVAL,
            stop.clone(),
        ),
    )
}

/// Returns once a metadata request from `sink`'s producer finds no broker connected; never
/// without a producer. The probe in flight is kept in `probing`, for the caller to wait for.
async fn no_broker_connected(
    sink: Option<&Arc<KafkaSink>>,
    topic: &str,
    probing: &mut Option<JoinHandle<bool>>,
) {
    let Some(sink) = sink else {
        return std::future::pending().await;
    };
    loop {
        let (probe, topic) = (sink.clone(), topic.to_string());
        let probe = probing.insert(tokio::task::spawn_blocking(move || {
            probe.brokers_answer(&topic, SHUTDOWN_PROBE_TIMEOUT)
        }));
        // A probe that panicked says nothing: the wait goes on as without probes.
        let answered = probe.await.unwrap_or(true);
        *probing = None;
        if !answered {
            return;
        }
        tokio::time::sleep(SHUTDOWN_PROBE_INTERVAL).await;
    }
}

/// A task spawned under `supervisor`, with its name, for the warning if it does not stop.
fn named<F>(supervisor: &Supervisor, name: &'static str, task: F) -> (&'static str, JoinHandle<()>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    (name, supervisor.spawn(name, task))
}

#[cfg(test)]
mod tests;
