//! The tag container: its admin API (draft, diff, publish, versions, rollback, preview links)
//! and `GET /v1/container.js`, which delivers a browser source's live version (or, with a
//! valid preview token, its draft) to pages with tally.js.
//!
//! A container is named after its browser source (`web`); pages ask for it by the source's
//! public key. Publishing runs the linter (`tally_container::lint`) and refuses on errors.
//! Rollback publishes an earlier version's document as a new version, so the live version is
//! always the newest and every node, reading the same store, serves the same one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tally_container::preview::PreviewKey;
use tally_container::{Container, Finding, Severity, TagKind};
use tally_core::event::SourceKind;
use tally_store::ContainerPublish;
use tally_tag::Script;

use super::admin::authorize;
use crate::api_error::ApiError;
use crate::state::CollectorState;

/// Longest a preview link may live, and its default.
const MAX_PREVIEW_SECS: u64 = 24 * 3600;
const DEFAULT_PREVIEW_SECS: u64 = 3600;

/// Built container scripts, one per container: the live version's, rebuilt when a newer
/// version is published.
#[derive(Default)]
pub struct ContainerScripts {
    live: Mutex<HashMap<String, (u32, Arc<Script>)>>,
}

fn store_error(e: tally_store::StoreError) -> ApiError {
    tracing::warn!(error = %e, "Container store access failed.");
    ApiError::StoreUnavailable
}

/// The container of the browser source `name`, or 404.
fn container_name(state: &CollectorState, name: &str) -> Result<String, ApiError> {
    if state.sources.browser_by_name(name).is_some() {
        Ok(name.to_owned())
    } else {
        Err(ApiError::NotFound(format!(
            "no browser source named `{name}`: a container belongs to a browser source"
        )))
    }
}

fn document_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn split(findings: Vec<Finding>) -> (Vec<Finding>, Vec<Finding>) {
    findings
        .into_iter()
        .partition(|f| f.severity == Severity::Error)
}

/// `GET /v1/containers/{name}/draft`.
pub async fn get_draft(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let name = container_name(&state, &name)?;
    let draft = state
        .pipeline
        .store
        .container_draft(&name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("container `{name}` has no draft yet")))?;
    let findings = Container::parse(&draft.document)
        .map(|c| tally_container::lint(&c))
        .unwrap_or_default();
    Ok(Json(json!({
        "container": name,
        "updated": draft.updated,
        "document": document_value(&draft.document),
        "findings": findings,
    })))
}

/// `PUT /v1/containers/{name}/draft`: the body is the document; it must parse, and is
/// answered with what the linter finds (errors only refuse a publish).
pub async fn put_draft(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let name = container_name(&state, &name)?;
    let limit = tally_container::document::MAX_DOCUMENT_BYTES;
    let bytes = axum::body::to_bytes(body, limit + 1)
        .await
        .map_err(|_| ApiError::BodyTooLarge { limit })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::InvalidBody("the document is not UTF-8".into()))?;
    let container = Container::parse(text).map_err(|e| match e {
        tally_container::ContainerError::TooLarge { limit } => ApiError::BodyTooLarge { limit },
        other => ApiError::InvalidBody(other.to_string()),
    })?;
    let now = state.clock.now();
    state
        .pipeline
        .store
        .save_container_draft(now, &name, &container.to_json())
        .await
        .map_err(store_error)?;
    Ok(Json(json!({
        "container": name,
        "updated": now,
        "findings": tally_container::lint(&container),
    })))
}

async fn live(state: &CollectorState, name: &str) -> Result<Option<(u32, Container)>, ApiError> {
    let Some(version) = state
        .pipeline
        .store
        .container_version(name, None)
        .await
        .map_err(store_error)?
    else {
        return Ok(None);
    };
    let container = Container::parse(&version.document).map_err(|e| ApiError::BadQuery {
        code: "stored_container_unreadable",
        message: e.to_string(),
    })?;
    Ok(Some((version.info.version, container)))
}

/// `GET /v1/containers/{name}/diff`: the draft against the live version.
pub async fn diff(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let name = container_name(&state, &name)?;
    let draft = draft_container(&state, &name).await?;
    let live = live(&state, &name).await?;
    let changes = tally_container::diff(live.as_ref().map(|(_, c)| c), &draft);
    Ok(Json(json!({
        "container": name,
        "live_version": live.map(|(v, _)| v),
        "changes": changes,
        "text": tally_container::render(&changes),
    })))
}

async fn draft_container(state: &CollectorState, name: &str) -> Result<Container, ApiError> {
    let draft = state
        .pipeline
        .store
        .container_draft(name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("container `{name}` has no draft yet")))?;
    Container::parse(&draft.document).map_err(|e| ApiError::InvalidBody(e.to_string()))
}

/// Body of `POST /v1/containers/{name}/publish`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// What changed and why.
    pub note: Option<String>,
}

/// `POST /v1/containers/{name}/publish`: lints the draft; refuses (422 `lint_failed`, with
/// the findings) on errors, else publishes it as the next version, answered with the
/// warnings.
pub async fn publish(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Option<Json<PublishRequest>>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let name = container_name(&state, &name)?;
    let note = optional(body)?.note.unwrap_or_default();
    let draft = draft_container(&state, &name).await?;
    let (errors, warnings) = split(tally_container::lint(&draft));
    if !errors.is_empty() {
        let message = format!(
            "the draft has {} lint error(s); nothing was published: {}",
            errors.len(),
            errors
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"code": "lint_failed", "message": message, "errors": errors, "warnings": warnings})),
        )
            .into_response());
    }
    let info = state
        .pipeline
        .store
        .publish_container(
            state.clock.now(),
            &name,
            ContainerPublish {
                document: draft.to_json(),
                note,
                copied_from: None,
            },
        )
        .await
        .map_err(store_error)?;
    tracing::info!(container = %name, version = info.version, note = %info.note, "Container version published.");
    Ok(Json(json!({"container": name, "version": info, "warnings": warnings})).into_response())
}

fn optional<T: Default>(body: Result<Option<Json<T>>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Some(Json(b))) => Ok(b),
        Ok(None) => Ok(T::default()),
        Err(e) => Err(ApiError::InvalidBody(e.body_text())),
    }
}

/// `GET /v1/containers/{name}/versions`: newest (live) first.
pub async fn versions(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let name = container_name(&state, &name)?;
    let versions = state
        .pipeline
        .store
        .container_versions(&name)
        .await
        .map_err(store_error)?;
    let live = versions.first().map(|v| v.version);
    Ok(Json(
        json!({"container": name, "live": live, "versions": versions}),
    ))
}

/// `GET /v1/containers/{name}/versions/{version}`.
pub async fn version(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path((name, number)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let name = container_name(&state, &name)?;
    let number: u32 = number.parse().map_err(|_| ApiError::BadQuery {
        code: "invalid_version",
        message: format!("`{number}` is not a version number"),
    })?;
    let found = state
        .pipeline
        .store
        .container_version(&name, Some(number))
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("container `{name}` has no version {number}")))?;
    let mut out = json!(found.info);
    out["container"] = json!(name);
    out["document"] = document_value(&found.document);
    Ok(Json(out))
}

/// Body of `POST /v1/containers/{name}/rollback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to run again.
    pub version: u32,
    /// Why (default: "rollback to version N").
    pub note: Option<String>,
}

/// `POST /v1/containers/{name}/rollback`: publishes version N's document again as a new
/// version (`copied_from: N`); the draft is left as it is.
pub async fn rollback(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<RollbackRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let name = container_name(&state, &name)?;
    let Json(request) = body.map_err(|e| ApiError::InvalidBody(e.body_text()))?;
    let old = state
        .pipeline
        .store
        .container_version(&name, Some(request.version))
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "container `{name}` has no version {}",
                request.version
            ))
        })?;
    let note = request
        .note
        .unwrap_or_else(|| format!("rollback to version {}", request.version));
    let info = state
        .pipeline
        .store
        .publish_container(
            state.clock.now(),
            &name,
            ContainerPublish {
                document: old.document,
                note,
                copied_from: Some(request.version),
            },
        )
        .await
        .map_err(store_error)?;
    tracing::info!(container = %name, version = info.version, copied_from = request.version, "Container rolled back.");
    Ok(Json(json!({"container": name, "version": info})))
}

/// Body of `POST /v1/containers/{name}/preview`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// Lifetime of the link (default 3600, at most 86400).
    pub ttl_secs: Option<u64>,
}

fn preview_key(state: &CollectorState) -> Option<PreviewKey> {
    state
        .admin_token
        .as_ref()
        .map(|t| PreviewKey::from_admin_token(t.expose()))
}

/// `POST /v1/containers/{name}/preview`: a signed, short-lived token; a page opened with
/// `?tally_preview=<token>` runs the draft in that browser only.
pub async fn preview(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Option<Json<PreviewRequest>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let name = container_name(&state, &name)?;
    let ttl = optional(body)?
        .ttl_secs
        .unwrap_or(DEFAULT_PREVIEW_SECS)
        .clamp(1, MAX_PREVIEW_SECS);
    let key = preview_key(&state).ok_or(ApiError::AdminDisabled)?;
    let expires = tally_core::timestamp::Timestamp::from_millis(
        state.clock.now().millis() + (ttl as i64) * 1000,
    );
    let token = key.sign(&name, expires.millis());
    Ok(Json(json!({
        "container": name,
        "token": token,
        "expires": expires,
        "query": format!("tally_preview={token}"),
    })))
}

/// Query of `GET /v1/container.js`.
#[derive(Debug, Default, Deserialize)]
pub struct ScriptQuery {
    /// The browser source's public key.
    pub key: Option<String>,
    /// A preview token (from the browser's `tally_preview` cookie).
    pub preview: Option<String>,
}

/// The settings the runtime reads (see `tally-tag/assets/container.js`).
fn runtime_config(
    name: &str,
    version: Option<u32>,
    preview: bool,
    container: &Container,
    preview_error: Option<String>,
) -> String {
    let actions: serde_json::Map<String, Value> = container
        .tags
        .iter()
        .map(|(n, t)| (n.clone(), Value::String(t.action())))
        .collect();
    // Tally tags first, so pixels fired with them can take their event IDs.
    let mut order: Vec<&String> = container.tags.keys().collect();
    order.sort_by_key(|n| (container.tags[*n].kind != TagKind::Tally, *n));
    let mut config = json!({
        "container": name,
        "version": version,
        "preview": preview,
        "document": container,
        "actions": actions,
        "order": order,
    });
    if let Some(e) = preview_error {
        config["previewError"] = json!(e);
    }
    config.to_string()
}

fn script_response(script: &Script, headers: &HeaderMap, cache: &'static str) -> Response {
    let mut r = super::tag::serve(script, None, headers);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

fn comment(status: StatusCode, text: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        format!("/* tally: {text} */\n"),
    )
        .into_response()
}

/// `GET /v1/container.js?key=pk_...[&preview=TOKEN]`: the live version for the key's source
/// (`Cache-Control: no-cache` with an ETag, so a publish or rollback reaches the next page
/// view and an unchanged version costs a 304), or with a valid preview token the draft
/// (`no-store`). An invalid or expired token gets the live version, which tells the page to
/// drop the token.
pub async fn container_js(
    State(state): State<CollectorState>,
    Query(query): Query<ScriptQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(source) = query
        .key
        .as_deref()
        .and_then(|k| state.sources.by_key(k))
        .filter(|s| s.kind() == SourceKind::Browser)
    else {
        return comment(StatusCode::NOT_FOUND, "no browser source has this key");
    };
    let name = source.name().to_owned();
    match serve_container(&state, &name, query.preview.as_deref(), &headers).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, container = %name, "Container could not be served.");
            comment(
                StatusCode::SERVICE_UNAVAILABLE,
                "the container is unavailable right now",
            )
        }
    }
}

async fn serve_container(
    state: &CollectorState,
    name: &str,
    preview: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, tally_store::StoreError> {
    let store = &state.pipeline.store;
    let mut preview_error = None;
    if let Some(token) = preview {
        let checked = match preview_key(state) {
            Some(key) => key.verify(token, state.clock.now().millis()),
            None => Err(tally_container::PreviewError::Invalid),
        };
        match checked {
            Ok(container) if container == name => {
                let draft = store.container_draft(name).await?;
                let parsed = draft.as_ref().map(|d| Container::parse(&d.document));
                if let Some(Ok(container)) = parsed {
                    let script = tally_tag::container_script(&runtime_config(
                        name, None, true, &container, None,
                    ));
                    return Ok(script_response(&script, headers, "no-store"));
                }
                preview_error = Some("the container has no draft to preview".to_owned());
            }
            Ok(_) => preview_error = Some("the preview link is for another container".into()),
            Err(e) => preview_error = Some(e.to_string()),
        }
    }
    let Some(version) = store.live_container_version(name).await? else {
        return Ok(comment(StatusCode::OK, "no container version is published"));
    };
    let cached = state
        .container_scripts
        .live
        .lock()
        .expect("cache lock")
        .get(name)
        .filter(|(v, _)| *v == version)
        .map(|(_, s)| s.clone());
    let script = match cached {
        Some(s) => s,
        None => {
            let Some(stored) = store.container_version(name, Some(version)).await? else {
                return Ok(comment(StatusCode::OK, "no container version is published"));
            };
            let container = Container::parse(&stored.document).map_err(|e| {
                tally_store::StoreError::Corrupt {
                    table: "container_versions",
                    message: e.to_string(),
                }
            })?;
            let script = Arc::new(tally_tag::container_script(&runtime_config(
                name,
                Some(version),
                false,
                &container,
                None,
            )));
            state
                .container_scripts
                .live
                .lock()
                .expect("cache lock")
                .insert(name.to_owned(), (version, script.clone()));
            script
        }
    };
    if let Some(e) = preview_error {
        // Built per request: the page must learn that its token is of no use.
        let stored = store.container_version(name, Some(version)).await?;
        if let Some(Ok(container)) = stored.map(|s| Container::parse(&s.document)) {
            let script = tally_tag::container_script(&runtime_config(
                name,
                Some(version),
                false,
                &container,
                Some(e),
            ));
            return Ok(script_response(&script, headers, "no-store"));
        }
    }
    Ok(script_response(&script, headers, "no-cache"))
}
