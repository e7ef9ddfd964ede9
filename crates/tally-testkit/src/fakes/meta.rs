//! A strict fake of Meta's Conversions API (`POST /{version}/{pixel_id}/events`).
//!
//! It checks what Graph checks before taking events: the `access_token` query parameter, the
//! path with the configured pixel, the body (a JSON object or form fields with `data` as a
//! JSON-encoded string), and every event (required fields, `action_source` from the documented
//! list, the website-event fields, must-hash fields as 64 lowercase hex, `fbc`/`fbp` shapes, the
//! 7-day age limit (62 days for `physical_store`), at most 1,000 events). Like Meta, one bad event fails the **whole** request
//! with HTTP 400 and the Graph error envelope, and nothing of it is recorded.
//!
//! Accepted live events are deduplicated on (`event_name`, `event_id`) over 48 hours:
//! duplicates are kept apart ([`FakeMeta::duplicates`]) but still counted in `events_received`,
//! as Meta does. Test events (with `test_event_code`) are kept per code and never deduplicated.
//!
//! Time comes from the fake's own clock ([`FakeMeta::set_now`]), the system clock unless set,
//! so fixtures with fixed timestamps pass the age check.
//!
//! Choices of the fake where the reference has no fact: a poisoned event is refused with code
//! 100 and subcode [`POISON_SUBCODE`]; an event more than an hour in the future (usually
//! milliseconds sent as seconds) is refused with code 100 and no subcode; unknown parameters
//! are refused with code 100.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tally_core::parse::is_meta_cookie;
use tally_core::timestamp::Timestamp;

use crate::{Captured, FakeDestination, Reply};

/// Subcode of the error a poisoned event gets (the fake's own, not one of Meta's).
pub const POISON_SUBCODE: u64 = 2_804_050;
/// Meta's subcode for an event older than 7 days.
pub const SUBCODE_TOO_OLD: u64 = 2_804_003;
/// Meta's subcode for a customer-information parameter sent unhashed.
pub const SUBCODE_NOT_HASHED: u64 = 2_804_016;

/// Most events per request.
pub const MAX_EVENTS: usize = 1000;
const MAX_AGE_MS: i64 = 7 * 24 * 3600 * 1000;
/// Offline (`physical_store`) events may be up to 62 days old.
const MAX_STORE_AGE_MS: i64 = 62 * 24 * 3600 * 1000;
const DEDUP_WINDOW_MS: i64 = 48 * 3600 * 1000;
const MAX_FUTURE_MS: i64 = 3600 * 1000;

/// `action_source` values Meta documents.
pub const ACTION_SOURCES: &[&str] = &[
    "email",
    "website",
    "app",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
];

/// `user_data` keys that must be SHA-256 hashed.
pub const MUST_HASH: &[&str] = &[
    "em",
    "ph",
    "fn",
    "ln",
    "db",
    "ge",
    "ct",
    "st",
    "zp",
    "country",
    "external_id",
];

/// `user_data` keys sent as they are.
const PLAIN_USER_KEYS: &[&str] = &[
    "client_ip_address",
    "client_user_agent",
    "fbc",
    "fbp",
    "subscription_id",
    "fb_login_id",
    "lead_id",
    "anon_id",
    "madid",
    "page_id",
    "page_scoped_user_id",
    "ctwa_clid",
    "ig_account_id",
    "ig_sid",
];

/// Server-event keys Meta documents.
const EVENT_KEYS: &[&str] = &[
    "event_name",
    "event_time",
    "user_data",
    "custom_data",
    "event_source_url",
    "opt_out",
    "event_id",
    "action_source",
    "data_processing_options",
    "data_processing_options_country",
    "data_processing_options_state",
    "referrer_url",
    "customer_segmentation",
    "app_data",
    "original_event_data",
    "attribution_data",
];

#[derive(Default)]
struct State {
    now: Option<Timestamp>,
    accepted: Vec<Value>,
    duplicates: Vec<Value>,
    test_events: BTreeMap<String, Vec<Value>>,
    first_seen: HashMap<(String, String), i64>,
    poisoned: HashSet<String>,
    drop_next: usize,
    traces: u64,
}

/// A fake Meta Conversions API for one pixel and access token.
pub struct FakeMeta {
    server: FakeDestination,
    state: Arc<Mutex<State>>,
}

impl FakeMeta {
    /// Starts a fake for `pixel_id` that accepts only `access_token`.
    ///
    /// # Panics
    /// When it cannot bind a loopback port.
    pub async fn start(pixel_id: &str, access_token: &str) -> FakeMeta {
        let state = Arc::new(Mutex::new(State::default()));
        let judge = Judge {
            pixel_id: pixel_id.to_owned(),
            access_token: access_token.to_owned(),
            state: state.clone(),
        };
        let server = FakeDestination::start_with(Arc::new(move |req| judge.answer(req))).await;
        FakeMeta { server, state }
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

    /// Waits (at most `within`) until at least `n` requests have arrived; returns whether they did.
    pub async fn wait_for(&self, n: usize, within: std::time::Duration) -> bool {
        self.server.wait_for(n, within).await
    }

    /// Accepted live events, first copies only, in arrival order.
    pub fn received(&self) -> Vec<Value> {
        self.lock().accepted.clone()
    }

    /// Accepted live events that repeated an (`event_name`, `event_id`) seen within 48 hours.
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

    /// Sets the fake's clock (for the 7-day limit and the 48-hour dedup window).
    pub fn set_now(&self, now: Timestamp) {
        self.lock().now = Some(now);
    }

    /// Refuses every request that contains an event with this `event_id` (HTTP 400, code 100,
    /// subcode [`POISON_SUBCODE`]).
    pub fn poison(&self, event_id: &str) {
        self.lock().poisoned.insert(event_id.to_owned());
    }

    /// Makes the next accepted request take `n` events fewer than it was sent (the last `n`
    /// are not recorded) and answer the lower `events_received`.
    pub fn drop_next_events(&self, n: usize) {
        self.lock().drop_next = n;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake meta state")
    }
}

struct Judge {
    pixel_id: String,
    access_token: String,
    state: Arc<Mutex<State>>,
}

/// A refusal: HTTP status and the Graph error fields.
struct GraphError {
    status: u16,
    kind: &'static str,
    code: u64,
    subcode: Option<u64>,
    message: String,
    title: Option<&'static str>,
}

impl GraphError {
    fn invalid(subcode: Option<u64>, title: &'static str, message: impl Into<String>) -> Self {
        GraphError {
            status: 400,
            kind: "OAuthException",
            code: 100,
            subcode,
            message: message.into(),
            title: Some(title),
        }
    }
}

impl Judge {
    fn answer(&self, req: &Captured) -> Reply {
        let mut state = self.state.lock().expect("fake meta state");
        state.traces += 1;
        let trace = format!("AFakeTrace{:06}", state.traces);
        match self.judge(req, &mut state) {
            Ok(received) => Reply::json(
                200,
                json!({"events_received": received, "messages": [], "fbtrace_id": trace})
                    .to_string(),
            ),
            Err(e) => {
                let mut error = json!({
                    "message": e.message,
                    "type": e.kind,
                    "code": e.code,
                    "is_transient": false,
                    "fbtrace_id": trace,
                });
                if let Some(subcode) = e.subcode {
                    error["error_subcode"] = subcode.into();
                }
                if let Some(title) = e.title {
                    error["error_user_title"] = title.into();
                    error["error_user_msg"] = e.message.clone().into();
                }
                Reply::json(e.status, json!({ "error": error }).to_string())
            }
        }
    }

    fn judge(&self, req: &Captured, state: &mut State) -> Result<usize, GraphError> {
        let token = req.query.as_deref().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "access_token")
                .map(|(_, v)| v.into_owned())
        });
        if token.as_deref() != Some(self.access_token.as_str()) {
            return Err(GraphError {
                status: 400,
                kind: "OAuthException",
                code: 190,
                subcode: None,
                message: "Invalid OAuth access token - Cannot parse access token".into(),
                title: None,
            });
        }
        let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        let [version, pixel, "events"] = segments[..] else {
            return Err(GraphError {
                status: 400,
                kind: "OAuthException",
                code: 2500,
                subcode: None,
                message: format!("Unknown path components: {}", req.path),
                title: None,
            });
        };
        if !is_version(version) {
            return Err(GraphError {
                status: 400,
                kind: "OAuthException",
                code: 2500,
                subcode: None,
                message: format!("Unknown path components: /{version}"),
                title: None,
            });
        }
        if req.method != "POST" || pixel != self.pixel_id {
            return Err(GraphError {
                status: 400,
                kind: "GraphMethodException",
                code: 100,
                subcode: Some(33),
                message: format!(
                    "Unsupported {} request. Object with ID '{pixel}' does not exist, cannot be \
                     loaded due to missing permissions, or does not support this operation.",
                    req.method.as_str().to_ascii_lowercase()
                ),
                title: None,
            });
        }
        let (data, test_event_code) = read_body(req)?;
        if data.is_empty() {
            return Err(GraphError::invalid(
                None,
                "Missing data",
                "(#100) The parameter data is required and must hold at least one event",
            ));
        }
        if data.len() > MAX_EVENTS {
            return Err(GraphError::invalid(
                None,
                "Too many events",
                format!(
                    "(#100) data holds {} events; the limit is {MAX_EVENTS}",
                    data.len()
                ),
            ));
        }
        let now = state.now.unwrap_or_else(Timestamp::now).millis();
        for (i, event) in data.iter().enumerate() {
            check_event(event, now, &state.poisoned).map_err(|mut e| {
                e.message = format!("data[{i}]: {}", e.message);
                e
            })?;
        }
        let sent = data.len();
        let taken = sent.saturating_sub(std::mem::take(&mut state.drop_next));
        for event in data.into_iter().take(taken) {
            if let Some(code) = &test_event_code {
                state
                    .test_events
                    .entry(code.clone())
                    .or_default()
                    .push(event);
                continue;
            }
            let key = (
                text(&event, "event_name").to_owned(),
                text(&event, "event_id").to_owned(),
            );
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
        Ok(taken)
    }
}

fn text<'a>(event: &'a Value, key: &str) -> &'a str {
    event.get(key).and_then(Value::as_str).unwrap_or_default()
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

/// The events and `test_event_code` from a JSON body or form fields.
fn read_body(req: &Captured) -> Result<(Vec<Value>, Option<String>), GraphError> {
    let content_type = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let malformed =
        |what: &str| GraphError::invalid(None, "Invalid parameter", format!("(#100) {what}"));
    let (data, test_event_code) = if content_type.starts_with("application/json") {
        let body: Value =
            serde_json::from_slice(&req.body).map_err(|_| malformed("body is not JSON"))?;
        let Value::Object(mut body) = body else {
            return Err(malformed("body must be a JSON object"));
        };
        for key in body.keys() {
            if !["data", "test_event_code", "partner_agent", "namespace_id"].contains(&key.as_str())
            {
                return Err(malformed(&format!("unknown parameter {key}")));
            }
        }
        let code = match body.remove("test_event_code") {
            None => None,
            Some(Value::String(code)) => Some(code),
            Some(_) => return Err(malformed("test_event_code must be a string")),
        };
        (body.remove("data"), code)
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let mut data = None;
        let mut code = None;
        for (key, value) in url::form_urlencoded::parse(&req.body) {
            match &*key {
                "data" => {
                    data = Some(
                        serde_json::from_str(&value)
                            .map_err(|_| malformed("data is not a JSON-encoded list"))?,
                    )
                }
                "test_event_code" => code = Some(value.into_owned()),
                other => return Err(malformed(&format!("unknown parameter {other}"))),
            }
        }
        (data, code)
    } else {
        return Err(malformed("send JSON or form fields"));
    };
    if test_event_code.as_deref().is_some_and(str::is_empty) {
        return Err(malformed("test_event_code must not be empty"));
    }
    match data {
        Some(Value::Array(events)) => Ok((events, test_event_code)),
        Some(_) => Err(malformed("data must be a list of events")),
        None => Err(malformed("The parameter data is required")),
    }
}

fn check_event(event: &Value, now: i64, poisoned: &HashSet<String>) -> Result<(), GraphError> {
    let invalid = |message: String| GraphError::invalid(None, "Invalid parameter", message);
    let Value::Object(event) = event else {
        return Err(invalid("an event must be an object".into()));
    };
    if let Some(key) = event.keys().find(|k| !EVENT_KEYS.contains(&k.as_str())) {
        return Err(invalid(format!("unknown event parameter {key}")));
    }
    match event.get("event_id") {
        Some(Value::String(id)) if poisoned.contains(id) => {
            return Err(GraphError::invalid(
                Some(POISON_SUBCODE),
                "Event refused",
                format!("event {id} is poisoned in this fake"),
            ));
        }
        None | Some(Value::String(_)) => {}
        Some(_) => return Err(invalid("event_id must be a string".into())),
    }
    if !matches!(event.get("event_name"), Some(Value::String(n)) if !n.is_empty()) {
        return Err(invalid("event_name is required".into()));
    }
    let Some(secs) = event.get("event_time").and_then(Value::as_i64) else {
        return Err(invalid(
            "event_time is required as Unix seconds (an integer)".into(),
        ));
    };
    let millis = secs.saturating_mul(1000);
    let max_age = if event.get("action_source").and_then(Value::as_str) == Some("physical_store") {
        MAX_STORE_AGE_MS
    } else {
        MAX_AGE_MS
    };
    if now - millis > max_age {
        return Err(GraphError::invalid(
            Some(SUBCODE_TOO_OLD),
            "Event Timestamp Too Old",
            "The timestamp for this event is too far in the past. Events need to be sent from \
             your server within 7 days of when they occurred.",
        ));
    }
    if millis - now > MAX_FUTURE_MS {
        return Err(invalid("event_time is in the future".into()));
    }
    let action_source = match event.get("action_source") {
        Some(Value::String(s)) if ACTION_SOURCES.contains(&s.as_str()) => s.as_str(),
        Some(_) => return Err(invalid("action_source is not a valid value".into())),
        None => return Err(invalid("action_source is required".into())),
    };
    let Some(Value::Object(user)) = event.get("user_data") else {
        return Err(invalid("user_data is required".into()));
    };
    check_user_data(user)?;
    if action_source == "website" {
        for (key, present) in [
            ("client_user_agent", user.get("client_user_agent")),
            ("event_source_url", event.get("event_source_url")),
        ] {
            if !matches!(present, Some(Value::String(s)) if !s.is_empty()) {
                return Err(invalid(format!("website events require {key}")));
            }
        }
    }
    for key in ["event_source_url", "referrer_url"] {
        if event.get(key).is_some_and(|v| !v.is_string()) {
            return Err(invalid(format!("{key} must be a string")));
        }
    }
    if let Some(custom) = event.get("custom_data") {
        check_custom_data(custom)?;
    }
    if let Some(options) = event.get("data_processing_options") {
        let valid = options
            .as_array()
            .is_some_and(|a| a.iter().all(|o| o.as_str() == Some("LDU")));
        if !valid {
            return Err(invalid(
                "data_processing_options must be [] or [\"LDU\"]".into(),
            ));
        }
    }
    for key in [
        "data_processing_options_country",
        "data_processing_options_state",
    ] {
        if event.get(key).is_some_and(|v| v.as_u64().is_none()) {
            return Err(invalid(format!("{key} must be an integer")));
        }
    }
    Ok(())
}

fn check_user_data(user: &Map<String, Value>) -> Result<(), GraphError> {
    let invalid = |message: String| GraphError::invalid(None, "Invalid parameter", message);
    if user.is_empty() {
        return Err(invalid(
            "user_data needs at least one customer information parameter".into(),
        ));
    }
    for (key, value) in user {
        if MUST_HASH.contains(&key.as_str()) {
            let values: Vec<&Value> = match value {
                Value::Array(items) if !items.is_empty() => items.iter().collect(),
                Value::Array(_) => return Err(invalid(format!("user_data.{key} is empty"))),
                single => vec![single],
            };
            if !values
                .iter()
                .all(|v| v.as_str().is_some_and(is_lower_sha256))
            {
                return Err(GraphError::invalid(
                    Some(SUBCODE_NOT_HASHED),
                    "User Parameter Not Hashed",
                    format!("user_data.{key} must be SHA-256 hashed (64 lowercase hex)"),
                ));
            }
        } else if PLAIN_USER_KEYS.contains(&key.as_str()) {
            let Some(s) = value.as_str().filter(|s| !s.is_empty()) else {
                return Err(invalid(format!(
                    "user_data.{key} must be a non-empty string"
                )));
            };
            if (key == "fbc" || key == "fbp") && !is_meta_cookie(s) {
                return Err(invalid(format!(
                    "user_data.{key} is not fb.<n>.<ms>.<value>"
                )));
            }
            if key == "client_ip_address" && s.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid(
                    "user_data.client_ip_address is not an IP address".into(),
                ));
            }
        } else {
            return Err(invalid(format!("unknown user_data parameter {key}")));
        }
    }
    Ok(())
}

fn check_custom_data(custom: &Value) -> Result<(), GraphError> {
    let invalid = |message: String| GraphError::invalid(None, "Invalid parameter", message);
    let Value::Object(custom) = custom else {
        return Err(invalid("custom_data must be an object".into()));
    };
    if custom.get("value").is_some_and(|v| !v.is_number()) {
        return Err(invalid("custom_data.value must be a number".into()));
    }
    if let Some(currency) = custom.get("currency") {
        let valid = currency
            .as_str()
            .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()));
        if !valid {
            return Err(invalid(
                "custom_data.currency must be an ISO 4217 code".into(),
            ));
        }
    }
    if custom.get("order_id").is_some_and(|v| !v.is_string()) {
        return Err(invalid("custom_data.order_id must be a string".into()));
    }
    if let Some(contents) = custom.get("contents") {
        let valid = contents.as_array().is_some_and(|items| {
            items.iter().all(|item| {
                item.get("id").is_some_and(Value::is_string)
                    && item.get("quantity").is_none_or(Value::is_u64)
                    && item.get("item_price").is_none_or(Value::is_number)
            })
        });
        if !valid {
            return Err(invalid(
                "custom_data.contents must be a list of {id, quantity, item_price}".into(),
            ));
        }
    }
    if custom.get("content_ids").is_some_and(|ids| {
        !ids.as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
    }) {
        return Err(invalid(
            "custom_data.content_ids must be a list of strings".into(),
        ));
    }
    if custom
        .get("content_type")
        .is_some_and(|kind| !matches!(kind.as_str(), Some("product" | "product_group")))
    {
        return Err(invalid(
            "custom_data.content_type must be product or product_group".into(),
        ));
    }
    if custom.get("num_items").is_some_and(|v| !v.is_u64()) {
        return Err(invalid("custom_data.num_items must be an integer".into()));
    }
    Ok(())
}

fn is_lower_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
