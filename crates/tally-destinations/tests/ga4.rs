//! The `ga4` connector against the strict GA4 Measurement Protocol fake.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tally_core::clock::ManualClock;
use tally_core::event::Event;
use tally_core::retry::Disposition;
use tally_core::secret::Secret;
use tally_core::timestamp::Timestamp;
use tally_destinations::ga4::{self, Config, Connector};
use tally_destinations::{AttemptSummary, Destination, DestinationError, Outgoing};
use tally_testkit::Reply;
use tally_testkit::events::{self, RECEIVED_AT};
use tally_testkit::fakes::ga4::FakeGa4;

const MEASUREMENT_ID: &str = "G-TEST123";
const API_SECRET: &str = "mp-secret-9f8e7d";
const HOUR_MS: i64 = 3_600_000;

fn config(endpoint: &str) -> Config {
    Config {
        measurement_id: MEASUREMENT_ID.into(),
        api_secret: Secret::new(API_SECRET),
        endpoint: endpoint.into(),
        validate_before_send: false,
    }
}

fn client() -> reqwest::Client {
    tally_destinations::http::client(Duration::from_secs(5)).unwrap()
}

/// A fake and a connector to it, both with "now" at the test events' receipt time.
async fn setup_with(adjust: impl FnOnce(&mut Config)) -> (FakeGa4, Connector) {
    let fake = FakeGa4::start(MEASUREMENT_ID, API_SECRET).await;
    fake.set_now(RECEIVED_AT);
    let mut config = config(&fake.url());
    adjust(&mut config);
    let connector = ga4::build("ga4-main", config, client())
        .unwrap()
        .with_clock(Arc::new(ManualClock::new(RECEIVED_AT)));
    (fake, connector)
}

async fn setup() -> (FakeGa4, Connector) {
    setup_with(|_| {}).await
}

fn live<'a>(event: &'a Event, name: &'a str) -> Outgoing<'a> {
    Outgoing {
        event,
        name,
        value: event.value,
        identifiers: true,
        test: false,
    }
}

/// A purchase by the browser client `client_id` with order number `order`.
fn purchase_by(client_id: &str, order: &str) -> Event {
    events::server(json!({
        "event": "purchase", "event_id": format!("evt-{order}"),
        "timestamp": RECEIVED_AT.millis() - 60_000,
        "user": {"click_ids": {"ga_client_id": client_id}},
        "properties": {"value": "10.00", "currency": "EUR", "order_id": order}
    }))
}

fn bodies(fake: &FakeGa4) -> Vec<Value> {
    fake.requests()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

fn dispositions(results: &[(Disposition, AttemptSummary)]) -> Vec<&Disposition> {
    results.iter().map(|(d, _)| d).collect()
}

#[tokio::test]
async fn a_purchase_goes_out_with_ga4s_field_names_exact_value_and_google_form_hashes() {
    let (fake, connector) = setup().await;
    let event = events::purchase("evt-1");
    let results = connector.send(&[live(&event, "purchase")]).await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{:?}", results[0].1);
    assert_eq!(results[0].1.status, Some(204));

    let request = &fake.requests()[0];
    assert_eq!(request.path, "/mp/collect");
    assert_eq!(
        request.query.as_deref(),
        Some("measurement_id=G-TEST123&api_secret=mp-secret-9f8e7d")
    );
    let text = std::str::from_utf8(&request.body).unwrap();
    assert!(text.contains(r#""value":129.90"#), "exact decimal: {text}");
    assert!(text.contains(r#""price":64.95"#), "{text}");

    let body: Value = serde_json::from_str(text).unwrap();
    assert_eq!(body["client_id"], "1234567890.1763600000");
    assert_eq!(body["user_id"], "cust-42");
    assert_eq!(
        body["timestamp_micros"],
        (RECEIVED_AT.millis() - 60_000) * 1000
    );
    assert_eq!(
        body["user_data"],
        json!({
            "sha256_email_address":
                ["86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"],
            "sha256_phone_number":
                ["1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"]
        }),
        "sha256 of jane.doe@example.com and of +16505551212"
    );
    assert_eq!(
        body["consent"],
        json!({"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"})
    );
    // Parsed from text: with arbitrary precision, `json!` would turn 129.90 into 129.9.
    let expected: Value = serde_json::from_str(
        r#"[{"name": "purchase", "params": {
            "transaction_id": "1001", "value": 129.90, "currency": "EUR",
            "items": [{"item_id": "sku-1", "quantity": 2, "price": 64.95}]}}]"#,
    )
    .unwrap();
    assert_eq!(body["events"], expected);
    for personal in ["203.0.113.9", "Mozilla", "a-7f3c", "Cj0KCQ"] {
        assert!(!text.contains(personal), "{personal} is not a GA4 field");
    }

    assert_eq!(fake.received().len(), 1, "dropped: {:?}", fake.dropped());
    assert!(fake.dropped().is_empty());
}

#[tokio::test]
async fn gmail_addresses_lose_their_dots_and_match_the_reference_vector() {
    let (fake, connector) = setup().await;
    let event = events::server(json!({
        "event": "lead", "event_id": "l1", "timestamp": RECEIVED_AT.millis(),
        "user": {"email": "J.ohn_Smith@Gmail.com", "external_id": "u1",
                 "anonymous_id": "anon-1"}
    }));
    let results = connector.send(&[live(&event, "generate_lead")]).await;
    assert_eq!(results[0].0, Disposition::Succeeded);
    assert_eq!(
        bodies(&fake)[0]["user_data"]["sha256_email_address"][0],
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    );
    assert_eq!(fake.received()[0]["name"], "generate_lead");
}

#[tokio::test]
async fn reserved_and_invalid_names_are_stopped_before_anything_is_sent() {
    let (fake, connector) = setup().await;
    let event = events::purchase("evt-1");
    for name in [
        "page_view",
        "session_start",
        "bad-name",
        "1st_purchase",
        "ga_purchase",
    ] {
        let results = connector.send(&[live(&event, name)]).await;
        let (disposition, summary) = &results[0];
        let Disposition::NeedsFix { reason } = disposition else {
            panic!("{name}: {disposition:?}");
        };
        assert!(reason.contains(name), "{reason}");
        assert_eq!(summary.status, None);
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn twenty_six_events_of_one_client_go_in_requests_of_twenty_five_and_one() {
    let (fake, connector) = setup().await;
    let events: Vec<Event> = (0..26)
        .map(|i| purchase_by("111.222", &format!("o{i}")))
        .collect();
    let batch: Vec<Outgoing<'_>> = events.iter().map(|e| live(e, "purchase")).collect();
    let results = connector.send(&batch).await;
    assert!(results.iter().all(|(d, _)| *d == Disposition::Succeeded));
    let sizes: Vec<usize> = bodies(&fake)
        .iter()
        .map(|b| b["events"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [25, 1]);
    let kept: Vec<Value> = fake
        .received()
        .iter()
        .map(|e| e["params"]["transaction_id"].clone())
        .collect();
    let expected: Vec<Value> = (0..26).map(|i| json!(format!("o{i}"))).collect();
    assert_eq!(kept, expected, "every event kept, in order");
    assert!(connector.max_batch() >= ga4::MAX_BATCH);
}

#[tokio::test]
async fn each_request_carries_one_client() {
    let (fake, connector) = setup().await;
    let a1 = purchase_by("111.222", "a1");
    let b1 = purchase_by("333.444", "b1");
    let a2 = purchase_by("111.222", "a2");
    let results = connector
        .send(&[
            live(&a1, "purchase"),
            live(&b1, "purchase"),
            live(&a2, "purchase"),
        ])
        .await;
    assert!(results.iter().all(|(d, _)| *d == Disposition::Succeeded));
    let bodies = bodies(&fake);
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["client_id"], "111.222");
    assert_eq!(bodies[0]["events"].as_array().unwrap().len(), 2);
    assert_eq!(bodies[1]["client_id"], "333.444");
    assert_eq!(bodies[1]["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn events_at_different_times_carry_their_own_timestamps() {
    let (fake, connector) = setup().await;
    let mut early = purchase_by("111.222", "o1");
    early.timestamp = Timestamp::from_millis(RECEIVED_AT.millis() - 2 * HOUR_MS);
    let late = purchase_by("111.222", "o2");
    connector
        .send(&[live(&early, "purchase"), live(&late, "purchase")])
        .await;
    let kept = fake.received();
    assert_eq!(kept[0]["timestamp_micros"], early.timestamp.millis() * 1000);
    assert_eq!(kept[1]["timestamp_micros"], late.timestamp.millis() * 1000);
}

#[tokio::test]
async fn consent_signals_are_sent_as_ga4s_uppercase_values() {
    let (fake, connector) = setup().await;
    let event = events::server(json!({
        "event": "purchase", "event_id": "c1", "timestamp": RECEIVED_AT.millis(),
        "user": {"click_ids": {"ga_client_id": "1.2"}},
        "consent": {"ad_user_data": "granted", "ad_personalization": "denied"}
    }));
    connector.send(&[live(&event, "purchase")]).await;
    assert_eq!(
        bodies(&fake)[0]["consent"],
        json!({"ad_user_data": "GRANTED", "ad_personalization": "DENIED"})
    );
}

#[tokio::test]
async fn without_identifiers_no_user_id_or_user_data_goes_and_ad_consent_is_denied() {
    let (fake, connector) = setup().await;
    let event = events::purchase("evt-1");
    let outgoing = Outgoing {
        identifiers: false,
        ..live(&event, "purchase")
    };
    let results = connector.send(&[outgoing]).await;
    assert_eq!(results[0].0, Disposition::Succeeded);
    let text = String::from_utf8(fake.requests()[0].body.to_vec()).unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(body.get("user_id").is_none());
    assert!(body.get("user_data").is_none());
    assert_eq!(
        body["consent"],
        json!({"ad_user_data": "DENIED", "ad_personalization": "DENIED"})
    );
    assert_eq!(
        body["client_id"], "1234567890.1763600000",
        "the analytics cookie stays"
    );
    for personal in ["cust-42", "86e0b9e5", "1e231c66", "203.0.113.9", "Mozilla"] {
        assert!(!text.contains(personal), "{personal} leaked: {text}");
    }
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn test_events_are_only_validated_at_debug_and_never_recorded() {
    let (fake, connector) = setup().await;
    let test_event = purchase_by("111.222", "t1");
    let live_event = purchase_by("111.222", "l1");
    let results = connector
        .send(&[
            Outgoing {
                test: true,
                ..live(&test_event, "purchase")
            },
            live(&live_event, "purchase"),
        ])
        .await;
    assert_eq!(
        dispositions(&results),
        [&Disposition::Succeeded, &Disposition::Succeeded]
    );
    assert!(
        results[0].1.text.contains("test mode"),
        "{:?}",
        results[0].1
    );
    let paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        ["/debug/mp/collect", "/mp/collect"],
        "test and live never share a request"
    );
    let kept: Vec<Value> = fake
        .received()
        .iter()
        .map(|e| e["params"]["transaction_id"].clone())
        .collect();
    assert_eq!(kept, [json!("l1")], "only the live event is recorded");
}

#[tokio::test]
async fn a_validation_message_in_test_mode_is_a_failure_with_the_message() {
    let (fake, connector) = setup().await;
    fake.reject_in_debug("t1");
    let event = purchase_by("111.222", "t1");
    let results = connector
        .send(&[Outgoing {
            test: true,
            ..live(&event, "purchase")
        }])
        .await;
    let (Disposition::Dead { reason }, summary) = &results[0] else {
        panic!("{results:?}");
    };
    assert!(reason.contains("VALUE_INVALID"), "{reason}");
    assert!(summary.text.contains("reject_in_debug"), "{summary:?}");
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn validate_before_send_holds_back_only_the_event_the_validator_refuses() {
    let (fake, connector) = setup_with(|c| c.validate_before_send = true).await;
    fake.reject_in_debug("o2");
    let events: Vec<Event> = ["o1", "o2", "o3"]
        .iter()
        .map(|o| purchase_by("111.222", o))
        .collect();
    let batch: Vec<Outgoing<'_>> = events.iter().map(|e| live(e, "purchase")).collect();
    let results = connector.send(&batch).await;
    assert_eq!(results[0].0, Disposition::Succeeded);
    assert!(
        matches!(&results[1].0, Disposition::Dead { reason } if reason.contains("VALUE_INVALID")),
        "{results:?}"
    );
    assert_eq!(results[2].0, Disposition::Succeeded);
    let kept: Vec<Value> = fake
        .received()
        .iter()
        .map(|e| e["params"]["transaction_id"].clone())
        .collect();
    assert_eq!(kept, [json!("o1"), json!("o3")]);
    assert_eq!(
        fake.requests()[0].path,
        "/debug/mp/collect",
        "validated first"
    );
}

#[tokio::test]
async fn events_older_than_72_hours_are_dead_and_not_sent() {
    let (fake, connector) = setup().await;
    let connector = connector.with_clock(Arc::new(ManualClock::new(Timestamp::from_millis(
        RECEIVED_AT.millis() + 73 * HOUR_MS,
    ))));
    let event = events::purchase("evt-old");
    let results = connector.send(&[live(&event, "purchase")]).await;
    assert!(
        matches!(&results[0].0, Disposition::Dead { reason } if reason.contains("GA4 accepts 72 h backdating")),
        "{results:?}"
    );
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn an_event_without_any_client_id_is_dead_and_an_anonymous_one_gets_a_stable_derived_id() {
    let (fake, connector) = setup().await;
    let nobody = events::server(json!({
        "event": "purchase", "event_id": "n1", "timestamp": RECEIVED_AT.millis(),
        "properties": {"value": 5, "currency": "EUR"}
    }));
    let results = connector.send(&[live(&nobody, "purchase")]).await;
    assert!(
        matches!(&results[0].0, Disposition::Dead { reason } if reason.contains("no GA client ID")),
        "{results:?}"
    );
    assert!(fake.requests().is_empty());

    let anonymous = events::server(json!({
        "event": "sign_up", "event_id": "s1", "timestamp": RECEIVED_AT.millis(),
        "user": {"anonymous_id": "visitor-77"}
    }));
    connector.send(&[live(&anonymous, "sign_up")]).await;
    connector.send(&[live(&anonymous, "sign_up")]).await;
    let kept = fake.received();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0]["client_id"], kept[1]["client_id"]);
    assert!(!kept[0]["client_id"].as_str().unwrap().contains("visitor"));
}

#[tokio::test]
async fn server_errors_are_retried_with_retry_after_and_the_rest_of_the_batch_waits() {
    let (fake, connector) = setup().await;
    fake.script_one(Reply::status(503).retry_after(Duration::from_secs(40)));
    let a = purchase_by("111.222", "a");
    let b = purchase_by("333.444", "b");
    let results = connector
        .send(&[live(&a, "purchase"), live(&b, "purchase")])
        .await;
    for (disposition, _) in &results {
        assert!(
            matches!(disposition, Disposition::Retry { retry_after: Some(d), .. } if *d == Duration::from_secs(40)),
            "{disposition:?}"
        );
    }
    assert_eq!(results[0].1.status, Some(503));
    assert_eq!(fake.requests().len(), 1, "the second client was not tried");
}

#[tokio::test]
async fn overload_is_retried_and_other_refusals_need_a_fix() {
    let (fake, connector) = setup().await;
    let event = purchase_by("111.222", "o1");
    fake.script_one(Reply::status(429));
    let results = connector.send(&[live(&event, "purchase")]).await;
    assert!(matches!(
        results[0].0,
        Disposition::Retry {
            overloaded: true,
            ..
        }
    ));
    for status in [400, 403, 404] {
        fake.script([status]);
        let results = connector.send(&[live(&event, "purchase")]).await;
        assert!(
            matches!(results[0].0, Disposition::NeedsFix { .. }),
            "{status}: {results:?}"
        );
        assert!(!results[0].1.text.contains(API_SECRET));
    }
}

#[tokio::test]
async fn params_ga4_would_drop_are_left_out_so_the_event_is_kept() {
    let (fake, connector) = setup().await;
    let event = events::server(json!({
        "event": "purchase", "event_id": "m1", "timestamp": RECEIVED_AT.millis(),
        "user": {"click_ids": {"ga_client_id": "1.2"}},
        "properties": {"value": "1.5", "currency": "USD", "order_id": "m1",
                       "coupon": "BF25", "note": "n".repeat(150), "gclid": "x",
                       "firebase_x": 1, "bad name": 2}
    }));
    let results = connector.send(&[live(&event, "purchase")]).await;
    assert_eq!(results[0].0, Disposition::Succeeded);
    let summary = &results[0].1.text;
    for left_out in ["`note`", "`gclid`", "`firebase_x`", "`bad name`"] {
        assert!(summary.contains(left_out), "{left_out} in {summary}");
    }
    assert!(fake.dropped().is_empty(), "{:?}", fake.dropped());
    let kept = fake.received();
    assert_eq!(kept[0]["params"]["coupon"], "BF25");
    assert!(kept[0]["params"].get("note").is_none());
}

#[tokio::test]
async fn every_default_mapping_is_a_name_ga4_keeps() {
    let (fake, connector) = setup().await;
    assert!(
        !ga4::DEFAULT_EVENTS
            .iter()
            .any(|(tally, _)| *tally == "page_view"),
        "page_view is reserved in GA4"
    );
    let event = purchase_by("111.222", "o1");
    let batch: Vec<Outgoing<'_>> = ga4::DEFAULT_EVENTS
        .iter()
        .map(|(_, ga)| live(&event, ga))
        .collect();
    let results = connector.send(&batch).await;
    assert!(results.iter().all(|(d, _)| *d == Disposition::Succeeded));
    assert_eq!(fake.received().len(), ga4::DEFAULT_EVENTS.len());
    assert!(fake.dropped().is_empty());
}

#[tokio::test]
async fn a_wrong_api_secret_is_what_the_fake_drops_silently() {
    // The real API answers 2xx here too; this is why the secret is checked at build time only
    // for emptiness and the fake is the one that can tell.
    let fake = FakeGa4::start(MEASUREMENT_ID, API_SECRET).await;
    fake.set_now(RECEIVED_AT);
    let mut config = config(&fake.url());
    config.api_secret = Secret::new("wrong");
    let connector = ga4::build("ga4-main", config, client())
        .unwrap()
        .with_clock(Arc::new(ManualClock::new(RECEIVED_AT)));
    let event = purchase_by("111.222", "o1");
    connector.send(&[live(&event, "purchase")]).await;
    assert!(fake.received().is_empty());
    assert_eq!(fake.dropped()[0].reason, "api_secret does not match");
}

#[test]
fn configuration_is_checked_and_the_endpoint_defaults_to_google() {
    let parsed: Config = toml::from_str(
        r#"measurement_id = "G-ABC123"
           api_secret = "s""#,
    )
    .unwrap();
    assert_eq!(parsed.endpoint, "https://www.google-analytics.com");
    assert!(!parsed.validate_before_send);
    assert!(
        toml::from_str::<Config>(
            r#"measurement_id = "G-ABC123"
               api_secret = "s"
               api_version = "v1""#
        )
        .is_err(),
        "unknown keys are refused"
    );

    let key = |config: Config| match ga4::build("g", config, client()) {
        Err(DestinationError::Config { key, .. }) => key,
        Err(other) => panic!("{other}"),
        Ok(_) => "ok".into(),
    };
    let valid = || config("https://region1.google-analytics.com/");
    assert_eq!(key(valid()), "ok");
    for bad in ["123456", "G-", "UA-1234-1", "G-abc"] {
        let mut c = valid();
        c.measurement_id = bad.into();
        assert_eq!(key(c), "measurement_id", "{bad}");
    }
    let mut c = valid();
    c.api_secret = Secret::new(" ");
    assert_eq!(key(c), "api_secret");
    for bad in ["ftp://x", "not a url", "https://x/?k=v"] {
        assert_eq!(key(config(bad)), "endpoint", "{bad}");
    }
}
