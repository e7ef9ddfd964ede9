//! Events for tests, built through the real parser so they look exactly like stored ones.

use serde_json::{Value, json};
use tally_core::event::{Event, SourceKind};
use tally_core::parse::{ParseContext, ParseLimits, parse_event};
use tally_core::timestamp::Timestamp;

/// 2025-11-20T10:15:00Z, the time test events are received at unless told otherwise.
pub const RECEIVED_AT: Timestamp = Timestamp::from_millis(1_763_633_700_000);

/// Parses `json` as a server copy received at [`RECEIVED_AT`]. Panics on a parse error.
pub fn server(json: Value) -> Event {
    parse(json, SourceKind::Server, RECEIVED_AT)
}

/// Parses `json` as a browser copy received at [`RECEIVED_AT`]. Panics on a parse error.
pub fn browser(json: Value) -> Event {
    parse(json, SourceKind::Browser, RECEIVED_AT)
}

/// Parses `json` as a copy of `kind` received at `received_at`. Panics on a parse error.
pub fn parse(json: Value, kind: SourceKind, received_at: Timestamp) -> Event {
    let limits = ParseLimits::default();
    let ctx = ParseContext {
        source: match kind {
            SourceKind::Browser => "web",
            SourceKind::Server => "backend",
        },
        source_kind: kind,
        received_at,
        limits: &limits,
    };
    match parse_event(&json, &ctx) {
        Ok(parsed) => parsed.event,
        Err(rejection) => panic!("test event does not parse: {rejection:?}"),
    }
}

/// The PRODUCT.md sample purchase (EUR 129.90, order 1001) with full customer data, click IDs
/// and consent granted for everything, as a server copy; `event_id` as given.
pub fn purchase(event_id: &str) -> Event {
    server(json!({
        "event": "purchase",
        "event_id": event_id,
        "timestamp": RECEIVED_AT.millis() - 60_000,
        "user": {"email": "Jane.Doe@Example.com", "phone": "+1 (650) 555-1212",
                 "external_id": "cust-42", "anonymous_id": "a-7f3c", "first_name": "Jane",
                 "last_name": "Doe", "city": "Menlo Park", "state": "CA", "zip": "94025",
                 "country": "US", "ip": "203.0.113.9", "user_agent": "Mozilla/5.0 (X11)",
                 "click_ids": {"gclid": "Cj0KCQ-test-gclid", "fbclid": "IwAR-test-fbclid",
                               "fbp": "fb.1.1763600000000.1098115397", "ttclid": "E.C.P.test",
                               "ga_client_id": "1234567890.1763600000"}},
        "properties": {"value": "129.90", "currency": "EUR", "order_id": "1001",
                       "items": [{"id": "sku-1", "quantity": 2, "price": "64.95"}]},
        "page": {"url": "https://shop.example/checkout/thanks",
                 "referrer": "https://shop.example/cart"},
        "consent": {"ad_storage": "granted", "analytics_storage": "granted",
                    "ad_user_data": "granted", "ad_personalization": "granted"}
    }))
}
