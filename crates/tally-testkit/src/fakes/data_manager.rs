//! Fake of Google's Data Manager API, `POST /v1/events:ingest`, as strict as the real one is
//! documented to be: Bearer token, proto3 JSON field names (an unknown name refuses the
//! request), destinations with a 10-digit `GOOGLE_ADS` operating account and a conversion
//! action, at most 2,000 events, RFC 3339 `eventTimestamp`, `encoding` whenever `userData` is
//! sent, hashes as 64 lowercase hex, `CONSENT_*` enum values, at most one of gbraid/wbraid, and
//! a click ID or user identifier on every event.
//!
//! Fast-fail like the real API: the first invalid field refuses the whole request with 400
//! `INVALID_ARGUMENT`, an `ErrorInfo` reason and a `BadRequest` field violation naming the field
//! (`events[3].eventTimestamp`). Accepted events are recorded in order ([`received`]), once per
//! `transactionId` and conversion action; `validateOnly` requests record into [`validated`]
//! only. Success is `{"requestId": "..."}`.
//!
//! [`received`]: FakeDataManager::received
//! [`validated`]: FakeDataManager::validated

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method};
use serde_json::{Map, Value, json};
use tally_core::timestamp::Timestamp;

use crate::{Captured, FakeDestination, Reply};

/// Most events per request.
pub const MAX_EVENTS: usize = 2_000;
/// Most destinations per request.
pub const MAX_DESTINATIONS: usize = 10;
/// Most user identifiers per event.
pub const MAX_USER_IDENTIFIERS: usize = 10;

/// A fake Data Manager API on loopback.
pub struct FakeDataManager {
    fake: FakeDestination,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    access_token: String,
    received: Vec<Value>,
    validated: Vec<Value>,
    poisoned: HashSet<String>,
    unknown_actions: HashSet<String>,
    /// (conversion action, transactionId) pairs already ingested.
    seen: HashSet<(String, String)>,
    requests_accepted: u64,
}

impl FakeDataManager {
    /// Starts a fake that accepts `Authorization: Bearer <access_token>`.
    pub async fn start(access_token: &str) -> FakeDataManager {
        let state = Arc::new(Mutex::new(State {
            access_token: access_token.to_owned(),
            ..State::default()
        }));
        let handler_state = state.clone();
        let fake =
            FakeDestination::start_with(Arc::new(move |request| answer(&handler_state, request)))
                .await;
        FakeDataManager { fake, state }
    }

    /// `http://127.0.0.1:<port>`, the connector's `endpoint`.
    pub fn url(&self) -> String {
        self.fake.url()
    }

    /// Queues plain status answers that come before any validation.
    pub fn script(&self, statuses: impl IntoIterator<Item = u16>) {
        self.fake.script(statuses);
    }

    /// Queues one answer that comes before any validation (503 storms, 429 with Retry-After).
    pub fn script_one(&self, reply: Reply) {
        self.fake.script_one(reply);
    }

    /// Every request so far, scripted or not, oldest first.
    pub fn requests(&self) -> Vec<Captured> {
        self.fake.requests()
    }

    /// Every request body so far as JSON (non-JSON bodies as `null`), oldest first.
    pub fn request_bodies(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    /// The events ingested (not `validateOnly`, not duplicates), in order, as sent.
    pub fn received(&self) -> Vec<Value> {
        self.state.lock().expect("lock").received.clone()
    }

    /// The events of accepted `validateOnly` requests, in order, as sent.
    pub fn validated(&self) -> Vec<Value> {
        self.state.lock().expect("lock").validated.clone()
    }

    /// Makes any request holding an event with this `transactionId` fail fast (400
    /// `INVALID_ARGUMENT`, reason `INVALID_EVENT`, naming the event).
    pub fn poison(&self, transaction_id: &str) {
        let mut state = self.state.lock().expect("lock");
        state.poisoned.insert(transaction_id.to_owned());
    }

    /// Makes this conversion action unknown (400 `INVALID_CONVERSION_ACTION_ID` on
    /// `destinations[i].productDestinationId`).
    pub fn unknown_conversion_action(&self, id: &str) {
        let mut state = self.state.lock().expect("lock");
        state.unknown_actions.insert(id.to_owned());
    }
}

/// A fast-fail refusal: HTTP status, canonical status, reason, field path, description.
#[derive(Debug)]
struct Refusal {
    http: u16,
    status: &'static str,
    reason: &'static str,
    field: String,
    description: String,
}

impl Refusal {
    fn invalid(
        reason: &'static str,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Refusal {
            http: 400,
            status: "INVALID_ARGUMENT",
            reason,
            field: field.into(),
            description: description.into(),
        }
    }

    fn reply(&self) -> Reply {
        let mut details = vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": self.reason,
            "domain": "datamanager.googleapis.com",
        })];
        if !self.field.is_empty() {
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{
                    "field": self.field, "description": self.description, "reason": self.reason,
                }],
            }));
        }
        google_error(self.http, self.status, &self.description, details)
    }
}

/// The Google error envelope `{"error": {"code", "message", "status", "details"}}`.
pub(crate) fn google_error(http: u16, status: &str, message: &str, details: Vec<Value>) -> Reply {
    Reply::json(
        http,
        json!({"error": {"code": http, "message": message, "status": status, "details": details}})
            .to_string(),
    )
}

/// Whether `headers` carry `Authorization: Bearer <token>`.
pub(crate) fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given == token)
}

/// The 401 Google answers for a missing or wrong OAuth token.
pub(crate) fn unauthenticated(details: Vec<Value>) -> Reply {
    google_error(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login \
         cookie or other valid authentication credential.",
        details,
    )
}

/// 64 lowercase hex characters.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Ten ASCII digits.
pub(crate) fn is_customer_id(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit())
}

fn answer(state: &Mutex<State>, request: &Captured) -> Reply {
    if request.method != Method::POST || request.path != "/v1/events:ingest" {
        return google_error(
            404,
            "NOT_FOUND",
            &format!("The requested URL {} was not found.", request.path),
            Vec::new(),
        );
    }
    let mut state = state.lock().expect("lock");
    if !bearer_matches(&request.headers, &state.access_token) {
        return unauthenticated(vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
            "domain": "googleapis.com",
        })]);
    }
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => {
            return Refusal::invalid(
                "INVALID_ARGUMENT",
                "",
                format!("Invalid JSON payload received. {e}"),
            )
            .reply();
        }
    };
    let accepted = match validate(&body, &state) {
        Ok(accepted) => accepted,
        Err(refusal) => return refusal.reply(),
    };
    let validate_only = body.get("validateOnly").and_then(Value::as_bool) == Some(true);
    for (event, actions) in accepted {
        if validate_only {
            state.validated.push(event);
            continue;
        }
        let transaction = event
            .get("transactionId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut new = transaction.is_none();
        if let Some(transaction) = transaction {
            for action in actions {
                new |= state.seen.insert((action, transaction.clone()));
            }
        }
        if new {
            state.received.push(event);
        }
    }
    state.requests_accepted += 1;
    Reply::json(
        200,
        json!({"requestId": format!("fake-dm-{:08}", state.requests_accepted)}).to_string(),
    )
}

/// Each valid event with the conversion actions it goes to, or the first refusal.
fn validate(body: &Value, state: &State) -> Result<Vec<(Value, Vec<String>)>, Refusal> {
    let request = object(body, "")?;
    known_fields(
        request,
        "",
        &[
            "destinations",
            "events",
            "consent",
            "validateOnly",
            "encoding",
            "encryptionInfo",
        ],
    )?;
    if let Some(v) = request.get("validateOnly")
        && !v.is_boolean()
    {
        return Err(Refusal::invalid(
            "INVALID_FORMAT",
            "validateOnly",
            "must be a boolean",
        ));
    }
    if let Some(consent) = request.get("consent") {
        check_consent(consent, "consent")?;
    }
    let destinations = array(request.get("destinations"), "destinations")?;
    if destinations.len() > MAX_DESTINATIONS {
        return Err(Refusal::invalid(
            "TOO_MANY_DESTINATIONS",
            "destinations",
            "Maximum number of destinations allowed per request is 10.",
        ));
    }
    // (reference, conversion action) per destination.
    let mut targets: Vec<(Option<String>, String)> = Vec::new();
    for (i, destination) in destinations.iter().enumerate() {
        targets.push(check_destination(
            destination,
            &format!("destinations[{i}]"),
            state,
        )?);
    }
    let references: Vec<&str> = targets.iter().filter_map(|(r, _)| r.as_deref()).collect();
    if references.iter().collect::<HashSet<_>>().len() != references.len() {
        return Err(Refusal::invalid(
            "DUPLICATE_DESTINATION_REFERENCE",
            "destinations",
            "Two or more destinations in the request have the same reference.",
        ));
    }
    let events = array(request.get("events"), "events")?;
    if events.len() > MAX_EVENTS {
        return Err(Refusal::invalid(
            "TOO_MANY_EVENTS",
            "events",
            format!("At most {MAX_EVENTS} events can be sent in a single request."),
        ));
    }
    let encoding = match request.get("encoding") {
        None => None,
        Some(Value::String(e)) if e == "HEX" => Some("HEX"),
        Some(Value::String(e)) if e == "BASE64" => {
            return Err(Refusal::invalid(
                "INVALID_ENUM_VALUE",
                "encoding",
                "this fake supports HEX encoding only",
            ));
        }
        Some(_) => {
            return Err(Refusal::invalid(
                "INVALID_ENUM_VALUE",
                "encoding",
                "unknown encoding",
            ));
        }
    };
    let mut accepted = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let path = format!("events[{i}]");
        let actions = check_event(event, &path, &targets, encoding, state)?;
        accepted.push((event.clone(), actions));
    }
    Ok(accepted)
}

fn check_destination(
    destination: &Value,
    path: &str,
    state: &State,
) -> Result<(Option<String>, String), Refusal> {
    let fields = object(destination, path)?;
    known_fields(
        fields,
        path,
        &[
            "reference",
            "loginAccount",
            "linkedAccount",
            "operatingAccount",
            "productDestinationId",
        ],
    )?;
    let Some(operating) = fields.get("operatingAccount") else {
        return Err(Refusal::invalid(
            "REQUIRED_FIELD_MISSING",
            format!("{path}.operatingAccount"),
            "operatingAccount is required",
        ));
    };
    check_account(operating, &format!("{path}.operatingAccount"))?;
    if let Some(login) = fields.get("loginAccount") {
        check_account(login, &format!("{path}.loginAccount"))?;
    }
    let action_path = format!("{path}.productDestinationId");
    let action = match fields.get("productDestinationId") {
        Some(Value::String(id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
            id.clone()
        }
        Some(_) => {
            return Err(Refusal::invalid(
                "INVALID_CONVERSION_ACTION_ID",
                action_path,
                "Conversion action ID is not valid.",
            ));
        }
        None => {
            return Err(Refusal::invalid(
                "REQUIRED_FIELD_MISSING",
                action_path,
                "productDestinationId is required",
            ));
        }
    };
    if state.unknown_actions.contains(&action) {
        return Err(Refusal::invalid(
            "INVALID_CONVERSION_ACTION_ID",
            action_path,
            "Conversion action ID is not valid.",
        ));
    }
    let reference = match fields.get("reference") {
        None => None,
        Some(Value::String(r)) => Some(r.clone()),
        Some(_) => {
            return Err(Refusal::invalid(
                "INVALID_FORMAT",
                format!("{path}.reference"),
                "must be a string",
            ));
        }
    };
    Ok((reference, action))
}

fn check_account(account: &Value, path: &str) -> Result<(), Refusal> {
    let fields = object(account, path)?;
    known_fields(fields, path, &["accountType", "accountId", "product"])?;
    match fields.get("accountType").and_then(Value::as_str) {
        Some("GOOGLE_ADS") => {}
        Some(_) => {
            return Err(Refusal::invalid(
                "INVALID_DESTINATION",
                format!("{path}.accountType"),
                "this fake serves Google Ads accounts only",
            ));
        }
        None => {
            return Err(Refusal::invalid(
                "REQUIRED_FIELD_MISSING",
                format!("{path}.accountType"),
                "accountType is required",
            ));
        }
    }
    match fields.get("accountId").and_then(Value::as_str) {
        Some(id) if is_customer_id(id) => Ok(()),
        _ => Err(Refusal::invalid(
            "INVALID_FORMAT",
            format!("{path}.accountId"),
            "accountId must be the 10-digit customer ID without hyphens",
        )),
    }
}

/// Checks one event; returns the conversion actions it goes to.
fn check_event(
    event: &Value,
    path: &str,
    targets: &[(Option<String>, String)],
    encoding: Option<&str>,
    state: &State,
) -> Result<Vec<String>, Refusal> {
    let fields = object(event, path)?;
    known_fields(
        fields,
        path,
        &[
            "destinationReferences",
            "transactionId",
            "eventTimestamp",
            "lastUpdatedTimestamp",
            "userData",
            "consent",
            "adIdentifiers",
            "currency",
            "conversionValue",
            "eventSource",
            "eventDeviceInfo",
            "cartData",
            "customVariables",
            "experimentalFields",
            "userProperties",
        ],
    )?;
    match fields.get("eventTimestamp") {
        Some(Value::String(at)) if Timestamp::parse_str(at).is_ok() => {}
        Some(_) => {
            return Err(Refusal::invalid(
                "INVALID_FORMAT",
                format!("{path}.eventTimestamp"),
                "eventTimestamp must be an RFC 3339 date-time",
            ));
        }
        None => {
            return Err(Refusal::invalid(
                "REQUIRED_FIELD_MISSING",
                format!("{path}.eventTimestamp"),
                "eventTimestamp is required",
            ));
        }
    }
    match fields.get("transactionId") {
        None => {}
        Some(Value::String(id)) if state.poisoned.contains(id) => {
            return Err(Refusal::invalid(
                "INVALID_EVENT",
                path.to_owned(),
                "This event is not valid.",
            ));
        }
        Some(Value::String(_)) => {}
        Some(_) => {
            return Err(Refusal::invalid(
                "INVALID_FORMAT",
                format!("{path}.transactionId"),
                "must be a string",
            ));
        }
    }
    if let Some(value) = fields.get("conversionValue")
        && !value.is_number()
    {
        return Err(Refusal::invalid(
            "INVALID_NUMBER_FORMAT",
            format!("{path}.conversionValue"),
            "conversionValue must be a number",
        ));
    }
    if let Some(currency) = fields.get("currency") {
        let ok = currency
            .as_str()
            .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
        if !ok {
            return Err(Refusal::invalid(
                "INVALID_CURRENCY_CODE",
                format!("{path}.currency"),
                "The currency code is not supported.",
            ));
        }
    }
    if let Some(consent) = fields.get("consent") {
        check_consent(consent, &format!("{path}.consent"))?;
    }
    let has_click = match fields.get("adIdentifiers") {
        Some(ids) => check_ad_identifiers(ids, &format!("{path}.adIdentifiers"))?,
        None => false,
    };
    let has_user = match fields.get("userData") {
        Some(user) => {
            if encoding.is_none() {
                return Err(Refusal::invalid(
                    "REQUIRED_FIELD_MISSING",
                    "encoding",
                    "encoding is required when userData is sent",
                ));
            }
            check_user_data(user, &format!("{path}.userData"))?;
            true
        }
        None => false,
    };
    if !has_click && !has_user {
        return Err(Refusal::invalid(
            "NO_IDENTIFIERS_PROVIDED",
            path.to_owned(),
            "Events data contains no user identifiers or ad identifiers.",
        ));
    }
    match fields.get("destinationReferences") {
        None => Ok(targets.iter().map(|(_, action)| action.clone()).collect()),
        Some(references) => {
            let references = array(Some(references), &format!("{path}.destinationReferences"))?;
            let mut actions = Vec::new();
            for reference in references {
                let found = targets
                    .iter()
                    .find(|(r, _)| r.as_deref().is_some() && r.as_deref() == reference.as_str());
                match found {
                    Some((_, action)) => actions.push(action.clone()),
                    None => {
                        return Err(Refusal::invalid(
                            "INVALID_DESTINATION",
                            format!("{path}.destinationReferences"),
                            "no destination has this reference",
                        ));
                    }
                }
            }
            Ok(actions)
        }
    }
}

/// Whether a click ID is present (after checking the identifiers are well-formed).
fn check_ad_identifiers(ids: &Value, path: &str) -> Result<bool, Refusal> {
    let fields = object(ids, path)?;
    known_fields(
        fields,
        path,
        &[
            "sessionAttributes",
            "gclid",
            "gbraid",
            "wbraid",
            "landingPageDeviceInfo",
        ],
    )?;
    let mut clicks = 0;
    for name in ["gclid", "gbraid", "wbraid"] {
        match fields.get(name) {
            None => {}
            Some(Value::String(id)) if !id.is_empty() => clicks += 1,
            Some(_) => {
                return Err(Refusal::invalid(
                    "INVALID_FORMAT",
                    format!("{path}.{name}"),
                    "must be a non-empty string",
                ));
            }
        }
    }
    if fields.contains_key("gbraid") && fields.contains_key("wbraid") {
        return Err(Refusal::invalid(
            "INVALID_ARGUMENT",
            path.to_owned(),
            "At most one of gbraid and wbraid can be set.",
        ));
    }
    Ok(clicks > 0)
}

fn check_user_data(user: &Value, path: &str) -> Result<(), Refusal> {
    let fields = object(user, path)?;
    known_fields(fields, path, &["userIdentifiers"])?;
    let identifiers = array(
        fields.get("userIdentifiers"),
        &format!("{path}.userIdentifiers"),
    )?;
    if identifiers.len() > MAX_USER_IDENTIFIERS {
        return Err(Refusal::invalid(
            "TOO_MANY_USER_IDENTIFIERS",
            format!("{path}.userIdentifiers"),
            "At most 10 userIdentifiers can be provided.",
        ));
    }
    for (i, identifier) in identifiers.iter().enumerate() {
        let path = format!("{path}.userIdentifiers[{i}]");
        let fields = object(identifier, &path)?;
        known_fields(fields, &path, &["emailAddress", "phoneNumber", "address"])?;
        if fields.len() != 1 {
            return Err(Refusal::invalid(
                "INVALID_ARGUMENT",
                path,
                "exactly one of emailAddress, phoneNumber or address must be set",
            ));
        }
        for name in ["emailAddress", "phoneNumber"] {
            if let Some(hash) = fields.get(name) {
                check_hash(hash, &format!("{path}.{name}"))?;
            }
        }
        if let Some(address) = fields.get("address") {
            check_address(address, &format!("{path}.address"))?;
        }
    }
    Ok(())
}

fn check_address(address: &Value, path: &str) -> Result<(), Refusal> {
    let fields = object(address, path)?;
    known_fields(
        fields,
        path,
        &["givenName", "familyName", "regionCode", "postalCode"],
    )?;
    for name in ["givenName", "familyName", "regionCode", "postalCode"] {
        if !fields.contains_key(name) {
            return Err(Refusal::invalid(
                "REQUIRED_FIELD_MISSING",
                format!("{path}.{name}"),
                format!("{name} is required"),
            ));
        }
    }
    check_hash(&fields["givenName"], &format!("{path}.givenName"))?;
    check_hash(&fields["familyName"], &format!("{path}.familyName"))?;
    let region_ok = fields["regionCode"]
        .as_str()
        .is_some_and(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()));
    if !region_ok {
        return Err(Refusal::invalid(
            "INVALID_COUNTRY_CODE",
            format!("{path}.regionCode"),
            "Country code is not valid.",
        ));
    }
    let postal_ok = fields["postalCode"]
        .as_str()
        .is_some_and(|z| !z.trim().is_empty());
    if !postal_ok {
        return Err(Refusal::invalid(
            "INVALID_POSTAL_CODE",
            format!("{path}.postalCode"),
            "Postal code is not valid.",
        ));
    }
    Ok(())
}

fn check_hash(hash: &Value, path: &str) -> Result<(), Refusal> {
    if hash.as_str().is_some_and(is_sha256_hex) {
        Ok(())
    } else {
        Err(Refusal::invalid(
            "INVALID_SHA256_FORMAT",
            path.to_owned(),
            "The SHA256 encoded value is malformed.",
        ))
    }
}

fn check_consent(consent: &Value, path: &str) -> Result<(), Refusal> {
    let fields = object(consent, path)?;
    known_fields(fields, path, &["adUserData", "adPersonalization"])?;
    for (name, value) in fields {
        let ok = matches!(
            value.as_str(),
            Some("CONSENT_STATUS_UNSPECIFIED" | "CONSENT_GRANTED" | "CONSENT_DENIED")
        );
        if !ok {
            return Err(Refusal::invalid(
                "INVALID_ENUM_VALUE",
                format!("{path}.{name}"),
                "Enum value cannot be used.",
            ));
        }
    }
    Ok(())
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, Refusal> {
    value
        .as_object()
        .ok_or_else(|| Refusal::invalid("INVALID_FORMAT", path.to_owned(), "must be a JSON object"))
}

/// A required, non-empty array.
fn array<'a>(value: Option<&'a Value>, path: &str) -> Result<&'a Vec<Value>, Refusal> {
    match value.and_then(Value::as_array) {
        Some(items) if !items.is_empty() => Ok(items),
        Some(_) | None => Err(Refusal::invalid(
            "REQUIRED_FIELD_MISSING",
            path.to_owned(),
            format!("{path} is required and must be a non-empty list"),
        )),
    }
}

/// Refuses names the proto does not have, as the real JSON parser does.
fn known_fields(fields: &Map<String, Value>, path: &str, known: &[&str]) -> Result<(), Refusal> {
    match fields.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(unknown) => Err(Refusal::invalid(
            "INVALID_ARGUMENT",
            path.to_owned(),
            format!(
                "Invalid JSON payload received. Unknown name \"{unknown}\" at '{path}': Cannot \
                 find field."
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(transaction: &str) -> Value {
        json!({"transactionId": transaction, "eventTimestamp": "2025-11-20T10:14:00Z",
               "adIdentifiers": {"gclid": "g"}})
    }

    fn request(events: Vec<Value>) -> Value {
        json!({"destinations": [{"operatingAccount": {"accountType": "GOOGLE_ADS",
            "accountId": "1234567890"}, "productDestinationId": "55"}], "events": events})
    }

    async fn post(fake: &FakeDataManager, token: &str, body: &Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/events:ingest", fake.url()))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    #[tokio::test]
    async fn accepts_valid_events_once_per_transaction_id() {
        let fake = FakeDataManager::start("tok").await;
        let (status, body) = post(&fake, "tok", &request(vec![event("t1"), event("t2")])).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["requestId"].is_string());
        post(&fake, "tok", &request(vec![event("t1")])).await;
        assert_eq!(fake.received().len(), 2);
    }

    #[tokio::test]
    async fn refuses_bad_tokens_fields_and_poisoned_events() {
        let fake = FakeDataManager::start("tok").await;
        let (status, body) = post(&fake, "nope", &request(vec![event("t1")])).await;
        assert_eq!(
            (status, body["error"]["status"].as_str()),
            (401, Some("UNAUTHENTICATED"))
        );
        let mut bad = event("t1");
        bad["eventTimestamp"] = json!("2025-11-20 10:14:00");
        let (status, body) = post(&fake, "tok", &request(vec![event("t0"), bad])).await;
        assert_eq!(status, 400);
        let violation = &body["error"]["details"][1]["fieldViolations"][0];
        assert_eq!(violation["field"], "events[1].eventTimestamp");
        let mut unknown = event("t1");
        unknown["eventName"] = json!("x");
        assert_eq!(post(&fake, "tok", &request(vec![unknown])).await.0, 400);
        fake.poison("t9");
        let (status, body) = post(&fake, "tok", &request(vec![event("t9")])).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["details"][0]["reason"], "INVALID_EVENT");
        assert!(fake.received().is_empty());
    }

    #[tokio::test]
    async fn validate_only_records_nothing_as_received() {
        let fake = FakeDataManager::start("tok").await;
        let mut body = request(vec![event("t1")]);
        body["validateOnly"] = json!(true);
        assert_eq!(post(&fake, "tok", &body).await.0, 200);
        assert!(fake.received().is_empty());
        assert_eq!(fake.validated().len(), 1);
    }

    #[tokio::test]
    async fn user_data_needs_encoding_and_hex_hashes() {
        let fake = FakeDataManager::start("tok").await;
        let hash = "a".repeat(64);
        let with_user = json!({"transactionId": "t1", "eventTimestamp": "2025-11-20T10:14:00Z",
            "userData": {"userIdentifiers": [{"emailAddress": hash}]}});
        assert_eq!(
            post(&fake, "tok", &request(vec![with_user.clone()]))
                .await
                .0,
            400
        );
        let mut body = request(vec![with_user]);
        body["encoding"] = json!("HEX");
        assert_eq!(post(&fake, "tok", &body).await.0, 200);
        body["events"][0]["userData"]["userIdentifiers"][0]["emailAddress"] = json!("A".repeat(64));
        assert_eq!(post(&fake, "tok", &body).await.0, 400);
    }
}
