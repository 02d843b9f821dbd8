//! Every way a webhook request can end, and the one table that maps each to an HTTP answer.
//!
//! 4xx bodies say what the sender did wrong; 5xx bodies are opaque (the cause is logged once,
//! by the handler), but for 501's, a refusal the sender fixes. Only the 503s carry `Retry-After`, because a retry is exactly what they ask
//! for; a 500 is a refusal that a retry cannot change (Kafka refusing the record itself as
//! invalid). Refusals an operator can fix (authorization, a missing topic) are 503s.

use http::StatusCode;

use crate::auth::AuthFailure;
use crate::classify::ClassifyError;
use crate::producer::ProduceError;

/// The metric label of an answered request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Invalid,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    UnsupportedMediaType,
    TooLarge,
    BodyTimeout,
    Unavailable,
    Overloaded,
    Failed,
    NotImplemented,
}

impl Outcome {
    pub const ALL: [Outcome; 12] = [
        Outcome::Accepted,
        Outcome::Invalid,
        Outcome::Unauthorized,
        Outcome::NotFound,
        Outcome::MethodNotAllowed,
        Outcome::UnsupportedMediaType,
        Outcome::TooLarge,
        Outcome::BodyTimeout,
        Outcome::Unavailable,
        Outcome::Overloaded,
        Outcome::Failed,
        Outcome::NotImplemented,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Invalid => "invalid",
            Outcome::Unauthorized => "unauthorized",
            Outcome::NotFound => "not_found",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::UnsupportedMediaType => "unsupported_media_type",
            Outcome::TooLarge => "too_large",
            Outcome::BodyTimeout => "body_timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::Overloaded => "overloaded",
            Outcome::Failed => "failed",
            Outcome::NotImplemented => "not_implemented",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Outcome::Accepted => StatusCode::OK,
            Outcome::Invalid => StatusCode::BAD_REQUEST,
            Outcome::Unauthorized => StatusCode::UNAUTHORIZED,
            Outcome::NotFound => StatusCode::NOT_FOUND,
            Outcome::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Outcome::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Outcome::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Outcome::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Outcome::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Outcome::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Outcome::Failed => StatusCode::INTERNAL_SERVER_ERROR,
            Outcome::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

/// What was wrong with a refused `Content-Type`: each answer says what to send instead, so a
/// sender is never told to send what it already sent.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MediaRefusal {
    /// Not `application/json` nor `application/*+json`.
    NotJson,
    /// `application/cloudevents+json` and its batch form: copied into the record, they would
    /// tell a CloudEvents reader the value is a structured event, and it is a webhook body.
    CloudEvents,
    /// A `charset` other than UTF-8, the only encoding of JSON (RFC 8259, section 8.1).
    Charset,
    /// Over 256 bytes, not visible ASCII, not RFC 9110's media-type grammar (a quote left open,
    /// say), or given twice: no one media type to read.
    Malformed,
}

impl MediaRefusal {
    pub fn message(self) -> &'static str {
        match self {
            MediaRefusal::NotJson => "content type must be application/json (or application/*+json)",
            MediaRefusal::CloudEvents => {
                "content type must be application/json: the body is stored as the webhook it is, not as a CloudEvent"
            }
            MediaRefusal::Charset => {
                "content type must be application/json in UTF-8 (charset=utf-8, or no charset)"
            }
            MediaRefusal::Malformed => {
                "content type is malformed, given twice or longer than 256 bytes; send application/json"
            }
        }
    }
}

/// Why a webhook was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no such path")]
    NotFound,
    #[error("only POST is accepted")]
    MethodNotAllowed,
    #[error("authentication failed ({})", .0.as_str())]
    Unauthorized(AuthFailure),
    #[error("{}", .0.message())]
    UnsupportedMediaType(MediaRefusal),
    #[error("the body must be sent uncompressed (no Content-Encoding but identity)")]
    UnsupportedEncoding,
    /// RFC 9112, section 6.1: a transfer coding the server does not understand gets 501.
    #[error(
        "the only transfer coding accepted is chunked, applied once: send the body uncompressed"
    )]
    UnsupportedTransferCoding,
    #[error("body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body was not received within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// Whole, but after the ack deadline (which counts from the request's head): stored now, the
    /// record would be acknowledged after its answer was due. Nothing was asked of Kafka, so it
    /// is not Kafka's failure to log or count.
    #[error("body was not received within the ack timeout ({0:?}) of the request, in which an event must be stored; it was not stored")]
    LateBody(std::time::Duration),
    /// RFC 9112, section 3.2: an HTTP/1.1 request without a `Host` header, or any request with
    /// more than one.
    #[error("{0}")]
    Host(&'static str),
    #[error("body could not be read: {0}")]
    BodyRead(String),
    /// The client reset its HTTP/2 stream (or closed the connection) before its body was whole:
    /// no one is left to answer, so it is counted as cut off, not as a refusal.
    #[error("the client reset the stream before its body was whole")]
    Reset,
    #[error("body is empty")]
    EmptyBody,
    /// Refused, and kept where it says: the dead-letter topic, or the spool on its way there.
    #[error("{0}; the body was kept in {1}")]
    Invalid(ClassifyError, KeptIn),
    /// More requests, or bytes of their bodies, than the limit (named, with its value).
    #[error("too many {0} in flight (limit {1})")]
    Overloaded(&'static str, u64),
    #[error(transparent)]
    Produce(#[from] ProduceError),
}

/// Where an invalid body was kept before its 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptIn {
    DeadLetterTopic,
    /// Kafka was late: spooled, it reaches the dead-letter topic at replay. Said so, as a sender
    /// (or an operator) looking for it in the topic at once would not find it there yet.
    Spool,
}

impl std::fmt::Display for KeptIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeptIn::DeadLetterTopic => "the dead-letter topic",
            KeptIn::Spool => "the spool, for the dead-letter topic once Kafka takes it",
        })
    }
}

impl WebhookError {
    pub fn outcome(&self) -> Outcome {
        match self {
            WebhookError::NotFound => Outcome::NotFound,
            WebhookError::MethodNotAllowed => Outcome::MethodNotAllowed,
            WebhookError::Unauthorized(_) => Outcome::Unauthorized,
            WebhookError::UnsupportedMediaType(_) | WebhookError::UnsupportedEncoding => {
                Outcome::UnsupportedMediaType
            }
            WebhookError::UnsupportedTransferCoding => Outcome::NotImplemented,
            WebhookError::TooLarge { .. } => Outcome::TooLarge,
            WebhookError::BodyTimeout(_) | WebhookError::LateBody(_) => Outcome::BodyTimeout,
            WebhookError::Host(_)
            | WebhookError::BodyRead(_)
            | WebhookError::Reset
            | WebhookError::EmptyBody
            | WebhookError::Invalid(..) => Outcome::Invalid,
            WebhookError::Produce(ProduceError::TooLarge) => Outcome::TooLarge,
            WebhookError::Overloaded(..) => Outcome::Overloaded,
            WebhookError::Produce(ProduceError::Rejected(_)) => Outcome::Failed,
            WebhookError::Produce(_) => Outcome::Unavailable,
        }
    }

    /// The short machine-readable code in the JSON answer.
    fn code(&self) -> &'static str {
        match self {
            WebhookError::NotFound => "not_found",
            WebhookError::MethodNotAllowed => "method_not_allowed",
            WebhookError::Unauthorized(_) => "unauthorized",
            WebhookError::UnsupportedMediaType(_) | WebhookError::UnsupportedEncoding => {
                "unsupported_media_type"
            }
            WebhookError::TooLarge { .. } | WebhookError::Produce(ProduceError::TooLarge) => {
                "too_large"
            }
            WebhookError::BodyTimeout(_) | WebhookError::LateBody(_) => "body_timeout",
            WebhookError::UnsupportedTransferCoding => "not_implemented",
            WebhookError::Host(_)
            | WebhookError::BodyRead(_)
            | WebhookError::Reset
            | WebhookError::EmptyBody => "bad_request",
            WebhookError::Invalid(..) => "invalid_payload",
            WebhookError::Produce(ProduceError::Rejected(_)) => "internal_error",
            WebhookError::Overloaded(..) | WebhookError::Produce(_) => "unavailable",
        }
    }

    /// The text a sender sees. Server-side failures say only that nothing was stored.
    pub fn public_message(&self) -> String {
        match self.outcome() {
            Outcome::Unavailable | Outcome::Overloaded => {
                "the event was not stored; retry later".to_string()
            }
            Outcome::Failed => "the event was not stored".to_string(),
            Outcome::Unauthorized => "valid Basic credentials are required".to_string(),
            _ => self.to_string(),
        }
    }

    /// The JSON body of the answer: `{"error": code, "message": text}`.
    pub fn body(&self) -> Vec<u8> {
        serde_json::json!({ "error": self.code(), "message": self.public_message() })
            .to_string()
            .into_bytes()
    }
}

#[cfg(test)]
mod tests;
