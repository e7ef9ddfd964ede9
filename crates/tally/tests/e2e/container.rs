//! The tag container over HTTP and the CLI: drafts, the linter refusing a publish, numbered
//! immutable versions, rollback as a new version, what `/v1/container.js` serves (live with
//! ETag revalidation, the draft with a preview token), and the admin token on every endpoint.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, BROWSER_KEY, TestApp, tally_bin};

/// A container the linter accepts: a purchase on the thank-you page and its Meta pixel.
fn good(event: &str) -> Value {
    json!({
        "variables": {"order_id": {"type": "url_parameter", "name": "order"}},
        "triggers": {"thanks": {"type": "page_view", "path": {"starts_with": "/thanks"}}},
        "tags": {
            "purchase": {"type": "tally", "triggers": ["thanks"], "event": "purchase",
                         "properties": {"order_id": "{{order_id}}", "value": 10, "currency": "EUR"},
                         "event_id": "ord-{{order_id}}-purchase"},
            "meta": {"type": "meta_pixel", "triggers": ["thanks"], "event": event}
        }
    })
}

async fn put_draft(app: &TestApp, doc: &Value) -> (u16, Value) {
    let resp = app
        .client
        .put(format!("{}/v1/containers/web/draft", app.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(doc)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `GET /v1/container.js` with optional extra query and headers: status, headers, body.
async fn script(
    app: &TestApp,
    query: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = app.client.get(format!(
        "{}/v1/container.js?key={BROWSER_KEY}{query}",
        app.url
    ));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    (status, h, resp.text().await.unwrap_or_default())
}

/// The runtime settings the served script carries.
fn served_config(body: &str) -> Value {
    let start = body
        .rfind("})(window, document, ")
        .unwrap_or_else(|| panic!("no runtime in {body}"))
        + "})(window, document, ".len();
    let end = body.rfind(");").expect("end");
    serde_json::from_str(&body[start..end]).expect("config JSON")
}

#[tokio::test]
async fn publish_is_refused_on_lint_errors_versions_stay_as_published_and_rollback_copies() {
    let app = TestApp::start().await;
    // Nothing yet: no draft, no version, and pages get an empty script.
    assert_eq!(app.admin_get("/v1/containers/web/draft").await.0, 404);
    let (status, _, body) = script(&app, "", &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains("no container version is published"), "{body}");

    // A purchase on the thank-you page view without an order ID: saved, but not publishable.
    let mut bad = good("Purchase");
    bad["tags"]["purchase"]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("order_id");
    bad["tags"]["purchase"]
        .as_object_mut()
        .unwrap()
        .remove("event_id");
    let (status, saved) = put_draft(&app, &bad).await;
    assert_eq!(status, 200, "{saved}");
    assert!(
        saved["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "purchase_without_order_id"),
        "{saved}"
    );
    let (status, refused) = app
        .admin_post("/v1/containers/web/publish", &json!({"note": "bad"}))
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["code"], "lint_failed");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("every reload of the page would count it again"),
        "{refused}"
    );
    assert_eq!(
        app.admin_get("/v1/containers/web/versions").await.1["versions"],
        json!([])
    );

    // The fixed draft publishes as version 1.
    assert_eq!(put_draft(&app, &good("Lead")).await.0, 200);
    let (status, v1) = app
        .admin_post("/v1/containers/web/publish", &json!({"note": "first"}))
        .await;
    assert_eq!(status, 200, "{v1}");
    assert_eq!(v1["version"]["version"], 1);
    // A Meta `Lead` next to a tally purchase: no tally event for it, a warning only.
    assert_eq!(v1["warnings"][0]["code"], "pixel_without_tally_event");
    let (_, headers, body) = script(&app, "", &[]).await;
    let config = served_config(&body);
    assert_eq!(config["version"], 1);
    assert_eq!(config["preview"], false);
    assert_eq!(config["order"], json!(["purchase", "meta"]));
    assert_eq!(config["actions"]["meta"], "lead");
    assert_eq!(headers["cache-control"], "no-cache");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let (status, _, empty) = script(&app, "", &[("if-none-match", &etag)]).await;
    assert_eq!((status, empty.as_str()), (304, ""));

    // Version 2; the diff named the change before it.
    assert_eq!(put_draft(&app, &good("Purchase")).await.0, 200);
    let (_, diff) = app.admin_get("/v1/containers/web/diff").await;
    assert_eq!(diff["live_version"], 1);
    assert_eq!(
        diff["text"], "~ tag meta\n    event: \"Lead\" -> \"Purchase\"\n",
        "{diff}"
    );
    let (_, v2) = app
        .admin_post(
            "/v1/containers/web/publish",
            &json!({"note": "meta purchase"}),
        )
        .await;
    assert_eq!(v2["version"]["version"], 2);
    assert_eq!(v2["warnings"], json!([]));
    let (status, _, body) = script(&app, "", &[("if-none-match", &etag)]).await;
    assert_eq!(status, 200, "a new version is a new ETag");
    assert_eq!(served_config(&body)["version"], 2);

    // Version 1 is as it was published.
    let (_, one) = app.admin_get("/v1/containers/web/versions/1").await;
    assert_eq!(one["document"]["tags"]["meta"]["event"], "Lead");
    assert_eq!(one["note"], "first");

    // Rollback to 1: a new version 3 with version 1's document; the draft is untouched.
    let (status, rolled) = app
        .admin_post("/v1/containers/web/rollback", &json!({"version": 1}))
        .await;
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["version"]["version"], 3);
    assert_eq!(rolled["version"]["copied_from"], 1);
    let config = served_config(&script(&app, "", &[]).await.2);
    assert_eq!(config["version"], 3);
    assert_eq!(config["document"]["tags"]["meta"]["event"], "Lead");
    let (_, list) = app.admin_get("/v1/containers/web/versions").await;
    assert_eq!(list["live"], 3);
    let numbers: Vec<&Value> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["version"])
        .collect();
    assert_eq!(numbers, [&json!(3), &json!(2), &json!(1)]);
    assert_eq!(
        app.admin_get("/v1/containers/web/draft").await.1["document"]["tags"]["meta"]["event"],
        "Purchase"
    );
    assert_eq!(
        app.admin_post("/v1/containers/web/rollback", &json!({"version": 9}))
            .await
            .0,
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn a_preview_token_serves_the_draft_and_a_forged_one_the_live_version() {
    let app = TestApp::start().await;
    assert_eq!(put_draft(&app, &good("Lead")).await.0, 200);
    app.admin_post("/v1/containers/web/publish", &json!({}))
        .await;
    assert_eq!(put_draft(&app, &good("Purchase")).await.0, 200);
    let (status, preview) = app
        .admin_post("/v1/containers/web/preview", &json!({"ttl_secs": 600}))
        .await;
    assert_eq!(status, 200, "{preview}");
    let token = preview["token"].as_str().unwrap().to_owned();
    assert_eq!(preview["query"], format!("tally_preview={token}"));

    let (_, headers, body) = script(&app, &format!("&preview={token}"), &[]).await;
    let config = served_config(&body);
    assert_eq!(config["preview"], true);
    assert_eq!(config["document"]["tags"]["meta"]["event"], "Purchase");
    assert_eq!(headers["cache-control"], "no-store");

    // A token with a changed signature: the live version, told to drop the token. (Flipping
    // the last hex digit always changes it; overwriting two digits with "00" left one token
    // in 256 as it was.)
    let last = if token.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &token[..token.len() - 1]);
    assert_ne!(forged, token);
    let (_, headers, body) = script(&app, &format!("&preview={forged}"), &[]).await;
    let config = served_config(&body);
    assert_eq!(config["preview"], false);
    assert_eq!(config["version"], 1);
    assert_eq!(config["previewError"], "the preview token is not valid");
    assert_eq!(headers["cache-control"], "no-store");
    // An unknown key gets no container.
    let resp = app
        .client
        .get(format!("{}/v1/container.js?key=pk_nope", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn the_container_api_needs_the_admin_token_a_browser_source_and_a_valid_document() {
    let app = TestApp::start().await;
    let endpoints = [
        ("GET", "/draft"),
        ("PUT", "/draft"),
        ("GET", "/diff"),
        ("POST", "/publish"),
        ("GET", "/versions"),
        ("GET", "/versions/1"),
        ("POST", "/rollback"),
        ("POST", "/preview"),
    ];
    for (method, path) in endpoints {
        for token in [None, Some(BROWSER_KEY), Some("wrong")] {
            let mut req = app.client.request(
                method.parse().unwrap(),
                format!("{}/v1/containers/web{path}", app.url),
            );
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.body("{not json").send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} with {token:?}");
        }
    }
    // A server source has no container; a document with unknown fields is refused.
    assert_eq!(
        app.admin_get("/v1/containers/backend/versions").await.0,
        404
    );
    let (status, answer) = put_draft(&app, &json!({"tags": {}, "macros": {}})).await;
    assert_eq!(status, 400);
    assert_eq!(answer["code"], "invalid_body");
    assert!(
        answer["message"].as_str().unwrap().contains("macros"),
        "{answer}"
    );
    app.stop().await;
}

// The CLI is run synchronously, so the app needs worker threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sets_diffs_publishes_lists_and_rolls_back() {
    let app = TestApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(tally_bin())
            .arg("container")
            .args(args)
            .args(["--url", &app.url])
            .env("TALLY_ADMIN_TOKEN", ADMIN_TOKEN)
            .env_remove("TALLY_CONFIG")
            .current_dir(dir.path())
            .output()
            .expect("tally runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let file = dir.path().join("container.json");
    std::fs::write(&file, good("Purchase").to_string()).unwrap();
    let file = file.to_str().unwrap();

    let (code, out, err) = run(&["draft", "set", file]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("draft of `web` saved"), "{out}");
    let (code, out, _) = run(&["diff"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("draft (nothing is published yet):\n+ variable order_id\n"),
        "{out}"
    );
    let (code, out, err) = run(&["publish", "--note", "first"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("published version 1 of `web`"), "{out}");

    // A draft with an undefined variable is saved, reported, and refused at publish (exit 1).
    let mut broken = good("Purchase");
    broken["tags"]["purchase"]["properties"]["value"] = json!("{{total}}");
    std::fs::write(dir.path().join("broken.json"), broken.to_string()).unwrap();
    let (code, out, _) = run(&["draft", "set", "broken.json"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error undefined_variable: tag `purchase` uses `{{total}}`"),
        "{out}"
    );
    let (code, out, _) = run(&["publish"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("not published: the draft has lint errors"),
        "{out}"
    );

    let (code, out, _) = run(&["draft", "get"]);
    assert_eq!(code, 0);
    let got: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got["tags"]["purchase"]["properties"]["value"], "{{total}}");

    std::fs::write(dir.path().join("container.json"), good("Lead").to_string()).unwrap();
    assert_eq!(run(&["draft", "set", "container.json"]).0, 0);
    assert_eq!(run(&["publish", "--note", "lead"]).0, 0);
    let (code, out, err) = run(&["rollback", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("version 3 of `web` is live: a copy of version 1"),
        "{out}"
    );
    let (_, out, _) = run(&["versions"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].trim_start().starts_with("3  ")
            && lines[0].ends_with("rollback to version 1 (copy of 1)  [live]"),
        "{out}"
    );
    assert!(lines[2].contains("first"), "{out}");
    let (code, out, _) = run(&["preview"]);
    assert_eq!(code, 0);
    assert!(out.contains("?tally_preview="), "{out}");
    app.stop().await;
}
