//! The `webhook` connector against the strict signature-checking fake receiver.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tally_core::event::Event;
use tally_core::retry::Disposition;
use tally_core::secret::Secret;
use tally_destinations::webhook::{self, Config, Connector};
use tally_destinations::{Destination, DestinationError, Outgoing};
use tally_testkit::fakes::webhook::{FakeWebhook, expected_signature};
use tally_testkit::{FakeDestination, Reply, events};

const SECRET: &str = "whsec-0123456789abcdef";

fn config(url: &str) -> Config {
    Config {
        url: url.into(),
        secret: Secret::new(SECRET),
        // The fake listens on loopback, which the guard refuses otherwise.
        allow_private_networks: true,
        headers: BTreeMap::new(),
        max_batch: webhook::DEFAULT_MAX_BATCH,
        timeout_secs: 5,
    }
}

fn client() -> reqwest::Client {
    tally_destinations::http::client(Duration::from_secs(5)).unwrap()
}

async fn setup_with(adjust: impl FnOnce(&mut Config)) -> (FakeWebhook, Connector) {
    let fake = FakeWebhook::start(SECRET).await;
    let mut config = config(&fake.url());
    adjust(&mut config);
    let connector = webhook::build("hooks", config, client()).unwrap();
    (fake, connector)
}

async fn setup() -> (FakeWebhook, Connector) {
    setup_with(|_| {}).await
}

fn live<'a>(event: &'a Event, name: &'a str) -> Outgoing<'a> {
    Outgoing {
        event,
        name,
        value: event.value,
        identifiers: true,
        test: false,
    }
}

fn header(request: &tally_testkit::Captured, name: &str) -> String {
    request.headers[name].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn events_arrive_signed_with_the_destinations_name_and_exact_value() {
    let (fake, connector) = setup().await;
    let event = events::purchase("evt-1");
    let results = connector.send(&[live(&event, "order_completed")]).await;
    assert_eq!(results[0].0, Disposition::Succeeded, "{:?}", results[0].1);
    assert_eq!(results[0].1.status, Some(200));

    let request = &fake.requests()[0];
    assert_eq!(request.path, "/hooks/tally");
    assert_eq!(header(request, "content-type"), "application/json");
    let timestamp = header(request, "x-tally-timestamp");
    let age = tally_core::timestamp::Timestamp::now().secs() - timestamp.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "signed just now: {age}");
    assert_eq!(
        header(request, "x-tally-signature"),
        expected_signature(SECRET, &timestamp, &request.body),
        "sha256=hex(HMAC-SHA256(secret, timestamp.body))"
    );
    let received = fake.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent["value"].to_string(), "129.90", "exact decimal");
    assert_eq!(sent["name"], "order_completed");
    assert_eq!(sent["event_id"], "evt-1");
    assert_eq!(sent["currency"], "EUR");
    assert_eq!(sent["properties"]["order_id"], "1001");
    assert_eq!(
        sent["delivery"],
        json!({"destination": "hooks", "test": false})
    );
    assert_eq!(
        sent["user"]["identity"]["email_sha256"],
        "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d",
        "sha256 of jane.doe@example.com, as stored"
    );
    let stored: Value = serde_json::to_value(&event).unwrap();
    for key in [
        "timestamp",
        "received_at",
        "source",
        "source_kind",
        "page",
        "consent",
    ] {
        assert_eq!(sent[key], stored[key], "{key} as tally stores it");
    }
}

#[tokio::test]
async fn a_tampered_body_or_a_wrong_secret_fails_verification() {
    let (fake, connector) = setup().await;
    let event = events::purchase("evt-1");
    connector.send(&[live(&event, "purchase")]).await;
    let original = fake.requests()[0].clone();

    let tampered = String::from_utf8(original.body.to_vec())
        .unwrap()
        .replace("129.90", "999.90");
    let mut resend = reqwest::Client::new().post(fake.url()).body(tampered);
    for name in [
        "content-type",
        "x-tally-timestamp",
        "x-tally-signature",
        "idempotency-key",
    ] {
        resend = resend.header(name, header(&original, name));
    }
    let status = resend.send().await.unwrap().status().as_u16();
    assert_eq!(status, 401, "the signature covers the body");

    let mut wrong = config(&fake.url());
    wrong.secret = Secret::new("not-the-receivers-secret");
    let wrong = webhook::build("hooks", wrong, client()).unwrap();
    let results = wrong.send(&[live(&event, "purchase")]).await;
    assert!(
        matches!(results[0].0, Disposition::NeedsFix { .. }),
        "{results:?}"
    );
    assert_eq!(results[0].1.status, Some(401));
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn the_idempotency_key_is_the_same_for_every_attempt_at_the_same_events() {
    let (fake, connector) = setup().await;
    let a = events::purchase("evt-a");
    let b = events::purchase("evt-b");
    fake.script([503]);
    let first = connector
        .send(&[live(&a, "purchase"), live(&b, "purchase")])
        .await;
    assert!(matches!(first[0].0, Disposition::Retry { .. }));
    let retry = connector
        .send(&[live(&a, "purchase"), live(&b, "purchase")])
        .await;
    assert_eq!(retry[0].0, Disposition::Succeeded);
    // A retry after a lost answer: the receiver recognises the key and does not record twice.
    connector
        .send(&[live(&a, "purchase"), live(&b, "purchase")])
        .await;
    connector.send(&[live(&a, "purchase")]).await;

    let keys: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| header(r, "idempotency-key"))
        .collect();
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[1], keys[2]);
    assert_ne!(keys[2], keys[3], "other events, other key");
    assert_eq!(fake.duplicates(), 1);
    let ids: Vec<Value> = fake
        .received()
        .iter()
        .map(|e| e["event_id"].clone())
        .collect();
    assert_eq!(ids, [json!("evt-a"), json!("evt-b"), json!("evt-a")]);
}

#[test]
fn private_targets_are_refused_when_building_unless_allowed() {
    for url in [
        "http://localhost:8080/hook",
        "http://127.0.0.1/hook",
        "http://[::1]:9000/hook",
        "http://10.0.0.5/hook",
        "http://172.20.1.1/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.1.1/hook",
        "http://[fe80::1]/hook",
        "http://[fd00::1]/hook",
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ] {
        let mut refused = config(url);
        refused.allow_private_networks = false;
        match webhook::build("hooks", refused, client()) {
            Err(DestinationError::Config { key, message }) => {
                assert_eq!(key, "url", "{url}");
                assert!(
                    message.contains("allow_private_networks = true"),
                    "{message}"
                );
            }
            Err(other) => panic!("{url}: {other}"),
            Ok(_) => panic!("{url} was accepted"),
        }
        assert!(
            webhook::build("hooks", config(url), client()).is_ok(),
            "{url} with the flag"
        );
    }
    let mut public = config("https://hooks.example.com/tally");
    public.allow_private_networks = false;
    assert!(webhook::build("hooks", public, client()).is_ok());
}

#[tokio::test]
async fn redirects_are_answered_needs_fix_and_never_followed() {
    let (fake, connector) = setup().await;
    let elsewhere = FakeDestination::start().await;
    let event = events::purchase("evt-1");
    for status in [301, 302, 307, 308] {
        fake.script_one(Reply::status(status).header("location", &elsewhere.url()));
        let results = connector.send(&[live(&event, "purchase")]).await;
        assert_eq!(
            results[0].0,
            Disposition::NeedsFix {
                reason: "webhook answered a redirect; redirects are not followed".into()
            },
            "{status}"
        );
        assert_eq!(results[0].1.status, Some(status));
    }
    assert_eq!(elsewhere.request_count(), 0);
}

#[tokio::test]
async fn without_identifiers_the_user_is_left_out() {
    let (fake, connector) = setup().await;
    let event = events::purchase("evt-1");
    let results = connector
        .send(&[Outgoing {
            identifiers: false,
            ..live(&event, "purchase")
        }])
        .await;
    assert_eq!(results[0].0, Disposition::Succeeded);
    let text = String::from_utf8(fake.requests()[0].body.to_vec()).unwrap();
    for personal in [
        "\"user\"",
        "86e0b9e5",
        "1e231c66",
        "cust-42",
        "a-7f3c",
        "203.0.113.9",
        "Mozilla",
        "Cj0KCQ-test-gclid",
        "fb.1.1763600000000",
        "1234567890.1763600000",
    ] {
        assert!(!text.contains(personal), "{personal} leaked: {text}");
    }
    assert_eq!(fake.received()[0]["properties"]["order_id"], "1001");
}

#[tokio::test]
async fn failures_are_classified_and_retry_after_is_honoured() {
    let (fake, connector) = setup().await;
    let event = events::purchase("evt-1");
    fake.script_one(Reply::status(503).retry_after(Duration::from_secs(30)));
    let results = connector.send(&[live(&event, "purchase")]).await;
    assert_eq!(
        results[0].0,
        Disposition::Retry {
            reason: "HTTP 503".into(),
            retry_after: Some(Duration::from_secs(30)),
            overloaded: false
        }
    );
    fake.script_one(Reply::status(429).retry_after(Duration::from_secs(5)));
    assert!(matches!(
        connector.send(&[live(&event, "purchase")]).await[0].0,
        Disposition::Retry {
            overloaded: true,
            retry_after: Some(d),
            ..
        } if d == Duration::from_secs(5)
    ));
    fake.script([410]);
    assert!(matches!(
        connector.send(&[live(&event, "purchase")]).await[0].0,
        Disposition::Dead { ref reason } if reason.contains("410")
    ));
    fake.script([403]);
    assert!(matches!(
        connector.send(&[live(&event, "purchase")]).await[0].0,
        Disposition::NeedsFix { .. }
    ));
    fake.script_one(Reply::json(422, r#"{"error":"unknown field"}"#));
    let (disposition, summary) = &connector.send(&[live(&event, "purchase")]).await[0];
    assert!(matches!(disposition, Disposition::Dead { .. }));
    assert_eq!(summary.text, r#"HTTP 422: {"error":"unknown field"}"#);
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn a_refused_connection_is_retried() {
    // A port nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hooks/tally");
    let connector = webhook::build("hooks", config(&url), client()).unwrap();
    let event = events::purchase("evt-1");
    let results = connector.send(&[live(&event, "purchase")]).await;
    assert!(
        matches!(
            results[0].0,
            Disposition::Retry {
                overloaded: true,
                ..
            }
        ),
        "{results:?}"
    );
}

#[tokio::test]
async fn batches_are_cut_at_max_batch_and_every_event_gets_the_requests_result() {
    let (fake, connector) = setup_with(|c| c.max_batch = 2).await;
    assert_eq!(connector.max_batch(), 2);
    let events: Vec<Event> = (0..5)
        .map(|i| events::purchase(&format!("evt-{i}")))
        .collect();
    let batch: Vec<Outgoing<'_>> = events.iter().map(|e| live(e, "purchase")).collect();
    fake.script([200, 500]);
    let results = connector.send(&batch).await;
    let outcomes: Vec<bool> = results
        .iter()
        .map(|(d, _)| *d == Disposition::Succeeded)
        .collect();
    assert_eq!(outcomes, [true, true, false, false, true]);
    let sizes: Vec<usize> = fake
        .requests()
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["events"]
                .as_array()
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(sizes, [2, 2, 1]);
}

#[tokio::test]
async fn test_events_say_so_and_static_headers_are_sent() {
    let (fake, connector) = setup_with(|c| {
        c.headers
            .insert("Authorization".into(), Secret::new("Bearer rcv-token"));
        c.headers.insert("X-Route".into(), Secret::new("eu"));
    })
    .await;
    let event = events::purchase("evt-1");
    connector
        .send(&[Outgoing {
            test: true,
            ..live(&event, "purchase")
        }])
        .await;
    let request = &fake.requests()[0];
    assert_eq!(header(request, "authorization"), "Bearer rcv-token");
    assert_eq!(header(request, "x-route"), "eu");
    assert_eq!(
        fake.received()[0]["delivery"],
        json!({"destination": "hooks", "test": true})
    );
}

#[test]
fn configuration_is_checked() {
    let parsed: Config = toml::from_str(
        r#"url = "https://hooks.example.com/tally"
           secret = "whsec-0123456789abcdef""#,
    )
    .unwrap();
    assert!(!parsed.allow_private_networks);
    assert_eq!(parsed.max_batch, 100);
    assert_eq!(parsed.timeout_secs, 10);
    assert!(parsed.headers.is_empty());
    assert!(
        toml::from_str::<Config>(
            r#"url = "https://hooks.example.com/tally"
               secret = "whsec-0123456789abcdef"
               retries = 3"#
        )
        .is_err(),
        "unknown keys are refused"
    );

    let key = |config: Config| match webhook::build("hooks", config, client()) {
        Err(DestinationError::Config { key, .. }) => key,
        Err(other) => panic!("{other}"),
        Ok(_) => "ok".into(),
    };
    let valid = || config("https://hooks.example.com/tally");
    assert_eq!(key(valid()), "ok");
    for bad in [
        "ftp://hooks.example.com/x",
        "hooks.example.com/x",
        "https://user:pass@hooks.example.com/x",
        "https://hooks.example.com/x#frag",
    ] {
        assert_eq!(key(config(bad)), "url", "{bad}");
    }
    let mut c = valid();
    c.secret = Secret::new("short");
    assert_eq!(key(c), "secret");
    let mut c = valid();
    c.max_batch = 0;
    assert_eq!(key(c), "max_batch");
    let mut c = valid();
    c.max_batch = webhook::MAX_BATCH + 1;
    assert_eq!(key(c), "max_batch");
    let mut c = valid();
    c.timeout_secs = 0;
    assert_eq!(key(c), "timeout_secs");
    for (name, value) in [
        ("X-Tally-Signature", "forged"),
        ("bad header", "x"),
        ("X-A", "a\nb"),
    ] {
        let mut c = valid();
        c.headers.insert(name.into(), Secret::new(value));
        assert_eq!(key(c), format!("headers.{name}"), "{name}");
    }
}
