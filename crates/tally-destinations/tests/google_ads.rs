//! The `google_ads` connector against the strict fakes of both Google APIs: Data Manager
//! (`FakeDataManager`) and the legacy click-conversion upload (`FakeGoogleAds`).

use std::time::Duration;

use serde_json::{Value, json};
use tally_core::event::Event;
use tally_core::retry::Disposition;
use tally_destinations::google_ads::{self, Config, Connector};
use tally_destinations::{AttemptSummary, Destination, Outgoing};
use tally_testkit::Reply;
use tally_testkit::events;
use tally_testkit::fakes::data_manager::FakeDataManager;
use tally_testkit::fakes::google_ads::FakeGoogleAds;

const TOKEN: &str = "ya29.test-access-token";
const DEVELOPER_TOKEN: &str = "dev-token-123";

/// sha256("johnsmith@gmail.com"): Google's gmail form drops the dots before the `@`.
const JOHN_SMITH_GMAIL: &str = "3586de92bb3636d0885a12eff961429a32e4ebd764b96f50d85d016f9338d586";
/// sha256("john.smith@gmail.com"), what a connector without the gmail rule would send.
const JOHN_DOT_SMITH_GMAIL: &str =
    "d0c648bc36f12061bec770df216cea2ab95851b9350fd54b658de53b0407767a";
/// sha256("+16505551212"), the reference table's Google/TikTok phone form.
const PHONE_E164: &str = "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8";
/// sha256("jane.doe@example.com"), the purchase fixture's email.
const JANE_EMAIL: &str = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d";

type Results = Vec<(Disposition, AttemptSummary)>;

fn connector(config: &str) -> Connector {
    let config: Config = toml::from_str(config).expect("config parses");
    google_ads::build("google", config, reqwest::Client::new()).expect("config is valid")
}

fn data_manager(fake: &FakeDataManager, extra: &str) -> Connector {
    connector(&format!(
        "customer_id = \"123-456-7890\"\nconversion_action_id = \"555\"\n\
         access_token = \"{TOKEN}\"\nendpoint = \"{}\"\n{extra}",
        fake.url()
    ))
}

fn legacy(fake: &FakeGoogleAds, extra: &str) -> Connector {
    connector(&format!(
        "api = \"upload_click_conversions\"\ncustomer_id = \"123-456-7890\"\n\
         conversion_action_id = \"555\"\naccess_token = \"{TOKEN}\"\n\
         developer_token = \"{DEVELOPER_TOKEN}\"\nendpoint = \"{}\"\n{extra}",
        fake.url()
    ))
}

fn outgoing<'a>(event: &'a Event) -> Outgoing<'a> {
    Outgoing {
        event,
        name: &event.name,
        value: event.value,
        identifiers: true,
        test: false,
    }
}

/// `n` purchases with their own order IDs and gclids.
fn purchases(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            events::server(json!({
                "event": "purchase", "event_id": format!("e{i}"),
                "user": {"email": format!("buyer{i}@example.com"),
                         "click_ids": {"gclid": format!("gclid-{i}")}},
                "properties": {"value": "10.00", "currency": "USD", "order_id": format!("o{i}")}
            }))
        })
        .collect()
}

/// A gmail buyer with the reference table's phone number and partial consent.
fn john_smith() -> Event {
    events::server(json!({
        "event": "lead", "event_id": "lead-1", "timestamp": "2025-11-20T09:00:00Z",
        "user": {"email": "John.Smith@Gmail.com", "phone": "+1 650 555 1212",
                 "click_ids": {"gclid": "gclid-john"}},
        "consent": {"ad_user_data": "denied"}
    }))
}

fn body(request: &tally_testkit::Captured) -> Value {
    serde_json::from_slice(&request.body).expect("JSON body")
}

fn assert_all_succeeded(results: &Results) {
    for (i, (disposition, summary)) in results.iter().enumerate() {
        assert_eq!(
            disposition,
            &Disposition::Succeeded,
            "event {i}: {summary:?}"
        );
    }
}

fn assert_no_secret(results: &Results) {
    for (disposition, summary) in results {
        let text = format!("{disposition:?} {summary:?}");
        assert!(
            !text.contains(TOKEN) && !text.contains(DEVELOPER_TOKEN),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Data Manager

#[tokio::test]
async fn data_manager_sends_the_purchase_fixture_exactly() {
    let fake = FakeDataManager::start(TOKEN).await;
    let ads = data_manager(&fake, "login_customer_id = \"111-222-3333\"");
    let event = events::purchase("p-1");
    let results = ads.send(&[outgoing(&event)]).await;
    assert_all_succeeded(&results);
    assert!(
        results[0].1.text.contains("requestId fake-dm-"),
        "{:?}",
        results[0].1
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/events:ingest");
    assert_eq!(
        requests[0].headers["authorization"],
        format!("Bearer {TOKEN}").as_str()
    );
    assert!(requests[0].headers.get("developer-token").is_none());
    // Parsed from text so that the decimal keeps its exact form (129.90, not 129.9).
    let expected: Value = serde_json::from_str(&format!(
        r#"{{
        "destinations": [{{
            "operatingAccount": {{"accountType": "GOOGLE_ADS", "accountId": "1234567890"}},
            "loginAccount": {{"accountType": "GOOGLE_ADS", "accountId": "1112223333"}},
            "productDestinationId": "555"}}],
        "encoding": "HEX",
        "events": [{{
            "transactionId": "1001",
            "eventTimestamp": "2025-11-20T10:14:00.000Z",
            "conversionValue": 129.90,
            "currency": "EUR",
            "adIdentifiers": {{"gclid": "Cj0KCQ-test-gclid"}},
            "userData": {{"userIdentifiers": [
                {{"emailAddress": "{JANE_EMAIL}"}},
                {{"phoneNumber": "{PHONE_E164}"}},
                {{"address": {{
                    "givenName": "81f8f6dde88365f3928796ec7aa53f72820b06db8664f5fe76a7eb13e24546a2",
                    "familyName": "799ef92a11af918e3fb741df42934f3b568ed2d93ac1df74f1b8d41a27932a6f",
                    "regionCode": "US", "postalCode": "94025"}}}}]}},
            "consent": {{"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}}
        }}]}}"#
    ))
    .unwrap();
    assert_eq!(body(&requests[0]), expected);
    assert_eq!(fake.received(), vec![expected["events"][0].clone()]);
}

#[tokio::test]
async fn data_manager_uses_googles_email_and_phone_forms_and_consent_enums() {
    let fake = FakeDataManager::start(TOKEN).await;
    let ads = data_manager(&fake, "");
    let john = john_smith();
    ads.send(&[outgoing(&john)]).await;
    let sent = &fake.received()[0];
    assert_eq!(sent["transactionId"], "lead-1", "no order_id: the event_id");
    assert_eq!(sent["eventTimestamp"], "2025-11-20T09:00:00.000Z");
    let identifiers = &sent["userData"]["userIdentifiers"];
    assert_eq!(identifiers[0]["emailAddress"], JOHN_SMITH_GMAIL);
    assert_ne!(identifiers[0]["emailAddress"], JOHN_DOT_SMITH_GMAIL);
    assert_eq!(identifiers[1]["phoneNumber"], PHONE_E164);
    assert_eq!(
        identifiers.as_array().unwrap().len(),
        2,
        "no address without names"
    );
    assert_eq!(
        sent["consent"],
        json!({"adUserData": "CONSENT_DENIED", "adPersonalization": "CONSENT_STATUS_UNSPECIFIED"})
    );
    assert!(sent.get("conversionValue").is_none() && sent.get("currency").is_none());

    let silent =
        events::server(json!({"event": "lead", "user": {"click_ids": {"wbraid": "wb-1"}}}));
    ads.send(&[outgoing(&silent)]).await;
    let sent = &fake.received()[1];
    assert!(
        sent.get("consent").is_none(),
        "no consent signal, no consent object"
    );
    assert_eq!(sent["adIdentifiers"], json!({"wbraid": "wb-1"}));
    assert!(sent.get("userData").is_none());
}

#[tokio::test]
async fn data_manager_sends_each_conversion_action_its_own_request() {
    let fake = FakeDataManager::start(TOKEN).await;
    let ads = data_manager(&fake, "conversion_actions = { lead = \"777\" }");
    let purchase = events::purchase("p-1");
    let lead = john_smith();
    let results = ads
        .send(&[outgoing(&lead), outgoing(&purchase), outgoing(&lead)])
        .await;
    assert_eq!(results.len(), 3);
    assert_all_succeeded(&results);
    let mut per_action: Vec<(String, usize)> = fake
        .requests()
        .iter()
        .map(|r| {
            let body = body(r);
            (
                body["destinations"][0]["productDestinationId"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                body["events"].as_array().unwrap().len(),
            )
        })
        .collect();
    per_action.sort();
    assert_eq!(per_action, [("555".to_owned(), 1), ("777".to_owned(), 2)]);
}

#[tokio::test]
async fn data_manager_test_events_are_validated_only_and_not_received() {
    let fake = FakeDataManager::start(TOKEN).await;
    let ads = data_manager(&fake, "");
    let live = events::purchase("live");
    let test = events::server(json!({"event": "purchase", "event_id": "t-1",
        "user": {"click_ids": {"gclid": "gclid-test"}}}));
    let results = ads
        .send(&[
            Outgoing {
                test: true,
                ..outgoing(&test)
            },
            outgoing(&live),
        ])
        .await;
    assert_all_succeeded(&results);
    assert!(
        results[0].1.text.contains("validated only"),
        "{:?}",
        results[0].1
    );
    let requests = fake.request_bodies();
    assert_eq!(
        requests.len(),
        2,
        "test and live events never share a request"
    );
    let flags: Vec<Option<bool>> = requests
        .iter()
        .map(|b| b["validateOnly"].as_bool())
        .collect();
    assert!(
        flags.contains(&Some(true)) && flags.contains(&None),
        "{flags:?}"
    );
    let received: Vec<Value> = fake
        .received()
        .iter()
        .map(|e| e["transactionId"].clone())
        .collect();
    assert_eq!(received, [json!("1001")]);
    assert_eq!(fake.validated()[0]["transactionId"], "t-1");
}

#[tokio::test]
async fn data_manager_isolates_one_poisoned_event_in_a_hundred() {
    let fake = FakeDataManager::start(TOKEN).await;
    let ads = data_manager(&fake, "");
    let events = purchases(100);
    fake.poison("o37");
    let batch: Vec<Outgoing<'_>> = events.iter().map(outgoing).collect();
    let results = ads.send(&batch).await;
    for (i, (disposition, summary)) in results.iter().enumerate() {
        if i == 37 {
            match disposition {
                Disposition::Dead { reason } => {
                    assert!(reason.contains("INVALID_EVENT"), "{reason}");
                    assert_eq!(summary.status, Some(400));
                }
                other => panic!("event 37: {other:?}"),
            }
        } else {
            assert_eq!(
                disposition,
                &Disposition::Succeeded,
                "event {i}: {summary:?}"
            );
        }
    }
    assert_eq!(fake.received().len(), 99);
    assert!(
        fake.requests().len() <= 2 * 7 + 1,
        "{} requests",
        fake.requests().len()
    );
}

#[tokio::test]
async fn data_manager_destination_errors_need_a_fix_without_splitting() {
    let fake = FakeDataManager::start(TOKEN).await;
    let ads = data_manager(&fake, "");
    fake.unknown_conversion_action("555");
    let events = purchases(10);
    let batch: Vec<Outgoing<'_>> = events.iter().map(outgoing).collect();
    let results = ads.send(&batch).await;
    assert_eq!(fake.requests().len(), 1);
    for (disposition, _) in &results {
        match disposition {
            Disposition::NeedsFix { reason } => {
                assert!(reason.contains("INVALID_CONVERSION_ACTION_ID"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn data_manager_bad_credentials_or_version_need_a_fix() {
    let fake = FakeDataManager::start("another-token").await;
    let ads = data_manager(&fake, "");
    let events = purchases(3);
    let batch: Vec<Outgoing<'_>> = events.iter().map(outgoing).collect();
    let results = ads.send(&batch).await;
    assert_eq!(fake.requests().len(), 1, "an auth failure is not split");
    for (disposition, summary) in &results {
        assert!(
            matches!(disposition, Disposition::NeedsFix { reason } if reason.contains("UNAUTHENTICATED"))
        );
        assert_eq!(summary.status, Some(401));
    }
    assert_no_secret(&results);

    let right = FakeDataManager::start(TOKEN).await;
    let wrong_version = data_manager(&right, "api_version = \"v2\"");
    let results = wrong_version.send(&batch).await;
    assert_eq!(right.requests()[0].path, "/v2/events:ingest");
    assert!(matches!(&results[0].0, Disposition::NeedsFix { reason } if reason.contains("404")));
}

#[tokio::test]
async fn data_manager_overload_and_outages_are_retried_after_the_platforms_wait() {
    let fake = FakeDataManager::start(TOKEN).await;
    let ads = data_manager(&fake, "");
    fake.script_one(
        Reply::json(
            429,
            r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#,
        )
        .retry_after(Duration::from_secs(30)),
    );
    fake.script_one(
        Reply::json(
            503,
            r#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#,
        )
        .retry_after(Duration::from_secs(7)),
    );
    let event = events::purchase("p-1");
    let first = ads.send(&[outgoing(&event)]).await;
    match &first[0].0 {
        Disposition::Retry {
            reason,
            retry_after,
            overloaded,
        } => {
            assert!(reason.contains("RESOURCE_EXHAUSTED"), "{reason}");
            assert_eq!(*retry_after, Some(Duration::from_secs(30)));
            assert!(*overloaded);
        }
        other => panic!("{other:?}"),
    }
    let second = ads.send(&[outgoing(&event)]).await;
    match &second[0].0 {
        Disposition::Retry {
            reason,
            retry_after,
            overloaded,
        } => {
            assert!(reason.contains("UNAVAILABLE"), "{reason}");
            assert_eq!(*retry_after, Some(Duration::from_secs(7)));
            assert!(!overloaded);
        }
        other => panic!("{other:?}"),
    }
    let third = ads.send(&[outgoing(&event)]).await;
    assert_all_succeeded(&third);
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn data_manager_refuses_unmatchable_events_without_sending() {
    let fake = FakeDataManager::start(TOKEN).await;
    let ads = data_manager(&fake, "");
    let anonymous = events::server(json!({"event": "lead", "event_id": "anon"}));
    let purchase = events::purchase("p-1");
    let results = ads
        .send(&[
            outgoing(&anonymous),
            Outgoing {
                identifiers: false,
                ..outgoing(&purchase)
            },
        ])
        .await;
    assert!(
        matches!(&results[0].0, Disposition::Dead { reason } if reason.starts_with("nothing to match"))
    );
    assert!(matches!(&results[1].0, Disposition::Dead { reason } if reason.contains("consent")));
    assert_eq!(results[1].1.status, None);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn data_manager_never_sends_more_than_two_thousand_events_per_request() {
    let fake = FakeDataManager::start(TOKEN).await;
    let ads = data_manager(&fake, "");
    assert_eq!(ads.max_batch(), 2_000);
    let events = purchases(2_001);
    let batch: Vec<Outgoing<'_>> = events.iter().map(outgoing).collect();
    let results = ads.send(&batch).await;
    assert_all_succeeded(&results);
    let sizes: Vec<usize> = fake
        .request_bodies()
        .iter()
        .map(|b| b["events"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [2_000, 1]);
    assert_eq!(fake.received().len(), 2_001);
}

#[tokio::test]
async fn data_manager_resends_are_deduplicated_by_transaction_id() {
    let fake = FakeDataManager::start(TOKEN).await;
    let ads = data_manager(&fake, "");
    let event = events::purchase("p-1");
    assert_all_succeeded(&ads.send(&[outgoing(&event)]).await);
    assert_all_succeeded(&ads.send(&[outgoing(&event)]).await);
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(fake.received().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Legacy: UploadClickConversions

#[tokio::test]
async fn click_conversions_send_the_purchase_fixture_exactly() {
    let fake = FakeGoogleAds::start(TOKEN, DEVELOPER_TOKEN).await;
    let ads = legacy(&fake, "login_customer_id = \"111-222-3333\"");
    let event = events::purchase("p-1");
    let results = ads.send(&[outgoing(&event)]).await;
    assert_all_succeeded(&results);
    assert!(
        results[0].1.text.contains("uploaded, jobId"),
        "{:?}",
        results[0].1
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        request.path,
        "/v22/customers/1234567890:uploadClickConversions"
    );
    assert_eq!(
        request.headers["authorization"],
        format!("Bearer {TOKEN}").as_str()
    );
    assert_eq!(request.headers["developer-token"], DEVELOPER_TOKEN);
    assert_eq!(request.headers["login-customer-id"], "1112223333");
    let expected: Value = serde_json::from_str(&format!(
        r#"{{"partialFailure": true, "conversions": [{{
            "gclid": "Cj0KCQ-test-gclid",
            "conversionAction": "customers/1234567890/conversionActions/555",
            "conversionDateTime": "2025-11-20 10:14:00+00:00",
            "conversionValue": 129.90,
            "currencyCode": "EUR",
            "orderId": "1001",
            "userIdentifiers": [{{"hashedEmail": "{JANE_EMAIL}"}},
                                {{"hashedPhoneNumber": "{PHONE_E164}"}}],
            "consent": {{"adUserData": "GRANTED"}}
        }}]}}"#
    ))
    .unwrap();
    assert_eq!(body(request), expected);
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn click_conversions_use_googles_hash_forms_and_the_mapped_action() {
    let fake = FakeGoogleAds::start(TOKEN, DEVELOPER_TOKEN).await;
    let ads = legacy(
        &fake,
        "conversion_actions = { lead = \"777\" }\napi_version = \"v25\"",
    );
    let john = john_smith();
    let results = ads.send(&[outgoing(&john)]).await;
    assert_all_succeeded(&results);
    assert_eq!(
        fake.requests()[0].path,
        "/v25/customers/1234567890:uploadClickConversions"
    );
    let row = &fake.received()[0];
    assert_eq!(
        row["conversionAction"],
        "customers/1234567890/conversionActions/777"
    );
    assert_eq!(row["conversionDateTime"], "2025-11-20 09:00:00+00:00");
    assert_eq!(row["orderId"], "lead-1");
    assert_eq!(
        row["userIdentifiers"],
        json!([{"hashedEmail": JOHN_SMITH_GMAIL}, {"hashedPhoneNumber": PHONE_E164}])
    );
    assert_eq!(row["consent"], json!({"adUserData": "DENIED"}));
}

#[tokio::test]
async fn click_conversions_map_partial_failures_to_their_events() {
    let fake = FakeGoogleAds::start(TOKEN, DEVELOPER_TOKEN).await;
    let ads = legacy(&fake, "");
    let events = purchases(5);
    fake.expired("gclid-2");
    let batch: Vec<Outgoing<'_>> = events.iter().map(outgoing).collect();
    let results = ads.send(&batch).await;
    assert_eq!(fake.requests().len(), 1);
    for (i, (disposition, summary)) in results.iter().enumerate() {
        if i == 2 {
            assert!(
                matches!(disposition, Disposition::Dead { reason } if reason.starts_with("EXPIRED_EVENT")),
                "{disposition:?}"
            );
            assert_eq!(summary.status, Some(200));
        } else {
            assert_eq!(
                disposition,
                &Disposition::Succeeded,
                "event {i}: {summary:?}"
            );
        }
    }
    let uploaded: Vec<Value> = fake
        .received()
        .iter()
        .map(|r| r["orderId"].clone())
        .collect();
    assert_eq!(
        uploaded,
        [json!("o0"), json!("o1"), json!("o3"), json!("o4")]
    );
}

#[tokio::test]
async fn click_conversions_already_recorded_count_as_delivered() {
    let fake = FakeGoogleAds::start(TOKEN, DEVELOPER_TOKEN).await;
    let ads = legacy(&fake, "");
    let event = events::purchase("p-1");
    assert_all_succeeded(&ads.send(&[outgoing(&event)]).await);
    let again = ads.send(&[outgoing(&event)]).await;
    assert_eq!(again[0].0, Disposition::Succeeded);
    assert!(
        again[0].1.text.contains("already recorded"),
        "{:?}",
        again[0].1
    );
    assert!(
        again[0].1.text.contains("ORDER_ID_ALREADY_IN_USE"),
        "{:?}",
        again[0].1
    );
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn click_conversions_too_recent_are_retried_later() {
    let fake = FakeGoogleAds::start(TOKEN, DEVELOPER_TOKEN).await;
    let ads = legacy(&fake, "");
    let events = purchases(2);
    fake.too_recent("gclid-1");
    let batch: Vec<Outgoing<'_>> = events.iter().map(outgoing).collect();
    let results = ads.send(&batch).await;
    assert_eq!(results[0].0, Disposition::Succeeded);
    match &results[1].0 {
        Disposition::Retry {
            reason,
            retry_after,
            ..
        } => {
            assert!(reason.starts_with("TOO_RECENT_EVENT"), "{reason}");
            assert!(reason.contains("6 hours"), "{reason}");
            assert_eq!(*retry_after, Some(google_ads::response::TOO_RECENT_WAIT));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn click_conversions_credential_and_action_problems_need_a_fix() {
    let fake = FakeGoogleAds::start(TOKEN, "other-developer-token").await;
    let ads = legacy(&fake, "");
    let events = purchases(2);
    let batch: Vec<Outgoing<'_>> = events.iter().map(outgoing).collect();
    let results = ads.send(&batch).await;
    for (disposition, summary) in &results {
        assert!(
            matches!(disposition, Disposition::NeedsFix { reason } if reason.contains("DEVELOPER_TOKEN_INVALID")),
            "{disposition:?}"
        );
        assert_eq!(summary.status, Some(401));
    }
    assert_no_secret(&results);

    let wrong_token = FakeGoogleAds::start("other-access-token", DEVELOPER_TOKEN).await;
    let results = legacy(&wrong_token, "").send(&batch).await;
    assert!(
        matches!(&results[0].0, Disposition::NeedsFix { reason } if reason.contains("UNAUTHENTICATED"))
    );
    assert_no_secret(&results);

    let right = FakeGoogleAds::start(TOKEN, DEVELOPER_TOKEN).await;
    right.unknown_conversion_action("555");
    let results = legacy(&right, "").send(&batch).await;
    for (disposition, _) in &results {
        assert!(
            matches!(disposition, Disposition::NeedsFix { reason } if reason.starts_with("NO_CONVERSION_ACTION_FOUND")),
            "{disposition:?}"
        );
    }
}

#[tokio::test]
async fn click_conversions_test_events_are_validated_only() {
    let fake = FakeGoogleAds::start(TOKEN, DEVELOPER_TOKEN).await;
    let ads = legacy(&fake, "");
    let event = events::purchase("p-1");
    let results = ads
        .send(&[Outgoing {
            test: true,
            ..outgoing(&event)
        }])
        .await;
    assert_all_succeeded(&results);
    assert!(
        results[0].1.text.contains("validated only"),
        "{:?}",
        results[0].1
    );
    assert_eq!(fake.request_bodies()[0]["validateOnly"], true);
    assert!(fake.received().is_empty());
    assert_eq!(fake.validated().len(), 1);
}

#[tokio::test]
async fn click_conversions_need_a_click_id() {
    let fake = FakeGoogleAds::start(TOKEN, DEVELOPER_TOKEN).await;
    let ads = legacy(&fake, "");
    let email_only = events::server(json!({"event": "lead", "user": {"email": "a@b.co"}}));
    let purchase = events::purchase("p-1");
    let results = ads
        .send(&[
            outgoing(&email_only),
            Outgoing {
                identifiers: false,
                ..outgoing(&purchase)
            },
        ])
        .await;
    assert!(
        matches!(&results[0].0, Disposition::Dead { reason } if reason.contains("use the Data Manager API"))
    );
    assert!(matches!(&results[1].0, Disposition::Dead { reason } if reason.contains("consent")));
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn click_conversions_retry_outages_and_kill_invalid_requests() {
    let fake = FakeGoogleAds::start(TOKEN, DEVELOPER_TOKEN).await;
    let ads = legacy(&fake, "");
    fake.script_one(Reply::status(503).retry_after(Duration::from_secs(12)));
    fake.script_one(
        Reply::json(
            429,
            r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#,
        )
        .retry_after(Duration::from_secs(60)),
    );
    fake.script_one(Reply::json(
        400,
        r#"{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT",
            "details":[{"@type":"type.googleapis.com/google.ads.googleads.v22.errors.GoogleAdsFailure",
            "errors":[{"errorCode":{"fieldError":"REQUIRED"},"message":"The required field was not present."}]}]}}"#,
    ));
    let event = events::purchase("p-1");
    let batch = [outgoing(&event)];
    assert!(matches!(
        &ads.send(&batch).await[0].0,
        Disposition::Retry { retry_after: Some(after), overloaded: false, .. } if *after == Duration::from_secs(12)
    ));
    assert!(matches!(
        &ads.send(&batch).await[0].0,
        Disposition::Retry { retry_after: Some(after), overloaded: true, .. } if *after == Duration::from_secs(60)
    ));
    assert!(matches!(
        &ads.send(&batch).await[0].0,
        Disposition::Dead { reason } if reason.contains("REQUIRED")
    ));
    assert_all_succeeded(&ads.send(&batch).await);
}

#[tokio::test]
async fn click_conversions_are_sent_in_requests_whose_answers_stay_readable() {
    let fake = FakeGoogleAds::start(TOKEN, DEVELOPER_TOKEN).await;
    let ads = legacy(&fake, "");
    assert_eq!(ads.max_batch(), google_ads::CLICK_CONVERSIONS_PER_REQUEST);
    let events = purchases(2_001);
    let batch: Vec<Outgoing<'_>> = events.iter().map(outgoing).collect();
    assert_all_succeeded(&ads.send(&batch).await);
    let sizes: Vec<usize> = fake
        .request_bodies()
        .iter()
        .map(|b| b["conversions"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [500, 500, 500, 500, 1]);
    assert_eq!(fake.received().len(), 2_001);
    // Every row refused (as duplicates) makes the longest answer; it must still be read.
    let again = ads.send(&batch).await;
    assert_all_succeeded(&again);
    assert!(
        again
            .iter()
            .all(|(_, s)| s.text.contains("already recorded"))
    );
    assert_eq!(fake.received().len(), 2_001);
}
