//! `POST /v1/consent/revoke`: a person withdrew consent. Their pending and retrying
//! deliveries are withheld, and events about them from before the revocation that arrive
//! later are not delivered. Opened by the admin token or a server source key (the backend
//! that runs the consent banner's server side).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use tally_core::event::{SourceKind, User};
use tally_core::identity::{HashedIdentity, RawIdentity};
use tally_store::{Revocation, person_keys};

use super::events::bearer;
use crate::api_error::ApiError;
use crate::state::CollectorState;

/// Body of `POST /v1/consent/revoke`: at least one way to find the person.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The browser's anonymous ID.
    pub anonymous_id: Option<String>,
    /// The advertiser's customer ID (`external_id` in events).
    #[serde(alias = "external_id")]
    pub user_id: Option<String>,
    /// Email address (hashed here; never stored raw).
    pub email: Option<String>,
    /// Phone number (hashed here; never stored raw).
    pub phone: Option<String>,
    /// When consent was withdrawn (RFC 3339 or Unix time); default now.
    pub at: Option<Value>,
}

fn authorize(state: &CollectorState, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = bearer(headers).ok_or(ApiError::MissingKey(
        "send the admin token or a server source key as `Authorization: Bearer <key>`",
    ))?;
    if state.admin_token.as_ref().is_some_and(|t| t.matches(token)) {
        return Ok(());
    }
    match state.sources.by_key(token) {
        Some(source) if source.kind() == SourceKind::Server => Ok(()),
        Some(_) => Err(ApiError::WrongKeyKind(
            "browser keys cannot revoke consent; call this from your backend with a server key",
        )),
        None => Err(ApiError::InvalidKey),
    }
}

/// `POST /v1/consent/revoke`.
pub async fn revoke(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    body: Result<Json<RevokeRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let Json(request) = body.map_err(|e| ApiError::InvalidBody(e.body_text()))?;
    let now = state.clock.now();
    let at = match &request.at {
        None => now,
        Some(v) => tally_core::timestamp::Timestamp::from_json(v)
            .map_err(|e| ApiError::InvalidBody(format!("at: {e}")))?,
    };
    let (identity, warnings) = HashedIdentity::hash(&RawIdentity {
        email: request.email.as_deref(),
        phone: request.phone.as_deref(),
        external_id: request.user_id.as_deref(),
        ..RawIdentity::default()
    });
    if let Some(w) = warnings.first() {
        return Err(ApiError::InvalidBody(format!("{w:?}")));
    }
    let user = User {
        anonymous_id: request.anonymous_id.filter(|a| !a.trim().is_empty()),
        identity,
        ..User::default()
    };
    let people = person_keys(&user);
    if people.is_empty() {
        return Err(ApiError::InvalidBody(
            "name the person: anonymous_id, user_id, email or phone".into(),
        ));
    }
    let cancelled = state
        .pipeline
        .store
        .revoke(now, Revocation { people, at })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "Revocation could not be stored.");
            ApiError::StoreUnavailable
        })?;
    tracing::info!(cancelled, "Consent revoked.");
    Ok(Json(
        json!({"cancelled_deliveries": cancelled, "revoked_at": at}),
    ))
}
