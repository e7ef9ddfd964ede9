use serde_json::json;

use crate::support::{ADMIN_TOKEN, BROWSER_KEY, SERVER_KEY, TestApp, purchase};

#[tokio::test]
async fn admin_endpoints_refuse_without_the_admin_token() {
    let app = TestApp::start().await;
    for path in ["/v1/ledger/x", "/v1/quarantine", "/v1/stats/dedup"] {
        for auth in [
            None,
            Some("wrong-token-0123456789"),
            Some(SERVER_KEY),
            Some(BROWSER_KEY),
        ] {
            let mut req = app.client.get(format!("{}{path}", app.url));
            if let Some(token) = auth {
                req = req.bearer_auth(token);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{path} with {auth:?}");
        }
    }
    let resp = app
        .client
        .post(format!("{}/v1/quarantine/replay", app.url))
        .bearer_auth(SERVER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn without_a_configured_token_the_admin_api_is_disabled() {
    let app = TestApp::start_with(
        "admin_token = \"\"\n",
        std::sync::Arc::new(tally_core::clock::SystemClock),
    )
    .await;
    let resp = app
        .client
        .get(format!("{}/v1/quarantine", app.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "admin_disabled");
    app.stop().await;
}

#[tokio::test]
async fn ledger_answers_404_for_an_unknown_event() {
    let app = TestApp::start().await;
    let (status, body) = app.admin_get("/v1/ledger/never-seen").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    app.stop().await;
}

#[tokio::test]
async fn quarantined_events_are_listed_with_reasons_and_hold_no_raw_contact_data() {
    let app = TestApp::start().await;
    app.post(
        "/v1/events",
        &json!({"batch": [
            {"event": "purchse", "event_id": "typo-1", "user": {"email": "quarantined@example.com", "phone": "+44 20 7946 0958"}},
            {"event": "purchase", "event_id": "q-2", "user": {"email": 42}},
        ]}),
    )
    .await;
    let (status, body) = app.admin_get("/v1/quarantine").await;
    assert_eq!(status, 200);
    let rows = body["quarantine"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["code"], "unplanned_event");
    assert_eq!(rows[0]["event_id"], "typo-1");
    assert_eq!(rows[0]["status"], "open");
    assert_eq!(rows[1]["code"], "wrong_type");
    let text = body.to_string();
    assert!(
        !text.contains("quarantined@example.com") && !text.contains("7946"),
        "{text}"
    );
    let (_, filtered) = app.admin_get("/v1/quarantine?code=wrong_type").await;
    assert_eq!(filtered["quarantine"].as_array().unwrap().len(), 1);
    let (status, bad) = app.admin_get("/v1/quarantine?status=lost").await;
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("invalid_status"))
    );
    app.stop().await;
}

#[tokio::test]
async fn replay_after_a_plan_fix_accepts_quarantined_events_with_their_identity() {
    let app = TestApp::start().await;
    let refund = json!({"event": "refund", "event_id": "rf-1", "user": {"email": "r@example.com"},
        "properties": {"order_id": "1", "value": -5, "currency": "EUR"}});
    let (_, body) = app.post("/v1/events", &refund).await;
    assert_eq!(body["results"][0]["code"], "unplanned_event");
    let dir = app.stop_keeping_data().await;

    let fixed_plan = "[[events]]\nname = \"refund\"\nallow_negative_value = true\n";
    let app = TestApp::start_in(
        dir,
        fixed_plan,
        std::sync::Arc::new(tally_core::clock::SystemClock),
    )
    .await;
    let resp = app
        .client
        .post(format!("{}/v1/quarantine/replay", app.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let summary: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(summary["examined"], 1);
    assert_eq!(summary["accepted"], 1);
    let (status, ledger) = app.admin_get("/v1/ledger/rf-1").await;
    assert_eq!(status, 200);
    let event = &ledger["events"][0]["event"];
    assert_eq!(event["name"], "refund");
    assert_eq!(event["value"], "-5");
    assert!(
        event["user"]["identity"]["email_sha256"].is_string(),
        "identity restored from the hashed copy"
    );
    let (_, rows) = app.admin_get("/v1/quarantine?status=replayed").await;
    assert_eq!(rows["quarantine"][0]["event_id"], "rf-1");
    // A second replay finds nothing left to do.
    let resp = app
        .client
        .post(format!("{}/v1/quarantine/replay", app.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let summary: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(summary["examined"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_ledger_entry_never_shows_raw_contact_data() {
    let app = TestApp::start().await;
    app.post("/v1/events", &purchase("pii-1", "P1")).await;
    let (_, ledger) = app.admin_get("/v1/ledger/pii-1").await;
    let text = ledger.to_string();
    assert!(
        !text.contains("jane.doe") && !text.contains("555"),
        "{text}"
    );
    app.stop().await;
}
