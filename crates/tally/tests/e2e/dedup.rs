use serde_json::json;

use crate::support::{BROWSER_KEY, TestApp, purchase, statuses};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_simultaneous_copies_of_a_new_event_give_exactly_one_accepted() {
    let app = TestApp::start().await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let client = app.client.clone();
        let url = app.url.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            // Half arrive through the browser door, half through the server door.
            let request = if i % 2 == 0 {
                let mut e = purchase("race-1", "R1");
                e["key"] = json!(BROWSER_KEY);
                client.post(format!("{url}/v1/collect")).body(e.to_string())
            } else {
                client
                    .post(format!("{url}/v1/events"))
                    .bearer_auth("sk_backend_demo")
                    .body(purchase("race-1", "R1").to_string())
            };
            barrier.wait().await;
            let resp = request.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let body: serde_json::Value = resp.json().await.unwrap();
            statuses(&body).remove(0)
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(
        outcomes.iter().filter(|s| *s == "accepted").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(outcomes.iter().filter(|s| *s == "duplicate").count(), 49);
    let (_, ledger) = app.admin_get("/v1/ledger/race-1").await;
    assert_eq!(ledger["events"].as_array().unwrap().len(), 1);
    assert_eq!(ledger["events"][0]["copies"].as_array().unwrap().len(), 50);
    app.stop().await;
}

#[tokio::test]
async fn browser_and_server_copies_merge_with_the_union_of_identifiers() {
    let app = TestApp::start().await;
    let browser = json!({"key": BROWSER_KEY, "event": "purchase", "event_id": "ord-77",
        "user": {"anonymous_id": "a-77", "click_ids": {"fbp": "fb.1.1558571054389.1098115397", "gclid": "G-77"}},
        "properties": {"value": 10, "currency": "EUR", "order_id": "77"},
        "page": {"url": "https://shop.example/thanks"},
        "consent": {"ad_storage": "granted", "ad_user_data": "granted"}});
    let (status, body) = app
        .post_raw(
            "/v1/collect",
            browser.to_string().into_bytes(),
            &[("user-agent", "Mozilla/5.0 (shop)")],
        )
        .await;
    assert_eq!(
        (status, statuses(&body)),
        (200, vec!["accepted".to_owned()])
    );
    let server = json!({"event": "purchase", "event_id": "ord-77",
        "user": {"email": "buyer@example.com", "external_id": "cust-77", "ip": "10.1.2.3"},
        "properties": {"value": "129.90", "currency": "EUR", "order_id": "77", "margin": "40.00"}});
    let (_, body) = app.post("/v1/events", &server).await;
    assert_eq!(statuses(&body), ["duplicate"]);

    let (_, ledger) = app.admin_get("/v1/ledger/ord-77").await;
    let entry = &ledger["events"][0];
    let event = &entry["event"];
    assert_eq!(
        event["value"], "129.90",
        "server is authoritative for value"
    );
    assert_eq!(event["properties"]["margin"], "40.00");
    assert_eq!(
        event["user"]["ip"], "127.0.0.1",
        "browser connection IP kept over the backend's"
    );
    assert_eq!(event["user"]["user_agent"], "Mozilla/5.0 (shop)");
    assert_eq!(event["user"]["click_ids"]["gclid"], "G-77");
    assert_eq!(event["user"]["identity"]["external_id"], "cust-77");
    assert!(event["user"]["identity"]["email_sha256"].is_string());
    assert_eq!(event["page"]["url"], "https://shop.example/thanks");
    let copies = entry["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2);
    assert_eq!(copies[0]["source"], "web");
    assert_eq!(copies[1]["source"], "backend");
    assert_eq!(copies[1]["matched_by"], "event_id");
    let contributed: Vec<&str> = copies[1]["contributed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        contributed.contains(&"value") && contributed.contains(&"properties.margin"),
        "{contributed:?}"
    );
    assert_eq!(copies[0]["consent"]["ad_storage"], "granted");
    app.stop().await;
}

#[tokio::test]
async fn an_order_resent_under_another_event_id_is_a_duplicate_and_ghosts_are_counted() {
    let app = TestApp::start().await;
    let browser = |id: &str| {
        let mut e = purchase(id, "G-1");
        e["key"] = json!(BROWSER_KEY);
        e.to_string().into_bytes()
    };
    let (_, body) = app.post_raw("/v1/collect", browser("tag-a"), &[]).await;
    assert_eq!(statuses(&body), ["accepted"]);
    // The tag installed twice: a second browser copy with its own event ID.
    let (_, body) = app.post_raw("/v1/collect", browser("tag-b"), &[]).await;
    assert_eq!(statuses(&body), ["duplicate"]);
    assert_eq!(body["results"][0]["duplicate_of"], "tag-a");
    // An event ID reused for another order is a collision, quarantined.
    let (_, body) = app.post("/v1/events", &purchase("tag-a", "G-2")).await;
    assert_eq!(body["results"][0]["code"], "event_id_reused");
    assert_eq!(body["results"][0]["quarantined"], true);

    let (status, stats) = app.admin_get("/v1/stats/dedup").await;
    assert_eq!(status, 200);
    let p = &stats["events"][0];
    assert_eq!(p["event"], "purchase");
    assert_eq!(p["ghost_duplicates"], 1);
    assert_eq!(p["key_collisions"], 1);
    assert_eq!(p["duplicates_by_dedup_key"], 1);
    assert_eq!(p["dedup_rate"], 0.5);
    assert_eq!(
        p["by_source_pair"][0],
        json!({"first": "web", "duplicate": "web", "count": 1})
    );
    app.stop().await;
}

#[tokio::test]
async fn dedup_windows_follow_the_configured_clock() {
    use std::sync::Arc;
    use tally_core::clock::ManualClock;
    let clock = Arc::new(ManualClock::new(tally_core::timestamp::Timestamp::now()));
    let app = TestApp::start_with(
        "[dedup]\nevent_id_window_secs = 60\ndedup_key_window_secs = 60\n",
        clock.clone(),
    )
    .await;
    let event = json!({"event": "purchase", "event_id": "w-1", "properties": {"value": 1, "currency": "EUR", "order_id": "W1"}});
    let (_, body) = app.post("/v1/events", &event).await;
    assert_eq!(statuses(&body), ["accepted"]);
    clock.advance_ms(59_000);
    let (_, body) = app.post("/v1/events", &event).await;
    assert_eq!(statuses(&body), ["duplicate"]);
    clock.advance_ms(2_000);
    let (_, body) = app.post("/v1/events", &event).await;
    assert_eq!(
        statuses(&body),
        ["accepted"],
        "after the window the same ID counts again"
    );
    app.stop().await;
}
