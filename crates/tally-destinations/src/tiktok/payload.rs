//! Outgoing events → TikTok Events API `data[]` elements and the request body.
//!
//! Email and phone go out as the hashes tally keeps, in TikTok's forms (the email base form;
//! the phone in E.164 with `+`); the advertiser's external id is hashed here. Click ID, `_ttp`
//! cookie, IP and user agent go unhashed. Without identifier consent the event goes without a
//! `user` object at all.

use serde_json::{Map, Value, json};
use tally_core::event::Event;
use tally_core::identity::{is_sha256_hex, sha256_hex};
use tally_core::money;

use crate::Outgoing;
use crate::properties;

/// The request body for `batch`, all for the web pixel `pixel_code`.
pub(super) fn request_body(
    batch: &[Outgoing<'_>],
    pixel_code: &str,
    test_event_code: Option<&str>,
) -> Value {
    let data: Vec<Value> = batch.iter().map(event).collect();
    // Built by moving `data` in: `json!` would serialise a deep copy of every event.
    let mut body = Map::new();
    body.insert("event_source".into(), "web".into());
    body.insert("event_source_id".into(), pixel_code.into());
    body.insert("data".into(), Value::Array(data));
    if let Some(code) = test_event_code {
        body.insert("test_event_code".into(), code.into());
    }
    Value::Object(body)
}

/// One `data[]` element.
pub(super) fn event(outgoing: &Outgoing<'_>) -> Value {
    let event = outgoing.event;
    let mut out = Map::new();
    out.insert("event".into(), outgoing.name.into());
    out.insert("event_time".into(), event.timestamp.secs().into());
    out.insert("event_id".into(), event.event_id.as_str().into());
    let user = user(outgoing);
    if !user.is_empty() {
        out.insert("user".into(), Value::Object(user));
    }
    let properties = properties(outgoing);
    if !properties.is_empty() {
        out.insert("properties".into(), Value::Object(properties));
    }
    if let Some(page) = &event.page {
        let mut out_page = Map::new();
        if let Some(url) = &page.url {
            out_page.insert("url".into(), url.as_str().into());
        }
        if let Some(referrer) = &page.referrer {
            out_page.insert("referrer".into(), referrer.as_str().into());
        }
        if !out_page.is_empty() {
            out.insert("page".into(), Value::Object(out_page));
        }
    }
    Value::Object(out)
}

/// Who did it; empty without identifier consent.
pub(super) fn user(outgoing: &Outgoing<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    if !outgoing.identifiers {
        return out;
    }
    let user = &outgoing.event.user;
    let id = &user.identity;
    let mut list = |key: &str, hash: Option<String>| {
        if let Some(hash) = hash {
            out.insert(key.into(), json!([hash]));
        }
    };
    list("email", id.email_sha256.clone());
    list("phone", id.phone_e164_sha256.clone());
    list(
        "external_id",
        id.external_id.as_deref().map(hash_external_id),
    );
    let mut plain = |key: &str, value: &Option<String>| {
        if let Some(value) = value {
            out.insert(key.into(), value.as_str().into());
        }
    };
    plain("ttclid", &user.click_ids.ttclid);
    plain("ttp", &user.click_ids.ttp);
    plain("ip", &user.ip);
    plain("user_agent", &user.user_agent);
    out
}

/// The advertiser's id, hashed; an id that already is a SHA-256 is sent as that hash.
fn hash_external_id(id: &str) -> String {
    if is_sha256_hex(id) {
        id.to_ascii_lowercase()
    } else {
        sha256_hex(id)
    }
}

/// Value, currency, order and the items bought.
pub(super) fn properties(outgoing: &Outgoing<'_>) -> Map<String, Value> {
    let event = outgoing.event;
    let mut out = Map::new();
    if let Some(value) = &outgoing.value {
        out.insert("value".into(), money::value_to_json(value));
    }
    if let Some(currency) = &event.currency {
        out.insert("currency".into(), currency.as_str().into());
    }
    if let Some(order_id) = properties::order_id(event) {
        out.insert("order_id".into(), order_id.into());
    }
    let contents = contents(event);
    if !contents.is_empty() {
        out.insert("contents".into(), Value::Array(contents));
        out.insert("content_type".into(), "product".into());
    }
    out
}

/// `properties.items[]` (`id`, `quantity`, `price`) as TikTok `contents` (`content_id`,
/// `quantity`, `price`); items without an id are left out, and so are quantities and prices that
/// are not numbers.
fn contents(event: &Event) -> Vec<Value> {
    properties::items(event)
        .into_iter()
        .map(|item| {
            let mut content = Map::new();
            content.insert("content_id".into(), item.id.into());
            if let Some(quantity) = item.quantity {
                content.insert("quantity".into(), quantity.into());
            }
            if let Some(price) = &item.price {
                content.insert("price".into(), money::value_to_json(price));
            }
            Value::Object(content)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tally_core::event::Event;
    use tally_testkit::events;

    use super::*;

    fn outgoing(event: &Event) -> Outgoing<'_> {
        Outgoing {
            event,
            name: "CompletePayment",
            value: event.value,
            identifiers: true,
            test: false,
        }
    }

    #[test]
    fn the_purchase_fixture_maps_field_by_field() {
        let event = events::purchase("e-1");
        let sent = super::event(&outgoing(&event));
        assert_eq!(sent["event"], "CompletePayment");
        assert_eq!(sent["event_time"], event.timestamp.secs());
        assert_eq!(sent["event_id"], "e-1");
        let user = &sent["user"];
        assert_eq!(user["email"], json!([sha256_hex("jane.doe@example.com")]));
        assert_eq!(user["phone"], json!([sha256_hex("+16505551212")]));
        assert_eq!(user["external_id"], json!([sha256_hex("cust-42")]));
        assert_eq!(user["ttclid"], "E.C.P.test");
        assert_eq!(user["ip"], "203.0.113.9");
        assert_eq!(user["user_agent"], "Mozilla/5.0 (X11)");
        assert!(user.get("ttp").is_none());
        let properties = &sent["properties"];
        assert_eq!(properties["value"].to_string(), "129.90");
        assert_eq!(properties["currency"], "EUR");
        assert_eq!(properties["order_id"], "1001");
        assert_eq!(
            properties["contents"].to_string(),
            r#"[{"content_id":"sku-1","price":64.95,"quantity":2}]"#
        );
        assert_eq!(properties["content_type"], "product");
        assert_eq!(
            sent["page"],
            json!({"url": "https://shop.example/checkout/thanks",
                   "referrer": "https://shop.example/cart"})
        );
    }

    #[test]
    fn without_identifier_consent_there_is_no_user() {
        let event = events::purchase("e-1");
        let stripped = Outgoing {
            identifiers: false,
            ..outgoing(&event)
        };
        let sent = super::event(&stripped);
        assert!(sent.get("user").is_none(), "{sent}");
        assert_eq!(sent["properties"]["order_id"], "1001");
    }

    #[test]
    fn the_body_names_the_web_pixel_and_the_test_code_only_when_testing() {
        let event = events::purchase("e-1");
        let batch = [outgoing(&event)];
        let live = request_body(&batch, "C4PIXEL", None);
        assert_eq!(live["event_source"], "web");
        assert_eq!(live["event_source_id"], "C4PIXEL");
        assert!(live.get("test_event_code").is_none());
        let test = request_body(&batch, "C4PIXEL", Some("TEST1"));
        assert_eq!(test["test_event_code"], "TEST1");
        assert_eq!(test["data"].as_array().map(Vec::len), Some(1));
    }
}
