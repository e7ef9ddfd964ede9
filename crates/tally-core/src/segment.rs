//! Segment-compatible messages (`track`, `page`, `identify`) converted into tally's event format,
//! so existing Segment and RudderStack SDKs work by changing one URL.
//!
//! The conversion is purely structural; everything is then checked by [`crate::parse`] like any
//! other event. `properties.event_id` wins over `messageId` so a page can share one ID with a
//! platform pixel (PRODUCT.md §2).

use serde_json::{Map, Value, json};

use crate::parse::IDENTIFY_EVENT;
use crate::rejection::Rejection;

/// Event name given to Segment `page` calls.
pub const PAGE_VIEW_EVENT: &str = "page_view";

/// Segment call type, from the endpoint or the message's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallType {
    /// `/v1/track`.
    Track,
    /// `/v1/page`.
    Page,
    /// `/v1/identify`.
    Identify,
}

impl CallType {
    /// Reads a batch element's `type`.
    ///
    /// # Errors
    /// `unsupported_type` for `group`, `alias`, `screen` or anything unknown.
    pub fn from_message(msg: &Value) -> Result<CallType, Rejection> {
        match msg.get("type").and_then(Value::as_str) {
            Some("track") => Ok(CallType::Track),
            Some("page") => Ok(CallType::Page),
            Some("identify") => Ok(CallType::Identify),
            Some(other) => Err(Rejection::new(
                "unsupported_type",
                format!("Segment call type `{other}` is not supported (track, page, identify are)"),
            )),
            None => Err(Rejection::new(
                "unsupported_type",
                "batch element has no `type`",
            )),
        }
    }
}

/// Converts one Segment message into tally's event format.
///
/// # Errors
/// `not_an_object`, or `missing_event` for a `track` without `event`.
pub fn to_event(msg: &Value, call: CallType) -> Result<Value, Rejection> {
    let m = msg.as_object().ok_or_else(|| {
        Rejection::new("not_an_object", "a Segment message must be a JSON object")
    })?;
    let empty = Map::new();
    let context = m
        .get("context")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut properties = m
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();

    let name = match call {
        CallType::Track => m.get("event").cloned().unwrap_or(Value::Null),
        CallType::Page => {
            if let Some(n) = m.get("name") {
                properties.entry("name").or_insert(n.clone());
            }
            Value::String(PAGE_VIEW_EVENT.to_owned())
        }
        CallType::Identify => Value::String(IDENTIFY_EVENT.to_owned()),
    };
    if name.is_null() {
        return Err(Rejection::new(
            "missing_event",
            "a Segment `track` call needs `event`",
        ));
    }
    // Segment's e-commerce spec carries revenue as `revenue` or `total`.
    if !properties.contains_key("value")
        && let Some(v) = properties
            .get("total")
            .or_else(|| properties.get("revenue"))
            .cloned()
    {
        properties.insert("value".into(), v);
    }
    let event_id = properties
        .get("event_id")
        .cloned()
        .or_else(|| m.get("messageId").cloned())
        .unwrap_or(Value::Null);
    let timestamp = m
        .get("timestamp")
        .or_else(|| m.get("originalTimestamp"))
        .cloned()
        .unwrap_or(Value::Null);

    let traits = match call {
        CallType::Identify => m.get("traits").or_else(|| context.get("traits")),
        _ => context.get("traits"),
    }
    .and_then(Value::as_object)
    .unwrap_or(&empty);
    let address = traits
        .get("address")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let first = |keys: &[&str], from: &Map<String, Value>| -> Value {
        keys.iter()
            .find_map(|k| from.get(*k).filter(|v| !v.is_null()).cloned())
            .unwrap_or(Value::Null)
    };
    let mut user = json!({
        "anonymous_id": m.get("anonymousId").cloned().unwrap_or(Value::Null),
        "external_id": m.get("userId").cloned().unwrap_or(Value::Null),
        "email": first(&["email"], traits),
        "phone": first(&["phone"], traits),
        "first_name": first(&["firstName", "first_name"], traits),
        "last_name": first(&["lastName", "last_name"], traits),
        "gender": first(&["gender"], traits),
        "date_of_birth": first(&["birthday"], traits),
        "city": first(&["city"], address),
        "state": first(&["state"], address),
        "zip": first(&["postalCode", "postal_code", "zip"], address),
        "country": first(&["country"], address),
        "ip": context.get("ip").cloned().unwrap_or(Value::Null),
        "user_agent": context.get("userAgent").cloned().unwrap_or(Value::Null),
    });
    if let Some(ids) = context.get("click_ids").filter(|v| v.is_object()) {
        user["click_ids"] = ids.clone();
    }
    if let Some(u) = user.as_object_mut() {
        u.retain(|_, v| !v.is_null());
    }
    let page = context.get("page").and_then(Value::as_object).map(|p| {
        json!({
            "url": p.get("url").cloned().unwrap_or(Value::Null),
            "referrer": p.get("referrer").cloned().unwrap_or(Value::Null),
            "title": p.get("title").cloned().unwrap_or(Value::Null),
        })
    });
    let mut out = json!({
        "event": name,
        "event_id": event_id,
        "timestamp": timestamp,
        "user": user,
        "properties": properties,
    });
    if let Some(page) = page {
        out["page"] = page;
    }
    if let Some(consent) = context.get("consent") {
        out["consent"] = consent.clone();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_an_order_completed_track_call() {
        let msg = json!({
            "type": "track", "event": "Order Completed", "messageId": "m-1", "anonymousId": "a-1",
            "userId": "u-9", "timestamp": "2025-11-20T10:15:00Z",
            "properties": {"order_id": "1001", "total": 129.9, "currency": "EUR"},
            "context": {"ip": "203.0.113.9", "userAgent": "UA", "traits": {"email": "j@x.io"},
                        "page": {"url": "https://shop.example/thanks"}}
        });
        let e = to_event(&msg, CallType::Track).unwrap();
        assert_eq!(e["event"], "Order Completed");
        assert_eq!(e["event_id"], "m-1");
        assert_eq!(e["properties"]["value"], json!(129.9));
        assert_eq!(e["user"]["external_id"], "u-9");
        assert_eq!(e["user"]["email"], "j@x.io");
        assert_eq!(e["page"]["url"], "https://shop.example/thanks");
    }

    #[test]
    fn properties_event_id_wins_over_message_id() {
        let msg = json!({"event": "x", "messageId": "m-1", "properties": {"event_id": "shared"}});
        assert_eq!(
            to_event(&msg, CallType::Track).unwrap()["event_id"],
            "shared"
        );
    }

    #[test]
    fn page_and_identify_get_their_reserved_names() {
        let page = to_event(&json!({"name": "Home"}), CallType::Page).unwrap();
        assert_eq!(page["event"], PAGE_VIEW_EVENT);
        let id = to_event(
            &json!({"userId": "u", "traits": {"email": "a@b.co"}}),
            CallType::Identify,
        )
        .unwrap();
        assert_eq!(id["event"], IDENTIFY_EVENT);
        assert_eq!(id["user"]["email"], "a@b.co");
    }

    #[test]
    fn rejects_unsupported_call_types() {
        assert_eq!(
            CallType::from_message(&json!({"type": "group"}))
                .unwrap_err()
                .code,
            "unsupported_type"
        );
    }
}
