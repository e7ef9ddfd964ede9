//! The `meta_capi` connector against the strict Meta fake: field mapping and hashes, click IDs,
//! test mode, consent stripping, isolation of a poisoned event, and the classification of each
//! documented answer.

use std::time::Duration;

use serde_json::{Value, json};
use tally_core::event::Event;
use tally_core::retry::Disposition;
use tally_destinations::meta_capi::{self, Config, Connector};
use tally_destinations::{AttemptSummary, Destination, Outgoing};
use tally_testkit::Reply;
use tally_testkit::events::{self, RECEIVED_AT};
use tally_testkit::fakes::meta::FakeMeta;

const PIXEL: &str = "1234567890";
const TOKEN: &str = "EAAGtok3n";

/// A fake whose clock is at the fixtures' receipt time, so they are fresh.
async fn fake() -> FakeMeta {
    let fake = FakeMeta::start(PIXEL, TOKEN).await;
    fake.set_now(RECEIVED_AT);
    fake
}

fn connector_with(fake: &FakeMeta, extra: &str) -> Connector {
    let text = format!(
        "pixel_id = \"{PIXEL}\"\naccess_token = \"{TOKEN}\"\nendpoint = \"{}\"\n{extra}",
        fake.url()
    );
    let config: Config = toml::from_str(&text).expect("config parses");
    meta_capi::build("meta", config, reqwest::Client::new()).expect("builds")
}

fn connector(fake: &FakeMeta) -> Connector {
    connector_with(fake, "")
}

fn outgoing<'a>(event: &'a Event, name: &'a str) -> Outgoing<'a> {
    Outgoing {
        event,
        name,
        value: event.value,
        identifiers: true,
        test: false,
    }
}

/// `n` copies of the purchase fixture with event IDs `e0`, `e1`, ...
fn purchases(n: usize) -> Vec<Event> {
    let template = events::purchase("e");
    (0..n)
        .map(|i| Event {
            event_id: format!("e{i}"),
            ..template.clone()
        })
        .collect()
}

/// A browser copy with the page and user agent a website event needs, plus `user`.
fn web_event(id: &str, user: Value) -> Event {
    let mut user = user;
    user["user_agent"] = "Mozilla/5.0 (Test)".into();
    events::browser(json!({"event": "lead", "event_id": id,
        "timestamp": RECEIVED_AT.millis() - 1000, "user": user,
        "page": {"url": "https://shop.example/lead"}}))
}

fn assert_no_token(results: &[(Disposition, AttemptSummary)]) {
    for (disposition, summary) in results {
        let text = format!("{disposition:?} {summary:?}");
        assert!(!text.contains(TOKEN), "token leaked: {text}");
    }
}

#[tokio::test]
async fn a_purchase_arrives_with_exact_hashes_value_and_currency() {
    let fake = fake().await;
    let event = events::purchase("order-1001");
    let results = connector(&fake).send(&[outgoing(&event, "Purchase")]).await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{results:?}");
    assert_eq!(results[0].1.status, Some(200));

    let request = &fake.requests()[0];
    assert_eq!(request.path, format!("/v25.0/{PIXEL}/events"));
    assert_eq!(
        request.query.as_deref(),
        Some(&*format!("access_token={TOKEN}"))
    );
    let received = fake.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent["event_name"], "Purchase");
    assert_eq!(sent["event_id"], "order-1001");
    assert_eq!(sent["event_time"], json!(1_763_633_640));
    assert_eq!(sent["action_source"], "website");
    assert_eq!(
        sent["event_source_url"],
        "https://shop.example/checkout/thanks"
    );
    let user = &sent["user_data"];
    assert_eq!(
        user["em"],
        json!(["86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"])
    );
    assert_eq!(
        user["ph"],
        json!(["e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"])
    );
    assert_eq!(
        user["fn"],
        "81f8f6dde88365f3928796ec7aa53f72820b06db8664f5fe76a7eb13e24546a2"
    );
    assert_eq!(
        user["ln"],
        "799ef92a11af918e3fb741df42934f3b568ed2d93ac1df74f1b8d41a27932a6f"
    );
    assert_eq!(
        user["ct"],
        "0007a3d64c01e23d5075203c5977c14e4f7e01a3fc570686fcc50b5e1dd42685"
    );
    assert_eq!(
        user["st"],
        "6959097001d10501ac7d54c0bdb8db61420f658f2922cc26e46d536119a31126"
    );
    assert_eq!(
        user["zp"],
        "b9a9cf3cd3723a2e91b7c23ecf68456e872b6e5d86e5cab7f3d45a7302da32c7"
    );
    assert_eq!(
        user["country"],
        "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621"
    );
    assert_eq!(
        user["external_id"],
        json!(["8a3c5a67cad508582b5edf6b8352cea3ffbad7f44812c1a736b4444c0f5746aa"])
    );
    assert_eq!(user["client_ip_address"], "203.0.113.9");
    assert_eq!(user["client_user_agent"], "Mozilla/5.0 (X11)");
    assert_eq!(user["fbp"], "fb.1.1763600000000.1098115397");
    // No click time in the fixture: the event time, in milliseconds.
    assert_eq!(user["fbc"], "fb.1.1763633640000.IwAR-test-fbclid");
    let custom = &sent["custom_data"];
    assert_eq!(custom["value"].to_string(), "129.90");
    assert_eq!(custom["currency"], "EUR");
    assert_eq!(custom["order_id"], "1001");
    assert_eq!(custom["content_ids"], json!(["sku-1"]));
    assert_eq!(custom["content_type"], "product");
    assert_eq!(custom["num_items"], 2);
    assert_eq!(custom["contents"][0]["item_price"].to_string(), "64.95");
    assert_eq!(custom["contents"][0]["quantity"], 2);
}

#[tokio::test]
async fn hashes_equal_metas_reference_vectors() {
    let fake = fake().await;
    // "Valéry" decomposed (e + combining acute): hashed as the precomposed NFC form.
    let event = web_event(
        "v-1",
        json!({"email": "  John_Smith@Gmail.com ", "phone": "(650) 555-1212",
               "first_name": "Mary", "last_name": "Vale\u{301}ry",
               "date_of_birth": "1997-02-16", "country": "US"}),
    );
    let results = connector(&fake).send(&[outgoing(&event, "Lead")]).await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{results:?}");
    let user = &fake.received()[0]["user_data"];
    assert_eq!(
        user["em"][0],
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    );
    assert_eq!(
        user["ph"][0],
        "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
    );
    assert_eq!(
        user["fn"],
        "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"
    );
    assert_eq!(
        user["ln"],
        "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"
    );
    assert_eq!(
        user["db"],
        "01acdbf6ec7b4f478a225f1a246e5d6767eeab1a7ffa17f025265b5b94f40f0c"
    );
    assert_eq!(
        user["country"],
        "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621"
    );
}

#[tokio::test]
async fn fbc_is_built_from_fbclid_with_the_click_time() {
    let fake = fake().await;
    let event = web_event(
        "c-1",
        json!({"click_ids": {"fbclid": "IwAR0aBcD_Case", "clicked_at": 1_763_600_000_123_i64}}),
    );
    let results = connector(&fake).send(&[outgoing(&event, "Lead")]).await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{results:?}");
    assert_eq!(
        fake.received()[0]["user_data"]["fbc"],
        "fb.1.1763600000123.IwAR0aBcD_Case"
    );
}

#[tokio::test]
async fn a_five_segment_fbc_is_kept_untouched() {
    let fake = fake().await;
    let cookie = "fb.1.1596403881668.IwAR2xYz.ABcDEFGh";
    let event = web_event(
        "c-2",
        json!({"click_ids": {"fbc": cookie, "fbclid": "IwAR-newer",
                             "fbp": "fb.1.1558571054389.1098115397.AbCdEfGh"}}),
    );
    let results = connector(&fake).send(&[outgoing(&event, "Lead")]).await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{results:?}");
    let user = &fake.received()[0]["user_data"];
    assert_eq!(user["fbc"], cookie);
    assert_eq!(user["fbp"], "fb.1.1558571054389.1098115397.AbCdEfGh");
}

#[tokio::test]
async fn test_events_carry_the_test_event_code_in_their_own_request() {
    let fake = fake().await;
    let [live, test] = [events::purchase("live-1"), events::purchase("test-1")];
    let batch = [
        outgoing(&live, "Purchase"),
        Outgoing {
            test: true,
            ..outgoing(&test, "Purchase")
        },
    ];
    let results = connector_with(&fake, "test_event_code = \"TEST4521\"")
        .send(&batch)
        .await;
    assert!(
        results.iter().all(|(d, _)| d == &Disposition::Succeeded),
        "{results:?}"
    );
    assert_eq!(fake.request_count(), 2);
    assert_eq!(fake.received().len(), 1);
    assert_eq!(fake.received()[0]["event_id"], "live-1");
    let tests = fake.test_events("TEST4521");
    assert_eq!(tests.len(), 1);
    assert_eq!(tests[0]["event_id"], "test-1");
}

#[tokio::test]
async fn without_a_configured_code_test_events_use_tally_test() {
    let fake = fake().await;
    let event = events::purchase("test-2");
    let batch = [Outgoing {
        test: true,
        ..outgoing(&event, "Purchase")
    }];
    let results = connector(&fake).send(&batch).await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{results:?}");
    assert_eq!(fake.test_events("TALLY_TEST").len(), 1);
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn without_identifier_consent_the_event_is_dead_for_consent_and_not_sent() {
    let fake = fake().await;
    let [stripped, full] = [events::purchase("s-1"), events::purchase("f-1")];
    let batch = [
        Outgoing {
            identifiers: false,
            ..outgoing(&stripped, "Purchase")
        },
        outgoing(&full, "Purchase"),
    ];
    let results = connector(&fake).send(&batch).await;
    match &results[0].0 {
        Disposition::Dead { reason } => assert!(reason.starts_with("consent"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(results[1].0, Disposition::Succeeded);
    let received = fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["event_id"], "f-1");
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn a_website_event_without_user_agent_or_page_is_dead_and_the_rest_go() {
    let fake = fake().await;
    let no_agent = events::server(json!({"event": "lead", "event_id": "n-1",
        "timestamp": RECEIVED_AT.millis(), "user": {"email": "a@b.co"},
        "page": {"url": "https://shop.example/"}}));
    let no_page = events::server(json!({"event": "lead", "event_id": "n-2",
        "timestamp": RECEIVED_AT.millis(), "user": {"email": "a@b.co", "user_agent": "UA"}}));
    let good = events::purchase("g-1");
    let batch = [
        outgoing(&no_agent, "Lead"),
        outgoing(&no_page, "Lead"),
        outgoing(&good, "Purchase"),
    ];
    let results = connector(&fake).send(&batch).await;
    assert!(
        matches!(&results[0].0, Disposition::Dead { reason } if reason.contains("user agent")),
        "{results:?}"
    );
    assert!(
        matches!(&results[1].0, Disposition::Dead { reason } if reason.contains("page URL")),
        "{results:?}"
    );
    assert_eq!(results[2].0, Disposition::Succeeded);
    assert_eq!(fake.received().len(), 1);
    assert_eq!(fake.request_count(), 1);

    // Not a website: neither is needed, and the fake agrees.
    let offline = connector_with(&fake, "action_source = \"system_generated\"");
    let results = offline.send(&batch[..1]).await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{results:?}");
    assert_eq!(fake.received()[1]["action_source"], "system_generated");
}

#[tokio::test]
async fn one_poisoned_event_in_a_thousand_is_isolated_and_the_other_999_arrive() {
    let fake = fake().await;
    fake.poison("e617");
    let events = purchases(1000);
    let batch: Vec<Outgoing<'_>> = events.iter().map(|e| outgoing(e, "Purchase")).collect();
    let results = connector(&fake).send(&batch).await;
    assert_eq!(results.len(), 1000);
    for (i, (disposition, summary)) in results.iter().enumerate() {
        if i == 617 {
            match disposition {
                Disposition::Dead { reason } => {
                    assert!(reason.contains("2804050"), "{reason}");
                    assert_eq!(summary.status, Some(400));
                }
                other => panic!("event 617: {other:?}"),
            }
        } else {
            assert_eq!(disposition, &Disposition::Succeeded, "event {i}");
        }
    }
    let received = fake.received();
    assert_eq!(received.len(), 999);
    assert!(received.iter().all(|e| e["event_id"] != "e617"));
    assert!(fake.duplicates().is_empty(), "no event was sent twice");
    let requests = fake.request_count();
    assert!(requests <= 2 * 10 + 1, "{requests} requests");
    assert_no_token(&results);
}

#[tokio::test]
async fn an_event_older_than_seven_days_is_dead_with_metas_subcode() {
    let fake = fake().await;
    let old = events::server(json!({"event": "purchase", "event_id": "old-1",
        "timestamp": RECEIVED_AT.millis() - 8 * 24 * 3600 * 1000,
        "user": {"email": "a@b.co"}}));
    let fresh = events::purchase("fresh-1");
    let offline = connector_with(&fake, "action_source = \"email\"");
    let results = offline
        .send(&[outgoing(&old, "Purchase"), outgoing(&fresh, "Purchase")])
        .await;
    assert!(
        matches!(&results[0].0, Disposition::Dead { reason }
            if reason.contains("2804003") && reason.contains("Event Timestamp Too Old")),
        "{results:?}"
    );
    assert_eq!(results[1].0, Disposition::Succeeded);
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn a_wrong_token_needs_a_fix_for_every_event_without_splitting() {
    let fake = FakeMeta::start(PIXEL, "the-right-token").await;
    fake.set_now(RECEIVED_AT);
    let events = purchases(10);
    let batch: Vec<Outgoing<'_>> = events.iter().map(|e| outgoing(e, "Purchase")).collect();
    let results = connector(&fake).send(&batch).await;
    assert_eq!(results.len(), 10);
    for (disposition, summary) in &results {
        assert!(
            matches!(disposition, Disposition::NeedsFix { reason } if reason.contains("190")),
            "{disposition:?}"
        );
        assert_eq!(summary.status, Some(400));
    }
    assert_eq!(fake.request_count(), 1);
    assert_no_token(&results);
}

#[tokio::test]
async fn an_unknown_pixel_needs_a_fix_without_splitting() {
    let fake = FakeMeta::start("999", TOKEN).await;
    fake.set_now(RECEIVED_AT);
    let events = purchases(4);
    let batch: Vec<Outgoing<'_>> = events.iter().map(|e| outgoing(e, "Purchase")).collect();
    let results = connector(&fake).send(&batch).await;
    assert!(
        results.iter().all(
            |(d, _)| matches!(d, Disposition::NeedsFix { reason } if reason.contains("pixel_id"))
        ),
        "{results:?}"
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn a_503_with_retry_after_is_retried_after_that_long() {
    let fake = fake().await;
    fake.script_one(Reply::status(503).retry_after(Duration::from_secs(120)));
    let events = purchases(3);
    let batch: Vec<Outgoing<'_>> = events.iter().map(|e| outgoing(e, "Purchase")).collect();
    let results = connector(&fake).send(&batch).await;
    for (disposition, summary) in &results {
        assert_eq!(
            disposition,
            &Disposition::Retry {
                reason: "HTTP 503".into(),
                retry_after: Some(Duration::from_secs(120)),
                overloaded: false,
            }
        );
        assert_eq!(summary.status, Some(503));
    }
    assert_eq!(fake.request_count(), 1);
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn throttling_is_retried_as_overload_with_retry_after() {
    let fake = fake().await;
    fake.script_one(
        Reply::json(
            400,
            r#"{"error":{"message":"(#4) Application request limit reached","type":"OAuthException","is_transient":true,"code":4,"fbtrace_id":"x"}}"#,
        )
        .retry_after(Duration::from_secs(60)),
    );
    fake.script_one(Reply::status(429).retry_after(Duration::from_secs(30)));
    let event = events::purchase("t-1");
    let meta = connector(&fake);
    for expected in [60, 30] {
        let results = meta.send(&[outgoing(&event, "Purchase")]).await;
        assert!(
            matches!(&results[0].0, Disposition::Retry { retry_after: Some(after), overloaded: true, .. }
                if *after == Duration::from_secs(expected)),
            "{results:?}"
        );
    }
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn fewer_events_received_than_sent_is_retried() {
    let fake = fake().await;
    fake.drop_next_events(1);
    let events = purchases(3);
    let batch: Vec<Outgoing<'_>> = events.iter().map(|e| outgoing(e, "Purchase")).collect();
    let meta = connector(&fake);
    let results = meta.send(&batch).await;
    for (disposition, _) in &results {
        assert!(
            matches!(disposition, Disposition::Retry { reason, .. } if reason.contains("2 of 3")),
            "{disposition:?}"
        );
    }
    assert_eq!(fake.received().len(), 2);
    // The resend completes the batch; Meta's dedup absorbs the two it already had.
    let results = meta.send(&batch).await;
    assert!(
        results.iter().all(|(d, _)| d == &Disposition::Succeeded),
        "{results:?}"
    );
    assert_eq!(fake.received().len(), 3);
    assert_eq!(fake.duplicates().len(), 2);
}

#[tokio::test]
async fn more_than_a_thousand_events_go_in_requests_of_at_most_a_thousand() {
    let fake = fake().await;
    let events = purchases(1001);
    let batch: Vec<Outgoing<'_>> = events.iter().map(|e| outgoing(e, "Purchase")).collect();
    let meta = connector(&fake);
    assert_eq!(meta.max_batch(), 1000);
    let results = meta.send(&batch).await;
    assert!(results.iter().all(|(d, _)| d == &Disposition::Succeeded));
    let sizes: Vec<usize> = fake
        .requests()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).expect("JSON body");
            body["data"].as_array().map_or(0, Vec::len)
        })
        .collect();
    assert_eq!(sizes, [1000, 1]);
    assert_eq!(fake.received().len(), 1001);
}

#[tokio::test]
async fn limited_data_use_and_api_version_are_configurable() {
    let fake = fake().await;
    let event = events::purchase("ldu-1");
    let meta = connector_with(&fake, "api_version = \"v26.0\"\nlimited_data_use = true");
    let results = meta.send(&[outgoing(&event, "Purchase")]).await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{results:?}");
    assert_eq!(fake.requests()[0].path, format!("/v26.0/{PIXEL}/events"));
    let sent = &fake.received()[0];
    assert_eq!(sent["data_processing_options"], json!(["LDU"]));
    assert_eq!(sent["data_processing_options_country"], 0);
    assert_eq!(sent["data_processing_options_state"], 0);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retried_and_the_summary_has_no_token() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let text = format!(
        "pixel_id = \"{PIXEL}\"\naccess_token = \"{TOKEN}\"\nendpoint = \"http://{closed}\"\n"
    );
    let config: Config = toml::from_str(&text).expect("config parses");
    let meta = meta_capi::build("meta", config, reqwest::Client::new()).expect("builds");
    let event = events::purchase("u-1");
    let results = meta.send(&[outgoing(&event, "Purchase")]).await;
    assert!(
        matches!(
            results[0].0,
            Disposition::Retry {
                overloaded: true,
                ..
            }
        ),
        "{results:?}"
    );
    assert_no_token(&results);
}

#[tokio::test]
async fn the_fake_takes_form_fields_like_metas_curl_example_and_refuses_unhashed_data() {
    let fake = fake().await;
    let event = json!({"event_name": "Lead", "event_time": RECEIVED_AT.secs(),
        "action_source": "email", "user_data": {"em": ["a@b.co"]}});
    let client = reqwest::Client::new();
    let url = format!("{}/v25.0/{PIXEL}/events?access_token={TOKEN}", fake.url());
    let form = |event: &Value| {
        let data = json!([event]).to_string();
        [("data", data), ("test_event_code", "T1".to_owned())]
    };
    let refused = client
        .post(&url)
        .form(&form(&event))
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], 100);
    assert_eq!(body["error"]["error_subcode"], 2_804_016);

    let mut hashed = event.clone();
    hashed["user_data"]["em"] = json!([tally_core::identity::sha256_hex("a@b.co")]);
    let taken = client
        .post(&url)
        .form(&form(&hashed))
        .send()
        .await
        .expect("answer");
    assert_eq!(taken.status(), 200);
    let body: Value = taken.json().await.expect("JSON");
    assert_eq!(body["events_received"], 1);
    assert_eq!(fake.test_events("T1").len(), 1);
}

#[tokio::test]
async fn a_token_echoed_back_by_meta_is_redacted() {
    let fake = fake().await;
    let body = json!({"error": {"message": format!("Malformed access token {TOKEN}"),
        "type": "OAuthException", "code": 100, "error_subcode": 2_804_019,
        "is_transient": false, "fbtrace_id": "x"}});
    fake.script_one(Reply::json(400, body.to_string()));
    let event = events::purchase("r-1");
    let results = connector(&fake).send(&[outgoing(&event, "Purchase")]).await;
    assert!(
        matches!(&results[0].0, Disposition::Dead { reason } if reason.contains("[redacted]")),
        "{results:?}"
    );
    assert!(results[0].1.text.contains("[redacted]"), "{results:?}");
    assert_no_token(&results);
}
