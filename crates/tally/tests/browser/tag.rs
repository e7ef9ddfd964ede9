//! tally.js in the browser: what the demo shop's visitors send, as tally's ledger records it.

use std::time::Duration;

use serde_json::Value;

use crate::site::{SERVER_COOKIE_DAYS, Site};
use crate::webdriver::Browser;

/// Bound for one thing to happen in the browser or the ledger.
const WITHIN: Duration = Duration::from_secs(30);
/// Bound for an event to come out of tally.js's retry backoff after tally returns.
const RETRY_WITHIN: Duration = Duration::from_secs(90);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Milliseconds of an RFC 3339 time from the ledger.
fn ms(v: &Value) -> i64 {
    let text = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp_millis()
}

async fn wait_for_tag(browser: &Browser) {
    browser
        .wait_for(
            "tally.js loaded",
            WITHIN,
            "return !!(window.tally && window.tally.loaded)",
        )
        .await;
}

/// Everything the page can read back from its own storage: cookies, localStorage,
/// sessionStorage.
async fn stored_by_page(browser: &Browser) -> String {
    let from_page = browser
        .run(
            "var out = [document.cookie];
             [localStorage, sessionStorage].forEach(function (s) {
               for (var i = 0; i < s.length; i++) out.push(s.key(i) + '=' + s.getItem(s.key(i)));
             });
             return out.join('\\n');",
        )
        .await;
    let cookies = browser.cookies().await;
    format!(
        "{}\n{}",
        from_page.as_str().unwrap_or_default(),
        Value::Array(cookies)
    )
}

async fn cookie(browser: &Browser, name: &str) -> Option<Value> {
    browser
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == name)
}

/// The page's stored queue holds `event_id` and tally.js has tried to send it.
fn queued_and_tried(event_id: &str) -> String {
    format!(
        "var q = JSON.parse(localStorage.getItem('tally_queue') || '[]');
         return q.some(function (s) {{ return s.e.event_id === '{event_id}' && s.n >= 1; }});"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_arrives_once_with_click_ids_click_time_anonymous_id_page_and_consent() {
    let Some(site) = Site::open().await else {
        return;
    };
    let b = &site.browser;
    let before_click = now_ms();
    b.goto(&site.shop("/?gclid=G-CLICK-1&fbclid=FB-CLICK-1&utm_source=google&utm_campaign=spring"))
        .await;
    wait_for_tag(b).await;
    let landed = now_ms();
    b.run("acceptConsent()").await;
    for page in ["/product", "/cart", "/checkout", "/thanks?order=1001"] {
        b.goto(&site.shop(page)).await;
    }
    wait_for_tag(b).await;
    let anonymous_id = b.run("return tally('anonymousId')").await;

    let ledger = site
        .wait_for_ledger("ord-1001-purchase", WITHIN, |_| true)
        .await;
    let event = &ledger["events"][0]["event"];
    assert_eq!(event["name"], "purchase", "{ledger}");
    assert_eq!(event["properties"]["order_id"], "1001");
    assert_eq!(event["currency"], "EUR");
    assert_eq!(event["page"]["url"], site.shop("/thanks?order=1001"));
    assert_eq!(event["user"]["anonymous_id"], anonymous_id);
    for signal in ["ad_storage", "ad_user_data", "ad_personalization"] {
        assert_eq!(event["consent"][signal], "granted", "{signal}: {event}");
    }
    assert_eq!(event["consent"]["analytics_storage"], "granted");
    // identify() on the checkout page tied the visitor to the shop's customer ID.
    assert_eq!(
        event["user"]["identity"]["external_id"], "cust-42",
        "{event}"
    );
    // The landing's campaign travels with the visitor's later events.
    assert_eq!(event["properties"]["utm_source"], "google");
    assert_eq!(event["properties"]["utm_campaign"], "spring");

    // The click IDs came from the landing URL four pages earlier, with the time of the click
    // (the landing's navigation), not the time of the purchase.
    let clicks = &event["user"]["click_ids"];
    assert_eq!(clicks["gclid"], "G-CLICK-1", "{event}");
    assert_eq!(clicks["fbclid"], "FB-CLICK-1");
    let clicked_at = ms(&clicks["clicked_at"]);
    assert!(
        (before_click..=landed).contains(&clicked_at),
        "click time {clicked_at} is not the landing ({before_click}..={landed})"
    );
    assert!(ms(&event["timestamp"]) > landed, "{event}");
    let fbc = format!("fb.1.{clicked_at}.FB-CLICK-1");
    assert_eq!(clicks["fbc"], fbc.as_str());
    let fbp = clicks["fbp"].as_str().unwrap_or_else(|| panic!("{clicks}"));
    let parts: Vec<&str> = fbp.split('.').collect();
    assert!(
        parts.len() == 4
            && parts[..2] == ["fb", "1"]
            && parts[2].len() == 13
            && parts[3].len() == 10
            && parts[2..]
                .iter()
                .all(|p| p.bytes().all(|c| c.is_ascii_digit())),
        "fbp {fbp} is not fb.1.<ms>.<random>"
    );

    // With ad consent granted, Meta's cookies hold the same values.
    assert_eq!(cookie(b, "_fbc").await.unwrap()["value"], fbc.as_str());
    assert_eq!(cookie(b, "_fbp").await.unwrap()["value"], fbp);
    // The anonymous-ID cookie is the site's (Domain=example.com), last renewed by tally's own
    // answer: its lifetime is the collector's, not the script's 395 days.
    let renewed = now_ms() / 1000 + (SERVER_COOKIE_DAYS as i64 + 1) * 86_400;
    let deadline = std::time::Instant::now() + WITHIN;
    let tally_id = loop {
        let c = cookie(b, "tally_id").await.expect("tally_id cookie");
        if c["expiry"].as_i64().is_some_and(|e| e <= renewed) {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tally never renewed the cookie: {c}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(tally_id["value"], anonymous_id);
    assert_eq!(tally_id["domain"], ".example.com");
    assert_eq!(tally_id["sameSite"], "Lax");
    assert!(tally_id["expiry"].as_i64().unwrap() > now_ms() / 1000 + 199 * 86_400);

    // identify()'s email went to tally (which hashes it), never into the browser's storage.
    let stored = stored_by_page(b).await.to_ascii_lowercase();
    assert!(!stored.contains("jane.doe"), "{stored}");

    // A reload of the thank-you page sends the purchase again under the same event ID: tally
    // records the copy and keeps one conversion.
    b.refresh().await;
    let ledger = site
        .wait_for_ledger("ord-1001-purchase", WITHIN, |l| {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_pixels_get_the_event_id_of_the_tally_event() {
    let Some(site) = Site::open().await else {
        return;
    };
    let b = &site.browser;
    // A generated event ID (add_to_cart has none from the page) and a page-given one.
    for (page, expected) in [
        ("/cart", None),
        ("/thanks?order=77", Some("ord-77-purchase")),
    ] {
        b.goto(&site.shop(page)).await;
        wait_for_tag(b).await;
        let event_id = b.run("return tally('eventId')").await;
        let event_id = event_id.as_str().expect("an event ID").to_owned();
        if let Some(expected) = expected {
            assert_eq!(event_id, expected);
        }
        let pixels = b.run("return pixels").await;
        let calls = pixels.as_array().expect("pixel calls");
        assert_eq!(calls.len(), 3, "{pixels}");
        let fbq = calls.iter().find(|c| c[0] == "fbq").expect("fbq");
        let gtag = calls.iter().find(|c| c[0] == "gtag").expect("gtag");
        let ttq = calls.iter().find(|c| c[0] == "ttq").expect("ttq");
        assert_eq!(fbq[4]["eventID"], event_id.as_str(), "{pixels}");
        assert_eq!(gtag[3]["event_id"], event_id.as_str(), "{pixels}");
        assert_eq!(ttq[3]["event_id"], event_id.as_str(), "{pixels}");
        let event = site.wait_for_event(&event_id, WITHIN).await;
        assert_eq!(event["event_id"], event_id.as_str());
        assert_eq!(
            event["name"],
            fbq[2].as_str().map(platform_to_tally).unwrap()
        );
    }
}

fn platform_to_tally(meta_name: &str) -> &'static str {
    match meta_name {
        "AddToCart" => "add_to_cart",
        "Purchase" => "purchase",
        other => panic!("unexpected pixel event {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_while_tally_is_down_arrive_after_it_returns() {
    let Some(mut site) = Site::open().await else {
        return;
    };
    site.browser.goto(&site.shop("/?gclid=G-DOWN-3")).await;
    wait_for_tag(&site.browser).await;
    site.browser.run("acceptConsent()").await;

    site.stop_tally().await;
    // The purchase fails to send and waits in localStorage, retried with backoff.
    site.browser.goto(&site.shop("/thanks?order=2002")).await;
    site.browser
        .wait_for(
            "the purchase queued after a failed send",
            WITHIN,
            &queued_and_tried("ord-2002-purchase"),
        )
        .await;
    // The next page (its tally.js from the browser cache, since tally is down) takes the
    // stored queue over.
    site.browser.goto(&site.shop("/product")).await;
    wait_for_tag(&site.browser).await;

    site.start_tally().await;
    let ledger = site
        .wait_for_ledger("ord-2002-purchase", RETRY_WITHIN, |_| true)
        .await;
    let entry = &ledger["events"][0];
    assert_eq!(entry["event"]["name"], "purchase");
    assert_eq!(
        entry["event"]["page"]["url"],
        site.shop("/thanks?order=2002")
    );
    assert_eq!(entry["event"]["user"]["click_ids"]["gclid"], "G-DOWN-3");
    assert_eq!(entry["copies"].as_array().unwrap().len(), 1, "{ledger}");
    // Once answered, nothing is left to send.
    site.browser
        .wait_for(
            "an empty queue",
            WITHIN,
            "return localStorage.getItem('tally_queue') === null",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_left_right_after_track_still_delivers() {
    let Some(site) = Site::open().await else {
        return;
    };
    let b = &site.browser;
    b.goto(&site.shop("/")).await;
    wait_for_tag(b).await;
    // The visitor leaves for another site (no tally there) in the same task as the call.
    b.run(&format!(
        "tally('track', 'begin_checkout', {{value: 10, currency: 'EUR'}}, {{event_id: 'leave-1'}});
         location.href = '{}';",
        site.away()
    ))
    .await;
    b.wait_for(
        "the other site",
        WITHIN,
        "return location.hostname === 'away.example.net'",
    )
    .await;
    let event = site.wait_for_event("leave-1", WITHIN).await;
    assert_eq!(event["name"], "begin_checkout");
    assert_eq!(event["page"]["url"], site.shop("/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ad_consent_denied_no_click_id_is_stored_and_events_carry_the_denied_state() {
    let Some(mut site) = Site::open().await else {
        return;
    };
    // A first visit puts tally.js in the browser cache, then tally goes down so the landing's
    // event has to wait in storage, where it can be inspected.
    site.browser.goto(&site.shop("/product")).await;
    wait_for_tag(&site.browser).await;
    site.stop_tally().await;

    site.browser
        .goto(&site.shop("/?gclid=G-DENIED-5&fbclid=FB-DENIED-5"))
        .await;
    wait_for_tag(&site.browser).await;
    let event_id = site.browser.run("return tally('eventId')").await;
    let event_id = event_id.as_str().expect("page_view's event ID").to_owned();
    site.browser
        .wait_for("the page view queued", WITHIN, &queued_and_tried(&event_id))
        .await;
    let no_ad_identifiers = |stored: &str| {
        for needle in [
            "G-DENIED-5",
            "FB-DENIED-5",
            "fb.1.",
            "_fbp",
            "_fbc",
            "tally_landing",
        ] {
            assert!(
                !stored.contains(needle),
                "`{needle}` was stored without ad consent:\n{stored}"
            );
        }
    };
    no_ad_identifiers(&stored_by_page(&site.browser).await);

    // tally returns; the event, held in the page's memory with its click IDs, goes out with
    // the denied state for the collector to apply per destination.
    site.start_tally().await;
    let event = site.wait_for_event(&event_id, RETRY_WITHIN).await;
    assert_eq!(event["name"], "page_view");
    for signal in ["ad_storage", "ad_user_data", "ad_personalization"] {
        assert_eq!(event["consent"][signal], "denied", "{signal}: {event}");
    }
    let clicks = &event["user"]["click_ids"];
    assert_eq!(clicks["gclid"], "G-DENIED-5", "{event}");
    let fbc = format!("fb.1.{}.FB-DENIED-5", ms(&clicks["clicked_at"]));
    assert_eq!(clicks["fbc"], fbc.as_str());
    assert!(
        clicks.get("fbp").is_none(),
        "no browser ID is made up: {event}"
    );
    site.browser
        .wait_for(
            "an empty queue",
            WITHIN,
            "return localStorage.getItem('tally_queue') === null",
        )
        .await;
    no_ad_identifiers(&stored_by_page(&site.browser).await);

    // The visitor accepts: now the click is kept for later pages, in Meta's cookie too.
    site.browser.run("acceptConsent()").await;
    site.browser
        .wait_for(
            "the click stored",
            WITHIN,
            "return (localStorage.getItem('tally_landing') || '').indexOf('G-DENIED-5') >= 0",
        )
        .await;
    assert_eq!(
        cookie(&site.browser, "_fbc").await.expect("_fbc")["value"],
        fbc.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_collector_refuses_with_a_4xx_is_not_retried() {
    let Some(site) = Site::open().await else {
        return;
    };
    let b = &site.browser;
    b.goto(&site.shop("/wrong-key")).await;
    wait_for_tag(b).await;
    // The 401 answer ends the event: nothing is left queued for a retry (a 5xx or a network
    // failure would leave it stored with its next attempt time).
    b.wait_for(
        "the refused event dropped",
        WITHIN,
        "return tally('eventId') !== null && localStorage.getItem('tally_queue') === null",
    )
    .await;
    let refused = "tally_collector_requests_total{door=\"collect\",status=\"401\"} 1";
    let metrics = site.metrics().await;
    assert!(metrics.contains(refused), "{metrics}");
    let event_id = b.run("return tally('eventId')").await;
    assert!(site.ledger(event_id.as_str().unwrap()).await.is_none());
}
