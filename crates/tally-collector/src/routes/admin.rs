//! The admin API (`Authorization: Bearer <admin_token>`): ledger, quarantine, replay, dedup
//! statistics. Source keys never open it.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use tally_core::timestamp::Timestamp;
use tally_store::{DeliveryState, QuarantineFilter, QuarantineStatus, ReplayFilter};

use super::events::bearer;
use crate::api_error::ApiError;
use crate::state::CollectorState;

/// Lets only the admin token through (shared by every admin route).
pub(crate) fn authorize(state: &CollectorState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.admin_token else {
        return Err(ApiError::AdminDisabled);
    };
    match bearer(headers) {
        Some(given) if token.matches(given) => Ok(()),
        _ => Err(ApiError::AdminUnauthorized),
    }
}

/// A query string, read only after [`authorize`] so a caller without the token learns nothing
/// but 401 (extractors run before the handler, so handlers take the rejection and decide here).
fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|e| ApiError::BadQuery {
        code: "invalid_query",
        message: e.body_text(),
    })
}

/// An optional JSON body (absent without a content type), read only after [`authorize`].
fn optional_body<T: Default>(body: Result<Option<Json<T>>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Some(Json(b))) => Ok(b),
        Ok(None) => Ok(T::default()),
        Err(e) => Err(ApiError::InvalidBody(e.body_text())),
    }
}

fn store_error(e: tally_store::StoreError) -> ApiError {
    tracing::warn!(error = %e, "Admin API store read failed.");
    ApiError::StoreUnavailable
}

/// `GET /v1/ledger/{event_id}`: every stored event with this ID, merged, with every copy.
pub async fn ledger(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(event_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let entries = state
        .pipeline
        .store
        .ledger(&event_id)
        .await
        .map_err(store_error)?;
    if entries.is_empty() {
        return Err(ApiError::NotFound(format!("no event with ID `{event_id}`")));
    }
    Ok(Json(json!({"event_id": event_id, "events": entries})))
}

/// Query of `GET /v1/quarantine` and `POST /v1/quarantine/replay`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineQuery {
    /// `open` (default for replay) or `replayed`.
    pub status: Option<String>,
    /// Reason code.
    pub code: Option<String>,
    /// Event name.
    pub event: Option<String>,
    /// Rows after this ID.
    pub after: Option<i64>,
    /// Page size (≤ 1000).
    pub limit: Option<u32>,
}

impl QuarantineQuery {
    fn filter(self) -> Result<QuarantineFilter, ApiError> {
        let status = match self.status.as_deref() {
            None | Some("all") => None,
            Some("open") => Some(QuarantineStatus::Open),
            Some("replayed") => Some(QuarantineStatus::Replayed),
            Some(other) => {
                return Err(ApiError::BadQuery {
                    code: "invalid_status",
                    message: format!("status `{other}` is not one of open, replayed, all"),
                });
            }
        };
        Ok(QuarantineFilter {
            status,
            code: self.code,
            event_name: self.event,
            after_id: self.after,
            limit: Some(self.limit.unwrap_or(100).min(1000)),
        })
    }
}

/// `GET /v1/quarantine`: refused events with their reasons, oldest first.
pub async fn quarantine(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    query_string: Result<Query<QuarantineQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let query = query(query_string)?;
    let rows = state
        .pipeline
        .store
        .quarantine(query.filter()?)
        .await
        .map_err(store_error)?;
    let next_after = rows.last().map(|r| r.id);
    Ok(Json(json!({"quarantine": rows, "next_after": next_after})))
}

/// `POST /v1/quarantine/replay`: re-runs open rows through the current plan.
pub async fn replay(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    query_string: Result<Query<QuarantineQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let query = query(query_string)?;
    let mut filter = query.filter()?;
    filter.limit = None;
    let summary = state
        .pipeline
        .replay_quarantine(filter, state.clock.now())
        .await
        .map_err(store_error)?;
    Ok(Json(json!(summary)))
}

/// Query of `GET /v1/stats/dedup`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// Start of the period (RFC 3339 or Unix time); default: 7 days ago.
    pub since: Option<String>,
}

/// `GET /v1/stats/dedup`: dedup rate, ghosts, collisions and source pairs per event.
pub async fn dedup_stats(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    query_string: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let query = query(query_string)?;
    let since = match query.since {
        None => Timestamp::from_millis(state.clock.now().millis() - 7 * 86_400_000),
        Some(s) => {
            let v = s
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::String(s));
            Timestamp::from_json(&v).map_err(|e| ApiError::BadQuery {
                code: "invalid_since",
                message: e.to_string(),
            })?
        }
    };
    let stats = state
        .pipeline
        .store
        .dedup_stats(since)
        .await
        .map_err(store_error)?;
    let events: Vec<Value> = stats
        .into_iter()
        .map(|s| {
            let rate = if s.copies == 0 {
                0.0
            } else {
                (s.copies - s.events) as f64 / s.copies as f64
            };
            let mut v = json!(s);
            v["dedup_rate"] = json!((rate * 10_000.0).round() / 10_000.0);
            v
        })
        .collect();
    Ok(Json(json!({"since": since, "events": events})))
}

fn parse_time(field: &'static str, s: Option<String>) -> Result<Option<Timestamp>, ApiError> {
    let Some(s) = s else { return Ok(None) };
    let v = s
        .parse::<i64>()
        .map(Value::from)
        .unwrap_or(Value::String(s));
    Timestamp::from_json(&v)
        .map(Some)
        .map_err(|e| ApiError::BadQuery {
            code: field,
            message: e.to_string(),
        })
}

/// `GET /v1/destinations`: deliveries per destination and state; `withheld` is the consent gap.
pub async fn destinations(
    State(state): State<CollectorState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let stats = state
        .pipeline
        .store
        .destination_stats()
        .await
        .map_err(store_error)?;
    Ok(Json(json!({"destinations": stats})))
}

/// Query of `GET /v1/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// `dead` (default), `needs_fix`, `withheld`, `pending` or `delivered`.
    pub state: Option<String>,
    /// Only this destination.
    pub destination: Option<String>,
    /// Page size (≤ 1000, default 100).
    pub limit: Option<u32>,
}

/// `GET /v1/deliveries?state=dead`: dead letters (or other states), most recent first.
pub async fn deliveries(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    query_string: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let query = query(query_string)?;
    let wanted = query.state.as_deref().unwrap_or("dead");
    let delivery_state = DeliveryState::parse(wanted).ok_or_else(|| ApiError::BadQuery {
        code: "invalid_state",
        message: format!(
            "state `{wanted}` is not one of dead, needs_fix, withheld, pending, delivered"
        ),
    })?;
    let rows = state
        .pipeline
        .store
        .deliveries_in_state(
            delivery_state,
            query.destination,
            query.limit.unwrap_or(100).min(1000),
        )
        .await
        .map_err(store_error)?;
    Ok(Json(json!({"deliveries": rows})))
}

/// Body of `POST /v1/deliveries/replay`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryReplayRequest {
    /// Only this destination.
    pub destination: Option<String>,
    /// Only this event.
    pub event_id: Option<String>,
    /// Events from this time (RFC 3339 or Unix time).
    pub since: Option<String>,
    /// Events before this time.
    pub until: Option<String>,
    /// Also deliveries withheld for consent.
    #[serde(default)]
    pub include_withheld: bool,
}

/// `POST /v1/deliveries/replay`: dead-lettered and needs-fix deliveries back in the queue.
pub async fn replay_deliveries(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    body: Result<Option<Json<DeliveryReplayRequest>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let request = optional_body(body)?;
    let filter = ReplayFilter {
        destination: request.destination,
        event_id: request.event_id,
        since: parse_time("invalid_since", request.since)?,
        until: parse_time("invalid_until", request.until)?,
        include_withheld: request.include_withheld,
    };
    let (requeued, expired) = state
        .pipeline
        .store
        .replay_deliveries(state.clock.now(), filter)
        .await
        .map_err(store_error)?;
    Ok(Json(
        json!({"requeued": requeued, "past_deadline": expired}),
    ))
}

/// Body of `POST /v1/destinations/{name}/live`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoLiveRequest {
    /// Why it may go live (a passed test conversion, who checked it).
    pub note: Option<String>,
}

/// `POST /v1/destinations/{name}/live`: live events may go to this destination from now on
/// (`tally test-conversion` calls it when the destination passed).
pub async fn go_live(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Option<Json<GoLiveRequest>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let note = optional_body(body)?
        .note
        .unwrap_or_else(|| "declared live through the admin API".into());
    state
        .pipeline
        .store
        .go_live(state.clock.now(), &name, &note)
        .await
        .map_err(store_error)?;
    tracing::info!(destination = %name, note = %note, "Destination is live.");
    Ok(Json(json!({"destination": name, "live": true})))
}
