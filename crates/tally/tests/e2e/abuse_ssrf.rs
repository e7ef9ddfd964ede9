//! SSRF: webhook destinations never reach private, loopback or link-local addresses, whether
//! the URL names them literally (in any spelling the URL parser accepts), through a name that
//! resolves there, or through a redirect.
//!
//! The fakes listen on loopback, which the guard refuses; tests that need to reach one set the
//! webhook's `allow_private_networks` escape hatch, and the name-resolution tests give the
//! guard their own lookup table instead of DNS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tally::config::{self, Overrides};
use tally_core::clock::SystemClock;
use tally_core::retry::Disposition;
use tally_core::secret::Secret;
use tally_destinations::webhook::{self, guard};
use tally_destinations::{Destination, Outgoing};
use tally_testkit::fakes::webhook::FakeWebhook;
use tally_testkit::{FakeDestination, Reply, events};

use crate::support::{TestApp, purchase};

const SECRET: &str = "whsec-abuse-0123456789";
const WAIT: Duration = Duration::from_secs(20);

fn webhook_toml(url: &str, allow_private: bool) -> String {
    format!(
        r#"
[[destinations]]
name = "hook"
kind = "webhook"
url = "{url}"
secret = "{SECRET}"
allow_private_networks = {allow_private}
"#
    )
}

fn load(toml: &str) -> Result<config::Config, config::Problems> {
    config::load_from(
        Some(("test.toml", toml)),
        &BTreeMap::new(),
        &Overrides::default(),
    )
}

#[test]
fn literal_private_addresses_are_refused_in_every_spelling() {
    for url in [
        "http://127.0.0.1:9/hook",
        "http://127.1/hook",
        "http://127.0.0.1./hook",
        // Decimal, octal and hexadecimal forms of 127.0.0.1 (the WHATWG URL parser reads them).
        "http://2130706433/hook",
        "http://017700000001/hook",
        "http://0177.0.0.1/hook",
        "http://0x7f.0.0.1/hook",
        "http://0x7f000001/hook",
        "http://0/hook",
        "http://0.0.0.0/hook",
        "http://10.0.0.1/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[::]/hook",
        "http://[::1]/hook",
        "http://[0:0:0:0:0:0:0:1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:7f00:1]/hook",
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[64:ff9b::a9fe:a9fe]/hook",
        "http://localhost/hook",
        "http://LocalHost./hook",
        "http://tally.localhost/hook",
        // IDNA maps these to `localhost`, percent-decoding too.
        "http://\u{24db}\u{24de}\u{24d2}\u{24d0}\u{24db}\u{24d7}\u{24de}\u{24e2}\u{24e3}/hook",
        "http://%6c%6f%63%61%6c%68%6f%73%74/hook",
    ] {
        let problems = match load(&webhook_toml(url, false)) {
            Ok(_) => panic!("{url} was accepted"),
            Err(p) => p,
        };
        let url_problem = problems
            .0
            .iter()
            .find(|p| p.key == "destinations[0].url")
            .unwrap_or_else(|| panic!("{url}: {problems}"));
        assert!(
            url_problem.message.contains("private address"),
            "{url}: {url_problem}"
        );
        // The same URL loads with the escape hatch: the refusal was the guard's.
        load(&webhook_toml(url, true)).unwrap_or_else(|e| panic!("{url} with the flag: {e}"));
    }
    load(&webhook_toml("https://hooks.example.com/tally", false)).expect("a public name loads");
}

/// A lookup table for the guard: every name resolves to `answer`; asked names are recorded.
fn table(answer: Vec<SocketAddr>, asked: Arc<Mutex<Vec<String>>>) -> guard::PublicResolver {
    guard::PublicResolver::with_lookup(Arc::new(move |name| {
        asked.lock().expect("lock").push(name);
        let answer = answer.clone();
        Box::pin(async move { Ok(answer) })
    }))
}

fn outgoing(event: &tally_core::event::Event) -> Outgoing<'_> {
    Outgoing {
        event,
        name: "purchase",
        value: event.value,
        identifiers: true,
        test: false,
    }
}

#[tokio::test]
async fn a_name_that_resolves_to_a_private_address_is_refused_at_connect_time() {
    let fake = FakeWebhook::start(SECRET).await;
    let port = reqwest::Url::parse(&fake.url())
        .expect("url")
        .port()
        .expect("port");
    let loopback: SocketAddr = ([127, 0, 0, 1], port).into();
    let public: SocketAddr = "93.184.216.34:443".parse().expect("addr");
    let event = events::purchase("ssrf-dns-1");
    for answer in [
        vec![loopback],
        vec!["[::1]:0".parse().expect("addr")],
        vec!["10.0.0.5:0".parse().expect("addr")],
        vec!["169.254.169.254:80".parse().expect("addr")],
        vec!["[::ffff:127.0.0.1]:0".parse().expect("addr")],
        vec!["[fe80::1]:0".parse().expect("addr")],
        // One private answer among public ones is enough to refuse (a client may pick any).
        vec![public, loopback],
    ] {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let connector = webhook::build_with_resolver(
            "hook",
            webhook::Config {
                url: format!("http://hooks.example.test:{port}/hook"),
                secret: Secret::new(SECRET),
                allow_private_networks: false,
                headers: BTreeMap::new(),
                max_batch: 10,
                timeout_secs: 5,
            },
            tally_destinations::http::client(Duration::from_secs(5)).expect("client"),
            table(answer.clone(), asked.clone()),
        )
        .expect("a public-looking name builds");
        let results = connector.send(&[outgoing(&event)]).await;
        assert_eq!(
            results[0].0,
            Disposition::NeedsFix {
                reason: guard::REFUSED.into()
            },
            "{answer:?}"
        );
        assert_eq!(results[0].1.status, None, "{answer:?}: nothing was sent");
        assert_eq!(
            *asked.lock().expect("lock"),
            ["hooks.example.test"],
            "the guard asked its own resolver"
        );
    }
    assert_eq!(
        fake.requests().len(),
        0,
        "the loopback receiver was never reached"
    );
}

fn redirecting_app_config(hook_url: &str, meta_url: &str) -> String {
    format!(
        r#"
[delivery]
join_window_secs = 0
idle_poll_ms = 10

[[destinations]]
name = "hook"
kind = "webhook"
url = "{hook_url}/hook"
secret = "{SECRET}"
# The fakes are on loopback: only the escape hatch lets tally reach them at all.
allow_private_networks = true
require_test_conversion = false
events = {{ purchase = "purchase" }}

[[destinations]]
name = "meta"
kind = "meta_capi"
pixel_id = "1234567890"
access_token = "meta-abuse-token-1"
endpoint = "{meta_url}"
require_test_conversion = false
events = {{ purchase = "Purchase" }}
"#
    )
}

#[tokio::test]
async fn redirects_to_private_addresses_are_never_followed_by_any_connector() {
    let inside = FakeDestination::start().await;
    let hook = FakeDestination::start().await;
    let meta = FakeDestination::start().await;
    for (fake, target) in [
        (&hook, format!("{}/internal", inside.url())),
        (&meta, "http://169.254.169.254/latest/meta-data/".to_owned()),
    ] {
        for status in [301, 302, 303, 307, 308] {
            fake.script_one(Reply::status(status).header("location", &target));
        }
        fake.set_default(Reply::status(302).header("location", &target));
    }
    let app = TestApp::start_with(
        &redirecting_app_config(&hook.url(), &meta.url()),
        Arc::new(SystemClock),
    )
    .await;
    let mut event = purchase("ssrf-redirect-1", "R1");
    // Meta sends website events only with the browser's user agent and the page URL.
    event["user"]["user_agent"] = "Mozilla/5.0 (X11; Linux x86_64)".into();
    event["page"] = serde_json::json!({"url": "https://shop.example/thanks"});
    let (status, body) = app.post("/v1/events", &event).await;
    assert_eq!(status, 200, "{body}");
    let delivery = app
        .wait_for_delivery("ssrf-redirect-1", "hook", "needs_fix", WAIT)
        .await;
    assert!(
        delivery["last_reason"]
            .as_str()
            .is_some_and(|r| r.contains("redirect")),
        "{delivery}"
    );
    app.wait_for_delivery_where("ssrf-redirect-1", "meta", "an attempt", WAIT, |d| {
        d["attempts"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let (_, ledger) = app.admin_get("/v1/ledger/ssrf-redirect-1").await;
    assert!(
        hook.request_count() >= 1 && meta.request_count() >= 1,
        "{ledger}"
    );
    assert_eq!(inside.request_count(), 0, "a redirect was followed");
    let (_, ledger) = app.admin_get("/v1/ledger/ssrf-redirect-1").await;
    for d in ledger["events"][0]["deliveries"]
        .as_array()
        .expect("deliveries")
    {
        assert_ne!(d["state"], "delivered", "{d}");
    }
    app.stop().await;
}
