use std::io::Write;

use serde_json::json;

use crate::support::{BROWSER_KEY, SERVER_KEY, TestApp, purchase, statuses};

#[tokio::test]
async fn a_batch_is_answered_per_event_in_order() {
    let app = TestApp::start().await;
    let (status, body) = app
        .post(
            "/v1/events",
            &json!({"batch": [
                purchase("b-1", "1"),
                {"event": "purchase", "event_id": "b-2", "properties": {"value": 5}},
                purchase("b-1", "1"),
                {"event": "add_to_cart", "event_id": "b-3"},
            ]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        statuses(&body),
        ["accepted", "rejected", "duplicate", "accepted"]
    );
    let r = &body["results"];
    assert_eq!(r[1]["code"], "missing_property");
    assert_eq!(
        r[1]["message"],
        "`purchase` requires `currency`, `order_id`"
    );
    assert_eq!(r[1]["event_id"], "b-2");
    assert_eq!(r[3]["event_id"], "b-3");
    assert!(r[0].get("code").is_none());
    app.stop().await;
}

#[tokio::test]
async fn an_event_without_an_id_gets_one_generated_and_returned() {
    let app = TestApp::start().await;
    let (_, body) = app
        .post("/v1/events", &json!({"event": "add_to_cart"}))
        .await;
    let id = body["results"][0]["event_id"].as_str().unwrap();
    assert!(id.starts_with("evt_"), "{id}");
    app.stop().await;
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    let app = TestApp::start().await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(purchase("gz-1", "g1").to_string().as_bytes())
        .unwrap();
    let (status, body) = app
        .post_raw(
            "/v1/events",
            gz.finish().unwrap(),
            &[
                ("authorization", &format!("Bearer {SERVER_KEY}")),
                ("content-encoding", "gzip"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(statuses(&body), ["accepted"]);
    app.stop().await;
}

#[tokio::test]
async fn the_browser_door_takes_text_plain_with_cors_and_fills_ip_and_user_agent() {
    let app = TestApp::start().await;
    let event = json!({"key": BROWSER_KEY, "event": "add_to_cart", "event_id": "web-1",
        "user": {"anonymous_id": "a-1", "click_ids": {"gclid": "Cj0K", "clicked_at": 1_700_000_000_000i64}}});
    let resp = app
        .client
        .post(format!("{}/v1/collect", app.url))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", "http://localhost:8000")
        .header("user-agent", "Mozilla/5.0 (test)")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "http://localhost:8000"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(statuses(&body), ["accepted"]);
    let (_, ledger) = app.admin_get("/v1/ledger/web-1").await;
    let user = &ledger["events"][0]["event"]["user"];
    assert_eq!(user["ip"], "127.0.0.1");
    assert_eq!(user["user_agent"], "Mozilla/5.0 (test)");
    assert_eq!(user["click_ids"]["gclid"], "Cj0K");
    assert_eq!(ledger["events"][0]["event"]["source_kind"], "browser");
    app.stop().await;
}

#[tokio::test]
async fn cors_preflight_is_answered_only_for_allowed_origins() {
    let app = TestApp::start().await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/v1/collect", app.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let ok = preflight("http://localhost:8000").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://localhost:8000"
    );
    assert!(
        ok.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    app.stop().await;
}

#[tokio::test]
async fn segment_track_page_identify_and_batch_work_with_basic_auth() {
    let app = TestApp::start().await;
    let basic = format!("Basic {}", base64_user(SERVER_KEY));
    let track = json!({"event": "Order Completed", "messageId": "seg-1", "userId": "u-1",
        "properties": {"order_id": "S-1", "total": 42.5, "currency": "usd"},
        "context": {"traits": {"email": "seg@example.com"}, "ip": "203.0.113.7"}});
    let (status, body) = app
        .post_raw(
            "/v1/track",
            track.to_string().into_bytes(),
            &[("authorization", &basic)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(statuses(&body), ["accepted"]);
    let (_, ledger) = app.admin_get("/v1/ledger/seg-1").await;
    let event = &ledger["events"][0]["event"];
    assert_eq!(event["name"], "purchase", "alias resolved");
    assert_eq!(event["value"], "42.5");
    assert_eq!(event["currency"], "USD");
    assert_eq!(event["user"]["ip"], "203.0.113.7");
    assert!(event["user"]["identity"]["email_sha256"].is_string());

    let with_write_key = json!({"writeKey": SERVER_KEY, "name": "Home", "messageId": "seg-2"});
    let (status, body) = app
        .post_raw("/v1/page", with_write_key.to_string().into_bytes(), &[])
        .await;
    assert_eq!(
        (status, statuses(&body)),
        (200, vec!["accepted".to_owned()])
    );

    let batch = json!({"batch": [
        {"type": "identify", "userId": "u-1", "anonymousId": "a-9", "traits": {"email": "seg@example.com"}},
        {"type": "track", "event": "Order Completed", "messageId": "seg-3", "properties": {"order_id": "S-1", "total": 42.5, "currency": "USD"}},
    ]});
    let (status, body) = app
        .post_raw(
            "/v1/batch",
            batch.to_string().into_bytes(),
            &[("authorization", &basic)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        statuses(&body),
        ["accepted", "duplicate"],
        "same order as seg-1"
    );
    assert_eq!(body["results"][1]["duplicate_of"], "seg-1");
    app.stop().await;
}

fn base64_user(user: &str) -> String {
    // Tiny standard base64 for `user:` so the test does not trust the server's decoder.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:");
    let mut out = String::new();
    for chunk in input.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn a_source_over_its_rate_limit_gets_429_with_retry_after() {
    let extra = r#"
        [[sources]]
        name = "backend"
        kind = "server"
        key = "sk_backend_demo"

        [[sources]]
        name = "limited"
        kind = "server"
        key = "sk_limited_0123"
        rate_limit_per_sec = 1
        rate_limit_burst = 3
    "#;
    let app = TestApp::start_with(extra, std::sync::Arc::new(tally_core::clock::SystemClock)).await;
    let auth = [("authorization", "Bearer sk_limited_0123")];
    let batch = |n: usize| {
        json!({"batch": (0..n).map(|i| json!({"event": "add_to_cart", "event_id": format!("rl-{n}-{i}")})).collect::<Vec<_>>()})
            .to_string()
            .into_bytes()
    };
    let (status, _) = app.post_raw("/v1/events", batch(3), &auth).await;
    assert_eq!(status, 200);
    let resp = app
        .client
        .post(format!("{}/v1/events", app.url))
        .header("authorization", "Bearer sk_limited_0123")
        .body(batch(2))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    // Other sources are not limited by it.
    let (status, _) = app.post("/v1/events", &purchase("rl-other", "rl-o")).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn healthz_and_metrics_answer() {
    let app = TestApp::start().await;
    app.post("/v1/events", &purchase("m-1", "m1")).await;
    let health = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
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
        metrics.contains("tally_collector_events_total{door=\"events\",outcome=\"accepted\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains(SERVER_KEY));
    app.stop().await;
}

#[tokio::test]
async fn a_browser_key_keeps_its_origin_rule_on_the_segment_doors() {
    let app = TestApp::start().await;
    let track =
        json!({"writeKey": BROWSER_KEY, "event": "Product Added", "messageId": "seg-web-1"});
    let (status, body) = app
        .post_raw(
            "/v1/track",
            track.to_string().into_bytes(),
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("origin_not_allowed"))
    );
    let (status, body) = app
        .post_raw(
            "/v1/track",
            track.to_string().into_bytes(),
            &[
                ("origin", "http://localhost:8000"),
                ("user-agent", "Mozilla/5.0 (seg)"),
            ],
        )
        .await;
    assert_eq!(
        (status, statuses(&body)),
        (200, vec!["accepted".to_owned()])
    );
    let (_, ledger) = app.admin_get("/v1/ledger/seg-web-1").await;
    assert_eq!(
        ledger["events"][0]["event"]["user"]["user_agent"],
        "Mozilla/5.0 (seg)"
    );
    app.stop().await;
}
