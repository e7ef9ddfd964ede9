//! `GET /tally.js`: the browser tag, first-party from tally's own host.
//!
//! Cacheable two ways: `/tally.js` is fresh for five minutes and then revalidated by its ETag
//! (`If-None-Match` → 304); `/tally.js?v=<hash>` with the current hash is immutable for a year,
//! so a page that pins the version never asks again. The hash is the one in the ETag. Gzipped
//! when the client accepts it.

use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tally_tag::Script;

/// Query of `GET /tally.js`.
#[derive(Debug, Default, Deserialize)]
pub struct TagQuery {
    /// The version the page pinned.
    pub v: Option<String>,
}

/// `GET /tally.js` (and `HEAD`).
pub async fn tally_js(Query(query): Query<TagQuery>, headers: HeaderMap) -> Response {
    serve(tally_tag::tally_js(), query.v.as_deref(), &headers)
}

/// Answers a script request: 304 when the client holds this version, else the script,
/// gzipped when accepted.
pub fn serve(script: &Script, pinned: Option<&str>, headers: &HeaderMap) -> Response {
    let gzip = accepts_gzip(headers);
    // One ETag per representation, as RFC 9110 asks; either matches for revalidation.
    let etag = if gzip {
        format!("\"{}-gz\"", script.hash)
    } else {
        format!("\"{}\"", script.hash)
    };
    let cache = if pinned == Some(script.hash.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    let mut response = if holds(headers, &script.hash) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzip {
        let mut r = script.gzip.clone().into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        script.source.clone().into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Pages that isolate themselves (COEP) may still load it.
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    response
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// Whether `If-None-Match` names this version (either representation, weak or strong).
fn holds(headers: &HeaderMap, hash: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|tag| tag == "*" || tag == hash || tag.strip_suffix("-gz") == Some(hash))
}
