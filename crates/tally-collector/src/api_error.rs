//! Request-level errors and their HTTP answers, decided in one exhaustive match.
//!
//! Per-event problems are not here: they are answered inside a 200 as `rejected` results.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why a whole request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON (syntax, UTF-8, lone surrogates, nesting beyond the limit).
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON, but not an event object or a `{"batch": [...]}`.
    #[error("{0}")]
    InvalidBody(String),
    /// `{"batch": []}`.
    #[error("the batch is empty")]
    EmptyBatch,
    /// Body over the limit (after decompression).
    #[error("body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body did not arrive in full within `[ingest] body_read_timeout_ms`.
    #[error("the request body did not arrive in time; send it in one go")]
    BodyTimeout,
    /// More events than a batch may hold.
    #[error("batch holds {got} events; at most {limit} are accepted per request")]
    BatchTooLarge {
        /// The limit.
        limit: usize,
        /// What was sent.
        got: usize,
    },
    /// A content type the door does not read.
    #[error("content type `{0}` is not accepted; send application/json")]
    UnsupportedMediaType(String),
    /// A content encoding other than gzip.
    #[error("content encoding `{0}` is not accepted; send gzip or no encoding")]
    UnsupportedEncoding(String),
    /// No key presented.
    #[error("{0}")]
    MissingKey(&'static str),
    /// The key matches no source.
    #[error("the key is not valid")]
    InvalidKey,
    /// A key of the wrong kind for this door (a browser key on the server door).
    #[error("{0}")]
    WrongKeyKind(&'static str),
    /// A browser request from an origin its source does not allow.
    #[error("origin `{0}` is not allowed for this key")]
    OriginNotAllowed(String),
    /// The admin API has no token configured.
    #[error("the admin API is disabled: set admin_token (or TALLY_ADMIN_TOKEN)")]
    AdminDisabled,
    /// Missing or wrong admin token.
    #[error("a valid admin token is required")]
    AdminUnauthorized,
    /// Over the source's rate limit.
    #[error("rate limit exceeded; retry after {} s", .retry_after.as_secs().max(1))]
    RateLimited {
        /// How long to wait.
        retry_after: Duration,
    },
    /// The store could not commit; nothing from this request was stored.
    #[error("events could not be stored right now; retry")]
    StoreUnavailable,
    /// A malformed query parameter.
    #[error("{message}")]
    BadQuery {
        /// Code.
        code: &'static str,
        /// What was wrong.
        message: String,
    },
    /// Nothing at this path or with this ID.
    #[error("{0}")]
    NotFound(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::InvalidBody(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            ApiError::EmptyBatch => (StatusCode::BAD_REQUEST, "empty_batch"),
            ApiError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::BatchTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large"),
            ApiError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::UnsupportedEncoding(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding")
            }
            ApiError::MissingKey(_) => (StatusCode::UNAUTHORIZED, "missing_key"),
            ApiError::InvalidKey => (StatusCode::UNAUTHORIZED, "invalid_key"),
            ApiError::WrongKeyKind(_) => (StatusCode::UNAUTHORIZED, "wrong_key_kind"),
            ApiError::OriginNotAllowed(_) => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            ApiError::AdminDisabled => (StatusCode::UNAUTHORIZED, "admin_disabled"),
            ApiError::AdminUnauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::StoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            ApiError::BadQuery { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let retry_after = match &self {
            ApiError::RateLimited { retry_after } => Some(retry_after.as_secs().max(1)),
            ApiError::StoreUnavailable => Some(1),
            _ => None,
        };
        let mut response = (
            status,
            axum::Json(json!({"code": code, "message": self.to_string()})),
        )
            .into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
