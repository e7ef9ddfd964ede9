//! Outgoing events → Meta server events (`data[]` elements) and the request body.
//!
//! Every customer-information parameter Meta wants hashed goes out as 64 lowercase hex: the
//! hashes tally keeps are used as they are (email, Meta's `+`-less phone form, names, date of
//! birth, gender), and the plaintext it keeps normalised (city, state, zip, country, external
//! id) is hashed here. IP, user agent, `fbc` and `fbp` go unhashed, as Meta requires. Without
//! identifier consent no customer information is sent at all.

use serde_json::{Map, Value, json};
use tally_core::event::Event;
use tally_core::identity::{is_sha256_hex, sha256_hex};
use tally_core::money;

use crate::Outgoing;
use crate::properties;

/// Per-destination choices that shape every event.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    /// Meta `action_source` for every event.
    pub(super) action_source: String,
    /// Flag events for Limited Data Use.
    pub(super) limited_data_use: bool,
}

/// Why Meta could never take this event, if it could not; such an event is not sent.
pub(super) fn unsendable(outgoing: &Outgoing<'_>, settings: &Settings) -> Option<String> {
    if user_data(outgoing).is_empty() {
        return Some(if outgoing.identifiers {
            "no customer information: Meta needs at least one user_data parameter \
             (email, phone, IP and user agent, fbc, fbp, ...)"
                .to_owned()
        } else {
            "consent: identifiers may not be sent, and Meta takes no event without user_data"
                .to_owned()
        });
    }
    if settings.action_source == "website" {
        let event = outgoing.event;
        if event.user.user_agent.is_none() {
            return Some(
                "website events need the user agent (user.user_agent) for client_user_agent"
                    .to_owned(),
            );
        }
        if page_url(event).is_none() {
            return Some(
                "website events need the page URL (page.url) for event_source_url".to_owned(),
            );
        }
    }
    None
}

/// The request body for `batch`: `{"data": [...]}`, plus `test_event_code` for test events.
pub(super) fn request_body(
    batch: &[Outgoing<'_>],
    settings: &Settings,
    test_event_code: Option<&str>,
) -> Value {
    let data: Vec<Value> = batch
        .iter()
        .map(|outgoing| server_event(outgoing, settings))
        .collect();
    // Built by moving `data` in: `json!` would serialise a deep copy of every event.
    let mut body = Map::new();
    body.insert("data".into(), Value::Array(data));
    if let Some(code) = test_event_code {
        body.insert("test_event_code".into(), code.into());
    }
    Value::Object(body)
}

/// One server event.
pub(super) fn server_event(outgoing: &Outgoing<'_>, settings: &Settings) -> Value {
    let event = outgoing.event;
    let mut out = Map::new();
    out.insert("event_name".into(), outgoing.name.into());
    out.insert("event_time".into(), event.timestamp.secs().into());
    out.insert("event_id".into(), event.event_id.as_str().into());
    out.insert(
        "action_source".into(),
        settings.action_source.as_str().into(),
    );
    if let Some(url) = page_url(event) {
        out.insert("event_source_url".into(), url.into());
    }
    if let Some(referrer) = event.page.as_ref().and_then(|p| p.referrer.as_deref()) {
        out.insert("referrer_url".into(), referrer.into());
    }
    out.insert("user_data".into(), Value::Object(user_data(outgoing)));
    let custom = custom_data(outgoing);
    if !custom.is_empty() {
        out.insert("custom_data".into(), Value::Object(custom));
    }
    if settings.limited_data_use {
        // 0 for country and state: Meta geolocates the event to decide whether LDU applies.
        out.insert("data_processing_options".into(), json!(["LDU"]));
        out.insert("data_processing_options_country".into(), 0.into());
        out.insert("data_processing_options_state".into(), 0.into());
    }
    Value::Object(out)
}

fn page_url(event: &Event) -> Option<&str> {
    event.page.as_ref().and_then(|p| p.url.as_deref())
}

/// Customer information; empty without identifier consent.
pub(super) fn user_data(outgoing: &Outgoing<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    if !outgoing.identifiers {
        return out;
    }
    let user = &outgoing.event.user;
    let id = &user.identity;
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            out.insert(key.into(), value.into());
        }
    };
    put("em", id.email_sha256.clone());
    put("ph", id.phone_digits_sha256.clone());
    put("fn", id.first_name_sha256.clone());
    put("ln", id.last_name_sha256.clone());
    put("db", id.date_of_birth_sha256.clone());
    put("ge", id.gender_sha256.clone());
    // Kept as normalised plaintext (Google wants it so); Meta wants it hashed.
    put("ct", id.city.as_deref().map(sha256_hex));
    put("st", id.state.as_deref().map(sha256_hex));
    put("zp", id.zip.as_deref().map(sha256_hex));
    put("country", id.country.as_deref().map(sha256_hex));
    put(
        "external_id",
        id.external_id.as_deref().map(hash_external_id),
    );
    put("client_ip_address", user.ip.clone());
    put("client_user_agent", user.user_agent.clone());
    put("fbc", fbc(outgoing.event));
    put("fbp", user.click_ids.fbp.clone());
    // Meta takes a list for the contact fields; one value each is what tally keeps.
    for key in ["em", "ph", "external_id"] {
        if let Some(value) = out.get_mut(key) {
            *value = Value::Array(vec![value.take()]);
        }
    }
    out
}

/// The advertiser's id hashed as Meta recommends; an id that already is a SHA-256 (advertisers
/// often send one, and the Pixel passes such values through) is sent as that hash.
fn hash_external_id(id: &str) -> String {
    if is_sha256_hex(id) {
        id.to_ascii_lowercase()
    } else {
        sha256_hex(id)
    }
}

/// The `_fbc` cookie as received (4 or 5 segments, case kept), else one built from the landing
/// `fbclid` with the click time in milliseconds (the event time when the click time is unknown)
/// and subdomain index 1, as Meta says a server without the cookie should.
pub(super) fn fbc(event: &Event) -> Option<String> {
    let ids = &event.user.click_ids;
    if let Some(fbc) = &ids.fbc {
        return Some(fbc.clone());
    }
    let fbclid = ids.fbclid.as_deref()?;
    let clicked_at = ids.clicked_at.unwrap_or(event.timestamp);
    Some(format!("fb.1.{}.{fbclid}", clicked_at.millis()))
}

/// Value, currency, order and the items bought.
pub(super) fn custom_data(outgoing: &Outgoing<'_>) -> Map<String, Value> {
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
        let ids: Vec<Value> = contents.iter().map(|c| c["id"].clone()).collect();
        let items: u64 = contents
            .iter()
            .map(|c| c.get("quantity").and_then(Value::as_u64).unwrap_or(1))
            .sum();
        out.insert("contents".into(), Value::Array(contents));
        out.insert("content_ids".into(), Value::Array(ids));
        out.insert("content_type".into(), "product".into());
        out.insert("num_items".into(), items.into());
    }
    out
}

/// `properties.items[]` (`id`, `quantity`, `price`) as Meta `contents` (`id`, `quantity`,
/// `item_price`); items without an id are left out, and so are quantities and prices that are
/// not numbers.
fn contents(event: &Event) -> Vec<Value> {
    properties::items(event)
        .into_iter()
        .map(|item| {
            let mut content = Map::new();
            content.insert("id".into(), item.id.into());
            if let Some(quantity) = item.quantity {
                content.insert("quantity".into(), quantity.into());
            }
            if let Some(price) = &item.price {
                content.insert("item_price".into(), money::value_to_json(price));
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
            name: "Purchase",
            value: event.value,
            identifiers: true,
            test: false,
        }
    }

    fn website() -> Settings {
        Settings {
            action_source: "website".into(),
            limited_data_use: false,
        }
    }

    #[test]
    fn the_purchase_fixture_maps_field_by_field() {
        let event = events::purchase("e-1");
        let sent = server_event(&outgoing(&event), &website());
        assert_eq!(sent["event_name"], "Purchase");
        assert_eq!(sent["event_time"], event.timestamp.secs());
        assert_eq!(sent["event_id"], "e-1");
        assert_eq!(sent["action_source"], "website");
        assert_eq!(
            sent["event_source_url"],
            "https://shop.example/checkout/thanks"
        );
        assert_eq!(sent["referrer_url"], "https://shop.example/cart");
        let user = &sent["user_data"];
        assert_eq!(user["em"], json!([sha256_hex("jane.doe@example.com")]));
        assert_eq!(user["ph"], json!([sha256_hex("16505551212")]));
        assert_eq!(user["fn"], sha256_hex("jane"));
        assert_eq!(user["ln"], sha256_hex("doe"));
        assert_eq!(user["ct"], sha256_hex("menlopark"));
        assert_eq!(user["st"], sha256_hex("ca"));
        assert_eq!(user["zp"], sha256_hex("94025"));
        assert_eq!(user["country"], sha256_hex("us"));
        assert_eq!(user["external_id"], json!([sha256_hex("cust-42")]));
        assert_eq!(user["client_ip_address"], "203.0.113.9");
        assert_eq!(user["client_user_agent"], "Mozilla/5.0 (X11)");
        assert_eq!(user["fbp"], "fb.1.1763600000000.1098115397");
        let custom = &sent["custom_data"];
        assert_eq!(custom["value"].to_string(), "129.90");
        assert_eq!(custom["currency"], "EUR");
        assert_eq!(custom["order_id"], "1001");
        assert_eq!(
            custom["contents"].to_string(),
            r#"[{"id":"sku-1","item_price":64.95,"quantity":2}]"#
        );
        assert_eq!(custom["content_ids"], json!(["sku-1"]));
        assert_eq!(custom["content_type"], "product");
        assert_eq!(custom["num_items"], 2);
        assert!(sent.get("data_processing_options").is_none());
    }

    #[test]
    fn an_external_id_that_is_already_a_hash_is_not_hashed_again() {
        let hash = sha256_hex("cust-42");
        assert_eq!(hash_external_id(&hash.to_ascii_uppercase()), hash);
        assert_eq!(hash_external_id("cust-42"), hash);
    }

    #[test]
    fn fbc_is_built_from_fbclid_with_the_click_time_else_the_event_time() {
        let clicked = events::server(json!({"event": "lead", "timestamp": 1_763_633_000_000_i64,
            "user": {"click_ids": {"fbclid": "IwAR-Case", "clicked_at": 1_763_600_000_123_i64}}}));
        assert_eq!(
            fbc(&clicked).as_deref(),
            Some("fb.1.1763600000123.IwAR-Case")
        );
        let unclicked = events::server(json!({"event": "lead", "timestamp": 1_763_633_000_000_i64,
            "user": {"click_ids": {"fbclid": "IwAR-Case"}}}));
        assert_eq!(
            fbc(&unclicked).as_deref(),
            Some("fb.1.1763633000000.IwAR-Case")
        );
        let cookie = events::server(json!({"event": "lead", "user": {"click_ids": {
            "fbclid": "other", "fbc": "fb.1.1596403881668.IwAR2xyz.ABcDEFGh"}}}));
        assert_eq!(
            fbc(&cookie).as_deref(),
            Some("fb.1.1596403881668.IwAR2xyz.ABcDEFGh")
        );
    }

    #[test]
    fn limited_data_use_lets_meta_geolocate() {
        let event = events::purchase("e-1");
        let settings = Settings {
            limited_data_use: true,
            ..website()
        };
        let sent = server_event(&outgoing(&event), &settings);
        assert_eq!(sent["data_processing_options"], json!(["LDU"]));
        assert_eq!(sent["data_processing_options_country"], 0);
        assert_eq!(sent["data_processing_options_state"], 0);
    }

    #[test]
    fn without_identifier_consent_nothing_personal_is_left_and_the_event_is_unsendable() {
        let event = events::purchase("e-1");
        let stripped = Outgoing {
            identifiers: false,
            ..outgoing(&event)
        };
        assert!(user_data(&stripped).is_empty());
        let reason = unsendable(&stripped, &website()).expect("unsendable");
        assert!(reason.starts_with("consent"), "{reason}");
    }

    #[test]
    fn website_events_need_user_agent_and_page_url_but_others_do_not() {
        let event = events::server(json!({"event": "lead", "user": {"email": "a@b.co"}}));
        let reason = unsendable(&outgoing(&event), &website()).expect("unsendable");
        assert!(reason.contains("user agent"), "{reason}");
        let with_agent = events::server(
            json!({"event": "lead", "user": {"email": "a@b.co", "user_agent": "UA"}}),
        );
        let reason = unsendable(&outgoing(&with_agent), &website()).expect("unsendable");
        assert!(reason.contains("page URL"), "{reason}");
        let crm = Settings {
            action_source: "system_generated".into(),
            limited_data_use: false,
        };
        assert_eq!(unsendable(&outgoing(&event), &crm), None);
    }

    #[test]
    fn items_without_an_id_are_left_out_and_numeric_ids_become_text() {
        let event = events::server(json!({"event": "purchase", "properties": {
            "order_id": 1001, "items": [{"quantity": 1}, {"id": 7, "price": "5.00"}]}}));
        let custom = custom_data(&outgoing(&event));
        assert_eq!(custom["order_id"], "1001");
        assert_eq!(
            custom["contents"].to_string(),
            r#"[{"id":"7","item_price":5.00}]"#
        );
        assert_eq!(custom["num_items"], 1);
    }
}
