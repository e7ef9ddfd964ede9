//! Events → GA4 Measurement Protocol JSON, and the checks GA4 itself never reports.
//!
//! `/mp/collect` answers 2xx to everything, malformed payloads included, and silently drops
//! what it does not like. So every rule of the limits table is checked here before sending:
//! an event that would be dropped is stopped ([`check`]: bad or reserved name → NeedsFix, a
//! mapping problem; too old, no client ID, a value without currency → Dead), and a custom
//! parameter that would be dropped is left out of the request with a warning that ends up in
//! the attempt summary ([`event_object`]).
//!
//! A request carries one client (`client_id`, `user_id`, `user_data`, `consent` are
//! request-level), so events are grouped by [`Envelope`] before they are sent.
//!
//! Not here: HTTP, batching into requests, reading answers (see `mod.rs`, `response.rs`).

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tally_core::event::{ConsentSignal, User};
use tally_core::money;
use tally_core::retry::Disposition;
use tally_core::timestamp::Timestamp;

use crate::Outgoing;

/// GA4 accepts events backdated by at most this much.
pub const MAX_AGE_MILLIS: i64 = 72 * 3600 * 1000;
/// Most params per event (`items` and the standard ones count).
pub const MAX_PARAMS: usize = 25;
/// Longest event or param name.
pub const MAX_NAME_CHARS: usize = 40;
/// Longest string param value (event and item params).
pub const MAX_VALUE_CHARS: usize = 100;
/// Most custom (non-standard) params per item. Google's pages disagree (10 or 27); the lower
/// figure is the one that is safe everywhere.
pub const MAX_ITEM_CUSTOM_PARAMS: usize = 10;
/// Largest request body GA4 takes (the limit is "< 130 kB").
pub const MAX_BODY_BYTES: usize = 130_000;

/// Event names GA4 reserves (web help-centre list plus the Firebase list). `page_view` is
/// among them, so tally never maps to it.
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

/// Reserved event-name prefixes (Firebase families).
const RESERVED_EVENT_PREFIXES: &[&str] = &["dynamic_link_", "notification_"];

/// Prefixes reserved for both event and param names.
const RESERVED_PREFIXES: &[&str] = &["_", "firebase_", "ga_", "google_", "gtag."];

/// Param names GA4 reserves. `session_id` and `engagement_time_msec` are reserved too, but the
/// Measurement Protocol docs ask senders to set them, so they are passed through on purpose
/// (see [`PASS_THROUGH_PARAMS`]).
const RESERVED_PARAM_NAMES: &[&str] = &["gclid", "session_number"];

/// Properties sent under their own name because MP asks for them (sessions, engagement).
const PASS_THROUGH_PARAMS: &[&str] = &["session_id", "engagement_time_msec"];

/// Properties that become standard params (or are the value and currency) rather than custom
/// params.
const STANDARD_PROPERTIES: &[&str] = &["value", "currency", "order_id", "transaction_id", "items"];

/// Why `name` cannot be a GA4 event name, if it cannot.
pub fn event_name_problem(name: &str) -> Option<String> {
    if let Some(problem) = name_shape_problem(name) {
        return Some(problem);
    }
    if RESERVED_EVENT_NAMES.contains(&name) {
        return Some("is reserved by GA4".into());
    }
    reserved_prefix(
        name,
        RESERVED_PREFIXES.iter().chain(RESERVED_EVENT_PREFIXES),
    )
}

/// Why `name` cannot be a GA4 param name, if it cannot.
pub fn param_name_problem(name: &str) -> Option<String> {
    if let Some(problem) = name_shape_problem(name) {
        return Some(problem);
    }
    if RESERVED_PARAM_NAMES.contains(&name) {
        return Some("is reserved by GA4".into());
    }
    reserved_prefix(name, RESERVED_PREFIXES.iter())
}

/// The length and character rules shared by event and param names. The reserved prefixes
/// `_` and `gtag.` fail these already; they are also checked by prefix so the message says so.
fn name_shape_problem(name: &str) -> Option<String> {
    let count = name.chars().count();
    if count == 0 {
        return Some("is empty".into());
    }
    if count > MAX_NAME_CHARS {
        return Some(format!("is longer than {MAX_NAME_CHARS} characters"));
    }
    if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return None;
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Some("must start with a letter".into());
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Some("may only hold letters, digits and underscores".into());
    }
    None
}

fn reserved_prefix<'p>(
    name: &str,
    mut prefixes: impl Iterator<Item = &'p &'p str>,
) -> Option<String> {
    prefixes
        .find(|p| name.starts_with(**p))
        .map(|p| format!("starts with the reserved prefix `{p}`"))
}

/// The GA4 client ID of `user`: the `_ga` cookie's client ID as the browser copy carried it
/// (a full cookie value `GA1.1.<id>.<time>` is cut to `<id>.<time>`), or else one derived from
/// tally's anonymous ID.
///
/// The derived ID is `<n>.<m>`, two 32-bit numbers from SHA-256 of `tally:<anonymous_id>`: the
/// same visitor always gets the same client ID (so their events form one GA4 user), it looks
/// like gtag's own IDs, and the anonymous ID itself never leaves. It does not match the
/// browser's GA session, so such events are not attributed to the visitor's web session.
pub fn client_id(user: &User) -> Option<String> {
    if let Some(cookie) = user.click_ids.ga_client_id.as_deref().map(str::trim)
        && !cookie.is_empty()
    {
        return Some(strip_cookie_prefix(cookie).to_owned());
    }
    let anonymous = user.anonymous_id.as_deref()?.trim();
    if anonymous.is_empty() {
        return None;
    }
    let digest = Sha256::digest(format!("tally:{anonymous}").as_bytes());
    let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let second = u32::from_be_bytes([digest[4], digest[5], digest[6], digest[7]]);
    Some(format!("{first}.{second}"))
}

/// `GA1.1.1234567890.1763600000` → `1234567890.1763600000`; anything else unchanged.
fn strip_cookie_prefix(cookie: &str) -> &str {
    let mut parts = cookie.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(version), Some(depth), Some(rest))
            if version.starts_with("GA")
                && !depth.is_empty()
                && depth.chars().all(|c| c.is_ascii_digit())
                && rest.contains('.') =>
        {
            rest
        }
        _ => cookie,
    }
}

/// The request-level part of a GA4 request: events can share a request only when all of this
/// is equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Sent to `/debug/mp/collect` (test mode) rather than `/mp/collect`.
    pub test: bool,
    /// `client_id`.
    pub client_id: String,
    /// `user_id`: the advertiser's external ID; only with identifiers.
    pub user_id: Option<String>,
    /// `user_data.sha256_email_address[0]` (Google's gmail form); only with `user_id`.
    pub email_sha256: Option<String>,
    /// `user_data.sha256_phone_number[0]` (E.164 form); only with `user_id`.
    pub phone_sha256: Option<String>,
    /// `consent.ad_user_data`.
    pub ad_user_data: Option<&'static str>,
    /// `consent.ad_personalization`.
    pub ad_personalization: Option<&'static str>,
}

/// GA4's consent enum. The uppercase casing is recalled, not confirmed (reference §2D says
/// UNCONFIRMED); `/debug/mp/collect` would flag a wrong value.
fn consent_value(signal: ConsentSignal) -> &'static str {
    match signal {
        ConsentSignal::Granted => "GRANTED",
        ConsentSignal::Denied => "DENIED",
    }
}

/// The envelope `o` must travel in, or Dead when there is no client ID to send.
///
/// With identifiers: `user_id` is the external ID and `user_data` the Google-form email and
/// E.164 phone hashes (GA4 takes `user_data` only together with `user_id`); consent is the
/// event's own `ad_user_data`/`ad_personalization`, left out where the event carried none
/// (GA4's default then applies). Without identifiers: no `user_id`, no `user_data`, and both
/// consent signals `DENIED`. The client ID stays either way: it is the analytics cookie, which
/// `analytics_storage` governs and the dispatcher has already judged.
pub fn envelope(o: &Outgoing<'_>) -> Result<Envelope, Disposition> {
    let client_id = client_id(&o.event.user).ok_or_else(|| Disposition::Dead {
        reason: "no GA client ID: the event has neither a `_ga` client ID nor an anonymous ID"
            .into(),
    })?;
    let mut envelope = Envelope {
        test: o.test,
        client_id,
        user_id: None,
        email_sha256: None,
        phone_sha256: None,
        ad_user_data: Some("DENIED"),
        ad_personalization: Some("DENIED"),
    };
    if o.identifiers {
        let identity = &o.event.user.identity;
        envelope.user_id = identity.external_id.clone();
        if envelope.user_id.is_some() {
            envelope.email_sha256 = identity.email_google_sha256.clone();
            envelope.phone_sha256 = identity.phone_e164_sha256.clone();
        }
        envelope.ad_user_data = o.event.consent.ad_user_data.map(consent_value);
        envelope.ad_personalization = o.event.consent.ad_personalization.map(consent_value);
    }
    Ok(envelope)
}

/// Stops an event GA4 would silently drop: a name it refuses (NeedsFix: the `events` mapping
/// is wrong), an event older than 72 hours, or a value without a currency (Dead).
pub fn check(o: &Outgoing<'_>, now: Timestamp) -> Result<(), Disposition> {
    if let Some(problem) = event_name_problem(o.name) {
        return Err(Disposition::NeedsFix {
            reason: format!(
                "GA4 event name `{}` {problem}; map `{}` to a valid GA4 name",
                o.name, o.event.name
            ),
        });
    }
    let age = now.millis() - o.event.timestamp.millis();
    if age > MAX_AGE_MILLIS {
        return Err(Disposition::Dead {
            reason: format!(
                "event is {} h old; GA4 accepts 72 h backdating",
                age / 3_600_000
            ),
        });
    }
    if o.value.is_some() && o.event.currency.is_none() {
        return Err(Disposition::Dead {
            reason: "event has a value but no currency; GA4 needs both".into(),
        });
    }
    Ok(())
}

/// One event of a request body, with what was left out of it and its time.
#[derive(Clone, Debug, PartialEq)]
pub struct EventObject {
    /// `{"name": ..., "params": {...}}`.
    pub json: Value,
    /// Params or items left out because GA4 would drop them, for the attempt summary.
    pub warnings: Vec<String>,
    /// The event's time in microseconds.
    pub timestamp_micros: i64,
}

/// The GA4 event for `o` (which passed [`check`]): `transaction_id` from the `order_id`
/// property (or `transaction_id`), `value` (exact) and `currency`, `items`, the MP session
/// params when the client sent them, then the event's other scalar properties as custom
/// params, in name order, up to 25 params in all. A param GA4 would drop (bad or reserved
/// name, string over 100 characters, not a string or number) is left out with a warning;
/// booleans are sent as `"true"`/`"false"`.
pub fn event_object(o: &Outgoing<'_>) -> EventObject {
    let properties = &o.event.properties;
    let mut params = Map::new();
    let mut warnings = Vec::new();

    let transaction = properties
        .get("order_id")
        .or_else(|| properties.get("transaction_id"));
    if let Some(id) = transaction {
        // An order number sent as a JSON number is still an identifier: GA4 gets its text.
        let id = match id {
            Value::Number(n) => Value::String(n.to_string()),
            other => other.clone(),
        };
        put_param(&mut params, &mut warnings, "transaction_id", &id);
    }
    if let Some(value) = o.value {
        params.insert("value".into(), money::value_to_json(&value));
    }
    if let Some(currency) = &o.event.currency {
        params.insert(
            "currency".into(),
            Value::String(currency.as_str().to_owned()),
        );
    }
    if let Some(items) = properties.get("items") {
        let items = items_param(items, &mut warnings);
        if !items.is_empty() {
            params.insert("items".into(), Value::Array(items));
        }
    }
    for name in PASS_THROUGH_PARAMS {
        if let Some(value) = properties.get(*name) {
            put_param(&mut params, &mut warnings, name, value);
        }
    }
    for (name, value) in properties {
        let name = name.as_str();
        if STANDARD_PROPERTIES.contains(&name) || PASS_THROUGH_PARAMS.contains(&name) {
            continue;
        }
        if let Some(problem) = param_name_problem(name) {
            warnings.push(format!("param `{}` left out: name {problem}", short(name)));
            continue;
        }
        if params.len() >= MAX_PARAMS {
            warnings.push(format!(
                "param `{name}` left out: GA4 takes {MAX_PARAMS} params per event"
            ));
            continue;
        }
        put_param(&mut params, &mut warnings, name, value);
    }

    EventObject {
        json: {
            let mut event = Map::new();
            event.insert("name".into(), o.name.into());
            event.insert("params".into(), Value::Object(params));
            Value::Object(event)
        },
        warnings,
        timestamp_micros: o.event.timestamp.millis() * 1000,
    }
}

/// Inserts a scalar param, or records why it was left out.
fn put_param(
    params: &mut Map<String, Value>,
    warnings: &mut Vec<String>,
    name: &str,
    value: &Value,
) {
    match scalar(value) {
        Ok(v) => {
            params.insert(name.to_owned(), v);
        }
        Err(problem) => warnings.push(format!("param `{name}` left out: {problem}")),
    }
}

/// A value GA4 keeps as a param: a string of at most 100 characters or a number.
fn scalar(value: &Value) -> Result<Value, String> {
    match value {
        Value::String(s) if s.chars().count() > MAX_VALUE_CHARS => {
            Err(format!("value longer than {MAX_VALUE_CHARS} characters"))
        }
        Value::String(_) | Value::Number(_) => Ok(value.clone()),
        Value::Bool(b) => Ok(Value::String(b.to_string())),
        _ => Err("value is not a string or number".into()),
    }
}

/// GA4's standard item fields and the property names tally accepts for each.
const ITEM_FIELDS: &[(&str, &[&str])] = &[
    ("item_id", &["item_id", "id", "sku"]),
    ("item_name", &["item_name", "name"]),
    ("item_brand", &["item_brand", "brand"]),
    ("item_category", &["item_category", "category"]),
    ("item_variant", &["item_variant", "variant"]),
    ("coupon", &["coupon"]),
];

/// Item fields that are amounts, sent as exact decimals.
const ITEM_AMOUNTS: &[&str] = &["price", "discount"];

/// The `items` param from the `items` property: each object becomes a GA4 item (standard
/// fields under their GA4 names, amounts exact, `quantity` an integer, up to 10 other scalar
/// fields as custom item params). An item with neither `item_id` nor `item_name` is left out,
/// as GA4 requires one of them.
fn items_param(items: &Value, warnings: &mut Vec<String>) -> Vec<Value> {
    let Value::Array(items) = items else {
        warnings.push("`items` left out: not a list".into());
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Value::Object(fields) = item else {
            warnings.push(format!("item {index} left out: not an object"));
            continue;
        };
        let mut ga_item = Map::new();
        let mut used: Vec<&str> = Vec::new();
        for (ga_name, aliases) in ITEM_FIELDS {
            if let Some((alias, value)) =
                aliases.iter().find_map(|a| fields.get(*a).map(|v| (*a, v)))
            {
                used.extend(aliases.iter());
                let text = match value {
                    Value::Number(n) => Ok(Value::String(n.to_string())),
                    other => scalar(other),
                };
                match text {
                    Ok(v) => {
                        ga_item.insert((*ga_name).to_owned(), v);
                    }
                    Err(problem) => {
                        warnings.push(format!("item {index} field `{alias}` left out: {problem}"))
                    }
                }
            }
        }
        if !ga_item.contains_key("item_id") && !ga_item.contains_key("item_name") {
            warnings.push(format!("item {index} left out: it has no id or name"));
            continue;
        }
        for amount_field in ITEM_AMOUNTS {
            used.push(amount_field);
            if let Some(value) = fields.get(*amount_field) {
                match money::parse_value(value) {
                    Ok(amount) => {
                        ga_item.insert((*amount_field).to_owned(), money::value_to_json(&amount));
                    }
                    Err(_) => warnings.push(format!(
                        "item {index} field `{amount_field}` left out: not a decimal amount"
                    )),
                }
            }
        }
        used.push("quantity");
        if let Some(quantity) = fields.get("quantity") {
            match quantity_of(quantity) {
                Some(q) => {
                    ga_item.insert("quantity".into(), Value::from(q));
                }
                None => warnings.push(format!(
                    "item {index} field `quantity` left out: not a whole number"
                )),
            }
        }
        let mut custom = 0;
        for (name, value) in fields {
            if used.contains(&name.as_str()) {
                continue;
            }
            if let Some(problem) = param_name_problem(name) {
                warnings.push(format!(
                    "item {index} param `{}` left out: name {problem}",
                    short(name)
                ));
                continue;
            }
            if custom >= MAX_ITEM_CUSTOM_PARAMS {
                warnings.push(format!(
                    "item {index} param `{name}` left out: GA4 takes {MAX_ITEM_CUSTOM_PARAMS} custom params per item"
                ));
                continue;
            }
            match scalar(value) {
                Ok(v) => {
                    ga_item.insert(name.clone(), v);
                    custom += 1;
                }
                Err(problem) => {
                    warnings.push(format!("item {index} param `{name}` left out: {problem}"))
                }
            }
        }
        out.push(Value::Object(ga_item));
    }
    out
}

/// A whole quantity from a number or a string (`2`, `"2"`, `2.0`).
fn quantity_of(value: &Value) -> Option<i64> {
    let amount: Decimal = money::parse_value(value).ok()?;
    if amount.fract().is_zero() {
        amount.to_i64()
    } else {
        None
    }
}

/// A name cut for a warning (the name itself may be the problem: very long).
fn short(name: &str) -> String {
    if name.chars().count() <= MAX_NAME_CHARS + 8 {
        name.to_owned()
    } else {
        let mut cut: String = name.chars().take(MAX_NAME_CHARS).collect();
        cut.push('…');
        cut
    }
}

/// The request body for `events` (non-empty) sharing `envelope`. `timestamp_micros` is
/// request-level (the first event's time); when the events' times differ, each event also
/// carries its own, which GA4 prefers over the request's.
pub fn request_body(envelope: &Envelope, events: &[EventObject]) -> Value {
    let first_time = events.first().map_or(0, |e| e.timestamp_micros);
    let times_differ = events.iter().any(|e| e.timestamp_micros != first_time);
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            let mut json = e.json.clone();
            if times_differ && let Value::Object(fields) = &mut json {
                fields.insert("timestamp_micros".into(), Value::from(e.timestamp_micros));
            }
            json
        })
        .collect();
    let mut body = Map::new();
    body.insert(
        "client_id".into(),
        Value::String(envelope.client_id.clone()),
    );
    if let Some(user_id) = &envelope.user_id {
        body.insert("user_id".into(), Value::String(user_id.clone()));
    }
    body.insert("timestamp_micros".into(), Value::from(first_time));
    let mut consent = Map::new();
    if let Some(v) = envelope.ad_user_data {
        consent.insert("ad_user_data".into(), Value::String(v.into()));
    }
    if let Some(v) = envelope.ad_personalization {
        consent.insert("ad_personalization".into(), Value::String(v.into()));
    }
    if !consent.is_empty() {
        body.insert("consent".into(), Value::Object(consent));
    }
    if envelope.user_id.is_some() {
        let mut user_data = Map::new();
        if let Some(email) = &envelope.email_sha256 {
            user_data.insert("sha256_email_address".into(), json!([email]));
        }
        if let Some(phone) = &envelope.phone_sha256 {
            user_data.insert("sha256_phone_number".into(), json!([phone]));
        }
        if !user_data.is_empty() {
            body.insert("user_data".into(), Value::Object(user_data));
        }
    }
    body.insert("events".into(), Value::Array(events));
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use tally_testkit::events;

    use super::*;

    fn outgoing<'a>(event: &'a tally_core::event::Event, name: &'a str) -> Outgoing<'a> {
        Outgoing {
            event,
            name,
            value: event.value,
            identifiers: true,
            test: false,
        }
    }

    #[test]
    fn event_names_follow_ga4s_rules() {
        for good in [
            "purchase",
            "generate_lead",
            "a",
            &"x".repeat(40),
            "Sign_Up2",
        ] {
            assert_eq!(event_name_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "2fast",
            "with space",
            "dash-ed",
            &"x".repeat(41),
            "page_view",
            "session_start",
            "_private",
            "firebase_x",
            "ga_thing",
            "google_x",
            "gtag.config",
            "notification_open",
            "dynamic_link_first_open",
        ] {
            assert!(event_name_problem(bad).is_some(), "{bad} should be refused");
        }
        assert_eq!(
            event_name_problem("ga_thing").as_deref(),
            Some("starts with the reserved prefix `ga_`")
        );
        assert_eq!(
            event_name_problem("page_view").as_deref(),
            Some("is reserved by GA4")
        );
    }

    #[test]
    fn param_names_follow_ga4s_rules() {
        assert_eq!(param_name_problem("coupon"), None);
        assert!(param_name_problem("gclid").is_some());
        assert!(param_name_problem("google_x").is_some());
        assert!(param_name_problem("has space").is_some());
        // Reserved for events, fine for params.
        assert_eq!(param_name_problem("click"), None);
    }

    #[test]
    fn client_ids_come_from_the_ga_cookie_or_a_stable_derivation() {
        let mut user = User::default();
        assert_eq!(client_id(&user), None);
        user.anonymous_id = Some("a-7f3c".into());
        let derived = client_id(&user).unwrap();
        assert_eq!(client_id(&user).unwrap(), derived, "stable");
        let (a, b) = derived.split_once('.').unwrap();
        assert!(
            a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok(),
            "{derived}"
        );
        assert!(!derived.contains("7f3c"));
        user.anonymous_id = Some("a-other".into());
        assert_ne!(client_id(&user).unwrap(), derived);

        user.click_ids.ga_client_id = Some("1234567890.1763600000".into());
        assert_eq!(client_id(&user).unwrap(), "1234567890.1763600000");
        user.click_ids.ga_client_id = Some("GA1.1.1234567890.1763600000".into());
        assert_eq!(client_id(&user).unwrap(), "1234567890.1763600000");
    }

    #[test]
    fn params_are_checked_and_offenders_left_out_with_warnings() {
        let event = events::server(json!({
            "event": "purchase", "event_id": "p1",
            "user": {"anonymous_id": "a1"},
            "properties": {"value": "10.50", "currency": "EUR", "order_id": 1001,
                           "coupon": "BF25", "vip": true, "long": "x".repeat(101),
                           "google_thing": "x", "nested": {"a": 1},
                           "items": [{"id": "sku-1", "quantity": "2", "price": "5.25",
                                      "color": "red"},
                                     {"quantity": 1}, "junk"]}
        }));
        let o = outgoing(&event, "purchase");
        let object = event_object(&o);
        assert_eq!(
            serde_json::to_string(&object.json).unwrap(),
            r#"{"name":"purchase","params":{"coupon":"BF25","currency":"EUR","items":[{"color":"red","item_id":"sku-1","price":5.25,"quantity":2}],"transaction_id":"1001","value":10.50,"vip":"true"}}"#
        );
        let warnings = object.warnings.join("\n");
        for expected in [
            "param `long` left out: value longer than 100 characters",
            "param `google_thing` left out: name starts with the reserved prefix `google_`",
            "param `nested` left out: value is not a string or number",
            "item 1 left out: it has no id or name",
            "item 2 left out: not an object",
        ] {
            assert!(
                warnings.contains(expected),
                "missing {expected:?} in {warnings}"
            );
        }
    }

    #[test]
    fn at_most_twenty_five_params_go_out() {
        let mut properties = Map::new();
        for i in 0..40 {
            properties.insert(format!("p{i:02}"), Value::from(i));
        }
        let event = events::server(json!({
            "event": "lead", "event_id": "l1", "user": {"anonymous_id": "a1"},
            "properties": properties
        }));
        let object = event_object(&outgoing(&event, "generate_lead"));
        assert_eq!(object.json["params"].as_object().unwrap().len(), MAX_PARAMS);
        assert_eq!(object.warnings.len(), 15);
        assert!(object.warnings[0].contains("GA4 takes 25 params per event"));
    }

    #[test]
    fn old_events_bad_names_and_values_without_currency_are_stopped() {
        let event = events::purchase("p1");
        let now = event.timestamp;
        assert_eq!(check(&outgoing(&event, "purchase"), now), Ok(()));
        assert!(matches!(
            check(&outgoing(&event, "page_view"), now),
            Err(Disposition::NeedsFix { .. })
        ));
        let just_inside = Timestamp::from_millis(now.millis() + MAX_AGE_MILLIS);
        assert_eq!(check(&outgoing(&event, "purchase"), just_inside), Ok(()));
        let too_late = Timestamp::from_millis(now.millis() + MAX_AGE_MILLIS + 1);
        assert_eq!(
            check(&outgoing(&event, "purchase"), too_late),
            Err(Disposition::Dead {
                reason: "event is 72 h old; GA4 accepts 72 h backdating".into()
            })
        );
        let mut no_currency = event.clone();
        no_currency.currency = None;
        assert!(matches!(
            check(&outgoing(&no_currency, "purchase"), now),
            Err(Disposition::Dead { .. })
        ));
    }

    #[test]
    fn event_times_are_per_event_only_when_they_differ() {
        let envelope = Envelope {
            test: false,
            client_id: "1.2".into(),
            user_id: None,
            email_sha256: Some("e".repeat(64)),
            phone_sha256: None,
            ad_user_data: None,
            ad_personalization: None,
        };
        let object = |t: i64| EventObject {
            json: json!({"name": "purchase", "params": {}}),
            warnings: Vec::new(),
            timestamp_micros: t,
        };
        let same = request_body(&envelope, &[object(5), object(5)]);
        assert_eq!(same["timestamp_micros"], 5);
        assert!(same["events"][1].get("timestamp_micros").is_none());
        assert!(same.get("consent").is_none());
        assert!(
            same.get("user_data").is_none(),
            "user_data never goes without user_id"
        );
        let differ = request_body(&envelope, &[object(5), object(7)]);
        assert_eq!(differ["events"][0]["timestamp_micros"], 5);
        assert_eq!(differ["events"][1]["timestamp_micros"], 7);
    }
}
