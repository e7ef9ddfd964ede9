//! The event doors: `/v1/events` (server), `/v1/collect` (browser, CORS), and the
//! Segment-compatible `/v1/track`, `/v1/page`, `/v1/identify`, `/v1/batch`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use tally_core::event::SourceKind;
use tally_core::segment::CallType;

use crate::api_error::ApiError;
use crate::body;
use crate::cookie;
use crate::metrics::{DoorLabels, EventLabels, RejectionLabels, RequestLabels};
use crate::pipeline::{EventResult, Format, Sender};
use crate::sources::Source;
use crate::state::CollectorState;

/// `POST /v1/events`: server events, `Authorization: Bearer <server key>`.
pub async fn server_events(State(state): State<CollectorState>, req: Request) -> Response {
    let started = Instant::now();
    let result = async {
        // The key is in a header: refuse a bad one before reading the body.
        let source = bearer_source(&state, req.headers())?;
        if source.kind() != SourceKind::Server {
            return Err(ApiError::WrongKeyKind(
                "browser keys cannot use /v1/events; use /v1/collect or a server key",
            ));
        }
        let incoming = receive(&state, req, state.ingest.max_body_bytes).await?;
        let sender = admit(&state, &source, &incoming)?;
        run(
            &state,
            &sender,
            incoming.envelope.events,
            Format::Native,
            "events",
        )
        .await
    }
    .await;
    respond(&state, "events", started, result, None)
}

/// `POST /v1/collect`: the browser door. Public key in the body (`key`) or `?k=`.
pub async fn browser_collect(State(state): State<CollectorState>, req: Request) -> Response {
    let started = Instant::now();
    let origin = origin_of(req.headers()).map(str::to_owned);
    // The answer is readable by the page only when the key's own source allows its origin;
    // before the key is known (an unreadable body), when any browser source does.
    let mut key_source: Option<Arc<Source>> = None;
    // The anonymous ID a 200 may renew as a first-party cookie (`[tag] cookie_domain`).
    let mut renew: Option<String> = None;
    let result = async {
        let incoming = receive(&state, req, state.ingest.max_browser_body_bytes).await?;
        let key = incoming
            .envelope
            .key
            .clone()
            .or_else(|| query_param(incoming.query.as_deref(), "k"))
            .ok_or(ApiError::MissingKey(
                "the browser door needs the source key as `key` in the body or `?k=`",
            ))?;
        let source = state
            .sources
            .by_key(&key)
            .cloned()
            .ok_or(ApiError::InvalidKey)?;
        if source.kind() != SourceKind::Browser {
            return Err(ApiError::WrongKeyKind(
                "server keys are secret and cannot be used from a browser",
            ));
        }
        key_source = Some(source.clone());
        let sender = admit(&state, &source, &incoming)?;
        renew = cookie::anonymous_id_to_renew(&incoming.envelope.events);
        run(
            &state,
            &sender,
            incoming.envelope.events,
            Format::Native,
            "collect",
        )
        .await
    }
    .await;
    let cors_origin = origin.filter(|o| match &key_source {
        Some(source) => source.allows_origin(o),
        None => state.sources.any_allows_origin(o),
    });
    let mut response = respond(&state, "collect", started, result, cors_origin.as_deref());
    if cors_origin.is_some() {
        // tally.js sends simple requests (text/plain, never preflighted) with credentials, so
        // the anonymous-ID cookie can be renewed, and reads Retry-After to back off. Cookies
        // authorize nothing here (the key does); preflighted requests get no credentials.
        let h = response.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after"),
        );
    }
    if response.status() == StatusCode::OK
        && let (Some(id), Some(origin)) = (&renew, &cors_origin)
        && let Some(cookie) = cookie::set_cookie(&state.tag, origin, id)
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `OPTIONS /v1/collect`: CORS preflight, answered only for allowed origins.
pub async fn browser_preflight(
    State(state): State<CollectorState>,
    headers: HeaderMap,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    match origin.filter(|o| state.sources.any_allows_origin(o)) {
        Some(origin) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            add_cors(&mut r, origin);
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("content-type, content-encoding"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("86400"),
            );
            r
        }
        None => ApiError::OriginNotAllowed(origin.unwrap_or("(none)").to_owned()).into_response(),
    }
}

/// `POST /v1/track`.
pub async fn segment_track(state: State<CollectorState>, req: Request) -> Response {
    segment(state, req, Format::Segment(CallType::Track)).await
}

/// `POST /v1/page`.
pub async fn segment_page(state: State<CollectorState>, req: Request) -> Response {
    segment(state, req, Format::Segment(CallType::Page)).await
}

/// `POST /v1/identify`.
pub async fn segment_identify(state: State<CollectorState>, req: Request) -> Response {
    segment(state, req, Format::Segment(CallType::Identify)).await
}

/// `POST /v1/batch`.
pub async fn segment_batch(state: State<CollectorState>, req: Request) -> Response {
    segment(state, req, Format::SegmentBatch).await
}

async fn segment(State(state): State<CollectorState>, req: Request, format: Format) -> Response {
    let started = Instant::now();
    let basic_key = basic_user(req.headers());
    let result = async {
        let incoming = receive(&state, req, state.ingest.max_body_bytes).await?;
        if format == Format::SegmentBatch && !incoming.envelope.is_batch {
            return Err(ApiError::InvalidBody(
                "/v1/batch expects {\"batch\": [...]}".into(),
            ));
        }
        let key = basic_key
            .or(incoming.envelope.write_key.clone())
            .ok_or(ApiError::MissingKey(
                "send the write key as the HTTP Basic user name or as `writeKey`",
            ))?;
        let source = state
            .sources
            .by_key(&key)
            .cloned()
            .ok_or(ApiError::InvalidKey)?;
        let sender = admit(&state, &source, &incoming)?;
        run(&state, &sender, incoming.envelope.events, format, "segment").await
    }
    .await;
    respond(&state, "segment", started, result, None)
}

/// A request's body, read and split, with what the connection says about its sender.
struct Incoming {
    headers: HeaderMap,
    query: Option<String>,
    peer: Option<SocketAddr>,
    envelope: body::Envelope,
}

/// Reads and splits the body (at most `limit` bytes after decompression).
async fn receive(state: &CollectorState, req: Request, limit: usize) -> Result<Incoming, ApiError> {
    body::check_content_type(req.headers())?;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = req.into_parts();
    let deadline = std::time::Duration::from_millis(state.ingest.body_read_timeout_ms);
    let bytes = body::read(body, &parts.headers, limit, deadline).await?;
    let envelope = body::split(&bytes, state.ingest.max_batch_events)?;
    Ok(Incoming {
        headers: parts.headers,
        query: parts.uri.query().map(str::to_owned),
        peer,
        envelope,
    })
}

/// The rules every door applies once it knows the source: a browser key only from its
/// allowed origins, then the source's rate limit. Returns who is sending.
fn admit(state: &CollectorState, source: &Source, incoming: &Incoming) -> Result<Sender, ApiError> {
    if source.kind() == SourceKind::Browser
        && let Some(origin) = origin_of(&incoming.headers)
        && !source.allows_origin(origin)
    {
        return Err(ApiError::OriginNotAllowed(origin.to_owned()));
    }
    source
        .admit(incoming.envelope.events.len())
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    Ok(sender_for(state, source, &incoming.headers, incoming.peer))
}

fn origin_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())
}

async fn run(
    state: &CollectorState,
    sender: &Sender,
    events: Vec<crate::body::RawEvent>,
    format: Format,
    door: &'static str,
) -> Result<Vec<EventResult>, ApiError> {
    let count = events.len();
    let results = state.pipeline.ingest(sender, events, format, state.clock.now()).await.map_err(|e| {
        tracing::warn!(error = %e, source = %sender.source, events = count, "Store could not commit; answered 503.");
        ApiError::StoreUnavailable
    })?;
    for r in &results {
        state
            .metrics
            .events
            .get_or_create(&EventLabels {
                door,
                outcome: r.status,
            })
            .inc();
        if let Some(code) = &r.code {
            state
                .metrics
                .rejections
                .get_or_create(&RejectionLabels { code: code.clone() })
                .inc();
        }
    }
    Ok(results)
}

fn respond(
    state: &CollectorState,
    door: &'static str,
    started: Instant,
    result: Result<Vec<EventResult>, ApiError>,
    cors_origin: Option<&str>,
) -> Response {
    let mut response = match result {
        Ok(results) => (StatusCode::OK, Json(Answer { results })).into_response(),
        Err(e) => e.into_response(),
    };
    if let Some(origin) = cors_origin {
        add_cors(&mut response, origin);
    }
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            door,
            status: response.status().as_u16(),
        })
        .inc();
    state
        .metrics
        .request_duration
        .get_or_create(&DoorLabels { door })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The 200 body: one result per event, in order.
#[derive(serde::Serialize)]
struct Answer {
    results: Vec<EventResult>,
}

fn add_cors(response: &mut Response, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

fn bearer_source(state: &CollectorState, headers: &HeaderMap) -> Result<Arc<Source>, ApiError> {
    let token = bearer(headers).ok_or(ApiError::MissingKey(
        "send the source key as `Authorization: Bearer <key>`",
    ))?;
    state
        .sources
        .by_key(token)
        .cloned()
        .ok_or(ApiError::InvalidKey)
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn basic_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split(':').next().unwrap_or("");
    (!user.is_empty()).then(|| user.to_owned())
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let pairs: HashMap<String, String> = query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    pairs.get(name).cloned().filter(|v| !v.is_empty())
}

/// Who sent a request; a browser's IP and user agent come from the connection, a backend's do not
/// (they would be the backend's own).
fn sender_for(
    state: &CollectorState,
    source: &Source,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Sender {
    let browser = source.kind() == SourceKind::Browser;
    Sender {
        source: source.name().to_owned(),
        kind: source.kind(),
        client_ip: if browser {
            client_ip(state, headers, peer)
        } else {
            None
        },
        user_agent: if browser {
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        } else {
            None
        },
    }
}

fn client_ip(
    state: &CollectorState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Option<String> {
    let header_name = state.ingest.client_ip_header.trim();
    if !header_name.is_empty() {
        // The left-most address of X-Forwarded-For is the client as the first proxy saw it.
        return headers
            .get(header_name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
    }
    peer.map(|p| p.ip().to_string())
}
