//! A strict fake of the GA4 Measurement Protocol.
//!
//! Like the real one, `POST /mp/collect` answers `204` with no body to everything, junk
//! included, and silently drops what GA4 would drop; the fake records which events it kept
//! ([`FakeGa4::received`]) and which it dropped and why ([`FakeGa4::dropped`]), so tests can see
//! what the connector cannot. A request is dropped as a whole when the `api_secret` or
//! `measurement_id` does not match, the body is not a JSON object or is 130 kB or more,
//! `client_id` is missing, there are no events or more than 25, `user_data` comes without
//! `user_id`, a hash is not 64 lowercase hex, or a consent value is not `GRANTED`/`DENIED`.
//! An event is dropped alone for a bad or reserved name, more than 25 params, a bad or
//! reserved param name, a string value over 100 characters, a value without a currency, an
//! item without `item_id` and `item_name`, or a time more than 72 hours before the fake's now.
//!
//! `POST /debug/mp/collect` applies the same rules (except the `api_secret`, which the real
//! validator does not check either) and answers `{"validationMessages":[...]}` with GA4's
//! codes; it never records events as received.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use tally_core::timestamp::Timestamp;

use crate::{Captured, FakeDestination, Reply};

const MAX_EVENTS: usize = 25;
const MAX_PARAMS: usize = 25;
const MAX_NAME_CHARS: usize = 40;
const MAX_VALUE_CHARS: usize = 100;
const MAX_ITEM_CUSTOM_PARAMS: usize = 10;
const MAX_BODY_BYTES: usize = 130_000;
const MAX_AGE_MICROS: i64 = 72 * 3600 * 1_000_000;

const RESERVED_EVENT_NAMES: &[&str] = &[
    "ad_activeview",
    "ad_click",
    "ad_exposure",
    "ad_impression",
    "ad_query",
    "ad_reward",
    "adunit_exposure",
    "app_background",
    "app_clear_data",
    "app_exception",
    "app_remove",
    "app_store_refund",
    "app_store_subscription_cancel",
    "app_store_subscription_convert",
    "app_store_subscription_renew",
    "app_update",
    "app_upgrade",
    "click",
    "error",
    "file_download",
    "first_open",
    "first_visit",
    "form_start",
    "form_submit",
    "in_app_purchase",
    "os_update",
    "page_view",
    "scroll",
    "session_start",
    "session_start_with_rollout",
    "user_engagement",
    "video_progress",
    "video_start",
    "view_complete",
    "view_search_results",
];
const RESERVED_PREFIXES: &[&str] = &["_", "firebase_", "ga_", "google_", "gtag."];
const RESERVED_EVENT_PREFIXES: &[&str] = &["dynamic_link_", "notification_"];
const RESERVED_PARAM_NAMES: &[&str] = &["gclid", "session_number"];
/// Standard item fields, which do not count as custom item params.
const ITEM_STANDARD: &[&str] = &[
    "item_id",
    "item_name",
    "affiliation",
    "coupon",
    "discount",
    "index",
    "item_brand",
    "item_category",
    "item_category2",
    "item_category3",
    "item_category4",
    "item_category5",
    "item_list_id",
    "item_list_name",
    "item_variant",
    "location_id",
    "price",
    "quantity",
];

/// An event the fake dropped, as GA4 would have without saying so.
#[derive(Clone, Debug, PartialEq)]
pub struct DroppedEvent {
    /// The event object as sent (`Value::Null` when the body was not readable).
    pub event: Value,
    /// Why it was dropped.
    pub reason: String,
}

struct State {
    measurement_id: String,
    api_secret: String,
    now: Option<Timestamp>,
    kept: Vec<Value>,
    dropped: Vec<DroppedEvent>,
    reject_in_debug: Vec<String>,
}

/// The GA4 Measurement Protocol fake.
pub struct FakeGa4 {
    server: FakeDestination,
    state: Arc<Mutex<State>>,
}

impl FakeGa4 {
    /// Starts a fake for the web stream `measurement_id` with API secret `api_secret`.
    ///
    /// # Panics
    /// When it cannot bind a loopback port.
    pub async fn start(measurement_id: &str, api_secret: &str) -> FakeGa4 {
        let state = Arc::new(Mutex::new(State {
            measurement_id: measurement_id.to_owned(),
            api_secret: api_secret.to_owned(),
            now: None,
            kept: Vec::new(),
            dropped: Vec::new(),
            reject_in_debug: Vec::new(),
        }));
        let judged = state.clone();
        let server = FakeDestination::start_with(Arc::new(move |request: &Captured| {
            let mut state = judged.lock().expect("lock");
            answer(&mut state, request)
        }))
        .await;
        FakeGa4 { server, state }
    }

    /// The base URL (`http://127.0.0.1:<port>`), the connector's `endpoint`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Queues plain status answers that come before the fake's own judgement.
    pub fn script(&self, statuses: impl IntoIterator<Item = u16>) {
        self.server.script(statuses);
    }

    /// Queues one answer that comes before the fake's own judgement.
    pub fn script_one(&self, reply: Reply) {
        self.server.script_one(reply);
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Captured> {
        self.server.requests()
    }

    /// The events `/mp/collect` kept, in order, each with its request's context:
    /// `{client_id, user_id?, consent?, user_data?, timestamp_micros (the effective one), name,
    /// params}`.
    pub fn received(&self) -> Vec<Value> {
        self.state.lock().expect("lock").kept.clone()
    }

    /// The events `/mp/collect` silently dropped, in order, with the reason.
    pub fn dropped(&self) -> Vec<DroppedEvent> {
        self.state.lock().expect("lock").dropped.clone()
    }

    /// Makes `/debug/mp/collect` report a `VALUE_INVALID` message for any event whose name or
    /// `params.transaction_id` equals `key`.
    pub fn reject_in_debug(&self, key: &str) {
        self.state
            .lock()
            .expect("lock")
            .reject_in_debug
            .push(key.to_owned());
    }

    /// Judges event ages against `now` instead of the system clock.
    pub fn set_now(&self, now: Timestamp) {
        self.state.lock().expect("lock").now = Some(now);
    }
}

/// One thing GA4 would object to.
struct Problem {
    /// The event it concerns; `None` for the request as a whole.
    event: Option<usize>,
    field_path: String,
    description: String,
    code: &'static str,
}

impl Problem {
    fn request(field_path: &str, code: &'static str, description: impl Into<String>) -> Problem {
        Problem {
            event: None,
            field_path: field_path.to_owned(),
            description: description.into(),
            code,
        }
    }

    fn event(index: usize, code: &'static str, description: impl Into<String>) -> Problem {
        Problem {
            event: Some(index),
            field_path: "events".to_owned(),
            description: format!("Event at index: [{index}] {}", description.into()),
            code,
        }
    }
}

fn answer(state: &mut State, request: &Captured) -> Reply {
    if request.method != axum::http::Method::POST {
        return Reply::status(405);
    }
    let debug = match request.path.as_str() {
        "/mp/collect" => false,
        "/debug/mp/collect" => true,
        _ => return Reply::status(404),
    };
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(request.query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut problems = Vec::new();
    if param("measurement_id") != Some(state.measurement_id.as_str()) {
        problems.push(Problem::request(
            "measurement_id",
            "VALUE_INVALID",
            "Unknown or missing measurement_id.",
        ));
    }
    let body: Option<Map<String, Value>> = match serde_json::from_slice(&request.body) {
        Ok(Value::Object(body)) => Some(body),
        _ => None,
    };
    let Some(body) = body else {
        problems.push(Problem::request(
            "",
            "VALUE_INVALID",
            "The body is not a JSON object.",
        ));
        return finish(state, debug, param("api_secret"), &Map::new(), problems);
    };
    if request.body.len() >= MAX_BODY_BYTES {
        problems.push(Problem::request(
            "",
            "VALUE_OUT_OF_BOUNDS",
            "The request body must be smaller than 130 kB.",
        ));
    }
    let now_micros = state.now.unwrap_or_else(Timestamp::now).millis() * 1000;
    check_request(&body, now_micros, &mut problems);
    if debug {
        force_rejections(&state.reject_in_debug, &body, &mut problems);
    }
    finish(state, debug, param("api_secret"), &body, problems)
}

/// The answer, and for `/mp/collect` the record of what was kept and dropped.
fn finish(
    state: &mut State,
    debug: bool,
    api_secret: Option<&str>,
    body: &Map<String, Value>,
    problems: Vec<Problem>,
) -> Reply {
    if debug {
        let messages: Vec<Value> = problems
            .iter()
            .map(|p| {
                json!({"fieldPath": p.field_path, "description": p.description,
                       "validationCode": p.code})
            })
            .collect();
        return Reply::json(200, json!({"validationMessages": messages}).to_string());
    }
    let events: &[Value] = match body.get("events") {
        Some(Value::Array(events)) => events,
        _ => &[],
    };
    let request_problem = if api_secret != Some(state.api_secret.as_str()) {
        Some("api_secret does not match".to_owned())
    } else {
        problems
            .iter()
            .find(|p| p.event.is_none())
            .map(|p| format!("{}: {}", p.code, p.description))
    };
    if let Some(reason) = request_problem {
        if events.is_empty() {
            state.dropped.push(DroppedEvent {
                event: Value::Null,
                reason: reason.clone(),
            });
        }
        for event in events {
            state.dropped.push(DroppedEvent {
                event: event.clone(),
                reason: reason.clone(),
            });
        }
        return Reply::status(204);
    }
    for (index, event) in events.iter().enumerate() {
        if let Some(p) = problems.iter().find(|p| p.event == Some(index)) {
            state.dropped.push(DroppedEvent {
                event: event.clone(),
                reason: format!("{}: {}", p.code, p.description),
            });
            continue;
        }
        let mut kept = Map::new();
        for key in ["client_id", "user_id", "consent", "user_data"] {
            if let Some(v) = body.get(key) {
                kept.insert(key.to_owned(), v.clone());
            }
        }
        let time = event
            .get("timestamp_micros")
            .or_else(|| body.get("timestamp_micros"))
            .cloned()
            .unwrap_or(Value::Null);
        kept.insert("timestamp_micros".into(), time);
        kept.insert("name".into(), event["name"].clone());
        kept.insert(
            "params".into(),
            event.get("params").cloned().unwrap_or_else(|| json!({})),
        );
        state.kept.push(Value::Object(kept));
    }
    Reply::status(204)
}

fn check_request(body: &Map<String, Value>, now_micros: i64, problems: &mut Vec<Problem>) {
    match body.get("client_id") {
        Some(Value::String(id)) if !id.is_empty() => {}
        _ => problems.push(Problem::request(
            "client_id",
            "VALUE_REQUIRED",
            "client_id is required.",
        )),
    }
    if let Some(user_id) = body.get("user_id")
        && !user_id.is_string()
    {
        problems.push(Problem::request(
            "user_id",
            "VALUE_INVALID",
            "user_id must be a string.",
        ));
    }
    if let Some(user_data) = body.get("user_data") {
        if body.get("user_id").is_none() {
            problems.push(Problem::request(
                "user_data",
                "VALUE_REQUIRED",
                "user_id is required when user_data is set.",
            ));
        }
        check_user_data(user_data, problems);
    }
    if let Some(consent) = body.get("consent") {
        check_consent(consent, problems);
    }
    let request_time = match body.get("timestamp_micros") {
        None => None,
        Some(t) => match t.as_i64() {
            Some(t) => Some(t),
            None => {
                problems.push(Problem::request(
                    "timestamp_micros",
                    "VALUE_INVALID",
                    "timestamp_micros must be an integer.",
                ));
                None
            }
        },
    };
    let events = match body.get("events") {
        Some(Value::Array(events)) if !events.is_empty() => events,
        _ => {
            problems.push(Problem::request(
                "events",
                "VALUE_REQUIRED",
                "At least one event is required.",
            ));
            return;
        }
    };
    if events.len() > MAX_EVENTS {
        problems.push(Problem::request(
            "events",
            "EXCEEDED_MAX_ENTITIES",
            format!("A request can have at most {MAX_EVENTS} events."),
        ));
    }
    for (index, event) in events.iter().enumerate() {
        check_event(index, event, request_time, now_micros, problems);
    }
}

fn check_user_data(user_data: &Value, problems: &mut Vec<Problem>) {
    let Value::Object(fields) = user_data else {
        problems.push(Problem::request(
            "user_data",
            "VALUE_INVALID",
            "user_data must be an object.",
        ));
        return;
    };
    for (key, value) in fields {
        if !matches!(
            key.as_str(),
            "sha256_email_address" | "sha256_phone_number" | "address"
        ) {
            problems.push(Problem::request(
                &format!("user_data.{key}"),
                "NAME_INVALID",
                format!("Unknown user_data field {key}."),
            ));
            continue;
        }
        if key == "address" {
            continue;
        }
        let hashes_ok = value
            .as_array()
            .is_some_and(|list| !list.is_empty() && list.iter().all(is_sha256_hex));
        if !hashes_ok {
            problems.push(Problem::request(
                &format!("user_data.{key}"),
                "VALUE_INVALID",
                format!("{key} must be a list of SHA-256 hashes as 64 lowercase hex characters."),
            ));
        }
    }
}

fn is_sha256_hex(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn check_consent(consent: &Value, problems: &mut Vec<Problem>) {
    let Value::Object(fields) = consent else {
        problems.push(Problem::request(
            "consent",
            "VALUE_INVALID",
            "consent must be an object.",
        ));
        return;
    };
    for (key, value) in fields {
        if !matches!(key.as_str(), "ad_user_data" | "ad_personalization") {
            problems.push(Problem::request(
                &format!("consent.{key}"),
                "NAME_INVALID",
                format!("Unknown consent field {key}."),
            ));
        } else if !matches!(value.as_str(), Some("GRANTED" | "DENIED")) {
            problems.push(Problem::request(
                &format!("consent.{key}"),
                "VALUE_INVALID",
                format!("{key} must be GRANTED or DENIED."),
            ));
        }
    }
}

fn check_event(
    index: usize,
    event: &Value,
    request_time: Option<i64>,
    now_micros: i64,
    problems: &mut Vec<Problem>,
) {
    let Some(name) = event.get("name").and_then(Value::as_str) else {
        problems.push(Problem::event(index, "VALUE_REQUIRED", "has no name."));
        return;
    };
    if let Some((code, why)) = event_name_problem(name) {
        problems.push(Problem::event(
            index,
            code,
            format!("has invalid name [{name}]. {why}"),
        ));
    }
    let time = match event.get("timestamp_micros") {
        Some(t) => match t.as_i64() {
            Some(t) => Some(t),
            None => {
                problems.push(Problem::event(
                    index,
                    "VALUE_INVALID",
                    "has a timestamp_micros that is not an integer.",
                ));
                None
            }
        },
        None => request_time,
    };
    if let Some(time) = time
        && now_micros - time > MAX_AGE_MICROS
    {
        problems.push(Problem::event(
            index,
            "VALUE_OUT_OF_BOUNDS",
            "has a timestamp more than 72 hours in the past.",
        ));
    }
    let params = match event.get("params") {
        None => return,
        Some(Value::Object(params)) => params,
        Some(_) => {
            problems.push(Problem::event(
                index,
                "VALUE_INVALID",
                "has params that are not an object.",
            ));
            return;
        }
    };
    if params.len() > MAX_PARAMS {
        problems.push(Problem::event(
            index,
            "EXCEEDED_MAX_ENTITIES",
            format!("has more than {MAX_PARAMS} params."),
        ));
    }
    if params.contains_key("value") && !params.contains_key("currency") {
        problems.push(Problem::event(
            index,
            "VALUE_REQUIRED",
            "has a value but no currency.",
        ));
    }
    for (name, value) in params {
        if name == "items" {
            check_items(index, value, problems);
            continue;
        }
        check_param(index, name, value, "param", problems);
    }
}

fn check_param(index: usize, name: &str, value: &Value, what: &str, problems: &mut Vec<Problem>) {
    if let Some((code, why)) = param_name_problem(name) {
        problems.push(Problem::event(
            index,
            code,
            format!("has {what} with invalid name [{name}]. {why}"),
        ));
    }
    match value {
        Value::String(s) if s.chars().count() > MAX_VALUE_CHARS => problems.push(Problem::event(
            index,
            "VALUE_OUT_OF_BOUNDS",
            format!("has {what} [{name}] with a value longer than {MAX_VALUE_CHARS} characters."),
        )),
        Value::String(_) | Value::Number(_) => {}
        _ => problems.push(Problem::event(
            index,
            "VALUE_INVALID",
            format!("has {what} [{name}] that is not a string or number."),
        )),
    }
}

fn check_items(index: usize, items: &Value, problems: &mut Vec<Problem>) {
    let Value::Array(items) = items else {
        problems.push(Problem::event(
            index,
            "VALUE_INVALID",
            "has items that are not a list.",
        ));
        return;
    };
    for item in items {
        let Value::Object(fields) = item else {
            problems.push(Problem::event(
                index,
                "VALUE_INVALID",
                "has an item that is not an object.",
            ));
            continue;
        };
        if !fields.contains_key("item_id") && !fields.contains_key("item_name") {
            problems.push(Problem::event(
                index,
                "VALUE_REQUIRED",
                "has an item without item_id or item_name.",
            ));
        }
        let custom = fields
            .keys()
            .filter(|k| !ITEM_STANDARD.contains(&k.as_str()))
            .count();
        if custom > MAX_ITEM_CUSTOM_PARAMS {
            problems.push(Problem::event(
                index,
                "EXCEEDED_MAX_ENTITIES",
                format!("has an item with more than {MAX_ITEM_CUSTOM_PARAMS} custom params."),
            ));
        }
        for (name, value) in fields {
            check_param(index, name, value, "an item param", problems);
        }
    }
}

fn force_rejections(keys: &[String], body: &Map<String, Value>, problems: &mut Vec<Problem>) {
    let Some(Value::Array(events)) = body.get("events") else {
        return;
    };
    for (index, event) in events.iter().enumerate() {
        let name = event.get("name").and_then(Value::as_str);
        let transaction = event
            .get("params")
            .and_then(|p| p.get("transaction_id"))
            .and_then(Value::as_str);
        if keys
            .iter()
            .any(|k| Some(k.as_str()) == name || Some(k.as_str()) == transaction)
        {
            problems.push(Problem::event(
                index,
                "VALUE_INVALID",
                "was refused (the fake's reject_in_debug).",
            ));
        }
    }
}

fn name_shape_problem(name: &str) -> Option<(&'static str, String)> {
    let count = name.chars().count();
    if count == 0 || count > MAX_NAME_CHARS {
        return Some((
            "NAME_INVALID",
            format!("Names must be 1 to {MAX_NAME_CHARS} characters."),
        ));
    }
    if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| name.starts_with(**p)) {
        return Some((
            "NAME_RESERVED",
            format!("The prefix [{prefix}] is reserved."),
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Some((
            "NAME_INVALID",
            "Names must start with an alphabetic character.".into(),
        ));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Some((
            "NAME_INVALID",
            "Names may only contain alphanumeric characters and underscores.".into(),
        ));
    }
    None
}

fn event_name_problem(name: &str) -> Option<(&'static str, String)> {
    if let Some(problem) = name_shape_problem(name) {
        return Some(problem);
    }
    if RESERVED_EVENT_NAMES.contains(&name)
        || RESERVED_EVENT_PREFIXES.iter().any(|p| name.starts_with(p))
    {
        return Some(("NAME_RESERVED", "The name is reserved.".into()));
    }
    None
}

fn param_name_problem(name: &str) -> Option<(&'static str, String)> {
    if let Some(problem) = name_shape_problem(name) {
        return Some(problem);
    }
    if RESERVED_PARAM_NAMES.contains(&name) {
        return Some(("NAME_RESERVED", "The name is reserved.".into()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(fake: &FakeGa4, path_and_query: &str, body: Value) -> (u16, String) {
        let response = reqwest::Client::new()
            .post(format!("{}{path_and_query}", fake.url()))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    fn now_micros() -> i64 {
        Timestamp::now().millis() * 1000
    }

    #[tokio::test]
    async fn collect_answers_204_to_junk_and_keeps_only_valid_events() {
        let fake = FakeGa4::start("G-TEST123", "s3cret").await;
        let ok = "/mp/collect?measurement_id=G-TEST123&api_secret=s3cret";
        let (status, body) = post(
            &fake,
            ok,
            json!({"client_id": "1.2", "timestamp_micros": now_micros(),
                   "events": [{"name": "purchase", "params": {"value": 1, "currency": "EUR"}},
                              {"name": "page_view"},
                              {"name": "lead", "params": {"x": "y".repeat(101)}}]}),
        )
        .await;
        assert_eq!((status, body.as_str()), (204, ""));
        assert_eq!(fake.received().len(), 1);
        assert_eq!(fake.received()[0]["name"], "purchase");
        let dropped = fake.dropped();
        assert_eq!(dropped.len(), 2);
        assert!(
            dropped[0].reason.starts_with("NAME_RESERVED"),
            "{dropped:?}"
        );
        assert!(dropped[1].reason.starts_with("VALUE_OUT_OF_BOUNDS"));

        let (status, _) = post(
            &fake,
            "/mp/collect?measurement_id=G-TEST123&api_secret=wrong",
            json!({"client_id": "1.2", "events": [{"name": "purchase"}]}),
        )
        .await;
        assert_eq!(status, 204);
        assert_eq!(
            fake.received().len(),
            1,
            "a wrong secret is dropped silently"
        );
        assert_eq!(fake.dropped()[2].reason, "api_secret does not match");

        let (status, _) = post(&fake, ok, json!("junk")).await;
        assert_eq!(status, 204);
        assert_eq!(fake.dropped().len(), 4);
    }

    #[tokio::test]
    async fn debug_lists_validation_messages_and_records_nothing() {
        let fake = FakeGa4::start("G-TEST123", "s3cret").await;
        let events: Vec<Value> = (0..26).map(|_| json!({"name": "purchase"})).collect();
        let (status, body) = post(
            &fake,
            "/debug/mp/collect?measurement_id=G-TEST123&api_secret=anything",
            json!({"events": events, "user_data": {"sha256_email_address": ["ABC"]}}),
        )
        .await;
        assert_eq!(status, 200);
        let body: Value = serde_json::from_str(&body).unwrap();
        let codes: Vec<&str> = body["validationMessages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["validationCode"].as_str().unwrap())
            .collect();
        assert_eq!(
            codes,
            [
                "VALUE_REQUIRED",
                "VALUE_REQUIRED",
                "VALUE_INVALID",
                "EXCEEDED_MAX_ENTITIES"
            ]
        );
        fake.reject_in_debug("1001");
        let (_, body) = post(
            &fake,
            "/debug/mp/collect?measurement_id=G-TEST123",
            json!({"client_id": "1.2", "events": [{"name": "purchase",
                   "params": {"transaction_id": "1001"}}]}),
        )
        .await;
        assert!(body.contains("reject_in_debug"), "{body}");
        assert!(fake.received().is_empty());
    }

    #[tokio::test]
    async fn old_events_are_dropped_against_the_fakes_clock() {
        let fake = FakeGa4::start("G-TEST123", "s3cret").await;
        fake.set_now(Timestamp::from_millis(1_000_000_000_000));
        let base = 1_000_000_000_000_i64 * 1000;
        let (status, _) = post(
            &fake,
            "/mp/collect?measurement_id=G-TEST123&api_secret=s3cret",
            json!({"client_id": "1.2", "timestamp_micros": base,
                   "events": [{"name": "purchase"},
                              {"name": "lead", "timestamp_micros": base - MAX_AGE_MICROS - 1}]}),
        )
        .await;
        assert_eq!(status, 204);
        assert_eq!(fake.received().len(), 1);
        assert_eq!(fake.received()[0]["timestamp_micros"], base);
        assert!(fake.dropped()[0].reason.contains("72 hours"));
    }
}
