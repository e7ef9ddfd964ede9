//! Reading a request body safely: content type, gzip with a limit on the *decompressed* size,
//! and splitting an event-or-batch envelope without parsing any event twice over.

use std::io::Read;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::api_error::ApiError;

/// Reads the whole body within `deadline`, decompressing gzip, refusing anything over `limit`
/// bytes.
///
/// # Errors
/// `BodyTooLarge`, `BodyTimeout`, `UnsupportedEncoding`, or `InvalidBody` for a corrupt gzip
/// stream.
pub async fn read(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .unwrap_or_default();
    // A deadline on the whole body, not per chunk: a byte a second would pass a per-chunk one.
    let raw = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::BodyTimeout)?
        .map_err(|_| ApiError::BodyTooLarge { limit })?;
    match encoding.as_str() {
        "" | "identity" => Ok(raw),
        "gzip" | "x-gzip" => {
            let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
            // One byte past the limit is enough to know a bomb is a bomb.
            flate2::read::MultiGzDecoder::new(&raw[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::InvalidBody(format!("gzip body cannot be decompressed: {e}"))
                })?;
            if out.len() > limit {
                return Err(ApiError::BodyTooLarge { limit });
            }
            Ok(Bytes::from(out))
        }
        other => Err(ApiError::UnsupportedEncoding(other.to_owned())),
    }
}

/// Refuses content types that cannot hold a JSON document (multipart uploads). Everything else
/// is read as JSON: `text/plain` is what `sendBeacon` sends, and `curl -d` labels JSON as a form.
///
/// # Errors
/// `UnsupportedMediaType`.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if ct.starts_with("multipart/") {
        Err(ApiError::UnsupportedMediaType(ct))
    } else {
        Ok(())
    }
}

/// The top level of a body: one event, or a batch, plus any key fields.
pub struct Envelope {
    /// The events, parsed, each with the size of its JSON text.
    pub events: Vec<RawEvent>,
    /// Whether the body was a `{"batch": ...}`.
    pub is_batch: bool,
    /// `key` (browser door) from the top level.
    pub key: Option<String>,
    /// `writeKey` (Segment) from the top level.
    pub write_key: Option<String>,
}

/// One event of a body.
pub struct RawEvent {
    /// Size of its JSON text in bytes.
    pub len: usize,
    /// The parsed JSON.
    pub value: Value,
}

#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow, default)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default, rename = "writeKey")]
    write_key: Option<String>,
}

/// Splits a body into parsed events. The whole body must be valid JSON: a lone surrogate or
/// nesting beyond serde_json's limit in any event refuses the request, as invalid JSON should.
///
/// A single event is parsed once. A batch is skimmed once for its elements, then each element
/// is parsed once (its text length is its size for `max_event_bytes`).
///
/// # Errors
/// `InvalidJson`, `InvalidBody` (not an object, `batch` not an array), `EmptyBatch`,
/// `BatchTooLarge`.
pub fn split(bytes: &[u8], max_batch_events: usize) -> Result<Envelope, ApiError> {
    // Without the text `"batch"` the body cannot be a batch (an escaped key is caught below).
    if memchr::memmem::find(bytes, b"\"batch\"").is_none() {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        let Value::Object(map) = &value else {
            return Err(not_an_envelope());
        };
        if !map.contains_key("batch") {
            let key = top_level_string(map, "key")?;
            let write_key = top_level_string(map, "writeKey")?;
            return Ok(Envelope {
                events: vec![RawEvent {
                    len: bytes.len(),
                    value,
                }],
                is_batch: false,
                key,
                write_key,
            });
        }
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // Tell invalid JSON from valid JSON of the wrong shape.
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
            .map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        return Err(not_an_envelope());
    }
    let top: Top<'_> = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidBody(e.to_string()),
        _ => ApiError::InvalidJson(e.to_string()),
    })?;
    let parse = |raw: &RawValue| -> Result<RawEvent, ApiError> {
        let value =
            serde_json::from_str(raw.get()).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        Ok(RawEvent {
            len: raw.get().len(),
            value,
        })
    };
    let Some(raw) = top.batch else {
        // `"batch"` appeared only inside a value: a single event after all.
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        return Ok(Envelope {
            events: vec![RawEvent {
                len: bytes.len(),
                value,
            }],
            is_batch: false,
            key: top.key,
            write_key: top.write_key,
        });
    };
    if raw.is_empty() {
        return Err(ApiError::EmptyBatch);
    }
    if raw.len() > max_batch_events {
        return Err(ApiError::BatchTooLarge {
            limit: max_batch_events,
            got: raw.len(),
        });
    }
    let events = raw.into_iter().map(parse).collect::<Result<Vec<_>, _>>()?;
    Ok(Envelope {
        events,
        is_batch: true,
        key: top.key,
        write_key: top.write_key,
    })
}

fn not_an_envelope() -> ApiError {
    ApiError::InvalidBody("the body must be an event object or {\"batch\": [...]}".into())
}

fn top_level_string(
    map: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<String>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::InvalidBody(format!("`{key}` must be a string"))),
    }
}
