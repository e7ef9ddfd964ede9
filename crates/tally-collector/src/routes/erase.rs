//! `POST /v1/erase` (admin token): right to erasure. Removes a person's events, identifiers
//! and deliveries, found by any identifier and through every key their events and identify
//! calls carry (see `tally_store::Store::erase`), and answers with what was removed.
//!
//! Identifiers are normalised and hashed exactly as ingest does (`tally_core::identity`), so
//! `Jane.Doe@Example.com` finds events sent with `jane.doe@example.com`; email and phone may
//! also be given as their SHA-256 (the Meta form tally indexes). Neither the answer nor the
//! logs carry an identifier: keys are shown as digests, and the audit line holds counts and a
//! hash of the request.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderMap;
use serde_json::{Map, Value, json};
use tally_core::event::User;
use tally_core::identity::{HashedIdentity, RawIdentity, sha256_hex};
use tally_store::{ERASE_MAX_ROUNDS, Erasure, person_keys};

use super::admin::authorize;
use crate::api_error::ApiError;
use crate::state::CollectorState;

/// Fields a request may carry.
const FIELDS: &[&str] = &[
    "anonymous_id",
    "user_id",
    "external_id",
    "email",
    "phone",
    "country",
    "dry_run",
];

/// A validated request: the person keys to start from, and whether to remove anything.
#[derive(Debug, PartialEq, Eq)]
pub struct EraseRequest {
    /// Person keys (`anon:`, `ext:`, `em:`, `ph:`), as the store indexes them.
    pub people: Vec<String>,
    /// Count only.
    pub dry_run: bool,
}

impl EraseRequest {
    /// Reads a request body. Messages name fields, never their values.
    ///
    /// # Errors
    /// [`ApiError::InvalidBody`] for anything but an object with at least one usable
    /// identifier and no unknown field.
    pub fn from_json(body: &Value) -> Result<EraseRequest, ApiError> {
        let invalid = |m: String| Err(ApiError::InvalidBody(m));
        let Some(obj) = body.as_object() else {
            return invalid(
                "the body must be a JSON object naming the person: anonymous_id, user_id, email or phone"
                    .into(),
            );
        };
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            let shown: String = unknown.chars().take(40).collect();
            return invalid(format!(
                "unknown field `{shown}`; expected {}",
                FIELDS.join(", ")
            ));
        }
        if obj.contains_key("user_id") && obj.contains_key("external_id") {
            return invalid("give user_id or its alias external_id, not both".into());
        }
        let anonymous_id = text(obj, "anonymous_id", true)?;
        let external_id = match text(obj, "user_id", true)? {
            Some(x) => Some(x),
            None => text(obj, "external_id", true)?,
        };
        let email = text(obj, "email", false)?;
        let phone = text(obj, "phone", false)?;
        let country = text(obj, "country", false)?;
        let dry_run = match obj.get("dry_run") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return invalid("`dry_run` must be true or false".into()),
        };
        let (identity, warnings) = HashedIdentity::hash(&RawIdentity {
            email: email.as_deref(),
            phone: phone.as_deref(),
            country: country.as_deref(),
            external_id: external_id.as_deref(),
            ..RawIdentity::default()
        });
        if let Some(w) = warnings.first() {
            // The identity module's messages never contain the input.
            return invalid(format!("`{}`: {}", w.field, w.message));
        }
        let people = person_keys(&User {
            anonymous_id,
            identity,
            ..User::default()
        });
        if people.is_empty() {
            return invalid(
                "name the person: at least one of anonymous_id, user_id (external_id), email or phone"
                    .into(),
            );
        }
        Ok(EraseRequest { people, dry_run })
    }

    /// A digest of the request for the audit line: SHA-256 over its person keys (in which
    /// email and phone are already hashed).
    pub fn digest(&self) -> String {
        sha256_hex(&self.people.join("\n"))
    }
}

/// A string field, trimmed; `None` when absent or null. IDs may also be numbers, as at ingest.
fn text(obj: &Map<String, Value>, field: &str, id: bool) -> Result<Option<String>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(ApiError::InvalidBody(format!("`{field}` is empty")))
        }
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(Value::Number(n)) if id => Ok(Some(n.to_string())),
        Some(_) => Err(ApiError::InvalidBody(format!("`{field}` must be a string"))),
    }
}

/// `POST /v1/erase`.
pub async fn erase(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    // A syntax error gives a position, never the text around it.
    let Json(body) = body.map_err(|e| ApiError::InvalidBody(e.body_text()))?;
    let request = EraseRequest::from_json(&body)?;
    let digest = request.digest();
    let report = state
        .pipeline
        .store
        .erase(
            state.clock.now(),
            Erasure {
                people: request.people,
                max_rounds: ERASE_MAX_ROUNDS,
                dry_run: request.dry_run,
            },
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, request = %digest, "Erasure could not be stored.");
            ApiError::StoreUnavailable
        })?;
    let d = &report.deliveries;
    tracing::info!(
        request = %digest,
        dry_run = report.dry_run,
        keys = report.keys_searched.len(),
        complete = report.complete,
        events = report.events,
        copies = report.copies,
        deliveries = d.pending + d.retrying + d.delivered + d.dead + d.needs_fix + d.withheld + d.in_flight,
        quarantine = report.quarantine,
        click_memories = report.click_memories,
        identity_links = report.identity_links,
        "Erasure request carried out."
    );
    let mut answer = json!(report);
    answer["request"] = json!(digest);
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(body: Value) -> Vec<String> {
        EraseRequest::from_json(&body).unwrap().people
    }

    fn refused(body: Value) -> String {
        match EraseRequest::from_json(&body) {
            Err(ApiError::InvalidBody(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn identifiers_become_the_keys_ingest_indexes() {
        let hashed = sha256_hex("jane.doe@example.com");
        assert_eq!(
            keys(json!({"email": " Jane.Doe@Example.COM", "anonymous_id": " v-1 ", "user_id": 42})),
            [
                "anon:v-1".to_owned(),
                "ext:42".into(),
                format!("em:{hashed}")
            ]
        );
        assert_eq!(
            keys(json!({"email": hashed.to_uppercase()})),
            [format!("em:{hashed}")]
        );
        assert_eq!(
            keys(json!({"phone": "+1 (650) 555-1212"})),
            [format!("ph:{}", sha256_hex("16505551212"))]
        );
        assert_eq!(
            keys(json!({"phone": "(650) 555-1212", "country": "US"})),
            [format!("ph:{}", sha256_hex("16505551212"))]
        );
        assert_eq!(keys(json!({"external_id": "c-1"})), ["ext:c-1"]);
        assert!(
            EraseRequest::from_json(&json!({"anonymous_id": "a", "dry_run": true}))
                .unwrap()
                .dry_run
        );
    }

    #[test]
    fn bad_requests_are_refused_without_echoing_identifiers() {
        assert!(refused(json!({})).contains("name the person"));
        assert!(refused(json!([])).contains("JSON object"));
        assert!(
            refused(json!({"email": "jane@example.com", "mail": "x"}))
                .contains("unknown field `mail`")
        );
        assert!(refused(json!({"user_id": "a", "external_id": "b"})).contains("not both"));
        assert!(refused(json!({"email": "  "})).contains("`email` is empty"));
        assert!(refused(json!({"email": 5})).contains("must be a string"));
        assert!(
            refused(json!({"anonymous_id": "a", "dry_run": "jane@example.com"}))
                .contains("true or false")
        );
        let m = refused(json!({"email": "jane-at-example.com"}));
        assert!(m.contains("`email`") && !m.contains("jane"), "{m}");
        let m = refused(json!({"phone": "555-1212-jane"}));
        assert!(!m.contains("jane"), "{m}");
    }
}
