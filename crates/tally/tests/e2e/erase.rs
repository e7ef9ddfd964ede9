//! Right to erasure through the real app: `POST /v1/erase` removes one person's events, found
//! by email and through their identify call, their deliveries, click memory and quarantine
//! rows, and leaves everyone else's. Deliveries wait in a long join window on a manual clock,
//! so their states at the erasure are known.

use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tally_core::clock::{ManualClock, SystemClock};
use tally_testkit::fakes::meta::FakeMeta;

use crate::support::{ADMIN_TOKEN, BROWSER_KEY, SERVER_KEY, TestApp, statuses};

const PIXEL: &str = "1234567890";
const META_TOKEN: &str = "meta-test-token-1";

fn sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn granted() -> Value {
    json!({"ad_storage": "granted", "analytics_storage": "granted",
           "ad_user_data": "granted", "ad_personalization": "granted"})
}

fn purchase(event_id: &str, user: Value) -> Value {
    json!({"event": "purchase", "event_id": event_id, "user": user, "consent": granted(),
           "properties": {"value": "10.00", "currency": "EUR", "order_id": event_id}})
}

async fn erase(app: &TestApp, authorization: &str, body: &Value) -> (u16, Value) {
    app.post_raw(
        "/v1/erase",
        body.to_string().into_bytes(),
        &[
            ("authorization", authorization),
            ("content-type", "application/json"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_by_email_removes_one_person_everywhere_and_reports_what_went() {
    let meta = FakeMeta::start(PIXEL, META_TOKEN).await;
    let config = format!(
        r#"
[delivery]
join_window_secs = 3600

[[destinations]]
name = "meta"
kind = "meta_capi"
pixel_id = "{PIXEL}"
access_token = "{META_TOKEN}"
endpoint = "{}"
events = {{ purchase = "Purchase" }}
require_test_conversion = false
"#,
        meta.url()
    );
    let clock = Arc::new(ManualClock::new(tally_core::clock::Clock::now(
        &SystemClock,
    )));
    let app = TestApp::start_with(&config, clock).await;

    // Jane buys on her phone (a browser copy with a click), identifies herself there, then
    // buys again as a customer known by email; one of her backend's events is misspelt.
    let (status, body) = app
        .collect(&purchase(
            "j-1",
            json!({"anonymous_id": "v-jane", "click_ids": {"gclid": "G-jane"}}),
        ))
        .await;
    assert_eq!(
        (status, statuses(&body)),
        (200, vec!["accepted".to_owned()]),
        "{body}"
    );
    let identify = app
        .client
        .post(format!("{}/v1/identify", app.url))
        .basic_auth(SERVER_KEY, None::<&str>)
        .json(&json!({"messageId": "id-jane", "anonymousId": "v-jane", "userId": "cust-jane"}))
        .send()
        .await
        .unwrap();
    assert_eq!(identify.status(), 200);
    let jane = json!({"email": "Jane.Doe@Example.com", "external_id": "cust-jane"});
    let bob = json!({"email": "bob@example.com", "anonymous_id": "v-bob",
                     "click_ids": {"gclid": "G-bob"}});
    let (status, body) = app
        .post(
            "/v1/events",
            &json!({"batch": [
                purchase("j-2", jane.clone()),
                {"event": "purchse", "event_id": "typo-jane", "user": jane},
                purchase("b-1", bob.clone()),
                {"event": "purchse", "event_id": "typo-bob", "user": bob},
            ]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        statuses(&body),
        ["accepted", "rejected", "accepted", "rejected"]
    );
    assert_eq!(
        app.ledger("j-2").await["event"]["user"]["click_ids"]["gclid"],
        "G-jane",
        "the identify call links Jane's customer ID to her phone's click"
    );

    // Only the admin token erases; a refused request removes nothing.
    for authorization in [
        format!("Bearer {SERVER_KEY}"),
        format!("Bearer {BROWSER_KEY}"),
        format!("Bearer {ADMIN_TOKEN}x"),
    ] {
        let (status, body) = erase(
            &app,
            &authorization,
            &json!({"email": "jane.doe@example.com"}),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{authorization}"
        );
    }
    assert_eq!(app.ledger("j-1").await["event"]["event_id"], "j-1");
    // Clear refusals for requests that name nobody or say something unknown.
    let admin = format!("Bearer {ADMIN_TOKEN}");
    for bad in [
        json!({}),
        json!({"email": "jane.doe@example.com", "name": "Jane"}),
        json!({"email": "not an address"}),
    ] {
        let (status, body) = erase(&app, &admin, &bad).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_body")),
            "{bad}: {body}"
        );
        assert!(!body.to_string().contains("Jane") && !body.to_string().contains("not an address"));
    }

    let (status, answer) = erase(&app, &admin, &json!({"email": "JANE.DOE@example.com"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["dry_run"], false);
    assert_eq!(answer["complete"], true);
    assert_eq!(answer["events"], 2, "{answer}");
    assert_eq!(answer["deliveries"]["pending"], 2, "{answer}");
    assert_eq!(answer["quarantine"], 1, "{answer}");
    assert_eq!(answer["identity_links"], 1, "{answer}");
    assert_eq!(answer["click_memories"], 1, "{answer}");
    assert_eq!(answer["revocations_kept"], 0, "{answer}");
    let keys = answer["keys_searched"].as_array().unwrap();
    assert!(keys.contains(&json!(format!("em:{}", sha256("jane.doe@example.com")))));
    assert!(keys.contains(&json!(format!("anon:{}", sha256("v-jane")))));
    assert!(keys.contains(&json!(format!("ext:{}", sha256("cust-jane")))));
    assert_eq!(keys.len(), 3, "{answer}");
    assert!(answer["request"].as_str().is_some_and(|r| r.len() == 64));
    let text = answer.to_string().to_lowercase();
    for identifier in ["jane", "v-jane", "g-jane", "@"] {
        assert!(!text.contains(identifier), "{identifier} in {answer}");
    }

    // Jane is gone from the ledger and the quarantine; Bob is all there.
    for id in ["j-1", "j-2"] {
        let (status, _) = app.admin_get(&format!("/v1/ledger/{id}")).await;
        assert_eq!(status, 404, "{id}");
    }
    let b1 = app.ledger("b-1").await;
    assert_eq!(b1["deliveries"][0]["state"], "pending");
    let (_, quarantine) = app.admin_get("/v1/quarantine").await;
    let ids: Vec<&str> = quarantine["quarantine"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["typo-bob"]);
    let (_, stats) = app.admin_get("/v1/destinations").await;
    assert_eq!(
        stats["destinations"][0]["pending"], 1,
        "only Bob's delivery waits: {stats}"
    );

    // Erasing again finds nothing.
    let (status, again) = erase(&app, &admin, &json!({"email": "jane.doe@example.com"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (again["events"].as_u64(), again["quarantine"].as_u64()),
        (Some(0), Some(0))
    );
    app.stop().await;
}

/// Runs `tally erase` against `app` with a config holding the admin token.
fn tally_erase(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let config = app.dir.path().join("cli.toml");
    std::fs::write(&config, format!("admin_token = \"{ADMIN_TOKEN}\"\n")).unwrap();
    let out = std::process::Command::new(crate::support::tally_bin())
        .arg("--config")
        .arg(&config)
        .args(["erase", "--url", &app.url])
        .args(args)
        .env_remove("TALLY_CONFIG")
        .env_remove("TALLY_ADMIN_TOKEN")
        .output()
        .expect("run tally");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_erases_through_the_running_server_after_a_dry_run() {
    let app = TestApp::start().await;
    let (status, body) = app
        .post(
            "/v1/events",
            &json!({"batch": [
                purchase("c-1", json!({"phone": "+44 20 7946 0958", "anonymous_id": "v-c"})),
                purchase("c-2", json!({"anonymous_id": "v-c"})),
                purchase("d-1", json!({"phone": "+44 20 7946 0959"})),
            ]}),
        )
        .await;
    assert_eq!((status, statuses(&body).len()), (200, 3));
    let app = Arc::new(app);

    let run = |args: &'static [&'static str]| {
        let app = app.clone();
        tokio::task::spawn_blocking(move || tally_erase(&app, args))
    };
    let (code, out, err) = run(&["--phone", "020 7946 0958", "--country", "GB", "--dry-run"])
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("would remove (dry run):"), "{out}");
    assert!(out.contains("events          2"), "{out}");
    assert_eq!(app.ledger("c-1").await["event"]["event_id"], "c-1");

    let (code, out, err) = run(&["--phone", "+44 20 7946 0958", "--json"])
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (answer["events"].as_u64(), answer["dry_run"].as_bool()),
        (Some(2), Some(false))
    );
    for id in ["c-1", "c-2"] {
        let (status, _) = app.admin_get(&format!("/v1/ledger/{id}")).await;
        assert_eq!(status, 404, "{id}");
    }
    assert_eq!(app.ledger("d-1").await["event"]["event_id"], "d-1");

    let (code, _, err) = run(&["--email", "not-an-address"]).await.unwrap();
    assert_eq!(code, 2);
    assert!(
        err.contains("--email") && !err.contains("not-an-address"),
        "{err}"
    );
    let (code, _, err) = run(&[]).await.unwrap();
    assert_eq!(code, 2, "{err}");
    match Arc::try_unwrap(app) {
        Ok(app) => app.stop().await,
        Err(_) => panic!("the app is still shared"),
    }
}
