//! `tally test-conversion`: a browser copy and a server copy of one synthetic purchase sent
//! through a running tally (the real doors, plan, dedup, merge, consent and dispatchers) in
//! each destination's test mode, then read back from the ledger: per destination, did it
//! arrive once, with the right value and currency, deduplicated, under which consent? A
//! destination that passes goes live (until then it receives only test events).

use std::io::Write;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tally_core::event::{Event, SourceKind};
use tally_store::{DeliveryRecord, DeliveryState, LedgerEntry};

use crate::config::{Config, DestinationDecl};

/// What to test and where.
#[derive(Clone, Debug)]
pub struct TestConversion {
    /// The running tally (`http://<listen>` by default).
    pub url: String,
    /// Only this destination (default: every destination that receives purchases).
    pub destination: Option<String>,
    /// How long to wait for the deliveries to settle.
    pub timeout: Duration,
}

/// The test purchase's value and currency.
const VALUE: &str = "12.34";
const CURRENCY: &str = "EUR";

/// Runs the test; writes the report to `out`; returns 0 when every destination passed.
///
/// # Errors
/// When tally cannot be reached or the config cannot run a test (no purchase event, no
/// browser or server source, no admin token).
pub async fn run(
    config: &Config,
    test: &TestConversion,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    let targets = targets(config, test.destination.as_deref())?;
    let admin = config
        .admin_token
        .as_ref()
        .context("test-conversion reads the ledger through the admin API: set admin_token")?;
    let browser = config
        .sources
        .iter()
        .find(|s| s.kind == SourceKind::Browser)
        .context("test-conversion needs a browser source ([[sources]] kind = \"browser\")")?;
    let server = config
        .sources
        .iter()
        .find(|s| s.kind == SourceKind::Server)
        .context("test-conversion needs a server source ([[sources]] kind = \"server\")")?;
    let origin = browser
        .allowed_origins
        .iter()
        .find(|o| *o != "*")
        .cloned()
        .unwrap_or_else(|| "https://tally-test-conversion.invalid".to_owned());

    // The browser door takes the user agent from the connection, as it would a browser's.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent("Mozilla/5.0 (compatible; tally-test-conversion)")
        .build()?;
    let base = test.url.trim_end_matches('/');
    client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("tally is not answering at {base}; is `tally serve` running?"))?;

    let id = format!("tally-test-{}", uuid::Uuid::new_v4().simple());
    let now_ms = chrono::Utc::now().timestamp_millis();
    let (browser_copy, server_copy) = copies(&id, now_ms);
    let mut browser_body = browser_copy;
    browser_body["key"] = json!(browser.key.expose());
    let browser_answer = client
        .post(format!("{base}/v1/collect"))
        .header("origin", &origin)
        .header("content-type", "text/plain")
        .body(browser_body.to_string())
        .send()
        .await
        .context("sending the browser copy")?;
    let browser_result = result_status(browser_answer).await?;
    let server_answer = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(server.key.expose())
        .json(&server_copy)
        .send()
        .await
        .context("sending the server copy")?;
    let server_result = result_status(server_answer).await?;
    writeln!(
        out,
        "test conversion {id}: purchase {VALUE} {CURRENCY}; browser copy {browser_result}, server copy {server_result}"
    )?;
    if browser_result != "accepted" || server_result != "duplicate" {
        writeln!(
            out,
            "FAIL: expected the browser copy accepted and the server copy merged into it as a duplicate"
        )?;
        return Ok(1);
    }

    let deadline = Instant::now() + test.timeout;
    let entry = loop {
        let entry = ledger(&client, base, admin.expose(), &id).await?;
        let settled = entry.as_ref().is_some_and(|e| {
            targets
                .iter()
                .all(|t| delivery(e, &t.name).is_some_and(|d| d.state != DeliveryState::Pending))
        });
        if settled || Instant::now() >= deadline {
            break entry;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let Some(entry) = entry else {
        writeln!(out, "FAIL: the event is not in the ledger")?;
        return Ok(1);
    };
    let mut failed = false;
    for target in &targets {
        let problems = judge(&entry, target);
        let d = delivery(&entry, &target.name);
        let consent = d
            .and_then(|d| d.attempts.last())
            .and_then(|a| a.consent.clone())
            .unwrap_or_else(|| "-".into());
        if problems.is_empty() {
            writeln!(
                out,
                "PASS {}: arrived once, value {VALUE} {CURRENCY}, deduplicated (2 copies → 1 delivery), consent {consent}",
                target.name
            )?;
            if target.route.require_test_conversion {
                go_live(&client, base, admin.expose(), &target.name, &id).await?;
                writeln!(
                    out,
                    "     {} is live: live events go out from now on",
                    target.name
                )?;
            }
        } else {
            failed = true;
            writeln!(out, "FAIL {}: {}", target.name, problems.join("; "))?;
            if let Some(a) = d.and_then(|d| d.attempts.last()) {
                writeln!(out, "     last attempt: {} {}", a.outcome, a.summary)?;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn targets<'a>(config: &'a Config, only: Option<&str>) -> anyhow::Result<Vec<&'a DestinationDecl>> {
    if config.plan.event("purchase").is_none() {
        bail!("test-conversion sends a `purchase`; add it to the tracking plan ([[events]])");
    }
    let receiving: Vec<&DestinationDecl> = config
        .destinations
        .iter()
        .filter(|d| d.route.platform_name("purchase").is_some())
        .collect();
    match only {
        Some(name) => match receiving.iter().find(|d| d.name == name) {
            Some(d) => Ok(vec![*d]),
            None if config.destinations.iter().any(|d| d.name == name) => {
                bail!("destination `{name}` does not receive purchases (see its `events`)")
            }
            None => bail!("no destination named `{name}`"),
        },
        None if receiving.is_empty() => bail!("no destination receives purchases"),
        None => Ok(receiving),
    }
}

/// The browser copy carries the click IDs, cookies and page; the server copy the customer
/// data and the authoritative value. Both share the event ID, as a page and its backend would.
fn copies(id: &str, now_ms: i64) -> (Value, Value) {
    let consent = json!({"ad_storage": "granted", "analytics_storage": "granted",
                         "ad_user_data": "granted", "ad_personalization": "granted"});
    let browser = json!({
        "event": "purchase", "event_id": id, "timestamp": now_ms, "test": true,
        "user": {"anonymous_id": format!("{id}-visitor"),
                 "click_ids": {"gclid": format!("{id}-gclid"), "fbclid": format!("{id}-fbclid"),
                               "fbp": format!("fb.1.{now_ms}.1234567890"),
                               "ttclid": format!("E.C.P.{id}"),
                               "ga_client_id": format!("1234567890.{}", now_ms / 1000),
                               "clicked_at": now_ms - 60_000}},
        "properties": {"value": VALUE, "currency": CURRENCY, "order_id": id},
        "page": {"url": "https://tally-test-conversion.invalid/thanks"},
        "consent": consent,
    });
    let server = json!({
        "event": "purchase", "event_id": id, "timestamp": now_ms, "test": true,
        "user": {"email": "test-conversion@tally.invalid", "phone": "+16505550100",
                 "external_id": format!("{id}-customer"),
                 "anonymous_id": format!("{id}-visitor"),
                 "user_agent": "tally test-conversion", "ip": "192.0.2.1"},
        "properties": {"value": VALUE, "currency": CURRENCY, "order_id": id},
        "consent": consent,
    });
    (browser, server)
}

async fn result_status(response: reqwest::Response) -> anyhow::Result<String> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("tally answered HTTP {status}: {body}");
    }
    let r = &body["results"][0];
    let mut text = r["status"].as_str().unwrap_or("unknown").to_owned();
    if let Some(code) = r["code"].as_str() {
        text.push_str(&format!(
            " ({code}: {})",
            r["message"].as_str().unwrap_or("")
        ));
    }
    Ok(text)
}

async fn ledger(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    id: &str,
) -> anyhow::Result<Option<LedgerEntry>> {
    let response = client
        .get(format!("{base}/v1/ledger/{id}"))
        .bearer_auth(admin)
        .send()
        .await
        .context("reading the ledger")?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !response.status().is_success() {
        bail!("the ledger answered HTTP {}", response.status());
    }
    let body: Value = response.json().await?;
    let mut entries: Vec<LedgerEntry> = serde_json::from_value(body["events"].clone())?;
    Ok(entries.pop())
}

async fn go_live(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    destination: &str,
    test_id: &str,
) -> anyhow::Result<()> {
    let response = client
        .post(format!("{base}/v1/destinations/{destination}/live"))
        .bearer_auth(admin)
        .json(&json!({"note": format!("test conversion {test_id} passed")}))
        .send()
        .await
        .context("declaring the destination live")?;
    if !response.status().is_success() {
        bail!(
            "declaring {destination} live answered HTTP {}",
            response.status()
        );
    }
    Ok(())
}

fn delivery<'a>(entry: &'a LedgerEntry, destination: &str) -> Option<&'a DeliveryRecord> {
    entry
        .deliveries
        .iter()
        .find(|d| d.destination == destination)
}

fn judge(entry: &LedgerEntry, target: &DestinationDecl) -> Vec<String> {
    let mut problems = Vec::new();
    let event: &Event = &entry.event;
    match delivery(entry, &target.name) {
        None => problems.push("no delivery was planned".into()),
        Some(d) => {
            let successes = d
                .attempts
                .iter()
                .filter(|a| a.outcome == "succeeded")
                .count();
            match d.state {
                DeliveryState::Delivered if successes == 1 => {}
                DeliveryState::Delivered => {
                    problems.push(format!("delivered with {successes} successful attempts"));
                }
                DeliveryState::Pending => problems.push(format!(
                    "not delivered in time (after {} attempt(s){})",
                    d.attempts.len(),
                    d.last_reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )),
                other => problems.push(format!(
                    "{}: {}",
                    other.as_str(),
                    d.last_reason.as_deref().unwrap_or("no reason recorded")
                )),
            }
        }
    }
    let expected = Decimal::from_str(VALUE).expect("constant");
    match target.route.value(event) {
        Some(v) if v == expected => {}
        Some(v) => problems.push(format!("value sent would be {v}, expected {VALUE}")),
        None => problems.push(format!(
            "no value would be sent (value property {:?})",
            target.route.value_properties.get("purchase")
        )),
    }
    if event.currency.map(|c| c.as_str().to_owned()).as_deref() != Some(CURRENCY) {
        problems.push(format!(
            "currency is {:?}, expected {CURRENCY}",
            event.currency
        ));
    }
    if entry.copies.len() != 2 {
        problems.push(format!(
            "expected 2 copies merged into one event, the ledger shows {}",
            entry.copies.len()
        ));
    }
    problems
}
