//! What librdkafka calls back into: its log lines go to tracing, its statistics to the metrics
//! (the webhook producer's as the gauges, the spool replayer's as traffic only), its errors to a
//! warning (repeats held back: see `quiet`) and to the last error readiness quotes, a fatal one
//! also waking the task that replaces the producer. Its texts are logged without the secrets of
//! the producer's properties, which librdkafka quotes in places (an OAUTHBEARER config it cannot
//! parse, a token endpoint's URL).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use tokio::sync::Notify;

use crate::kafka_props::Scrubber;
use crate::metrics::Metrics;

use super::last_error::LastError;
use crate::quiet::{Quieted, WINDOW};

/// Which of the bridge's producers this is: its statistics feed the metrics differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerRole {
    /// Sends the webhooks' records: its queue, brokers and batches are the gauges.
    Webhooks,
    /// Replays the spool: its traffic counts, its queue does not decide any answer.
    Replay,
}

impl ProducerRole {
    pub const ALL: [ProducerRole; 2] = [ProducerRole::Webhooks, ProducerRole::Replay];

    /// The `role` label of the producer metrics.
    pub fn label(self) -> &'static str {
        match self {
            ProducerRole::Webhooks => "webhooks",
            ProducerRole::Replay => "replay",
        }
    }
}

/// How many of the bridge's Kafka clients are alive: made and not yet destroyed. A context is
/// dropped after librdkafka's destroy has joined its client's threads (rdkafka's `Client` drops
/// its native handle before its context).
static ALIVE: AtomicUsize = AtomicUsize::new(0);

/// How many of the bridge's Kafka clients still run threads of librdkafka's: one replaced by a
/// rotation still delivering, one whose destroy waits on a token request, one a blocking
/// metadata request still holds. The process must not run the C libraries' exit handlers
/// while one does: OpenSSL's frees what a broker thread in a TLS handshake is using.
pub fn clients_alive() -> usize {
    ALIVE.load(Ordering::SeqCst)
}

/// Routes librdkafka's logs into tracing and its statistics into metrics.
#[derive(Debug)]
pub struct BridgeContext {
    metrics: Arc<Metrics>,
    role: ProducerRole,
    fatal: Arc<Notify>,
    /// Set once replaced, while it delivers what it holds: its traffic still counts, but the
    /// gauges are the new producer's.
    retired: Arc<AtomicBool>,
    /// Its non-fatal errors' repeats, held back.
    quieted: Quieted,
    /// Its brokers' connection failures in its log, held back per broker.
    failures: Quieted,
    /// Hides the secrets of the properties the producer was made from in librdkafka's texts.
    scrubber: Arc<Scrubber>,
    /// Its latest error, which `/readyz` quotes while it is in place.
    last_error: Arc<LastError>,
    /// Which client its statistics are (see [`crate::kafka_stats::KafkaStats::client`]).
    stats_client: u64,
}

impl BridgeContext {
    pub(super) fn new(
        metrics: Arc<Metrics>,
        role: ProducerRole,
        fatal: Arc<Notify>,
        retired: Arc<AtomicBool>,
        scrubber: Arc<Scrubber>,
        last_error: Arc<LastError>,
    ) -> BridgeContext {
        ALIVE.fetch_add(1, Ordering::SeqCst);
        BridgeContext {
            stats_client: metrics.kafka_stats.client(),
            metrics,
            role,
            fatal,
            retired,
            quieted: Quieted::default(),
            failures: Quieted::default(),
            scrubber,
            last_error,
        }
    }
}

impl Drop for BridgeContext {
    fn drop(&mut self) {
        ALIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

impl BridgeContext {
    /// A log line of librdkafka's, at `now`. A broker's connection failure (facility `FAIL`) is
    /// logged once a window per broker, with how many were held back: librdkafka holds
    /// back an identical one itself, but a refused TLS handshake alternates two texts ("SSL
    /// handshake failed: …" and "error:0A000086 …"), which came at 9 error lines a second
    /// for as long as the certificate was not trusted, each a repeat of the warning `error`
    /// logs.
    fn log_at(&self, level: RDKafkaLogLevel, fac: &str, message: &str, now: Instant) {
        // librdkafka logs a fatal error under this facility as it raises it
        // (rd_kafka_set_fatal_error0), then passes the error callback its cause
        // (`ClusterAuthorizationFailed`, ...), never `Fatal`: this line is the only prompt word
        // that the producer failed. A spurious wake-up only has the task look for nothing.
        if fac == "FATAL" {
            self.fatal.notify_one();
        }
        let message = self.scrubber.scrub(message);
        let loud = !matches!(
            level,
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug
        );
        let message = if fac == "FAIL" && loud {
            // "[thrd:ssl://host:9093/1]: ssl://host:9093/1: SSL handshake failed: …": the
            // broker's name, after the thread's when librdkafka adds it (`log.thread.name`, true
            // by default; without it, one key for all held back every broker's but the first).
            let text = match message.strip_prefix("[thrd:") {
                Some(rest) => rest.split_once("]: ").map_or(rest, |(_, text)| text),
                None => &message,
            };
            let broker = text.split_once(": ").map_or(text, |(broker, _)| broker);
            match self.failures.admit(broker, now) {
                None => return,
                Some(0) => message,
                Some(held_back) => format!(
                    "{message} ({held_back} more failures of this broker's connection since the \
                     last one logged; they are logged once every {}s)",
                    WINDOW.as_secs()
                )
                .into(),
            }
        } else {
            message
        };
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{message}")
            }
        }
    }
}

impl ClientContext for BridgeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.log_at(level, fac, message, Instant::now());
    }

    fn stats_raw(&self, statistics: &[u8]) {
        match crate::kafka_stats::raw::parse(statistics) {
            Ok(statistics) => self.stats(statistics),
            Err(e) => tracing::warn!(error = %e, "librdkafka's statistics could not be read"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        let primary = self.role == ProducerRole::Webhooks && !self.retired.load(Ordering::Relaxed);
        self.metrics
            .kafka_stats
            .update(self.stats_client, &statistics, primary);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.error_at(error, reason, Instant::now());
    }
}

impl BridgeContext {
    /// An error librdkafka called back with, at `now`.
    fn error_at(&self, error: KafkaError, reason: &str, now: Instant) {
        let reason = self.scrubber.scrub(reason);
        // Its text is librdkafka's too (a code's, or a message it was given).
        let scrubbed = |error: &KafkaError| self.scrubber.scrub(&error.to_string()).into_owned();
        let code = error.rdkafka_error_code();
        let kind = code.map_or_else(|| scrubbed(&error), |code| format!("{code:?}"));
        let said = format!("{kind}: {reason}");
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.last_error.set_unless_kept(&said, now);
        } else {
            self.last_error.set(&said, now);
        }
        if code == Some(RDKafkaErrorCode::Fatal) {
            let error = scrubbed(&error);
            tracing::error!(target: "librdkafka", %error, "{reason}");
            self.fatal.notify_one();
        } else {
            match self.quieted.admit(&kind, now) {
                None => {}
                Some(0) => {
                    tracing::warn!(target: "librdkafka", error = %scrubbed(&error), "{reason}")
                }
                Some(held_back) => tracing::warn!(
                    target: "librdkafka",
                    error = %scrubbed(&error),
                    held_back,
                    "{reason} ({held_back} more like it since the last one logged; repeats are \
                     logged once every {}s)",
                    WINDOW.as_secs()
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests;
