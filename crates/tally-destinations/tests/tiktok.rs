//! The `tiktok` connector against the strict TikTok fake: field mapping and hashes, test mode,
//! consent stripping, isolation of a poisoned event, and the classification of each documented
//! answer (HTTP 200 with a non-zero code is a failure).

use std::time::Duration;

use serde_json::{Value, json};
use tally_core::event::Event;
use tally_core::retry::Disposition;
use tally_destinations::tiktok::{self, Config, Connector};
use tally_destinations::{AttemptSummary, Destination, Outgoing};
use tally_testkit::Reply;
use tally_testkit::events::{self, RECEIVED_AT};
use tally_testkit::fakes::tiktok::FakeTikTok;

const PIXEL: &str = "C4TALLY0PIXEL123";
const TOKEN: &str = "tt0ken7a11y";

/// A fake whose clock is at the fixtures' receipt time, so they are fresh.
async fn fake() -> FakeTikTok {
    let fake = FakeTikTok::start(PIXEL, TOKEN).await;
    fake.set_now(RECEIVED_AT);
    fake
}

fn connector_with(fake: &FakeTikTok, extra: &str) -> Connector {
    let text = format!(
        "pixel_code = \"{PIXEL}\"\naccess_token = \"{TOKEN}\"\nendpoint = \"{}\"\n{extra}",
        fake.url()
    );
    let config: Config = toml::from_str(&text).expect("config parses");
    tiktok::build("tiktok", config, reqwest::Client::new()).expect("builds")
}

fn connector(fake: &FakeTikTok) -> Connector {
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
    let results = connector(&fake)
        .send(&[outgoing(&event, "CompletePayment")])
        .await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{results:?}");
    assert_eq!(results[0].1.status, Some(200));

    let request = &fake.requests()[0];
    assert_eq!(request.path, "/open_api/v1.3/event/track/");
    assert_eq!(request.query, None);
    assert_eq!(request.headers["access-token"], TOKEN);
    assert!(request.headers.get("authorization").is_none());
    let body: Value = serde_json::from_slice(&request.body).expect("JSON body");
    assert_eq!(body["event_source"], "web");
    assert_eq!(body["event_source_id"], PIXEL);
    assert!(body.get("test_event_code").is_none());

    let received = fake.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent["event"], "CompletePayment");
    assert_eq!(sent["event_id"], "order-1001");
    assert_eq!(sent["event_time"], json!(1_763_633_640));
    let user = &sent["user"];
    assert_eq!(
        user["email"],
        json!(["86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"])
    );
    assert_eq!(
        user["phone"],
        json!(["1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"])
    );
    assert_eq!(
        user["external_id"],
        json!(["8a3c5a67cad508582b5edf6b8352cea3ffbad7f44812c1a736b4444c0f5746aa"])
    );
    assert_eq!(user["ttclid"], "E.C.P.test");
    assert_eq!(user["ip"], "203.0.113.9");
    assert_eq!(user["user_agent"], "Mozilla/5.0 (X11)");
    let properties = &sent["properties"];
    assert_eq!(properties["value"].to_string(), "129.90");
    assert_eq!(properties["currency"], "EUR");
    assert_eq!(properties["order_id"], "1001");
    assert_eq!(properties["content_type"], "product");
    assert_eq!(
        properties["contents"].to_string(),
        r#"[{"content_id":"sku-1","price":64.95,"quantity":2}]"#
    );
    assert_eq!(sent["page"]["url"], "https://shop.example/checkout/thanks");
    assert_eq!(sent["page"]["referrer"], "https://shop.example/cart");
}

#[tokio::test]
async fn hashes_equal_the_reference_vectors_and_the_ttp_cookie_passes_through() {
    let fake = fake().await;
    let event = events::browser(json!({"event": "sign_up", "event_id": "s-1",
        "timestamp": RECEIVED_AT.millis() - 1000,
        "user": {"email": " John_Smith@Gmail.com", "phone": "650-555-1212", "country": "US",
                 "click_ids": {"ttp": "2bXq9kTtpCookie", "ttclid": "E.C.P.CaseKept"}}}));
    let results = connector(&fake)
        .send(&[outgoing(&event, "CompleteRegistration")])
        .await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{results:?}");
    let user = &fake.received()[0]["user"];
    assert_eq!(
        user["email"][0],
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    );
    assert_eq!(
        user["phone"][0],
        "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"
    );
    assert_eq!(user["ttp"], "2bXq9kTtpCookie");
    assert_eq!(user["ttclid"], "E.C.P.CaseKept");
}

#[tokio::test]
async fn test_events_carry_the_test_event_code_in_their_own_request() {
    let fake = fake().await;
    let [live, test] = [events::purchase("live-1"), events::purchase("test-1")];
    let batch = [
        Outgoing {
            test: true,
            ..outgoing(&test, "CompletePayment")
        },
        outgoing(&live, "CompletePayment"),
    ];
    let results = connector_with(&fake, "test_event_code = \"TEST70512\"")
        .send(&batch)
        .await;
    assert!(
        results.iter().all(|(d, _)| d == &Disposition::Succeeded),
        "{results:?}"
    );
    assert_eq!(fake.request_count(), 2);
    let received = fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["event_id"], "live-1");
    let tests = fake.test_events("TEST70512");
    assert_eq!(tests.len(), 1);
    assert_eq!(tests[0]["event_id"], "test-1");

    // Without a configured code, the fixed one.
    let event = events::purchase("test-2");
    let batch = [Outgoing {
        test: true,
        ..outgoing(&event, "CompletePayment")
    }];
    let results = connector(&fake).send(&batch).await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{results:?}");
    assert_eq!(fake.test_events("TALLY_TEST").len(), 1);
}

#[tokio::test]
async fn without_identifier_consent_nothing_personal_leaves() {
    let fake = fake().await;
    let event = events::purchase("s-1");
    let batch = [Outgoing {
        identifiers: false,
        ..outgoing(&event, "CompletePayment")
    }];
    let results = connector(&fake).send(&batch).await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{results:?}");
    let sent = &fake.received()[0];
    assert!(sent.get("user").is_none(), "{sent}");
    assert_eq!(sent["properties"]["value"].to_string(), "129.90");
    let raw = String::from_utf8_lossy(&fake.requests()[0].body).into_owned();
    for personal in [
        "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d",
        "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8",
        "203.0.113.9",
        "Mozilla",
        "E.C.P.test",
        "cust-42",
    ] {
        assert!(!raw.contains(personal), "{personal} sent: {raw}");
    }
}

#[tokio::test]
async fn one_poisoned_event_in_a_thousand_is_isolated_and_the_other_999_arrive() {
    let fake = fake().await;
    fake.poison("e333");
    let events = purchases(1000);
    let batch: Vec<Outgoing<'_>> = events
        .iter()
        .map(|e| outgoing(e, "CompletePayment"))
        .collect();
    let results = connector(&fake).send(&batch).await;
    assert_eq!(results.len(), 1000);
    for (i, (disposition, summary)) in results.iter().enumerate() {
        if i == 333 {
            match disposition {
                Disposition::Dead { reason } => {
                    assert!(reason.contains("40002"), "{reason}");
                    assert!(reason.contains("e333"), "{reason}");
                    assert_eq!(summary.status, Some(200));
                }
                other => panic!("event 333: {other:?}"),
            }
        } else {
            assert_eq!(disposition, &Disposition::Succeeded, "event {i}");
        }
    }
    let received = fake.received();
    assert_eq!(received.len(), 999);
    assert!(received.iter().all(|e| e["event_id"] != "e333"));
    assert!(fake.duplicates().is_empty(), "no event was sent twice");
    let requests = fake.request_count();
    assert!(requests <= 2 * 10 + 1, "{requests} requests");
    assert_no_token(&results);
}

#[tokio::test]
async fn an_event_older_than_28_days_is_dead_and_the_others_arrive() {
    let fake = fake().await;
    let old = events::server(json!({"event": "purchase", "event_id": "old-1",
        "timestamp": RECEIVED_AT.millis() - 29 * 24 * 3600 * 1000,
        "user": {"email": "a@b.co"}}));
    let fresh = events::purchase("fresh-1");
    let results = connector(&fake)
        .send(&[
            outgoing(&fresh, "CompletePayment"),
            outgoing(&old, "CompletePayment"),
        ])
        .await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{results:?}");
    assert!(
        matches!(&results[1].0, Disposition::Dead { reason } if reason.contains("28 days")),
        "{results:?}"
    );
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn a_wrong_token_answered_with_200_and_40105_needs_a_fix_without_splitting() {
    let fake = FakeTikTok::start(PIXEL, "the-right-token").await;
    fake.set_now(RECEIVED_AT);
    let events = purchases(8);
    let batch: Vec<Outgoing<'_>> = events
        .iter()
        .map(|e| outgoing(e, "CompletePayment"))
        .collect();
    let results = connector(&fake).send(&batch).await;
    for (disposition, summary) in &results {
        assert!(
            matches!(disposition, Disposition::NeedsFix { reason } if reason.contains("40105")),
            "{disposition:?}"
        );
        assert_eq!(summary.status, Some(200), "a 200 that is not a success");
    }
    assert_eq!(fake.request_count(), 1);
    assert!(fake.received().is_empty());
    assert_no_token(&results);
}

#[tokio::test]
async fn a_401_with_an_empty_body_needs_a_fix() {
    let fake = fake().await;
    fake.script_one(Reply::status(401));
    let events = purchases(3);
    let batch: Vec<Outgoing<'_>> = events
        .iter()
        .map(|e| outgoing(e, "CompletePayment"))
        .collect();
    let results = connector(&fake).send(&batch).await;
    assert!(
        results
            .iter()
            .all(|(d, _)| matches!(d, Disposition::NeedsFix { .. })),
        "{results:?}"
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn a_rate_limit_code_is_retried_as_overload() {
    let fake = fake().await;
    fake.script_one(Reply::json(
        200,
        r#"{"code":40100,"message":"Too many requests. Please retry in some time.","request_id":"r1","data":{}}"#,
    ));
    let events = purchases(2);
    let batch: Vec<Outgoing<'_>> = events
        .iter()
        .map(|e| outgoing(e, "CompletePayment"))
        .collect();
    let results = connector(&fake).send(&batch).await;
    for (disposition, _) in &results {
        assert!(
            matches!(disposition, Disposition::Retry { overloaded: true, reason, .. }
                if reason.contains("40100")),
            "{disposition:?}"
        );
    }
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn a_503_and_a_429_with_retry_after_are_retried_after_that_long() {
    let fake = fake().await;
    fake.script_one(Reply::status(503).retry_after(Duration::from_secs(120)));
    fake.script_one(Reply::status(429).retry_after(Duration::from_secs(45)));
    let event = events::purchase("r-1");
    let tiktok = connector(&fake);
    let results = tiktok.send(&[outgoing(&event, "CompletePayment")]).await;
    assert_eq!(
        results[0].0,
        Disposition::Retry {
            reason: "HTTP 503".into(),
            retry_after: Some(Duration::from_secs(120)),
            overloaded: false,
        }
    );
    let results = tiktok.send(&[outgoing(&event, "CompletePayment")]).await;
    assert_eq!(
        results[0].0,
        Disposition::Retry {
            reason: "HTTP 429".into(),
            retry_after: Some(Duration::from_secs(45)),
            overloaded: true,
        }
    );
    assert!(fake.received().is_empty());
    // Then the platform is back.
    let results = tiktok.send(&[outgoing(&event, "CompletePayment")]).await;
    assert_eq!(results[0].0, Disposition::Succeeded);
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn a_resent_event_is_deduplicated_by_the_platform_not_counted_twice() {
    let fake = fake().await;
    let event = events::purchase("d-1");
    let tiktok = connector(&fake);
    for _ in 0..2 {
        let results = tiktok.send(&[outgoing(&event, "CompletePayment")]).await;
        assert_eq!(results[0].0, Disposition::Succeeded);
    }
    assert_eq!(fake.received().len(), 1);
    assert_eq!(fake.duplicates().len(), 1);
}

#[tokio::test]
async fn more_than_a_thousand_events_go_in_requests_of_at_most_a_thousand() {
    let fake = fake().await;
    let events = purchases(1001);
    let batch: Vec<Outgoing<'_>> = events
        .iter()
        .map(|e| outgoing(e, "CompletePayment"))
        .collect();
    let tiktok = connector(&fake);
    assert_eq!(tiktok.max_batch(), 1000);
    let results = tiktok.send(&batch).await;
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
async fn the_api_version_is_configurable() {
    let fake = fake().await;
    let event = events::purchase("v-1");
    let results = connector_with(&fake, "api_version = \"v1.4\"")
        .send(&[outgoing(&event, "CompletePayment")])
        .await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{results:?}");
    assert_eq!(fake.requests()[0].path, "/open_api/v1.4/event/track/");
}

#[tokio::test]
async fn a_wrong_endpoint_path_needs_a_fix() {
    let fake = fake().await;
    let text = format!(
        "pixel_code = \"{PIXEL}\"\naccess_token = \"{TOKEN}\"\nendpoint = \"{}/proxy\"\n",
        fake.url()
    );
    let config: Config = toml::from_str(&text).expect("config parses");
    let tiktok = tiktok::build("tiktok", config, reqwest::Client::new()).expect("builds");
    let events = purchases(4);
    let batch: Vec<Outgoing<'_>> = events
        .iter()
        .map(|e| outgoing(e, "CompletePayment"))
        .collect();
    let results = tiktok.send(&batch).await;
    assert!(
        results
            .iter()
            .all(|(d, _)| matches!(d, Disposition::NeedsFix { reason } if reason.contains("404"))),
        "{results:?}"
    );
    assert_eq!(fake.requests()[0].path, "/proxy/open_api/v1.3/event/track/");
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn a_token_echoed_back_by_tiktok_is_redacted() {
    let fake = fake().await;
    let body = json!({"code": 40002, "message": format!("Invalid token {TOKEN} in header"),
                      "request_id": "r", "data": {}});
    fake.script_one(Reply::json(200, body.to_string()));
    let event = events::purchase("x-1");
    let results = connector(&fake)
        .send(&[outgoing(&event, "CompletePayment")])
        .await;
    assert!(
        matches!(&results[0].0, Disposition::Dead { reason } if reason.contains("[redacted]")),
        "{results:?}"
    );
    assert_no_token(&results);
}
