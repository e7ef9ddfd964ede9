//! What every connector needs from HTTP: one client shape, `Retry-After`, transport failures as
//! dispositions, and short secret-free summaries for the ledger.

use std::time::Duration;

use reqwest::header::HeaderMap;
use tally_core::retry::{Disposition, classify_status};

use crate::{AttemptSummary, DestinationError};

/// Longest response excerpt kept in an attempt summary.
pub const SUMMARY_CHARS: usize = 300;

/// Most response bytes read (platform answers are small; a huge one is cut, not buffered).
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// The client every connector uses: rustls with the web PKI roots, no redirects (platform APIs
/// do not redirect, and following one could reach a private address), bounded timeouts.
pub fn client(timeout: Duration) -> Result<reqwest::Client, DestinationError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| DestinationError::Client(e.to_string()))
}

/// `Retry-After` as seconds or an HTTP date, if present and sane.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.timestamp() - chrono::Utc::now().timestamp();
    Some(Duration::from_secs(wait.max(0) as u64))
}

/// A response read to the end (up to [`MAX_RESPONSE_BYTES`]).
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After`, when sent.
    pub retry_after: Option<Duration>,
    /// Body bytes (cut at the limit).
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A short excerpt of the body for the ledger.
    pub fn excerpt(&self) -> String {
        excerpt(&self.body)
    }

    /// The default classification of the status (see [`classify_status`]).
    pub fn default_disposition(&self) -> Disposition {
        classify_status(self.status, self.retry_after)
    }

    /// `HTTP <status>: <excerpt>` as an attempt summary.
    pub fn summary(&self) -> AttemptSummary {
        AttemptSummary::new(
            Some(self.status),
            format!("HTTP {}: {}", self.status, self.excerpt()),
        )
    }
}

/// Sends a prepared request and reads the answer, or classifies the transport failure.
pub async fn execute(
    request: reqwest::RequestBuilder,
) -> Result<Response, (Disposition, AttemptSummary)> {
    let mut response = request.send().await.map_err(transport_failure)?;
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if room < chunk.len() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return Err(transport_failure(e)),
        }
    }
    Ok(Response {
        status,
        retry_after,
        body,
    })
}

/// A request that got no complete answer: timeouts and refused connections are retried with
/// the overload floor; anything else is retried on the normal schedule.
pub fn transport_failure(error: reqwest::Error) -> (Disposition, AttemptSummary) {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    // reqwest's Display includes the URL, which may carry a token in its query; drop it.
    let error = error.without_url();
    let text = format!("{kind}: {error}");
    (
        Disposition::Retry {
            reason: text.clone(),
            retry_after: None,
            overloaded: true,
        },
        AttemptSummary::new(None, text),
    )
}

/// The first [`SUMMARY_CHARS`] characters of `body` as text, whitespace collapsed.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() > SUMMARY_CHARS {
            break;
        }
    }
    if out.chars().count() > SUMMARY_CHARS {
        out = out.chars().take(SUMMARY_CHARS).collect();
        out.push('…');
    }
    if out.is_empty() {
        out.push_str("(empty body)");
    }
    out
}

/// Every event of a batch gets the same result (a 503 for the whole request, a bad token).
pub fn same_for_all(
    n: usize,
    result: (Disposition, AttemptSummary),
) -> Vec<(Disposition, AttemptSummary)> {
    vec![result; n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_ignores_garbage() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "120".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
    }

    #[test]
    fn excerpts_are_short_and_single_line() {
        let long = "x ".repeat(1000);
        let e = excerpt(long.as_bytes());
        assert!(e.chars().count() <= SUMMARY_CHARS + 1);
        assert!(!e.contains('\n'));
        assert_eq!(excerpt(b""), "(empty body)");
        assert_eq!(excerpt(b"{\n \"a\": 1\n}"), "{ \"a\": 1 }");
    }
}
