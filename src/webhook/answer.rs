//! The webhook's answers: the status, the JSON body and the headers of each outcome, and the one
//! log line that says why a request was refused.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT_ENCODING, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::Full;

use super::Webhook;
use crate::error::{Outcome, WebhookError};
use crate::producer::Sink;

impl<S: Sink> Webhook<S> {
    pub(super) fn refuse(
        &self,
        err: WebhookError,
        elapsed: Duration,
        due: Duration,
        request_id: &str,
    ) -> Response<Full<Bytes>> {
        let outcome = err.outcome();
        match (
            outcome,
            self.refusal_lines.admit(outcome.index(), Instant::now()),
        ) {
            (_, None) => {}
            // The cause is logged here, once; the answer itself stays opaque.
            (Outcome::Unavailable | Outcome::Failed, Some(held_back)) => {
                tracing::warn!(
                    request_id,
                    status = outcome.status().as_u16(),
                    latency_ms = elapsed.as_secs_f64() * 1e3,
                    error = %err,
                    held_back,
                    "not stored"
                )
            }
            (_, Some(held_back)) => {
                tracing::info!(
                    request_id,
                    status = outcome.status().as_u16(),
                    latency_ms = elapsed.as_secs_f64() * 1e3,
                    error = %err,
                    held_back,
                    "refused"
                )
            }
        }
        self.metrics.answered(outcome, elapsed, due);
        let mut response = respond(outcome.status(), Bytes::from(err.body()));
        let headers = response.headers_mut();
        match outcome {
            Outcome::Unauthorized => {
                headers.insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="qikchat-bridge", charset="UTF-8""#),
                );
            }
            Outcome::MethodNotAllowed => {
                headers.insert(ALLOW, HeaderValue::from_static("POST"));
            }
            // What the bridge does take (RFC 7694): bodies without a content coding.
            Outcome::UnsupportedMediaType => {
                headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            }
            Outcome::Unavailable | Outcome::Overloaded => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

pub(super) fn respond(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
