//! Turning one JSON object in tally's event format into a canonical [`Event`].
//!
//! Parsing is strict about types (a wrong type is a client bug worth a clear rejection) and
//! lenient about spelling where clients differ in practice (`usd`, numeric IDs, `"12.30"` as a
//! value). Identity is hashed here, at the door, so raw email and phone never travel further:
//! they are also moved out of `properties` if a client put them there.
//!
//! Not here: the tracking plan ([`crate::plan`]) and the Segment message shape
//! ([`crate::segment`], which converts into this format first).

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::currency::Currency;
use crate::event::{ClickIds, Consent, ConsentSignal, Event, Page, SourceKind, User};
use crate::identity::{HashedIdentity, RawIdentity};
use crate::money;
use crate::rejection::{Rejection, Warning};
use crate::timestamp::{Timestamp, TimestampError};

/// Bounds applied while parsing, from the `[ingest]` config section.
#[derive(Clone, Debug)]
pub struct ParseLimits {
    /// Timestamps further than this ahead of receipt are rejected; closer ones are clamped.
    pub max_future_ms: i64,
    /// Timestamps older than this are rejected.
    pub max_age_ms: i64,
    /// Longest accepted event name, event ID or other identifier, in bytes.
    pub max_id_bytes: usize,
    /// Deepest accepted nesting inside `properties`.
    pub max_property_depth: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_future_ms: 60 * 60 * 1000,
            max_age_ms: 90 * 24 * 60 * 60 * 1000,
            max_id_bytes: 256,
            max_property_depth: 10,
        }
    }
}

/// Who sent the event and when it arrived.
#[derive(Clone, Copy, Debug)]
pub struct ParseContext<'a> {
    /// Configured source name.
    pub source: &'a str,
    /// Configured source kind.
    pub source_kind: SourceKind,
    /// Receipt time (the server's clock).
    pub received_at: Timestamp,
    /// Bounds.
    pub limits: &'a ParseLimits,
}

/// A parsed event and the non-fatal problems found on the way.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// The canonical event.
    pub event: Event,
    /// Accepted-with-remarks notes for the client.
    pub warnings: Vec<Warning>,
}

/// Event name that links an anonymous visitor to a user instead of recording a conversion.
pub const IDENTIFY_EVENT: &str = "identify";

const TOP_LEVEL: &[&str] = &[
    "event",
    "event_id",
    "timestamp",
    "user",
    "properties",
    "page",
    "consent",
    "test",
    "key",
];
const IDENTITY_FIELDS: &[&str] = &[
    "email",
    "phone",
    "first_name",
    "last_name",
    "city",
    "state",
    "zip",
    "country",
    "date_of_birth",
    "gender",
    "external_id",
];
/// Property keys that hold contact data: moved into the hashed identity, never stored raw.
const PII_PROPERTY_KEYS: &[(&str, &str)] = &[
    ("email", "email"),
    ("email_address", "email"),
    ("e-mail", "email"),
    ("phone", "phone"),
    ("phone_number", "phone"),
];
const MAX_OTHER_CLICK_IDS: usize = 16;
const MAX_CLICK_ID_BYTES: usize = 2048;
const MAX_URL_BYTES: usize = 8192;

/// Parses one event object.
///
/// # Errors
/// A [`Rejection`] naming the first field that is missing, of the wrong type or out of bounds.
pub fn parse_event(value: &Value, ctx: &ParseContext<'_>) -> Result<Parsed, Rejection> {
    parse_event_owned(value.clone(), ctx).map_err(|(rejection, _)| rejection)
}

/// [`parse_event`] without copying: takes the object, moves its properties into the event,
/// and hands the object back untouched with the rejection when it is refused.
///
/// # Errors
/// As [`parse_event`], with the input.
pub fn parse_event_owned(
    mut value: Value,
    ctx: &ParseContext<'_>,
) -> Result<Parsed, (Rejection, Value)> {
    let checked = match check(&value, ctx) {
        Ok(c) => c,
        Err(rejection) => return Err((rejection, value)),
    };
    let Checked {
        name,
        event_id,
        timestamp,
        value: amount,
        currency,
        user,
        page,
        consent,
        test,
        warnings,
    } = checked;
    let obj = value.as_object_mut().expect("checked to be an object");
    let mut properties = match obj.remove("properties") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    // Unknown top-level fields are the client's own properties (PRODUCT.md §2).
    for (k, v) in std::mem::take(obj) {
        if !TOP_LEVEL.contains(&k.as_str()) && !properties.contains_key(&k) {
            properties.insert(k, v);
        }
    }
    for (key, _) in PII_PROPERTY_KEYS {
        properties.remove(*key);
    }
    if let Some(d) = &amount {
        properties.insert("value".into(), money::value_to_json(d));
    }
    if let Some(c) = &currency {
        properties.insert("currency".into(), Value::String(c.as_str().to_owned()));
    }
    Ok(Parsed {
        event: Event {
            name,
            event_id,
            timestamp,
            received_at: ctx.received_at,
            source: ctx.source.to_owned(),
            source_kind: ctx.source_kind,
            user,
            value: amount,
            currency,
            properties,
            page,
            consent,
            test,
        },
        warnings,
    })
}

/// Everything an event is judged on, read without taking anything out of the input.
struct Checked {
    name: String,
    event_id: String,
    timestamp: Timestamp,
    value: Option<Decimal>,
    currency: Option<Currency>,
    user: User,
    page: Option<Page>,
    consent: Consent,
    test: bool,
    warnings: Vec<Warning>,
}

fn check(value: &Value, ctx: &ParseContext<'_>) -> Result<Checked, Rejection> {
    let obj = value
        .as_object()
        .ok_or_else(|| Rejection::new("not_an_object", "an event must be a JSON object"))?;
    let mut warnings = Vec::new();

    let name = match obj.get("event") {
        None | Some(Value::Null) => {
            return Err(Rejection::new(
                "missing_event",
                "`event` (the event name) is required",
            ));
        }
        Some(v) => identifier(v, "event", ctx.limits.max_id_bytes, "invalid_event")?,
    };
    let event_id = match obj.get("event_id") {
        None | Some(Value::Null) => format!("evt_{}", uuid::Uuid::now_v7().simple()),
        Some(v) => identifier(v, "event_id", ctx.limits.max_id_bytes, "invalid_event_id")?,
    };
    let timestamp = parse_timestamp(obj.get("timestamp"), ctx, &mut warnings)?;

    let empty = Map::new();
    let properties = match obj.get("properties") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(wrong_type("properties", "an object")),
    };
    let extra = || {
        obj.iter()
            .filter(|(k, _)| !TOP_LEVEL.contains(&k.as_str()) && !properties.contains_key(*k))
    };
    let deepest = properties
        .values()
        .chain(extra().map(|(_, v)| v))
        .map(depth)
        .max()
        .unwrap_or(0);
    if deepest > ctx.limits.max_property_depth {
        return Err(Rejection::new(
            "too_deep",
            format!(
                "`properties` nest deeper than {} levels",
                ctx.limits.max_property_depth
            ),
        ));
    }
    let property = |key: &str| {
        properties
            .get(key)
            .or_else(|| extra().find(|(k, _)| *k == key).map(|(_, v)| v))
    };

    let mut pii_from_properties = Map::new();
    for (key, target) in PII_PROPERTY_KEYS {
        if let Some(v) = property(key) {
            warnings.push(Warning::new(
                format!("properties.{key}"),
                "pii_moved_to_user",
                format!(
                    "`properties.{key}` holds contact data; it was hashed into `user.{target}`"
                ),
            ));
            pii_from_properties
                .entry(target.to_string())
                .or_insert_with(|| v.clone());
        }
    }

    let (amount, currency) = parse_money(property("value"), property("currency"))?;
    let user = parse_user(obj.get("user"), &pii_from_properties, ctx, &mut warnings)?;
    let page = parse_page(obj.get("page"))?;
    let consent = parse_consent(obj.get("consent"))?;
    let test = match obj.get("test") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(wrong_type("test", "a boolean")),
    };
    Ok(Checked {
        name,
        event_id,
        timestamp,
        value: amount,
        currency,
        user,
        page,
        consent,
        test,
        warnings,
    })
}

/// Splits the contact data out of an event object that could not be accepted, so the rest can
/// be kept in quarantine without raw PII: returns the object without identity fields and the
/// hashed identity to keep beside it. Replaying re-parses the object and restores the identity.
pub fn scrub_for_quarantine(value: &Value) -> (Value, HashedIdentity) {
    let mut scrubbed = value.clone();
    let mut raw = Map::new();
    if let Some(obj) = scrubbed.as_object_mut() {
        if let Some(Value::Object(props)) = obj.get_mut("properties") {
            for (key, target) in PII_PROPERTY_KEYS {
                if let Some(v) = props.remove(*key) {
                    raw.entry(target.to_string()).or_insert(v);
                }
            }
        }
        for (key, target) in PII_PROPERTY_KEYS {
            if let Some(v) = obj.remove(*key) {
                raw.entry(target.to_string()).or_insert(v);
            }
        }
        match obj.get_mut("user") {
            Some(Value::Object(user)) => {
                for field in IDENTITY_FIELDS {
                    if let Some(v) = user.remove(*field) {
                        raw.insert(field.to_string(), v);
                    }
                }
                // Unknown user fields may be contact data under another name: not kept.
                user.retain(|k, _| USER_FIELDS_KEPT.contains(&k.as_str()));
            }
            Some(_) => {
                obj.remove("user");
            }
            None => {}
        }
    }
    let text = |k: &str| raw.get(k).and_then(Value::as_str);
    let identity = HashedIdentity::hash(&RawIdentity {
        email: text("email"),
        phone: text("phone"),
        first_name: text("first_name"),
        last_name: text("last_name"),
        city: text("city"),
        state: text("state"),
        zip: text("zip"),
        country: text("country"),
        date_of_birth: text("date_of_birth"),
        gender: text("gender"),
        external_id: text("external_id"),
    })
    .0;
    (scrubbed, identity)
}

const USER_FIELDS_KEPT: &[&str] = &["anonymous_id", "ip", "user_agent", "click_ids"];

fn identifier(v: &Value, field: &str, max: usize, code: &str) -> Result<String, Rejection> {
    let s = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return Err(Rejection::new(code, format!("`{field}` must be a string"))),
    };
    if s.is_empty() {
        return Err(Rejection::new(code, format!("`{field}` must not be empty")));
    }
    if s.len() > max {
        return Err(Rejection::new(
            code,
            format!("`{field}` is longer than {max} bytes"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Rejection::new(
            code,
            format!("`{field}` contains control characters"),
        ));
    }
    Ok(s)
}

fn optional_string(
    v: Option<&Value>,
    field: &str,
    max: usize,
) -> Result<Option<String>, Rejection> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.len() > max => Err(Rejection::new(
            "field_too_long",
            format!("`{field}` is longer than {max} bytes"),
        )),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(wrong_type(field, "a string")),
    }
}

fn wrong_type(field: &str, expected: &str) -> Rejection {
    Rejection::new("wrong_type", format!("`{field}` must be {expected}"))
}

fn parse_timestamp(
    v: Option<&Value>,
    ctx: &ParseContext<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Timestamp, Rejection> {
    let ts = match v {
        None | Some(Value::Null) => return Ok(ctx.received_at),
        Some(v) => Timestamp::from_json(v)
            .map_err(|e: TimestampError| Rejection::new(e.code(), format!("`timestamp`: {e}")))?,
    };
    let ahead = ts.millis() - ctx.received_at.millis();
    if ahead > ctx.limits.max_future_ms {
        return Err(Rejection::new(
            "timestamp_in_future",
            format!(
                "`timestamp` {ts} is {}s ahead of the server clock",
                ahead / 1000
            ),
        ));
    }
    if ahead > 0 {
        // Client clocks run fast; an action cannot have happened after we received it.
        warnings.push(Warning::new(
            "timestamp",
            "timestamp_clamped",
            format!("`timestamp` was {ahead} ms ahead of the server clock; receipt time used"),
        ));
        return Ok(ctx.received_at);
    }
    if -ahead > ctx.limits.max_age_ms {
        return Err(Rejection::new(
            "timestamp_too_old",
            format!(
                "`timestamp` {ts} is older than the accepted {} days",
                ctx.limits.max_age_ms / 86_400_000
            ),
        ));
    }
    Ok(ts)
}

fn parse_money(
    value: Option<&Value>,
    currency: Option<&Value>,
) -> Result<(Option<Decimal>, Option<Currency>), Rejection> {
    let amount = match value {
        None | Some(Value::Null) => None,
        Some(v) => Some(money::parse_value(v).map_err(|e| {
            let code = match e {
                money::MoneyError::OutOfRange => "value_out_of_range",
                _ => "invalid_value",
            };
            Rejection::new(code, format!("`properties.value`: {e}"))
        })?),
    };
    let currency = match currency {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            Currency::parse(s)
                .map_err(|e| Rejection::new(e.code(), format!("`properties.currency`: {e}")))?,
        ),
        Some(_) => return Err(wrong_type("properties.currency", "an ISO 4217 code string")),
    };
    Ok((amount, currency))
}

fn parse_user(
    v: Option<&Value>,
    pii_from_properties: &Map<String, Value>,
    ctx: &ParseContext<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<User, Rejection> {
    let empty = Map::new();
    let obj = match v {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(wrong_type("user", "an object")),
    };
    for k in obj.keys() {
        let known = IDENTITY_FIELDS.contains(&k.as_str())
            || USER_FIELDS_KEPT.contains(&k.as_str())
            || k == "dob";
        if !known {
            warnings.push(Warning::new(
                format!("user.{k}"),
                "unknown_user_field",
                format!("`user.{k}` is not a known identifier and was not kept"),
            ));
        }
    }
    let mut raw_fields: Vec<(&str, Option<&str>)> = Vec::with_capacity(IDENTITY_FIELDS.len());
    for field in IDENTITY_FIELDS {
        let value = obj
            .get(*field)
            .or_else(|| {
                if *field == "date_of_birth" {
                    obj.get("dob")
                } else {
                    None
                }
            })
            .or_else(|| pii_from_properties.get(*field));
        let text = match value {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(Value::Number(_)) if *field == "external_id" || *field == "zip" => None,
            Some(_) => return Err(wrong_type(&format!("user.{field}"), "a string")),
        };
        raw_fields.push((field, text));
    }
    // Numeric external IDs and zips are common; hash their text form.
    let numeric: Vec<(String, String)> = ["external_id", "zip"]
        .iter()
        .filter_map(|f| match obj.get(*f) {
            Some(Value::Number(n)) => Some((f.to_string(), n.to_string())),
            _ => None,
        })
        .collect();
    let get = |name: &str| -> Option<&str> {
        numeric
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| {
                raw_fields
                    .iter()
                    .find(|(f, _)| *f == name)
                    .and_then(|(_, v)| *v)
            })
    };
    let (identity, identity_warnings) = HashedIdentity::hash(&RawIdentity {
        email: get("email"),
        phone: get("phone"),
        first_name: get("first_name"),
        last_name: get("last_name"),
        city: get("city"),
        state: get("state"),
        zip: get("zip"),
        country: get("country"),
        date_of_birth: get("date_of_birth"),
        gender: get("gender"),
        external_id: get("external_id"),
    });
    for w in identity_warnings {
        warnings.push(Warning::new(format!("user.{}", w.field), w.code, w.message));
    }

    let max = ctx.limits.max_id_bytes;
    Ok(User {
        anonymous_id: optional_string(obj.get("anonymous_id"), "user.anonymous_id", max)?,
        identity,
        ip: parse_ip(obj.get("ip"), warnings)?,
        user_agent: optional_string(obj.get("user_agent"), "user.user_agent", 2048)?,
        click_ids: parse_click_ids(obj.get("click_ids"), warnings)?,
    })
}

fn parse_ip(v: Option<&Value>, warnings: &mut Vec<Warning>) -> Result<Option<String>, Rejection> {
    let Some(s) = optional_string(v, "user.ip", 64)? else {
        return Ok(None);
    };
    match s.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(Some(ip.to_string())),
        Err(_) => {
            warnings.push(Warning::new(
                "user.ip",
                "invalid_ip",
                "`user.ip` is not an IPv4 or IPv6 address and was not kept",
            ));
            Ok(None)
        }
    }
}

fn parse_click_ids(v: Option<&Value>, warnings: &mut Vec<Warning>) -> Result<ClickIds, Rejection> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(ClickIds::default()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(wrong_type("user.click_ids", "an object")),
    };
    let mut ids = ClickIds::default();
    for (k, v) in obj {
        let path = format!("user.click_ids.{k}");
        if k == "clicked_at" {
            if !v.is_null() {
                ids.clicked_at = Some(
                    Timestamp::from_json(v)
                        .map_err(|e| Rejection::new(e.code(), format!("`{path}`: {e}")))?,
                );
            }
            continue;
        }
        let Some(value) = optional_string(Some(v), &path, MAX_CLICK_ID_BYTES)? else {
            continue;
        };
        if (k == "fbc" || k == "fbp") && !is_meta_cookie(&value) {
            warnings.push(Warning::new(
                &path,
                "invalid_meta_cookie",
                format!("`{path}` is not `fb.<n>.<ms>.<value>[.<appendix>]` and was not kept"),
            ));
            continue;
        }
        if let Some(slot) = ids.field_mut(k) {
            *slot = Some(value);
        } else if ids.other.len() < MAX_OTHER_CLICK_IDS {
            ids.other.insert(k.clone(), value);
        } else {
            warnings.push(Warning::new(
                &path,
                "too_many_click_ids",
                format!("more than {MAX_OTHER_CLICK_IDS} unknown click IDs; `{path}` not kept"),
            ));
        }
    }
    Ok(ids)
}

/// `fb.{subdomain index}.{creation ms}.{value}` with an optional 5th appendix segment.
pub fn is_meta_cookie(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    (parts.len() == 4 || parts.len() == 5)
        && parts[0] == "fb"
        && parts[1].parse::<u8>().is_ok()
        && parts[2].len() >= 10
        && parts[2].bytes().all(|b| b.is_ascii_digit())
        && !parts[3].is_empty()
        && parts.get(4).is_none_or(|a| !a.is_empty())
}

fn parse_page(v: Option<&Value>) -> Result<Option<Page>, Rejection> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(wrong_type("page", "an object")),
    };
    let page = Page {
        url: optional_string(obj.get("url"), "page.url", MAX_URL_BYTES)?,
        referrer: optional_string(obj.get("referrer"), "page.referrer", MAX_URL_BYTES)?,
        title: optional_string(obj.get("title"), "page.title", 1024)?,
    };
    Ok((page != Page::default()).then_some(page))
}

fn parse_consent(v: Option<&Value>) -> Result<Consent, Rejection> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(Consent::default()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(wrong_type("consent", "an object")),
    };
    let mut consent = Consent::default();
    for (k, v) in obj {
        if k == "tcf" {
            consent.tcf = optional_string(Some(v), "consent.tcf", 8192)?;
            continue;
        }
        let Some(slot) = consent.signal_mut(k) else {
            return Err(Rejection::new(
                "invalid_consent",
                format!(
                    "`consent.{k}` is not a consent signal (ad_storage, analytics_storage, \
                     ad_user_data, ad_personalization, tcf)"
                ),
            ));
        };
        *slot = match v {
            Value::Null => None,
            Value::Bool(true) => Some(ConsentSignal::Granted),
            Value::Bool(false) => Some(ConsentSignal::Denied),
            Value::String(s) if s.eq_ignore_ascii_case("granted") => Some(ConsentSignal::Granted),
            Value::String(s) if s.eq_ignore_ascii_case("denied") => Some(ConsentSignal::Denied),
            _ => {
                return Err(Rejection::new(
                    "invalid_consent",
                    format!("`consent.{k}` must be \"granted\" or \"denied\""),
                ));
            }
        };
    }
    Ok(consent)
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_763_633_700_000; // 2025-11-20T10:15:00Z

    fn ctx(limits: &ParseLimits) -> ParseContext<'_> {
        ParseContext {
            source: "backend",
            source_kind: SourceKind::Server,
            received_at: Timestamp::from_millis(NOW),
            limits,
        }
    }

    fn parse(v: Value) -> Result<Parsed, Rejection> {
        parse_event(&v, &ctx(&ParseLimits::default()))
    }

    #[test]
    fn parses_the_product_example_without_keeping_raw_contact_data() {
        let p = parse(json!({
            "event": "purchase", "event_id": "ord-1001-purchase", "timestamp": "2025-11-20T10:14:00Z",
            "user": {"email": "Jane.Doe@Example.com", "phone": "+1 (650) 555-1212", "external_id": "cust-42",
                     "anonymous_id": "a-7f3c", "first_name": "Jane", "ip": "203.0.113.9",
                     "click_ids": {"gclid": "Cj0KCQ", "fbp": "fb.1.1558571054389.1098115397"}},
            "properties": {"value": 129.90, "currency": "eur", "order_id": "1001"},
            "consent": {"ad_storage": "granted", "ad_personalization": "denied"}
        }))
        .unwrap();
        let e = &p.event;
        assert_eq!(e.value, Some(Decimal::new(12990, 2)));
        assert_eq!(e.currency.unwrap().as_str(), "EUR");
        assert_eq!(e.properties["currency"], "EUR");
        assert_eq!(e.timestamp, Timestamp::from_millis(NOW - 60_000));
        assert_eq!(e.user.click_ids.gclid.as_deref(), Some("Cj0KCQ"));
        assert_eq!(e.consent.ad_personalization, Some(ConsentSignal::Denied));
        let stored = serde_json::to_string(e).unwrap();
        assert!(!stored.to_lowercase().contains("jane.doe"), "{stored}");
        assert!(!stored.contains("555"), "{stored}");
        assert!(e.user.identity.phone_digits_sha256.is_some());
    }

    #[test]
    fn timestamps_in_seconds_millis_and_rfc3339_are_one_instant() {
        let a = parse(json!({"event": "x", "timestamp": NOW / 1000 - 60})).unwrap();
        let b = parse(json!({"event": "x", "timestamp": NOW - 60_000})).unwrap();
        let c = parse(json!({"event": "x", "timestamp": "2025-11-20T11:14:00+01:00"})).unwrap();
        assert_eq!(a.event.timestamp, b.event.timestamp);
        assert_eq!(b.event.timestamp, c.event.timestamp);
    }

    #[test]
    fn rejects_timestamps_far_ahead_or_too_old_and_clamps_small_skew() {
        let year = 365 * 86_400_000;
        assert_eq!(
            parse(json!({"event": "x", "timestamp": NOW + year}))
                .unwrap_err()
                .code,
            "timestamp_in_future"
        );
        assert_eq!(
            parse(json!({"event": "x", "timestamp": NOW - 10 * year}))
                .unwrap_err()
                .code,
            "timestamp_too_old"
        );
        let p = parse(json!({"event": "x", "timestamp": NOW + 5_000})).unwrap();
        assert_eq!(p.event.timestamp.millis(), NOW);
        assert_eq!(p.warnings[0].code, "timestamp_clamped");
    }

    #[test]
    fn rejects_missing_event_and_wrong_types() {
        assert_eq!(
            parse(json!({"event_id": "a"})).unwrap_err().code,
            "missing_event"
        );
        assert_eq!(
            parse(json!({"event": ["a"]})).unwrap_err().code,
            "invalid_event"
        );
        assert_eq!(
            parse(json!({"event": "x", "user": "bob"}))
                .unwrap_err()
                .code,
            "wrong_type"
        );
        assert_eq!(
            parse(json!({"event": "x", "user": {"email": 5}}))
                .unwrap_err()
                .code,
            "wrong_type"
        );
        assert_eq!(
            parse(json!({"event": "x", "properties": []}))
                .unwrap_err()
                .code,
            "wrong_type"
        );
        assert_eq!(
            parse(json!({"event": "x", "event_id": ""}))
                .unwrap_err()
                .code,
            "invalid_event_id"
        );
        assert_eq!(
            parse(json!({"event": "x", "consent": {"ad_storage": "maybe"}}))
                .unwrap_err()
                .code,
            "invalid_consent"
        );
        assert_eq!(parse(json!("purchase")).unwrap_err().code, "not_an_object");
    }

    #[test]
    fn rejects_unknown_currency_and_out_of_range_values() {
        let err = parse(json!({"event": "x", "properties": {"value": 1, "currency": "ABC"}}))
            .unwrap_err();
        assert_eq!(err.code, "unknown_currency");
        let err = parse(json!({"event": "x", "properties": {"value": 1e300}})).unwrap_err();
        assert_eq!(err.code, "value_out_of_range");
    }

    #[test]
    fn generates_an_event_id_when_none_is_sent() {
        let p = parse(json!({"event": "x"})).unwrap();
        assert!(p.event.event_id.starts_with("evt_"));
    }

    #[test]
    fn moves_contact_data_out_of_properties() {
        let p = parse(json!({"event": "lead", "properties": {"email": "a@b.co", "lead_id": "7"}}))
            .unwrap();
        assert!(!p.event.properties.contains_key("email"));
        assert!(p.event.user.identity.email_sha256.is_some());
        assert_eq!(p.warnings[0].code, "pii_moved_to_user");
    }

    #[test]
    fn keeps_five_segment_meta_cookies_and_drops_malformed_ones() {
        let p = parse(json!({"event": "x", "user": {"click_ids": {
            "fbc": "fb.1.1596403881668.IwAR2xyz.ABcDEFGh", "fbp": "garbage"}}}))
        .unwrap();
        assert_eq!(
            p.event.user.click_ids.fbc.as_deref(),
            Some("fb.1.1596403881668.IwAR2xyz.ABcDEFGh")
        );
        assert_eq!(p.event.user.click_ids.fbp, None);
        assert_eq!(p.warnings[0].code, "invalid_meta_cookie");
    }

    #[test]
    fn unknown_top_level_fields_become_properties() {
        let p = parse(json!({"event": "x", "coupon": "BF25"})).unwrap();
        assert_eq!(p.event.properties["coupon"], "BF25");
    }

    #[test]
    fn scrubbed_quarantine_copy_holds_no_contact_data_and_replays_to_the_same_identity() {
        let original = json!({"event": "x", "user": {"email": "jane@example.com", "phone": "+16505551212",
            "nickname": "jj", "anonymous_id": "a-1"}, "properties": {"phone": "+16505551212"}});
        let (scrubbed, identity) = scrub_for_quarantine(&original);
        let text = scrubbed.to_string();
        assert!(
            !text.contains("jane") && !text.contains("555") && !text.contains("jj"),
            "{text}"
        );
        let mut replayed = parse(scrubbed).unwrap().event;
        replayed.user.identity.fill_from(&identity);
        assert_eq!(
            replayed.user.identity,
            parse(original).unwrap().event.user.identity
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                "[a-zA-Z0-9@.+ _-]{0,12}".prop_map(Value::String),
                any::<String>().prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("event".to_owned()),
                            Just("event_id".to_owned()),
                            Just("timestamp".to_owned()),
                            Just("user".to_owned()),
                            Just("properties".to_owned()),
                            Just("consent".to_owned()),
                            Just("page".to_owned()),
                            Just("email".to_owned()),
                            Just("phone".to_owned()),
                            Just("value".to_owned()),
                            Just("currency".to_owned()),
                            Just("click_ids".to_owned()),
                            "[a-z_]{1,8}",
                        ],
                        inner,
                        0..6,
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn parsing_any_json_never_panics_and_never_keeps_a_raw_email(v in json_value(), local in "[a-z]{3,8}") {
                let email = format!("{local}.canary@example.com");
                let mut v = v;
                if let Value::Object(m) = &mut v {
                    m.insert("user".into(), json!({"email": email.clone()}));
                    m.entry("event").or_insert_with(|| json!("purchase"));
                }
                let limits = ParseLimits::default();
                if let Ok(p) = parse_event(&v, &ctx(&limits)) {
                    let stored = serde_json::to_string(&p.event).unwrap();
                    prop_assert!(!stored.contains(&email));
                }
                let (scrubbed, _) = scrub_for_quarantine(&v);
                prop_assert!(!scrubbed.to_string().contains(&email));
            }
        }
    }
}
