//! The tag container in Chromium, on the plain shop (no hard-coded tags): a preview link runs
//! the draft in one browser only, with its panel; publish and rollback change what a fresh
//! browser runs; a click trigger fires a tally event and the stubbed `fbq` with one event ID;
//! a purchase tag on the thank-you page, keyed by the order, counts once over a reload.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::site::Site;
use crate::webdriver::Browser;

const WITHIN: Duration = Duration::from_secs(30);

/// Click on `#buy` sends a tally `add_to_cart` and a Meta `AddToCart`, labelled `label`.
fn cart_container(label: &str) -> Value {
    json!({
        "variables": {
            "label": {"type": "constant", "value": label},
            "button": {"type": "dom", "selector": "#buy"}
        },
        "triggers": {"buy": {"type": "click", "selector": "#buy", "path": {"starts_with": "/plain/"}}},
        "tags": {
            "cart": {"type": "tally", "triggers": ["buy"], "event": "add_to_cart",
                     "properties": {"label": "{{label}}", "button": "{{button}}", "value": 64.95, "currency": "EUR"}},
            "meta_cart": {"type": "meta_pixel", "triggers": ["buy"], "event": "AddToCart",
                          "properties": {"value": 64.95, "currency": "EUR"}}
        }
    })
}

async fn set_draft(site: &Site, doc: Value) {
    let (status, answer) = site
        .admin(Method::PUT, "/v1/containers/web/draft", Some(doc))
        .await;
    assert_eq!(status, 200, "{answer}");
}

async fn publish(site: &Site) -> u64 {
    let (status, answer) = site
        .admin(Method::POST, "/v1/containers/web/publish", Some(json!({})))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["version"]["version"].as_u64().unwrap()
}

/// Waits for the container runtime; returns `{version, preview}`.
async fn running(b: &Browser) -> Value {
    b.wait_for(
        "the container running",
        WITHIN,
        "return window.tallyContainer ? {version: tallyContainer.version, preview: tallyContainer.preview} : null",
    )
    .await
}

/// Clicks `#buy` and returns the event ID of the tally event it produced, checking that the
/// Meta stub got the same ID.
async fn click_buy(b: &Browser) -> String {
    b.run("window.pixels = []; document.querySelector('#buy span').click();")
        .await;
    let fired = b
        .wait_for(
            "the click's tags",
            WITHIN,
            "var f = pixels.filter(function (p) { return p[0] === 'fbq'; });
             return f.length ? {fbq: f, id: tally('eventId')} : null",
        )
        .await;
    let id = fired["id"].as_str().expect("a tally event ID").to_owned();
    let fbq = &fired["fbq"];
    assert_eq!(fbq.as_array().unwrap().len(), 1, "{fired}");
    assert_eq!(
        fbq[0],
        json!(["fbq", "track", "AddToCart", {"value": 64.95, "currency": "EUR"}, {"eventID": id}]),
        "{fired}"
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_runs_the_draft_in_one_browser_and_publish_and_rollback_reach_every_browser() {
    let Some(site) = Site::open().await else {
        return;
    };
    set_draft(&site, cart_container("v1")).await;
    assert_eq!(publish(&site).await, 1);
    set_draft(&site, cart_container("draft")).await;
    let (_, preview) = site
        .admin(Method::POST, "/v1/containers/web/preview", Some(json!({})))
        .await;
    let query = preview["query"].as_str().expect("preview query").to_owned();

    // The previewing browser runs the draft, with the panel, also on its next page.
    let a = &site.browser;
    a.goto(&site.shop(&format!("/plain/product?{query}"))).await;
    assert_eq!(running(a).await, json!({"version": null, "preview": true}));
    let id = click_buy(a).await;
    let event = site.wait_for_event(&id, WITHIN).await;
    assert_eq!(event["name"], "add_to_cart", "{event}");
    assert_eq!(event["properties"]["label"], "draft");
    assert_eq!(event["properties"]["button"], "Add to cart");
    let panel = a
        .wait_for(
            "the preview panel",
            WITHIN,
            "var p = document.getElementById('tally-preview'); return p && p.innerText",
        )
        .await;
    let panel = panel.as_str().unwrap();
    assert!(
        panel.contains("draft of web (this browser only)"),
        "{panel}"
    );
    assert!(panel.contains("trigger buy (click) matched"), "{panel}");
    assert!(
        panel.contains("tag cart: tally('track', 'add_to_cart'") && panel.contains(&id),
        "{panel}"
    );
    assert!(
        panel.contains(&format!("tag meta_cart: fbq('track', 'AddToCart', {{\"currency\":\"EUR\",\"value\":64.95}}, {{eventID: '{id}'}})")),
        "{panel}"
    );
    a.goto(&site.shop("/plain/product")).await;
    assert_eq!(running(a).await["preview"], true);

    // A fresh browser runs the live version, without a panel.
    let Some(b) = Browser::launch().await else {
        return;
    };
    b.goto(&site.shop("/plain/product")).await;
    assert_eq!(running(&b).await, json!({"version": 1, "preview": false}));
    assert_eq!(
        b.run("return !!document.getElementById('tally-preview')")
            .await,
        false
    );
    let id = click_buy(&b).await;
    let event = site.wait_for_event(&id, WITHIN).await;
    assert_eq!(event["properties"]["label"], "v1", "{event}");

    // Publishing the draft reaches that browser's next page; a rollback too.
    assert_eq!(publish(&site).await, 2);
    b.goto(&site.shop("/plain/product")).await;
    assert_eq!(running(&b).await, json!({"version": 2, "preview": false}));
    let id = click_buy(&b).await;
    assert_eq!(
        site.wait_for_event(&id, WITHIN).await["properties"]["label"],
        "draft"
    );
    let (status, rolled) = site
        .admin(
            Method::POST,
            "/v1/containers/web/rollback",
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, 200, "{rolled}");
    b.refresh().await;
    assert_eq!(running(&b).await, json!({"version": 3, "preview": false}));
    let id = click_buy(&b).await;
    assert_eq!(
        site.wait_for_event(&id, WITHIN).await["properties"]["label"],
        "v1"
    );

    // Ending the preview puts the first browser back on the live version.
    a.goto(&site.shop("/plain/product?tally_preview=off")).await;
    assert_eq!(running(a).await, json!({"version": 3, "preview": false}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_purchase_on_the_thank_you_page_counts_once_over_a_reload() {
    let Some(site) = Site::open().await else {
        return;
    };
    set_draft(
        &site,
        json!({
            "variables": {
                "order_id": {"type": "data_layer", "path": "ecommerce.transaction_id"},
                "value": {"type": "data_layer", "path": "ecommerce.value"},
                "currency": {"type": "data_layer", "path": "ecommerce.currency"}
            },
            "triggers": {"thanks": {"type": "page_view", "path": {"starts_with": "/plain/thanks"}}},
            "tags": {
                "purchase": {"type": "tally", "triggers": ["thanks"], "event": "purchase",
                             "properties": {"order_id": "{{order_id}}", "value": "{{value}}", "currency": "{{currency}}"},
                             "event_id": "ord-{{order_id}}-purchase"},
                "ga": {"type": "google_tag", "triggers": ["thanks"], "event": "purchase",
                       "properties": {"value": "{{value}}", "currency": "{{currency}}"}}
            }
        }),
    )
    .await;
    assert_eq!(publish(&site).await, 1);
    let b = &site.browser;
    b.goto(&site.shop("/plain/thanks?order=2001")).await;
    running(b).await;
    let gtag = b
        .wait_for(
            "the Google tag",
            WITHIN,
            "var g = pixels.filter(function (p) { return p[0] === 'gtag'; }); return g.length ? g : null",
        )
        .await;
    assert_eq!(
        gtag[0],
        json!(["gtag", "event", "purchase",
               {"value": 129.9, "currency": "EUR", "event_id": "ord-2001-purchase", "transaction_id": "ord-2001-purchase"}]),
        "{gtag}"
    );
    let event = site.wait_for_event("ord-2001-purchase", WITHIN).await;
    assert_eq!(event["properties"]["order_id"], "2001", "{event}");
    assert_eq!(event["currency"], "EUR");

    b.refresh().await;
    let ledger = site
        .wait_for_ledger("ord-2001-purchase", WITHIN, |l| {
            l["events"][0]["copies"]
                .as_array()
                .is_some_and(|c| c.len() == 2)
        })
        .await;
    assert_eq!(
        ledger["events"].as_array().unwrap().len(),
        1,
        "one conversion: {ledger}"
    );
    let copies = ledger["events"][0]["copies"].as_array().unwrap();
    assert_eq!(copies[0]["outcome"], "accepted");
    assert_ne!(copies[1]["outcome"], "accepted", "{ledger}");
}
