//! Delivery end to end: the real app (doors, plan, store, dispatchers) against the strict fake
//! platforms on loopback. Time that matters (join window, retries) is a manual clock the test
//! moves; waits are for conditions (requests arrived, ledger state), never fixed sleeps.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tally_core::clock::{Clock, ManualClock, SystemClock};
use tally_testkit::Reply;
use tally_testkit::fakes::meta::FakeMeta;

use crate::support::{SERVER_KEY, TestApp, statuses};

const PIXEL: &str = "1234567890";
const META_TOKEN: &str = "meta-test-token-1";
const WAIT: Duration = Duration::from_secs(20);

fn sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn meta_config_gated(fake: &FakeMeta, join_window_secs: u64, gated: bool) -> String {
    format!(
        r#"
[delivery]
join_window_secs = {join_window_secs}
idle_poll_ms = 10

[[destinations]]
name = "meta"
kind = "meta_capi"
pixel_id = "{PIXEL}"
access_token = "{META_TOKEN}"
endpoint = "{}"
events = {{ purchase = "Purchase" }}
require_test_conversion = {gated}
"#,
        fake.url()
    )
}

/// Meta, live at once (no test conversion required).
fn meta_config(fake: &FakeMeta, join_window_secs: u64) -> String {
    meta_config_gated(fake, join_window_secs, false)
}

fn manual_clock_at_now() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemClock.now()))
}

fn server_purchase(event_id: &str, user: Value, consent: Value) -> Value {
    json!({
        "event": "purchase", "event_id": event_id,
        "user": user,
        "properties": {"value": "129.90", "currency": "EUR", "order_id": event_id},
        "page": {"url": "https://shop.example/thanks"},
        "consent": consent,
    })
}

fn granted() -> Value {
    json!({"ad_storage": "granted", "analytics_storage": "granted",
           "ad_user_data": "granted", "ad_personalization": "granted"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_and_server_copies_reach_meta_once_with_the_union_of_identifiers() {
    let meta = FakeMeta::start(PIXEL, META_TOKEN).await;
    let clock = manual_clock_at_now();
    let app = TestApp::start_with(&meta_config(&meta, 5), clock.clone()).await;
    let clicked = clock.now().millis() - 3_600_000;

    let (status, body) = app
        .collect(&json!({
            "event": "purchase", "event_id": "ord-1",
            "user": {"anonymous_id": "v-1",
                     "click_ids": {"fbclid": "IwAR-Case-Sensitive", "clicked_at": clicked,
                                   "fbp": "fb.1.1700000000000.1098115397"}},
            "properties": {"value": "100.00", "currency": "EUR", "order_id": "ord-1"},
            "page": {"url": "https://shop.example/thanks"},
            "consent": granted(),
        }))
        .await;
    assert_eq!(
        (status, statuses(&body)),
        (200, vec!["accepted".to_owned()])
    );
    let (_, body) = app
        .post(
            "/v1/events",
            &server_purchase(
                "ord-1",
                json!({"email": "Jane.Doe@Example.com", "external_id": "cust-42"}),
                granted(),
            ),
        )
        .await;
    assert_eq!(statuses(&body), ["duplicate"]);
    assert_eq!(
        meta.request_count(),
        0,
        "the join window holds the delivery"
    );

    clock.advance_ms(5_000);
    app.wait_for_delivery("ord-1", "meta", "delivered", WAIT)
        .await;
    let received = meta.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let e = &received[0];
    assert_eq!(e["event_name"], "Purchase");
    assert_eq!(e["event_id"], "ord-1");
    assert_eq!(e["user_data"]["em"][0], sha256("jane.doe@example.com"));
    assert_eq!(
        e["user_data"]["fbc"],
        format!("fb.1.{clicked}.IwAR-Case-Sensitive"),
        "fbc carries the real click time and the click ID's case"
    );
    assert_eq!(e["user_data"]["fbp"], "fb.1.1700000000000.1098115397");
    assert!(e["user_data"]["client_user_agent"].is_string());
    assert_eq!(
        e["custom_data"]["value"].to_string(),
        "129.90",
        "the server copy's value wins"
    );

    // A late retry of the server call is recorded, never sent again.
    let (_, body) = app
        .post(
            "/v1/events",
            &server_purchase("ord-1", json!({"email": "jane.doe@example.com"}), granted()),
        )
        .await;
    assert_eq!(statuses(&body), ["duplicate"]);
    let entry = app.ledger("ord-1").await;
    assert_eq!(entry["copies"].as_array().unwrap().len(), 3);
    assert_eq!(entry["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(
        entry["deliveries"][0]["attempts"][0]["consent"],
        "ad_storage=granted analytics_storage=granted ad_user_data=granted ad_personalization=granted"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_denied_for_ads_sends_nothing_to_meta_and_is_counted() {
    let meta = FakeMeta::start(PIXEL, META_TOKEN).await;
    let app = TestApp::start_with(&meta_config(&meta, 0), Arc::new(SystemClock)).await;
    let (_, body) = app
        .post(
            "/v1/events",
            &server_purchase(
                "denied-1",
                json!({"email": "jane.doe@example.com", "user_agent": "Mozilla/5.0"}),
                json!({"ad_storage": "denied", "ad_user_data": "denied"}),
            ),
        )
        .await;
    assert_eq!(statuses(&body), ["accepted"]);
    let d = app
        .wait_for_delivery("denied-1", "meta", "withheld", WAIT)
        .await;
    assert_eq!(
        d["last_reason"],
        "consent: ad_storage, ad_user_data not granted"
    );
    assert_eq!(meta.request_count(), 0);
    let (_, stats) = app.admin_get("/v1/destinations").await;
    assert_eq!(stats["destinations"][0]["destination"], "meta");
    assert_eq!(stats["destinations"][0]["withheld"], 1);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tally_outbox_deliveries{destination=\"meta\",state=\"withheld\"} 1"),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_cancels_pending_retries() {
    let meta = FakeMeta::start(PIXEL, META_TOKEN).await;
    meta.script_one(Reply::status(503));
    let clock = manual_clock_at_now();
    let app = TestApp::start_with(&meta_config(&meta, 0), clock.clone()).await;
    let jane = json!({"email": "jane.doe@example.com", "user_agent": "Mozilla/5.0"});
    app.post("/v1/events", &server_purchase("rev-1", jane, granted()))
        .await;
    assert!(meta.wait_for(1, WAIT).await);
    let d = app
        .wait_for_delivery_where("rev-1", "meta", "one attempt", WAIT, |d| {
            d["attempts"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    assert_eq!(d["state"], "pending");
    assert_eq!(d["attempts"][0]["outcome"], "retry");

    let resp = app
        .client
        .post(format!("{}/v1/consent/revoke", app.url))
        .bearer_auth(SERVER_KEY)
        .json(&json!({"email": "Jane.Doe@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["cancelled_deliveries"], 1);
    app.wait_for_delivery("rev-1", "meta", "withheld", WAIT)
        .await;

    // Past the retry time, only other people's purchases go out. (The clock moves only while
    // nothing is in flight: jumping past a lease mid-send would let another dispatcher take it.)
    let someone = |id: &str| {
        server_purchase(
            id,
            json!({"email": format!("{id}@example.com"), "user_agent": "Mozilla/5.0"}),
            granted(),
        )
    };
    app.post("/v1/events", &someone("other-1")).await;
    app.wait_for_delivery("other-1", "meta", "delivered", WAIT)
        .await;
    clock.advance_ms(3_600_000);
    app.post("/v1/events", &someone("other-2")).await;
    app.wait_for_delivery("other-2", "meta", "delivered", WAIT)
        .await;
    let ids: Vec<String> = meta
        .received()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["other-1", "other-2"]);
    assert_eq!(meta.request_count(), 3, "{:?}", meta.requests());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_replayed_after_a_fix() {
    let meta = FakeMeta::start(PIXEL, META_TOKEN).await;
    meta.script_one(Reply::json(
        400,
        r#"{"error":{"message":"Invalid OAuth access token.","type":"OAuthException","code":190,"fbtrace_id":"x"}}"#,
    ));
    let app = TestApp::start_with(&meta_config(&meta, 0), Arc::new(SystemClock)).await;
    app.post(
        "/v1/events",
        &server_purchase(
            "fix-1",
            json!({"email": "jane.doe@example.com", "user_agent": "Mozilla/5.0"}),
            granted(),
        ),
    )
    .await;
    let d = app
        .wait_for_delivery("fix-1", "meta", "needs_fix", WAIT)
        .await;
    assert!(d["last_reason"].as_str().unwrap().contains("token"), "{d}");
    let (_, listed) = app.admin_get("/v1/deliveries?state=needs_fix").await;
    assert_eq!(listed["deliveries"][0]["event_id"], "fix-1");

    let (status, body) = app
        .admin_post("/v1/deliveries/replay", &json!({"destination": "meta"}))
        .await;
    assert_eq!((status, &body["requeued"]), (200, &json!(1)));
    let d = app
        .wait_for_delivery("fix-1", "meta", "delivered", WAIT)
        .await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(meta.received().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_conversion_passes_against_the_fakes_and_fails_when_one_drops_the_event() {
    let meta = FakeMeta::start(PIXEL, META_TOKEN).await;
    // A real join window: the twin must be merged before the delivery goes out.
    let app = TestApp::start_with(&meta_config(&meta, 1), Arc::new(SystemClock)).await;
    let test = tally::test_conversion::TestConversion {
        url: app.url.clone(),
        destination: None,
        timeout: WAIT,
    };
    let mut out = Vec::new();
    let code = tally::test_conversion::run(&app.config, &test, &mut out)
        .await
        .unwrap();
    let report = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("PASS meta: arrived once, value 12.34 EUR"),
        "{report}"
    );
    let test_events = meta.test_events("TALLY_TEST");
    assert_eq!(test_events.len(), 1, "sent once, in test mode");
    assert!(meta.received().is_empty(), "nothing reached live reporting");
    assert!(
        test_events[0]["user_data"]["em"].is_array()
            && test_events[0]["user_data"]["fbc"].is_string(),
        "both copies' identifiers: {}",
        test_events[0]
    );

    meta.drop_next_events(1);
    let short = tally::test_conversion::TestConversion {
        timeout: Duration::from_secs(3),
        ..test
    };
    let mut out = Vec::new();
    let code = tally::test_conversion::run(&app.config, &short, &mut out)
        .await
        .unwrap();
    let report = String::from_utf8(out).unwrap();
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains("FAIL meta: not delivered in time"),
        "{report}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_conversion_passes_through_every_connector_in_test_mode() {
    use tally_testkit::fakes::{
        data_manager::FakeDataManager, ga4::FakeGa4, tiktok::FakeTikTok, webhook::FakeWebhook,
    };
    let meta = FakeMeta::start(PIXEL, META_TOKEN).await;
    let google = FakeDataManager::start("google-oauth-token").await;
    let ga4 = FakeGa4::start("G-TEST123", "ga4-api-secret").await;
    let tiktok = FakeTikTok::start("CTIKTOKPIXEL1", "tiktok-token-1").await;
    let hook = FakeWebhook::start("webhook-signing-secret-0123").await;
    let config = format!(
        r#"{meta}
[[destinations]]
name = "google"
kind = "google_ads"
customer_id = "123-456-7890"
conversion_action_id = "555"
access_token = "google-oauth-token"
endpoint = "{google}"

[[destinations]]
name = "ga4"
kind = "ga4"
measurement_id = "G-TEST123"
api_secret = "ga4-api-secret"
endpoint = "{ga4}"

[[destinations]]
name = "tiktok"
kind = "tiktok"
pixel_code = "CTIKTOKPIXEL1"
access_token = "tiktok-token-1"
endpoint = "{tiktok}"

[[destinations]]
name = "crm"
kind = "webhook"
url = "{hook}"
secret = "webhook-signing-secret-0123"
allow_private_networks = true
"#,
        meta = meta_config(&meta, 1),
        google = google.url(),
        ga4 = ga4.url(),
        tiktok = tiktok.url(),
        hook = hook.url(),
    );
    let app = TestApp::start_with(&config, Arc::new(SystemClock)).await;
    let test = tally::test_conversion::TestConversion {
        url: app.url.clone(),
        destination: None,
        timeout: WAIT,
    };
    let mut out = Vec::new();
    let code = tally::test_conversion::run(&app.config, &test, &mut out)
        .await
        .unwrap();
    let report = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{report}");
    for name in ["meta", "google", "ga4", "tiktok", "crm"] {
        assert!(
            report.contains(&format!("PASS {name}:")),
            "{name}: {report}"
        );
    }
    // Test mode everywhere: nothing reached live reporting.
    assert!(meta.received().is_empty() && tiktok.received().is_empty());
    assert!(google.received().is_empty() && ga4.received().is_empty());
    assert_eq!(google.validated().len(), 1, "sent with validateOnly");
    assert_eq!(tiktok.test_events("TALLY_TEST").len(), 1);
    let hooked = hook.received();
    assert_eq!(hooked.len(), 1);
    assert_eq!(hooked[0]["delivery"]["test"], true);
    // Every destination that needed a passing test conversion is live now.
    let (_, stats) = app.admin_get("/v1/destinations").await;
    for d in stats["destinations"].as_array().unwrap() {
        if d["destination"] != "meta" {
            assert!(d["live_since"].is_string(), "{d}");
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_server_purchase_carries_the_visitor_s_remembered_click() {
    let meta = FakeMeta::start(PIXEL, META_TOKEN).await;
    let clock = manual_clock_at_now();
    let app = TestApp::start_with(&meta_config(&meta, 0), clock.clone()).await;
    let clicked = clock.now().millis() - 60_000;
    let (_, body) = app
        .collect(&json!({
            "event": "page_view", "event_id": "landing-1",
            "user": {"anonymous_id": "v-9",
                     "click_ids": {"fbclid": "IwAR-landing", "clicked_at": clicked}},
            "page": {"url": "https://shop.example/?fbclid=IwAR-landing"},
        }))
        .await;
    assert_eq!(statuses(&body), ["accepted"]);

    // Two days later the backend reports the purchase, knowing only the visitor's ID.
    clock.advance_ms(2 * 86_400_000);
    meta.set_now(clock.now());
    app.post(
        "/v1/events",
        &server_purchase(
            "late-1",
            json!({"anonymous_id": "v-9", "user_agent": "Mozilla/5.0"}),
            granted(),
        ),
    )
    .await;
    app.wait_for_delivery("late-1", "meta", "delivered", WAIT)
        .await;
    let e = &meta.received()[0];
    assert_eq!(
        e["user_data"]["fbc"],
        format!("fb.1.{clicked}.IwAR-landing")
    );

    // A click that arrived with ad_storage denied is not remembered: keeping it would store an
    // advertising identifier the visitor refused.
    app.collect(&json!({
        "event": "page_view", "event_id": "landing-2",
        "user": {"anonymous_id": "v-10",
                 "click_ids": {"fbclid": "IwAR-refused", "clicked_at": clock.now().millis()}},
        "consent": {"ad_storage": "denied", "analytics_storage": "granted"},
    }))
    .await;
    clock.advance_ms(86_400_000);
    meta.set_now(clock.now());
    app.post(
        "/v1/events",
        &server_purchase(
            "late-2",
            json!({"anonymous_id": "v-10", "user_agent": "Mozilla/5.0"}),
            granted(),
        ),
    )
    .await;
    app.wait_for_delivery("late-2", "meta", "delivered", WAIT)
        .await;
    let received = meta.received();
    let late = received
        .iter()
        .find(|e| e["event_id"] == "late-2")
        .expect("late-2 reached Meta");
    assert!(
        late["user_data"].get("fbc").is_none(),
        "a refused click was attached: {late}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_destination_sends_live_events_only_after_a_test_conversion_passed() {
    let meta = FakeMeta::start(PIXEL, META_TOKEN).await;
    let app = TestApp::start_with(&meta_config_gated(&meta, 1, true), Arc::new(SystemClock)).await;
    app.post(
        "/v1/events",
        &server_purchase(
            "early-1",
            json!({"email": "jane.doe@example.com", "user_agent": "Mozilla/5.0"}),
            granted(),
        ),
    )
    .await;

    let test = tally::test_conversion::TestConversion {
        url: app.url.clone(),
        destination: Some("meta".into()),
        timeout: WAIT,
    };
    let mut out = Vec::new();
    let code = tally::test_conversion::run(&app.config, &test, &mut out)
        .await
        .unwrap();
    let report = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("meta is live"), "{report}");
    // The test event went out while the live purchase waited.
    assert_eq!(meta.test_events("TALLY_TEST").len(), 1);
    let first_requests = meta.requests().len();
    assert_eq!(
        first_requests, 1,
        "only the test conversion was sent before going live"
    );

    app.wait_for_delivery("early-1", "meta", "delivered", WAIT)
        .await;
    assert_eq!(meta.received()[0]["event_id"], "early-1");
    let (_, stats) = app.admin_get("/v1/destinations").await;
    assert!(
        stats["destinations"][0]["live_since"].is_string(),
        "{stats}"
    );
    app.stop().await;
}
