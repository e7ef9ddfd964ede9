//! Events as Google wants them: Data Manager `IngestEventsRequest` and Google Ads
//! `UploadClickConversionsRequest` JSON (proto3 JSON names, lowerCamelCase).
//!
//! Pure functions, no I/O. Identifiers come from the event's [`HashedIdentity`] in Google's
//! forms: `email_google_sha256` (gmail dots removed) and `phone_e164_sha256` (`+` and digits).
//! With `identifiers == false` nothing personal is sent: no click ID, no hashed contact data,
//! no address; Google cannot match such an event, so [`unsendable`] turns it away first.
//!
//! [`HashedIdentity`]: tally_core::identity::HashedIdentity

use serde_json::{Map, Value, json};
use tally_core::event::{ConsentSignal, Event};
use tally_core::money::value_to_json;
use tally_core::timestamp::Timestamp;

use super::{Api, ConversionActions};
use crate::Outgoing;

/// The Google Ads accounts a request acts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accounts {
    /// The account that owns the conversion actions (10 digits).
    pub customer_id: String,
    /// The manager account the token acts through, if any (10 digits).
    pub login_customer_id: Option<String>,
}

/// Why Google could not take `outgoing` at all, or `None` when it can be sent.
pub fn unsendable(api: Api, outgoing: &Outgoing<'_>) -> Option<String> {
    let has_click = click_id(outgoing).is_some();
    let matchable = match api {
        Api::DataManager => has_click || !data_manager_identifiers(outgoing).is_empty(),
        Api::UploadClickConversions => has_click,
    };
    if matchable {
        return None;
    }
    let reason = if !outgoing.identifiers {
        "consent allows no identifiers (click IDs, hashed contact data), and Google Ads \
         cannot match a conversion without them"
    } else {
        match api {
            Api::DataManager => {
                "nothing to match: no gclid/gbraid/wbraid and no hashed email, phone or full \
                 address (first and last name, country and zip)"
            }
            Api::UploadClickConversions => {
                "no gclid/gbraid/wbraid: use the Data Manager API for identifier-only conversions"
            }
        }
    };
    Some(reason.to_owned())
}

/// The one click ID sent for an event, as (field name, value): gclid, else wbraid, else gbraid
/// (Google refuses gbraid and wbraid together). None without identifier consent.
pub fn click_id<'a>(outgoing: &Outgoing<'a>) -> Option<(&'static str, &'a str)> {
    if !outgoing.identifiers {
        return None;
    }
    let ids = &outgoing.event.user.click_ids;
    [
        ("gclid", &ids.gclid),
        ("wbraid", &ids.wbraid),
        ("gbraid", &ids.gbraid),
    ]
    .into_iter()
    .find_map(|(name, value)| {
        value
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name, v))
    })
}

/// The event's transaction (order) ID: its `order_id` property, else its `event_id`. Google
/// keeps one conversion per ID and conversion action, which makes resends harmless.
pub fn transaction_id(event: &Event) -> String {
    match event.properties.get("order_id") {
        Some(Value::String(id)) if !id.trim().is_empty() => id.trim().to_owned(),
        Some(Value::Number(id)) => id.to_string(),
        _ => event.event_id.clone(),
    }
}

/// A Data Manager `IngestEventsRequest` sending `batch` to one conversion action.
pub fn data_manager_request(
    accounts: &Accounts,
    conversion_action_id: &str,
    batch: &[Outgoing<'_>],
    validate_only: bool,
) -> Value {
    let mut destination = json!({
        "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": accounts.customer_id},
        "productDestinationId": conversion_action_id,
    });
    if let Some(login) = &accounts.login_customer_id {
        destination["loginAccount"] = json!({"accountType": "GOOGLE_ADS", "accountId": login});
    }
    // Built by moving the events in: `json!` would serialise a deep copy of each.
    let mut request = Map::new();
    request.insert("destinations".into(), Value::Array(vec![destination]));
    request.insert("encoding".into(), "HEX".into());
    request.insert(
        "events".into(),
        Value::Array(batch.iter().map(data_manager_event).collect()),
    );
    if validate_only {
        request.insert("validateOnly".into(), Value::Bool(true));
    }
    Value::Object(request)
}

/// One Data Manager `Event`.
pub fn data_manager_event(outgoing: &Outgoing<'_>) -> Value {
    let event = outgoing.event;
    let mut out = Map::new();
    out.insert("transactionId".into(), transaction_id(event).into());
    out.insert("eventTimestamp".into(), event.timestamp.to_rfc3339().into());
    if let Some(value) = &outgoing.value {
        out.insert("conversionValue".into(), value_to_json(value));
        if let Some(currency) = &event.currency {
            out.insert("currency".into(), currency.as_str().into());
        }
    }
    if let Some((name, id)) = click_id(outgoing) {
        out.insert("adIdentifiers".into(), json!({ name: id }));
    }
    let identifiers = data_manager_identifiers(outgoing);
    if !identifiers.is_empty() {
        out.insert("userData".into(), json!({ "userIdentifiers": identifiers }));
    }
    let consent = &event.consent;
    if consent.ad_user_data.is_some() || consent.ad_personalization.is_some() {
        out.insert(
            "consent".into(),
            json!({
                "adUserData": data_manager_consent(consent.ad_user_data),
                "adPersonalization": data_manager_consent(consent.ad_personalization),
            }),
        );
    }
    Value::Object(out)
}

/// Data Manager `userIdentifiers`: hashed email, hashed phone, and the address when all four
/// parts Google requires are known. Empty without identifier consent.
pub fn data_manager_identifiers(outgoing: &Outgoing<'_>) -> Vec<Value> {
    if !outgoing.identifiers {
        return Vec::new();
    }
    let identity = &outgoing.event.user.identity;
    let mut identifiers = Vec::new();
    if let Some(email) = &identity.email_google_sha256 {
        identifiers.push(json!({ "emailAddress": email }));
    }
    if let Some(phone) = &identity.phone_e164_sha256 {
        identifiers.push(json!({ "phoneNumber": phone }));
    }
    if let (Some(given), Some(family), Some(country), Some(zip)) = (
        &identity.first_name_sha256,
        &identity.last_name_sha256,
        &identity.country,
        &identity.zip,
    ) {
        identifiers.push(json!({ "address": {
            "givenName": given,
            "familyName": family,
            "regionCode": country.to_ascii_uppercase(),
            "postalCode": zip,
        }}));
    }
    identifiers
}

/// A consent signal in Data Manager's `ConsentStatus`.
pub fn data_manager_consent(signal: Option<ConsentSignal>) -> &'static str {
    match signal {
        Some(ConsentSignal::Granted) => "CONSENT_GRANTED",
        Some(ConsentSignal::Denied) => "CONSENT_DENIED",
        None => "CONSENT_STATUS_UNSPECIFIED",
    }
}

/// An `UploadClickConversionsRequest` for `batch` (always `partialFailure`, as Google requires).
pub fn click_conversions_request(
    accounts: &Accounts,
    actions: &ConversionActions,
    batch: &[Outgoing<'_>],
    validate_only: bool,
) -> Value {
    let conversions: Vec<Value> = batch
        .iter()
        .map(|outgoing| {
            click_conversion(
                &accounts.customer_id,
                actions.for_event(outgoing.name),
                outgoing,
            )
        })
        .collect();
    let mut request = Map::new();
    request.insert("conversions".into(), Value::Array(conversions));
    request.insert("partialFailure".into(), Value::Bool(true));
    if validate_only {
        request.insert("validateOnly".into(), Value::Bool(true));
    }
    Value::Object(request)
}

/// One `ClickConversion`. Click conversions take `adUserData` consent only (Google refuses
/// `adPersonalization` there) and only hashed email and phone identifiers.
pub fn click_conversion(customer_id: &str, action_id: &str, outgoing: &Outgoing<'_>) -> Value {
    let event = outgoing.event;
    let mut out = Map::new();
    if let Some((name, id)) = click_id(outgoing) {
        out.insert(name.into(), id.into());
    }
    out.insert(
        "conversionAction".into(),
        format!("customers/{customer_id}/conversionActions/{action_id}").into(),
    );
    out.insert(
        "conversionDateTime".into(),
        conversion_date_time(event.timestamp).into(),
    );
    if let Some(value) = &outgoing.value {
        out.insert("conversionValue".into(), value_to_json(value));
        if let Some(currency) = &event.currency {
            out.insert("currencyCode".into(), currency.as_str().into());
        }
    }
    out.insert("orderId".into(), transaction_id(event).into());
    if outgoing.identifiers {
        let identity = &event.user.identity;
        let mut identifiers = Vec::new();
        if let Some(email) = &identity.email_google_sha256 {
            identifiers.push(json!({ "hashedEmail": email }));
        }
        if let Some(phone) = &identity.phone_e164_sha256 {
            identifiers.push(json!({ "hashedPhoneNumber": phone }));
        }
        if !identifiers.is_empty() {
            out.insert("userIdentifiers".into(), identifiers.into());
        }
    }
    if let Some(signal) = event.consent.ad_user_data {
        let status = match signal {
            ConsentSignal::Granted => "GRANTED",
            ConsentSignal::Denied => "DENIED",
        };
        out.insert("consent".into(), json!({ "adUserData": status }));
    }
    Value::Object(out)
}

/// `yyyy-mm-dd hh:mm:ss+00:00` in UTC, the Google Ads API's conversion time format.
pub fn conversion_date_time(at: Timestamp) -> String {
    // Parsed events lie within years 2000–9999, which chrono always represents; the epoch
    // fallback only covers hand-made timestamps, and Google refuses it as out of window.
    let at =
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at.millis()).unwrap_or_default();
    at.format("%Y-%m-%d %H:%M:%S+00:00").to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rust_decimal::Decimal;
    use tally_testkit::events;

    use super::*;

    fn outgoing(event: &Event) -> Outgoing<'_> {
        Outgoing {
            event,
            name: "purchase",
            value: event.value,
            identifiers: true,
            test: false,
        }
    }

    fn accounts() -> Accounts {
        Accounts {
            customer_id: "1234567890".into(),
            login_customer_id: None,
        }
    }

    #[test]
    fn the_purchase_fixture_becomes_a_data_manager_event() {
        let event = events::purchase("e1");
        let body = data_manager_event(&outgoing(&event));
        assert_eq!(body["transactionId"], "1001");
        assert_eq!(body["eventTimestamp"], "2025-11-20T10:14:00.000Z");
        assert_eq!(body["conversionValue"].to_string(), "129.90");
        assert_eq!(body["currency"], "EUR");
        assert_eq!(body["adIdentifiers"], json!({"gclid": "Cj0KCQ-test-gclid"}));
        let ids = body["userData"]["userIdentifiers"].as_array().unwrap();
        assert_eq!(
            ids[0]["emailAddress"],
            "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"
        );
        assert_eq!(
            ids[1]["phoneNumber"],
            "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"
        );
        assert_eq!(ids[2]["address"]["regionCode"], "US");
        assert_eq!(ids[2]["address"]["postalCode"], "94025");
        assert_eq!(
            body["consent"],
            json!({"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"})
        );
    }

    #[test]
    fn without_identifier_consent_nothing_personal_is_built() {
        let event = events::purchase("e1");
        let stripped = Outgoing {
            identifiers: false,
            ..outgoing(&event)
        };
        let body = data_manager_event(&stripped);
        assert!(body.get("userData").is_none() && body.get("adIdentifiers").is_none());
        let row = click_conversion("1234567890", "5", &stripped);
        assert!(row.get("gclid").is_none() && row.get("userIdentifiers").is_none());
        let reason = unsendable(Api::DataManager, &stripped).unwrap();
        assert!(reason.contains("consent"), "{reason}");
    }

    #[test]
    fn gclid_beats_wbraid_beats_gbraid() {
        let both = events::server(json!({"event": "purchase", "user": {"click_ids": {
            "gbraid": "gb-1", "wbraid": "wb-1"}}}));
        assert_eq!(click_id(&outgoing(&both)), Some(("wbraid", "wb-1")));
        let all = events::server(json!({"event": "purchase", "user": {"click_ids": {
            "gbraid": "gb-1", "wbraid": "wb-1", "gclid": "gc-1"}}}));
        assert_eq!(click_id(&outgoing(&all)), Some(("gclid", "gc-1")));
        let row = click_conversion("1234567890", "5", &outgoing(&both));
        assert_eq!(row["wbraid"], "wb-1");
        assert!(row.get("gbraid").is_none());
    }

    #[test]
    fn an_event_without_click_id_or_identifier_cannot_be_matched() {
        let anonymous = events::server(json!({"event": "lead", "event_id": "l1"}));
        let reason = unsendable(Api::DataManager, &outgoing(&anonymous)).unwrap();
        assert!(reason.starts_with("nothing to match"), "{reason}");
        let email_only = events::server(json!({"event": "lead", "user": {"email": "a@b.co"}}));
        assert_eq!(unsendable(Api::DataManager, &outgoing(&email_only)), None);
        let reason = unsendable(Api::UploadClickConversions, &outgoing(&email_only)).unwrap();
        assert!(reason.contains("Data Manager"), "{reason}");
    }

    #[test]
    fn a_partial_address_is_left_out() {
        let event = events::server(json!({"event": "lead", "user": {
            "first_name": "Jane", "last_name": "Doe", "country": "US"}}));
        assert!(data_manager_identifiers(&outgoing(&event)).is_empty());
    }

    #[test]
    fn click_conversions_use_the_ads_api_forms() {
        let event = events::purchase("e1");
        let actions = ConversionActions::new("5".into(), BTreeMap::new());
        let body = click_conversions_request(&accounts(), &actions, &[outgoing(&event)], true);
        assert_eq!(body["partialFailure"], true);
        assert_eq!(body["validateOnly"], true);
        let row = &body["conversions"][0];
        assert_eq!(
            row["conversionAction"],
            "customers/1234567890/conversionActions/5"
        );
        assert_eq!(row["conversionDateTime"], "2025-11-20 10:14:00+00:00");
        assert_eq!(row["currencyCode"], "EUR");
        assert_eq!(row["orderId"], "1001");
        assert_eq!(row["consent"], json!({"adUserData": "GRANTED"}));
        assert_eq!(row["userIdentifiers"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn the_value_sent_is_the_outgoing_value_with_its_exact_text() {
        let event = events::purchase("e1");
        let custom = Outgoing {
            value: Some(Decimal::new(100_500, 3)),
            ..outgoing(&event)
        };
        assert_eq!(
            data_manager_event(&custom)["conversionValue"].to_string(),
            "100.500"
        );
        let none = Outgoing {
            value: None,
            ..outgoing(&event)
        };
        let body = data_manager_event(&none);
        assert!(body.get("conversionValue").is_none() && body.get("currency").is_none());
    }

    #[test]
    fn the_transaction_id_falls_back_to_the_event_id() {
        let event = events::server(json!({"event": "lead", "event_id": "lead-9"}));
        assert_eq!(transaction_id(&event), "lead-9");
        let numeric = events::server(json!({"event": "x", "properties": {"order_id": 42}}));
        assert_eq!(transaction_id(&numeric), "42");
    }
}
