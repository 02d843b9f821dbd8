//! The webhook handler: route, authenticate, read the body, classify, produce, answer. Glue only;
//! each step's rules live in its own module.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, EXPECT};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{Full, LengthLimitError, Limited};
use hyper::body::Body;
use tokio::time::Instant;
use tracing::{field, Instrument, Span};

use crate::auth::Credentials;
use crate::classify::classify;
use crate::config::Config;
use crate::error::{KeptIn, Outcome, WebhookError};
use crate::metrics::Metrics;
use crate::producer::{Delivered, Sink};
use crate::quiet::Budget;
use crate::record::{self, Headers, Record};
use crate::topics::{EventType, KeyStrategy, TopicMap};

mod answer;
mod budget;
mod parts;
mod path;
use answer::respond;
use budget::BodyBudget;
use parts::{
    chunked_only, concat, content_type, discard, identity_encoding, one_host, request_id,
    sha256_hex, single_value, Rfc3339Millis, X_REQUEST_ID,
};

const ACCEPTED: &[u8] = br#"{"status":"accepted"}"#;

/// How long a request refused before its body was read may take to send the rest of it (see
/// [`discard`]); a slower one gets its answer with the connection's end.
const DISCARD_WITHIN: Duration = Duration::from_secs(1);

/// Refusal lines logged a second for each outcome; the rest are counted in the next line's
/// `held_back`. A flood of 401s wrote 39 MB of log a second, and a slow log pipe then held up
/// every request that wrote one, honest ones included.
const REFUSAL_LINES_PER_SECOND: u32 = 10;

/// How far a request got, for its answer.
#[derive(Default)]
struct Progress {
    /// When its body was whole, from the request's start.
    body_read: Option<Duration>,
    /// Its body was left (partly) unread: an HTTP/1 connection ends with the answer.
    unread: bool,
}

/// Everything a request needs, shared by all connections.
pub struct Webhook<S> {
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    /// Swapped when `--auth-file` changes (see `auth::watch_auth_file`).
    credentials: Arc<ArcSwap<Credentials>>,
    topics: TopicMap,
    key_strategy: KeyStrategy,
    path: String,
    max_body_bytes: usize,
    ack_timeout: Duration,
    body_read_timeout: Duration,
    log_phone_numbers: bool,
    cloudevents_source: Option<String>,
    max_in_flight: usize,
    in_flight: AtomicUsize,
    body_budget: BodyBudget,
    /// The refusal lines logged a second, per outcome: anyone who can connect can cause one.
    refusal_lines: Budget<{ Outcome::ALL.len() }>,
}

impl<S> std::fmt::Debug for Webhook<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Counts a request in the gauge until it ends, even if its future is dropped.
struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// Holds one of `--max-in-flight`'s places until the request ends.
struct Admitted<'a>(&'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S: Sink> Webhook<S> {
    /// The accepted credentials, for the task that reloads them.
    pub fn credentials(&self) -> Arc<ArcSwap<Credentials>> {
        self.credentials.clone()
    }

    pub fn new(config: &Config, sink: Arc<S>, metrics: Arc<Metrics>) -> Webhook<S> {
        Webhook {
            sink,
            metrics,
            credentials: Arc::new(ArcSwap::from_pointee(config.credentials.clone())),
            topics: config.topics.clone(),
            key_strategy: config.key_strategy,
            path: config.webhook_path.clone(),
            max_body_bytes: config.max_body_bytes,
            ack_timeout: config.ack_timeout,
            body_read_timeout: config.body_read_timeout,
            log_phone_numbers: config.log_phone_numbers,
            cloudevents_source: config.cloudevents_source.clone(),
            max_in_flight: config.max_in_flight,
            in_flight: AtomicUsize::new(0),
            body_budget: BodyBudget::new(config.max_in_flight_bytes),
            refusal_lines: Budget::new(REFUSAL_LINES_PER_SECOND),
        }
    }

    pub async fn handle<B>(&self, mut req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        if req.version() == Version::HTTP_2 {
            parts::trim_values(req.headers_mut());
        }
        self.metrics.in_flight.inc();
        let _in_flight = InFlight(&self.metrics);
        // A HeaderValue from the start: echoed in the answer without a copy, and read as text.
        let request_id_value = request_id(&req);
        let request_id = request_id_value.to_str().unwrap_or_default();
        let version = req.version();
        // A debug span: at the default `info` level it is disabled and free (it cost ~30% of
        // throughput at info, measured with bench/run.sh); refusals below carry the request id
        // themselves, so nothing is lost at info.
        let span = tracing::debug_span!(
            "webhook",
            request_id = %request_id,
            event = field::Empty,
            key = field::Empty,
            topic = field::Empty,
            partition = field::Empty,
            offset = field::Empty,
            latency_ms = field::Empty,
            spooled = field::Empty,
        );
        let mut progress = Progress::default();
        let mut unanswered = Unanswered(Some(&self.metrics));
        let result = self
            .process(req, request_id, started, &mut progress)
            .instrument(span.clone())
            .await;
        if let Err(WebhookError::Reset) = result {
            // Counted as cut off when `unanswered` drops, like a reset while waiting for Kafka:
            // the answer has no stream left to go to.
            tracing::debug!(parent: &span, "the client reset its stream before its body was whole");
            return respond(
                StatusCode::BAD_REQUEST,
                Bytes::from(WebhookError::Reset.body()),
            );
        }
        unanswered.0 = None;
        let elapsed = started.elapsed();
        // An answer is due at the ack deadline, or at once when the sender's body came later.
        let due = progress
            .body_read
            .map_or(self.ack_timeout, |at: Duration| at.max(self.ack_timeout));
        let _enter = span.enter();
        span.record("latency_ms", elapsed.as_secs_f64() * 1e3);
        let mut response = match result {
            Ok(delivered) => {
                match delivered {
                    Delivered::Kafka { partition, offset } => {
                        span.record("partition", partition);
                        span.record("offset", offset);
                    }
                    Delivered::Spooled { seq } => {
                        span.record("spooled", seq);
                    }
                }
                tracing::debug!("accepted");
                self.metrics.answered(Outcome::Accepted, elapsed, due);
                respond(StatusCode::OK, Bytes::from_static(ACCEPTED))
            }
            Err(err) => self.refuse(err, elapsed, due, request_id),
        };
        response
            .headers_mut()
            .insert(X_REQUEST_ID, request_id_value);
        // Said, so that the sender does not take the close for a failure to answer (HTTP/2 has
        // no such header: a stream's unread body is reset without ending the connection).
        if progress.unread && version < Version::HTTP_2 {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    async fn process<B>(
        &self,
        req: Request<B>,
        request_id: &str,
        started: Instant,
        progress: &mut Progress,
    ) -> Result<Delivered, WebhookError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let checked = self.check_head(&parts).and_then(|content_type| {
            if declared.is_some_and(|n| n > self.max_body_bytes as u64) {
                return Err(self.too_large());
            }
            // Only after the checks that cost nothing and hold nothing: a saturated bridge still
            // tells a sender its credentials or its URL are wrong (a 503 would only make it retry).
            let admitted = self.admit()?;
            // Held until the request ends, with the body (hyper frames it by its Content-Length,
            // so it cannot be longer); a body of unknown length may take up to the largest.
            let reserved = self
                .body_budget
                .reserve(declared.unwrap_or(self.max_body_bytes as u64))
                .ok_or(WebhookError::Overloaded(
                    "body bytes",
                    self.body_budget.limit(),
                ))?;
            Ok((content_type, admitted, reserved))
        });
        let (content_type, _admitted, mut body_bytes) = match checked {
            Ok(checked) => checked,
            Err(refusal) => {
                progress.unread = !self.discard_refused(&parts, body, &refusal).await;
                progress.body_read = Some(started.elapsed());
                return Err(refusal);
            }
        };
        let received = SystemTime::now();
        let body = self.read_body(body, started + self.ack_timeout).await;
        progress.body_read = Some(started.elapsed());
        // A body cut off (too large, too slow, broken) is left unread.
        progress.unread = body.is_err();
        let body = body?;
        // hyper ends an HTTP/2 body without an error when the client resets its stream with
        // NO_ERROR or CANCEL, so a cut-off body would be stored as if whole (and sent again by a
        // client that got no answer). Its declared length tells; HTTP/1 framing already did (and
        // a chunked HTTP/1 body's Content-Length is ignored, as RFC 9112 says). Without one, the
        // reset itself tells: hyper looks for it whenever this future waits, and then drops it,
        // before anything is stored; so it waits once.
        if parts.version == Version::HTTP_2 {
            if declared.is_some_and(|n| n != body.len() as u64) {
                return Err(WebhookError::Reset);
            }
            tokio::task::yield_now().await;
        }
        // Checked here rather than left to the sink, whose own check (for a body that came just
        // before the deadline) would blame Kafka in the log and the metrics.
        if started.elapsed() >= self.ack_timeout {
            return Err(WebhookError::LateBody(self.ack_timeout));
        }
        body_bytes.shrink_to(body.len() as u64);
        self.metrics.body_bytes.observe(body.len() as f64);
        if body.is_empty() {
            return Err(WebhookError::EmptyBody);
        }

        let received_at = Rfc3339Millis::new(received);
        let received_at = received_at.as_str();
        let digest = sha256_hex(&body);
        let body_sha256 = std::str::from_utf8(&digest).unwrap_or_default();
        let timestamp_ms = crate::record::timestamp_ms(received).unwrap_or(0);
        let deadline = started + self.ack_timeout;
        let span = Span::current();
        match classify(&body) {
            Ok(envelope) => {
                let route = self.topics.route(&envelope.event);
                self.metrics.event(route.event_type);
                if route.event_type != EventType::Unrouted {
                    span.record("event", envelope.event.as_ref());
                }
                let key = record::key(self.key_strategy, &envelope);
                if self.log_phone_numbers {
                    span.record(
                        "key",
                        key.as_deref().map(crate::telemetry::key_for_log).as_deref(),
                    );
                }
                span.record("topic", route.topic.as_str());
                let record = Record {
                    topic: &route.topic,
                    key,
                    value: &body,
                    timestamp_ms,
                    headers: Headers {
                        event: Some(&envelope.event),
                        message_id: envelope.message_id.as_deref(),
                        request_id,
                        received_at,
                        content_type,
                        body_sha256,
                        deadletter_reason: None,
                        cloudevents_source: self.cloudevents_source.as_deref(),
                    }
                    .into(),
                };
                Ok(self.sink.send(&record, deadline).await?)
            }
            Err(invalid) => {
                // Authenticated input is never dropped: it is kept for inspection, and the 400
                // is only given once the dead-letter topic holds it (or the spool, on its way
                // there, when Kafka is late).
                self.metrics.event(EventType::Invalid);
                let reason = invalid.to_string();
                let topic = &self.topics.deadletter().topic;
                span.record("topic", topic.as_str());
                let record = Record {
                    topic,
                    key: None,
                    value: &body,
                    timestamp_ms,
                    headers: Headers {
                        event: None,
                        message_id: None,
                        request_id,
                        received_at,
                        content_type,
                        body_sha256,
                        deadletter_reason: Some(&reason),
                        cloudevents_source: None,
                    }
                    .into(),
                };
                let kept = match self.sink.send(&record, deadline).await? {
                    Delivered::Kafka { .. } => KeptIn::DeadLetterTopic,
                    Delivered::Spooled { .. } => KeptIn::Spool,
                };
                Err(WebhookError::Invalid(invalid, kept))
            }
        }
    }

    /// The checks of a request's head alone, in the order a sender fixes them; its media type.
    fn check_head<'p>(&self, parts: &'p http::request::Parts) -> Result<&'p str, WebhookError> {
        if !path::same_path(parts.uri.path(), &self.path) {
            return Err(WebhookError::NotFound);
        }
        if parts.method != Method::POST {
            return Err(WebhookError::MethodNotAllowed);
        }
        // Two different credentials are none (an empty value is malformed).
        let auth = single_value(&parts.headers, &AUTHORIZATION)
            .map_or(Some(&b""[..]), |v| v.map(HeaderValue::as_bytes));
        if let Err(reason) = self.credentials.load().check(auth) {
            self.metrics.auth_failure(reason);
            return Err(WebhookError::Unauthorized(reason));
        }
        // After the credential: a stranger is told only that, and loses the idle timeout.
        one_host(parts.version, &parts.uri, &parts.headers)?;
        let content_type = content_type(&parts.headers)?;
        identity_encoding(&parts.headers)?;
        chunked_only(&parts.headers)?;
        Ok(content_type)
    }

    fn too_large(&self) -> WebhookError {
        WebhookError::TooLarge {
            limit: self.max_body_bytes,
        }
    }

    /// Whether the body of a request refused by its head alone could be read to its end, so
    /// that an HTTP/1 connection carries the answer and the next request, and an HTTP/2 stream
    /// ends without a reset (which RFC 9113 allows after a whole answer, but some clients report
    /// as a failure instead of the answer: curl 7.88, now and then). Not a body declared too
    /// large, nor one whose sender waits for `100 Continue` (it is not invited to send one that
    /// is refused already).
    async fn discard_refused<B>(
        &self,
        parts: &http::request::Parts,
        body: B,
        refusal: &WebhookError,
    ) -> bool
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if body.is_end_stream() {
            return true;
        }
        // hyper waits for the sender only on HTTP/1.1 `100-continue`, and sends no `100` on
        // HTTP/2, where a sender that asks for one waits too; any other sender is sending its
        // body already.
        let waits = matches!(parts.version, Version::HTTP_11 | Version::HTTP_2)
            && parts
                .headers
                .get(EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let too_large = body.size_hint().lower() > self.max_body_bytes as u64;
        if waits || too_large || matches!(refusal, WebhookError::TooLarge { .. }) {
            return false;
        }
        let within = self.body_read_timeout.min(DISCARD_WITHIN);
        discard(body, self.max_body_bytes, within).await
    }

    fn admit(&self) -> Result<Admitted<'_>, WebhookError> {
        let now_in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        // Given back on drop, also when refused here.
        let place = Admitted(&self.in_flight);
        if now_in_flight > self.max_in_flight {
            return Err(WebhookError::Overloaded(
                "requests",
                self.max_in_flight as u64,
            ));
        }
        Ok(place)
    }

    /// Reads the body within `--body-read-timeout`, and no later than `ack_deadline`: a body
    /// still coming then is answered 408 whenever it ends, so waiting for it only held its
    /// `--max-in-flight` place and its connection (up to the body timeout, 5 s by default).
    async fn read_body<B>(&self, body: B, ack_deadline: Instant) -> Result<Bytes, WebhookError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limited = Limited::new(body, self.max_body_bytes);
        let body_deadline = Instant::now() + self.body_read_timeout;
        let cut_at = body_deadline.min(ack_deadline);
        match tokio::time::timeout_at(cut_at, concat(limited)).await {
            Err(_) if ack_deadline < body_deadline => Err(WebhookError::LateBody(self.ack_timeout)),
            Err(_) => Err(WebhookError::BodyTimeout(self.body_read_timeout)),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(self.too_large()),
            Ok(Err(e)) if reset_by_client(&*e) => Err(WebhookError::Reset),
            Ok(Err(e)) => Err(WebhookError::BodyRead(with_causes(&*e))),
            Ok(Ok(body)) => Ok(body),
        }
    }
}

/// An error's text with its causes': hyper's alone says only `error reading a body from
/// connection`, where its cause says what was wrong (`invalid chunk size line`, an HTTP/2
/// protocol error), which the sender's developer needs to see.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let texts: Vec<String> = std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect();
    texts.join(": ")
}

/// Whether a body failed because the client reset its HTTP/2 stream or ended the connection
/// (hyper's error wraps h2's), rather than because of what it sent.
fn reset_by_client(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source())
        .filter_map(|e| e.downcast_ref::<h2::Error>())
        .any(|e| e.is_remote() && (e.is_reset() || e.is_go_away()))
}

/// Counts a request whose future is dropped before it is answered (an HTTP/2 stream reset, the
/// shutdown grace's end), which no answer's count includes: its record may have been handed to
/// librdkafka or the spool already, and be stored all the same.
struct Unanswered<'a>(Option<&'a Metrics>);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let Some(metrics) = self.0 {
            metrics.cancelled();
        }
    }
}

#[cfg(test)]
mod tests;
