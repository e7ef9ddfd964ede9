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

#[cfg(test)]
mod tests {
    use std::io::Read;

    use axum::body::to_bytes;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    async fn body(r: Response) -> Vec<u8> {
        to_bytes(r.into_body(), usize::MAX).await.unwrap().to_vec()
    }

    #[tokio::test]
    async fn serves_the_script_with_its_etag_and_revalidates_to_304() {
        let script = Script::new("tally('page');");
        let r = serve(&script, None, &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        let etag = r.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(etag, format!("\"{}\"", script.hash));
        assert_eq!(r.headers()[header::CACHE_CONTROL], "public, max-age=300");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(body(r).await, b"tally('page');");

        let weak = format!("W/{etag}");
        let listed = format!("\"0123\", {etag}");
        for held in [etag.as_str(), &weak, &listed, "*"] {
            let r = serve(&script, None, &headers(&[("if-none-match", held)]));
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{held}");
            assert_eq!(r.headers()[header::ETAG], etag.as_str());
            assert!(body(r).await.is_empty());
        }
        let stale = serve(&script, None, &headers(&[("if-none-match", "\"0123\"")]));
        assert_eq!(stale.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn gzips_when_accepted_and_the_pinned_version_is_immutable() {
        let script = Script::new("tally('page');".repeat(100));
        let r = serve(
            &script,
            Some(&script.hash),
            &headers(&[("accept-encoding", "br, gzip;q=0.8")]),
        );
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(
            r.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(r.headers()[header::VARY], "Accept-Encoding");
        let gz = r.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(gz, format!("\"{}-gz\"", script.hash));
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&body(r).await[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, script.source);

        // The gzip ETag revalidates too; a refused gzip or an old pin gets the plain, short-lived one.
        let r = serve(&script, None, &headers(&[("if-none-match", &gz)]));
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let r = serve(
            &script,
            Some("0000000000000000"),
            &headers(&[("accept-encoding", "gzip;q=0, identity")]),
        );
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(r.headers()[header::CACHE_CONTROL], "public, max-age=300");
        assert_eq!(body(r).await, script.source);
    }
}
