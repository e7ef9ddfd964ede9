//! A strict fake of TikTok's Events API 2.0 (`POST /open_api/{version}/event/track/`).
//!
//! It checks the `Access-Token` header (exact token, no `Bearer`), the path, the JSON body
//! (`event_source`, `event_source_id` equal to the pixel, `data` of 1 to 1,000 events), and
//! every event: `event` name, `event_time` in Unix seconds and not older than 28 days,
//! `event_id`, the `user` fields with `email`/`phone`/`external_id` as 64 lowercase hex,
//! `properties` and `page` types, and no unknown keys. Like TikTok, it answers **HTTP 200**
//! with `{"code", "message", "request_id", "data"}`: `code` 0 when every event is taken, a
//! non-zero code (and nothing recorded) when anything is wrong.
//!
//! Accepted live events are deduplicated on (`event`, `event_id`) over 48 hours; duplicates are
//! kept apart ([`FakeTikTok::duplicates`]). Test events (with `test_event_code`) are kept per
//! code and never deduplicated.
//!
//! Time comes from the fake's own clock ([`FakeTikTok::set_now`]), the system clock unless set.
//!
//! Choices of the fake where the reference has no fact: a missing or wrong `Access-Token`
//! answers HTTP 200 with code 40105 (a real 401 with an empty body can be scripted with
//! [`FakeTikTok::script_one`]); every content error answers code 40002 with a message; an
//! unknown path answers HTTP 404; the 28-day age limit (documented for offline events) is
//! applied to web events too; an event more than an hour in the future (usually milliseconds
//! sent as seconds) is refused.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tally_core::timestamp::Timestamp;

use crate::{Captured, FakeDestination, Reply};

/// Code for an incorrect or revoked access token.
pub const CODE_BAD_TOKEN: i64 = 40105;
/// Code the fake answers for invalid parameters (and poisoned events).
pub const CODE_INVALID: i64 = 40002;

/// Most events per request.
pub const MAX_EVENTS: usize = 1000;
const MAX_AGE_MS: i64 = 28 * 24 * 3600 * 1000;
const MAX_FUTURE_MS: i64 = 3600 * 1000;
const DEDUP_WINDOW_MS: i64 = 48 * 3600 * 1000;

const TOP_LEVEL_KEYS: &[&str] = &[
    "event_source",
    "event_source_id",
    "test_event_code",
    "partner_name",
    "data",
];
const EVENT_KEYS: &[&str] = &[
    "event",
    "event_time",
    "event_id",
    "user",
    "properties",
    "page",
    "limited_data_use",
    "lead",
];
const HASHED_USER_KEYS: &[&str] = &["email", "phone", "external_id"];
const PLAIN_USER_KEYS: &[&str] = &[
    "ttclid",
    "ttp",
    "ip",
    "user_agent",
    "locale",
    "first_name",
    "last_name",
    "city",
    "state",
    "country",
    "zip_code",
];
const PROPERTY_KEYS: &[&str] = &[
    "contents",
    "content_type",
    "currency",
    "value",
    "query",
    "description",
    "order_id",
    "shop_id",
    "content_ids",
    "delivery_category",
    "num_items",
    "predicted_ltv",
    "search_string",
];
const CONTENT_KEYS: &[&str] = &[
    "content_id",
    "content_type",
    "content_name",
    "content_category",
    "price",
    "quantity",
    "brand",
];

#[derive(Default)]
struct State {
    now: Option<Timestamp>,
    accepted: Vec<Value>,
    duplicates: Vec<Value>,
    test_events: BTreeMap<String, Vec<Value>>,
    first_seen: HashMap<(String, String), i64>,
    poisoned: HashSet<String>,
    requests: u64,
}

/// A fake TikTok Events API for one pixel and access token.
pub struct FakeTikTok {
    server: FakeDestination,
    state: Arc<Mutex<State>>,
}

impl FakeTikTok {
    /// Starts a fake for `pixel_code` that accepts only `access_token`.
    ///
    /// # Panics
    /// When it cannot bind a loopback port.
    pub async fn start(pixel_code: &str, access_token: &str) -> FakeTikTok {
        let state = Arc::new(Mutex::new(State::default()));
        let judge = Judge {
            pixel_code: pixel_code.to_owned(),
            access_token: access_token.to_owned(),
            state: state.clone(),
        };
        let server = FakeDestination::start_with(Arc::new(move |req| judge.answer(req))).await;
        FakeTikTok { server, state }
    }

    /// `http://127.0.0.1:<port>`, the connector's `endpoint`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Queues plain status answers that come before any validation.
    pub fn script(&self, statuses: impl IntoIterator<Item = u16>) {
        self.server.script(statuses);
    }

    /// Queues one answer that comes before any validation.
    pub fn script_one(&self, reply: Reply) {
        self.server.script_one(reply);
    }

    /// Every request so far, oldest first (scripted and refused ones included).
    pub fn requests(&self) -> Vec<Captured> {
        self.server.requests()
    }

    /// How many requests arrived.
    pub fn request_count(&self) -> usize {
        self.server.request_count()
    }

    /// Accepted live events, first copies only, in arrival order.
    pub fn received(&self) -> Vec<Value> {
        self.lock().accepted.clone()
    }

    /// Accepted live events that repeated an (`event`, `event_id`) seen within 48 hours.
    pub fn duplicates(&self) -> Vec<Value> {
        self.lock().duplicates.clone()
    }

    /// Accepted events sent with `test_event_code` equal to `code`.
    pub fn test_events(&self, code: &str) -> Vec<Value> {
        self.lock()
            .test_events
            .get(code)
            .cloned()
            .unwrap_or_default()
    }

    /// Sets the fake's clock (for the 28-day limit and the 48-hour dedup window).
    pub fn set_now(&self, now: Timestamp) {
        self.lock().now = Some(now);
    }

    /// Refuses every request that contains an event with this `event_id` (HTTP 200, code
    /// [`CODE_INVALID`]).
    pub fn poison(&self, event_id: &str) {
        self.lock().poisoned.insert(event_id.to_owned());
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake tiktok state")
    }
}

struct Judge {
    pixel_code: String,
    access_token: String,
    state: Arc<Mutex<State>>,
}

/// A refusal: a TikTok code and message (HTTP 200), or an HTTP status without a body.
enum Refusal {
    Code(i64, String),
    Status(u16),
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::Code(CODE_INVALID, message.into())
}

impl Judge {
    fn answer(&self, req: &Captured) -> Reply {
        let mut state = self.state.lock().expect("fake tiktok state");
        state.requests += 1;
        let request_id = format!("2026112514{:08}", state.requests);
        let (code, message) = match self.judge(req, &mut state) {
            Ok(()) => (0, "OK".to_owned()),
            Err(Refusal::Code(code, message)) => (code, message),
            Err(Refusal::Status(status)) => return Reply::status(status),
        };
        Reply::json(
            200,
            json!({"code": code, "message": message, "request_id": request_id, "data": {}})
                .to_string(),
        )
    }

    fn judge(&self, req: &Captured, state: &mut State) -> Result<(), Refusal> {
        let segments: Vec<&str> = req.path.split('/').collect();
        let valid_path = matches!(
            segments[..],
            ["", "open_api", version, "event", "track", ""] if is_version(version)
        );
        if req.method != "POST" || !valid_path {
            return Err(Refusal::Status(404));
        }
        let token = req
            .headers
            .get("access-token")
            .and_then(|v| v.to_str().ok());
        if token != Some(self.access_token.as_str()) {
            return Err(Refusal::Code(
                CODE_BAD_TOKEN,
                "Access token is incorrect or has been revoked.".into(),
            ));
        }
        let json_body = req
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json_body {
            return Err(invalid("Content-Type must be application/json"));
        }
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&req.body) else {
            return Err(invalid("the body must be a JSON object"));
        };
        if let Some(key) = body.keys().find(|k| !TOP_LEVEL_KEYS.contains(&k.as_str())) {
            return Err(invalid(format!("unknown field {key}")));
        }
        if body.get("event_source").and_then(Value::as_str) != Some("web") {
            return Err(invalid("event_source must be web for a pixel"));
        }
        if body.get("event_source_id").and_then(Value::as_str) != Some(self.pixel_code.as_str()) {
            return Err(invalid(
                "event_source_id is not a pixel this token can send to",
            ));
        }
        let test_event_code = match body.get("test_event_code") {
            None => None,
            Some(Value::String(code)) if !code.is_empty() => Some(code.clone()),
            Some(_) => return Err(invalid("test_event_code must be a non-empty string")),
        };
        let Some(Value::Array(data)) = body.get("data") else {
            return Err(invalid("data is required and must be a list"));
        };
        if data.is_empty() || data.len() > MAX_EVENTS {
            return Err(invalid(format!(
                "data must hold 1 to {MAX_EVENTS} events, not {}",
                data.len()
            )));
        }
        let now = state.now.unwrap_or_else(Timestamp::now).millis();
        for (i, event) in data.iter().enumerate() {
            check_event(event, now, &state.poisoned)
                .map_err(|message| invalid(format!("data[{i}]: {message}")))?;
        }
        for event in data.iter().cloned() {
            if let Some(code) = &test_event_code {
                state
                    .test_events
                    .entry(code.clone())
                    .or_default()
                    .push(event);
                continue;
            }
            let text = |key: &str| {
                event
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let key = (text("event"), text("event_id"));
            let repeated = !key.1.is_empty()
                && state
                    .first_seen
                    .get(&key)
                    .is_some_and(|&first| now - first < DEDUP_WINDOW_MS);
            if repeated {
                state.duplicates.push(event);
            } else {
                if !key.1.is_empty() {
                    state.first_seen.insert(key, now);
                }
                state.accepted.push(event);
            }
        }
        Ok(())
    }
}

fn is_version(s: &str) -> bool {
    s.strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major
                    .bytes()
                    .chain(minor.bytes())
                    .all(|b| b.is_ascii_digit())
        })
}

/// What is wrong with one event, if anything.
fn check_event(event: &Value, now: i64, poisoned: &HashSet<String>) -> Result<(), String> {
    let Value::Object(event) = event else {
        return Err("an event must be an object".into());
    };
    if let Some(key) = event.keys().find(|k| !EVENT_KEYS.contains(&k.as_str())) {
        return Err(format!("unknown field {key}"));
    }
    match event.get("event_id") {
        Some(Value::String(id)) if poisoned.contains(id) => {
            return Err(format!("event {id} is poisoned in this fake"));
        }
        None | Some(Value::String(_)) => {}
        Some(_) => return Err("event_id must be a string".into()),
    }
    if !matches!(event.get("event"), Some(Value::String(name)) if !name.is_empty()) {
        return Err("event is required".into());
    }
    let Some(secs) = event.get("event_time").and_then(Value::as_i64) else {
        return Err("event_time is required as Unix seconds (an integer)".into());
    };
    let millis = secs.saturating_mul(1000);
    if now - millis > MAX_AGE_MS {
        return Err("event_time is more than 28 days ago".into());
    }
    if millis - now > MAX_FUTURE_MS {
        return Err("event_time is in the future".into());
    }
    if let Some(user) = event.get("user") {
        check_user(user)?;
    }
    if let Some(properties) = event.get("properties") {
        check_properties(properties)?;
    }
    if let Some(page) = event.get("page") {
        let valid = page.as_object().is_some_and(|page| {
            page.iter()
                .all(|(k, v)| matches!(k.as_str(), "url" | "referrer") && v.is_string())
        });
        if !valid {
            return Err("page must be an object of url and referrer strings".into());
        }
    }
    if event
        .get("limited_data_use")
        .is_some_and(|v| !v.is_boolean())
    {
        return Err("limited_data_use must be a boolean".into());
    }
    Ok(())
}

fn check_user(user: &Value) -> Result<(), String> {
    let Value::Object(user) = user else {
        return Err("user must be an object".into());
    };
    for (key, value) in user {
        if HASHED_USER_KEYS.contains(&key.as_str()) {
            let values: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                single => vec![single],
            };
            if values.is_empty()
                || !values
                    .iter()
                    .all(|v| v.as_str().is_some_and(is_lower_sha256))
            {
                return Err(format!(
                    "user.{key} must be SHA-256 hashed (64 lowercase hex)"
                ));
            }
        } else if PLAIN_USER_KEYS.contains(&key.as_str()) {
            if value.as_str().is_none_or(str::is_empty) {
                return Err(format!("user.{key} must be a non-empty string"));
            }
        } else {
            return Err(format!("unknown field user.{key}"));
        }
    }
    Ok(())
}

fn check_properties(properties: &Value) -> Result<(), String> {
    let Value::Object(properties) = properties else {
        return Err("properties must be an object".into());
    };
    if let Some(key) = properties
        .keys()
        .find(|k| !PROPERTY_KEYS.contains(&k.as_str()))
    {
        return Err(format!("unknown field properties.{key}"));
    }
    if properties.get("value").is_some_and(|v| !v.is_number()) {
        return Err("properties.value must be a number".into());
    }
    if let Some(currency) = properties.get("currency") {
        let valid = currency
            .as_str()
            .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
        if !valid {
            return Err("properties.currency must be an ISO 4217 code".into());
        }
    }
    if properties.get("order_id").is_some_and(|v| !v.is_string()) {
        return Err("properties.order_id must be a string".into());
    }
    if properties
        .get("content_type")
        .is_some_and(|v| !matches!(v.as_str(), Some("product" | "product_group")))
    {
        return Err("properties.content_type must be product or product_group".into());
    }
    if let Some(contents) = properties.get("contents") {
        let Some(contents) = contents.as_array() else {
            return Err("properties.contents must be a list".into());
        };
        for content in contents {
            check_content(content)?;
        }
    }
    Ok(())
}

fn check_content(content: &Value) -> Result<(), String> {
    let Value::Object(content) = content else {
        return Err("properties.contents[] must be objects".into());
    };
    if let Some(key) = content.keys().find(|k| !CONTENT_KEYS.contains(&k.as_str())) {
        return Err(format!("unknown field properties.contents[].{key}"));
    }
    let types_ok = content.get("content_id").is_none_or(Value::is_string)
        && content.get("quantity").is_none_or(Value::is_u64)
        && content.get("price").is_none_or(Value::is_number);
    if !types_ok {
        return Err(
            "properties.contents[]: content_id is a string, quantity an integer, price a number"
                .into(),
        );
    }
    Ok(())
}

fn is_lower_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
