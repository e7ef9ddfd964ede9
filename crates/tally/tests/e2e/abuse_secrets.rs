//! Secrets never leak: a full run of the real binary with debug JSON logs, recognisable values
//! for every credential in the config, platforms that refuse (401, then 500) with bodies that
//! echo every header and the query string back, refused requests of every kind, and the CLI's
//! config check and start-up errors. Every log line, every HTTP body tally answered (errors,
//! ledger, dead letters, metrics) and every CLI output is then searched for every secret.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tally_testkit::{Captured, FakeDestination, Reply};

use crate::support::tally_bin;

const ADMIN_TOKEN: &str = "admintok-SECRET-a1b2c3d4e5f6";
const SERVER_KEY: &str = "sk_SECRET_server_q9w8e7r6";
const BROWSER_KEY: &str = "pk_SECRET_browser_z1x2c3v4";
const META_TOKEN: &str = "EAAB-SECRET-meta-7h6g5f4d";
const GOOGLE_ACCESS_TOKEN: &str = "ya29-SECRET-google-access-4r5t6y";
const GOOGLE_DEVELOPER_TOKEN: &str = "devtok-SECRET-google-8u7y6t";
const GA4_API_SECRET: &str = "ga4-SECRET-apisecret-2w3e4r";
const TIKTOK_TOKEN: &str = "tt-SECRET-access-6y7u8i9o";
const WEBHOOK_SECRET: &str = "whsec-SECRET-hmac-0o9i8u7y";
const WEBHOOK_HEADER: &str = "rcv-SECRET-header-5t4r3e2w";

const SECRETS: &[&str] = &[
    ADMIN_TOKEN,
    SERVER_KEY,
    BROWSER_KEY,
    META_TOKEN,
    GOOGLE_ACCESS_TOKEN,
    GOOGLE_DEVELOPER_TOKEN,
    GA4_API_SECRET,
    TIKTOK_TOKEN,
    WEBHOOK_SECRET,
    WEBHOOK_HEADER,
];

const WAIT: Duration = Duration::from_secs(30);

/// A platform that refuses everything, first with 401 then with 500, and echoes what it was
/// authenticated with (the query string, every header but the routine ones, any token-like
/// field of a JSON body) first in its answer, as some real APIs do in their error messages.
async fn echoing_platform() -> FakeDestination {
    let answered = Arc::new(AtomicUsize::new(0));
    FakeDestination::start_with(Arc::new(move |req: &Captured| {
        const ROUTINE: &[&str] = &[
            "host",
            "content-type",
            "content-length",
            "content-encoding",
            "accept",
            "accept-encoding",
            "user-agent",
            "x-tally-timestamp",
            "idempotency-key",
        ];
        let mut echo = vec![format!("query={}", req.query.as_deref().unwrap_or(""))];
        echo.extend(
            req.headers
                .iter()
                .filter(|(k, _)| !ROUTINE.contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("?"))),
        );
        if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&req.body) {
            echo.extend(
                body.iter()
                    .filter(|(k, _)| k.contains("token") || k.contains("secret"))
                    .map(|(k, v)| format!("{k}={v}")),
            );
        }
        let status = if answered.fetch_add(1, Ordering::SeqCst) == 0 {
            401
        } else {
            500
        };
        let body = json!({"error": {"message": format!("invalid credentials: {}", echo.join(" ")), "code": 190}});
        Reply::json(status, body.to_string())
    }))
    .await
}

struct Platforms {
    meta: FakeDestination,
    google: FakeDestination,
    ga4: FakeDestination,
    tiktok: FakeDestination,
    hook: FakeDestination,
}

fn config_toml(p: &Platforms, data_dir: &Path) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
data_dir = "{data_dir}"
admin_token = "${{TALLY_ADMIN_TOKEN}}"

[log]
level = "debug"
format = "json"

[delivery]
join_window_secs = 0
idle_poll_ms = 20

[[sources]]
name = "web"
kind = "browser"
key = "{BROWSER_KEY}"
allowed_origins = ["https://shop.example"]

[[sources]]
name = "backend"
kind = "server"
key = "{SERVER_KEY}"

[[destinations]]
name = "meta"
kind = "meta_capi"
pixel_id = "1234567890"
access_token = "${{META_ACCESS_TOKEN}}"
endpoint = "{meta}"
require_test_conversion = false

[[destinations]]
name = "google"
kind = "google_ads"
api = "upload_click_conversions"
customer_id = "123-456-7890"
conversion_action_id = "987654321"
access_token = "{GOOGLE_ACCESS_TOKEN}"
developer_token = "{GOOGLE_DEVELOPER_TOKEN}"
endpoint = "{google}"
require_test_conversion = false

[[destinations]]
name = "ga4"
kind = "ga4"
measurement_id = "G-ABC123"
api_secret = "{GA4_API_SECRET}"
endpoint = "{ga4}"
require_test_conversion = false

[[destinations]]
name = "tiktok"
kind = "tiktok"
pixel_code = "CABC123"
access_token = "{TIKTOK_TOKEN}"
endpoint = "{tiktok}"
require_test_conversion = false

[[destinations]]
name = "hook"
kind = "webhook"
url = "{hook}/tally"
secret = "{WEBHOOK_SECRET}"
headers = {{ Authorization = "Bearer {WEBHOOK_HEADER}" }}
allow_private_networks = true
require_test_conversion = false
"#,
        data_dir = data_dir.display(),
        meta = p.meta.url(),
        google = p.google.url(),
        ga4 = p.ga4.url(),
        tiktok = p.tiktok.url(),
        hook = p.hook.url(),
    )
}

/// Runs `tally` with `args` and the secrets' environment; returns exit code and all output.
fn run_cli(config: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(tally_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .env("TALLY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("META_ACCESS_TOKEN", META_TOKEN)
        .env("RUST_LOG", "debug")
        .output()
        .expect("run tally");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(config: &Path, log: &Path) -> Served {
    let mut child = Command::new(tally_bin())
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("TALLY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("META_ACCESS_TOKEN", META_TOKEN)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(log).expect("log file")))
        .spawn()
        .expect("spawn tally");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listen line");
    let url = line
        .trim()
        .strip_prefix("tally listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    Served { child, url }
}

/// Every answer tally gave, for the scan.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    async fn call(
        &mut self,
        client: &reqwest::Client,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> (u16, Value) {
        let _ = client;
        let resp = req.send().await.expect(what);
        let status = resp.status().as_u16();
        let headers = format!("{:?}", resp.headers());
        let text = resp.text().await.unwrap_or_default();
        self.0.push((format!("{what} ({status}) headers"), headers));
        self.0.push((format!("{what} ({status})"), text.clone()));
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn purchase(event_id: &str, order_id: &str) -> Value {
    json!({
        "event": "purchase", "event_id": event_id,
        "user": {"email": "jane.doe@example.com", "phone": "+1 650 555 1212",
                 "anonymous_id": "anon-secret-test", "ip": "203.0.113.9",
                 "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
                 "click_ids": {"gclid": "Cj0KCQiA-secret-test"}},
        "properties": {"value": "129.90", "currency": "EUR", "order_id": order_id},
        "page": {"url": "https://shop.example/thanks"},
        "consent": {"ad_storage": "granted", "analytics_storage": "granted",
                    "ad_user_data": "granted", "ad_personalization": "granted"}
    })
}

async fn wait_for_attempts(
    seen: &mut Seen,
    client: &reqwest::Client,
    url: &str,
    event_id: &str,
    destinations: &[&str],
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, ledger) = seen
            .call(
                client,
                "ledger",
                client
                    .get(format!("{url}/v1/ledger/{event_id}"))
                    .bearer_auth(ADMIN_TOKEN),
            )
            .await;
        let done = destinations.iter().all(|name| {
            ledger["events"][0]["deliveries"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| {
                    d["destination"] == *name
                        && d["attempts"].as_array().is_some_and(|a| !a.is_empty())
                })
        });
        if done {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every destination tried {event_id}: {ledger}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn no_secret_appears_in_logs_answers_or_cli_output() {
    let platforms = Platforms {
        meta: echoing_platform().await,
        google: echoing_platform().await,
        ga4: echoing_platform().await,
        tiktok: echoing_platform().await,
        hook: echoing_platform().await,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tally.toml");
    std::fs::write(&config, config_toml(&platforms, &dir.path().join("data"))).expect("config");
    let log = dir.path().join("tally.log");
    let mut outputs: Vec<(String, String)> = Vec::new();

    let (code, text) = run_cli(&config, &["config", "check"]);
    assert_eq!(code, 0, "{text}");
    outputs.push(("config check".into(), text));

    let served = serve(&config, &log);
    let url = served.url.clone();
    let client = reqwest::Client::new();
    let mut seen = Seen::default();

    // The happy path into every destination, which all refuse.
    let (status, body) = seen
        .call(
            &client,
            "server purchase",
            client
                .post(format!("{url}/v1/events"))
                .bearer_auth(SERVER_KEY)
                .json(&purchase("secret-1", "S1")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut browser = purchase("secret-1", "S1");
    browser["key"] = json!(BROWSER_KEY);
    seen.call(
        &client,
        "browser copy",
        client
            .post(format!("{url}/v1/collect"))
            .header("origin", "https://shop.example")
            .body(browser.to_string()),
    )
    .await;
    let all = ["meta", "google", "ga4", "tiktok", "hook"];
    wait_for_attempts(&mut seen, &client, &url, "secret-1", &all).await;
    // A second event meets the 500s.
    seen.call(
        &client,
        "segment purchase",
        client
            .post(format!("{url}/v1/track"))
            .basic_auth(SERVER_KEY, Some(""))
            .json(
                &json!({"type": "track", "event": "Order Completed", "messageId": "secret-2",
                "anonymousId": "anon-2", "context": {"traits": {"email": "x@example.com"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64)", "ip": "203.0.113.9",
                    "page": {"url": "https://shop.example/thanks"}},
                "properties": {"value": "5.00", "currency": "EUR", "order_id": "S2",
                    "gclid": "Cj0KCQiA-secret-2"}}),
            ),
    )
    .await;
    wait_for_attempts(&mut seen, &client, &url, "secret-2", &all).await;

    // Refused requests of every kind, each presenting a real secret where it does not belong.
    let refused: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "wrong server key",
            client
                .post(format!("{url}/v1/events"))
                .bearer_auth(format!("{SERVER_KEY}x"))
                .json(&purchase("r-1", "R1")),
        ),
        (
            "browser key on the server door",
            client
                .post(format!("{url}/v1/events"))
                .bearer_auth(BROWSER_KEY)
                .json(&purchase("r-2", "R2")),
        ),
        (
            "admin token as a source key",
            client
                .post(format!("{url}/v1/events"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&purchase("r-3", "R3")),
        ),
        (
            "server key on the admin API",
            client
                .get(format!("{url}/v1/deliveries"))
                .bearer_auth(SERVER_KEY),
        ),
        (
            "almost the admin token",
            client
                .get(format!("{url}/v1/ledger/secret-1"))
                .bearer_auth(&ADMIN_TOKEN[1..]),
        ),
        (
            "admin token as a Segment write key",
            client
                .post(format!("{url}/v1/track"))
                .basic_auth(ADMIN_TOKEN, Some(SERVER_KEY))
                .json(&json!({"type": "track", "event": "x"})),
        ),
        (
            "server key on the browser door",
            client
                .post(format!("{url}/v1/collect?k={SERVER_KEY}"))
                .header("origin", "https://shop.example")
                .body(json!({"event": "add_to_cart"}).to_string()),
        ),
        (
            "browser key revoking consent",
            client
                .post(format!("{url}/v1/consent/revoke"))
                .bearer_auth(BROWSER_KEY)
                .json(&json!({"anonymous_id": "anon-2"})),
        ),
        (
            "bad JSON with a good key",
            client
                .post(format!("{url}/v1/events"))
                .bearer_auth(SERVER_KEY)
                .body("{\"event\": "),
        ),
    ];
    for (what, req) in refused {
        let (status, body) = seen.call(&client, what, req).await;
        assert!((400..500).contains(&status), "{what}: {status} {body}");
        assert!(body["code"].is_string(), "{what}: {body}");
    }
    // What an operator reads.
    for path in [
        "/v1/ledger/secret-1",
        "/v1/ledger/secret-2",
        "/v1/deliveries?state=dead",
        "/v1/deliveries?state=needs_fix",
        "/v1/deliveries?state=pending",
        "/v1/destinations",
        "/v1/quarantine?status=all",
        "/v1/stats/dedup",
    ] {
        let (status, _) = seen
            .call(
                &client,
                path,
                client.get(format!("{url}{path}")).bearer_auth(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, 200, "{path}");
    }
    seen.call(&client, "metrics", client.get(format!("{url}/metrics")))
        .await;
    // Every platform was asked, and echoed the request in its refusal.
    for (name, fake) in [
        ("meta", &platforms.meta),
        ("google", &platforms.google),
        ("ga4", &platforms.ga4),
        ("tiktok", &platforms.tiktok),
        ("hook", &platforms.hook),
    ] {
        assert!(
            fake.request_count() >= 1,
            "{name} got {} requests",
            fake.request_count()
        );
    }

    let (code, text) = run_cli(&config, &["ledger", "secret-1"]);
    outputs.push((format!("ledger ({code})"), text));
    drop(served);

    // Start-up and config errors: a broken destination, an unusable data dir.
    let broken = dir.path().join("broken.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &broken,
        text.replace("pixel_id = \"1234567890\"", "pixel_id = \"not-a-pixel\"")
            .replace("measurement_id = \"G-ABC123\"", "measurement_id = \"nope\"")
            .replace(
                "allow_private_networks = true",
                "allow_private_networks = false",
            ),
    )
    .expect("broken config");
    let (code, text) = run_cli(&broken, &["config", "check"]);
    assert_eq!(code, 1, "{text}");
    outputs.push(("config check (broken)".into(), text));
    let (code, text) = run_cli(&broken, &["serve"]);
    assert_eq!(code, 2, "{text}");
    outputs.push(("serve (broken)".into(), text));
    let blocked = dir.path().join("blocked.toml");
    let file_as_dir = dir.path().join("not-a-dir");
    std::fs::write(&file_as_dir, "").expect("file");
    std::fs::write(
        &blocked,
        text_with_data_dir(
            &std::fs::read_to_string(&config).expect("config"),
            &file_as_dir,
        ),
    )
    .expect("blocked config");
    let (code, text) = run_cli(&blocked, &["serve"]);
    assert_eq!(code, 2, "{text}");
    outputs.push(("serve (no data dir)".into(), text));

    // The scan.
    let logs = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = logs.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("\"level\":\"DEBUG\"")),
        "debug logs were captured"
    );
    assert!(
        lines.iter().any(|l| l.contains("Delivery stopped.")),
        "the refusals were logged"
    );
    for line in &lines {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
    }
    let mut leaks = Vec::new();
    for secret in SECRETS {
        for (i, line) in lines.iter().enumerate() {
            if line.contains(secret) {
                leaks.push(format!("log line {}: {line}", i + 1));
            }
        }
        for (what, body) in seen.0.iter().chain(outputs.iter()) {
            if body.contains(secret) {
                leaks.push(format!("{what}: {body}"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

fn text_with_data_dir(config: &str, data_dir: &Path) -> String {
    config
        .lines()
        .map(|l| {
            if l.starts_with("data_dir = ") {
                format!("data_dir = \"{}\"", data_dir.display())
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
