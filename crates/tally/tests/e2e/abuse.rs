//! Abuse end to end: slow and oversized clients, CORS, which key opens which door, and the
//! admin token. Raw TCP where a well-behaved HTTP client cannot misbehave enough; every wait is
//! bounded and waits for a condition (a closed connection, an answer), never a fixed sleep.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tally_core::clock::SystemClock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::support::{ADMIN_TOKEN, BROWSER_KEY, SERVER_KEY, TestApp, purchase};

/// The header read timeout the slow-client tests run with.
const SHORT_HEADER_TIMEOUT: Duration = Duration::from_millis(300);
/// Upper bound for anything that should happen at once or soon after a timeout.
const BOUND: Duration = Duration::from_secs(10);

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.url.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the server closes the connection (EOF or reset); returns what it sent, or
/// `None` when it was still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    timeout(within, read_all).await.ok().map(|()| got)
}

/// Whether the server still holds the connection open (nothing to read, no EOF).
fn still_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

async fn short_timeout_app() -> TestApp {
    TestApp::start_with(
        &format!(
            "[http]\nheader_read_timeout_ms = {}\n",
            SHORT_HEADER_TIMEOUT.as_millis()
        ),
        Arc::new(SystemClock),
    )
    .await
}

/// A normal request through a fresh client must be answered at once.
async fn healthy(app: &TestApp) {
    let resp = timeout(
        BOUND,
        reqwest::Client::new()
            .get(format!("{}/healthz", app.url))
            .send(),
    )
    .await
    .expect("a normal request is answered while slow clients hang")
    .expect("request");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn many_slow_clients_do_not_keep_a_normal_request_out() {
    // The default 10 s timeout: the slow connections are all still held when the normal
    // request is answered, so it is served beside them, not after they were dropped.
    let app = TestApp::start().await;
    let mut slow = Vec::new();
    for i in 0..300 {
        let mut stream = connect(&app).await;
        if i % 2 == 0 {
            // Half send the start of a request and never finish its headers.
            stream
                .write_all(b"POST /v1/events HTTP/1.1\r\nHost: tally\r\nX-Slow: ")
                .await
                .expect("write");
        }
        slow.push(stream);
    }
    let started = Instant::now();
    healthy(&app).await;
    let (status, body) = timeout(BOUND, app.post("/v1/events", &purchase("loris-1", "L1")))
        .await
        .expect("an event is accepted while slow clients hang");
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let open = slow.iter().filter(|s| still_open(s)).count();
    assert_eq!(open, slow.len(), "the slow connections were still held");
    // Graceful shutdown lets a half-sent request finish until the header read timeout; this
    // test is not about shutdown, so the slow clients leave first.
    drop(slow);
    app.stop().await;
}

#[tokio::test]
async fn unfinished_headers_are_cut_off_after_the_header_read_timeout() {
    let app = short_timeout_app().await;
    let started = Instant::now();
    let mut silent = connect(&app).await;
    let mut partial = connect(&app).await;
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tally\r\nX-Slow: a")
        .await
        .expect("write");
    for (name, stream) in [("silent", &mut silent), ("partial", &mut partial)] {
        let answer = closed_within(stream, BOUND)
            .await
            .unwrap_or_else(|| panic!("the {name} connection is still open after {BOUND:?}"));
        assert!(
            started.elapsed() >= SHORT_HEADER_TIMEOUT,
            "{name} closed before the timeout"
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{name}: {text}"
        );
    }
    healthy(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_header_sent_one_byte_at_a_time_does_not_extend_the_timeout() {
    let app = short_timeout_app().await;
    // Before connecting: the server's timer cannot start earlier than this.
    let started = Instant::now();
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tally\r\nX-Slow: ")
        .await
        .expect("write");
    let (mut reader, mut writer) = stream.into_split();
    // The client keeps trickling a byte every 20 ms (pacing the attack, not waiting for the
    // server); each byte would reset a per-read timeout, but not a per-header one.
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if writer.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let closed = timeout(BOUND, async {
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    trickle.abort();
    assert!(
        closed.is_ok(),
        "a trickling client kept its connection for {BOUND:?}"
    );
    assert!(started.elapsed() >= SHORT_HEADER_TIMEOUT);
    healthy(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let app = short_timeout_app().await;
    let mut stream = connect(&app).await;
    // Before the request: the server's timer for the next one cannot start earlier than this.
    let asked = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tally\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    timeout(BOUND, async {
        while !String::from_utf8_lossy(&answer).ends_with("ok\n") {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before answering");
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("answered");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    closed_within(&mut stream, BOUND)
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(asked.elapsed() >= SHORT_HEADER_TIMEOUT);
    app.stop().await;
}

/// Sends raw `head` (a request line and headers) and returns the server's answer up to close.
#[tokio::test]
async fn a_body_trickled_one_byte_at_a_time_is_answered_408_after_the_body_timeout() {
    let body_timeout = Duration::from_millis(300);
    let app = TestApp::start_with(
        &format!(
            "[ingest]\nbody_read_timeout_ms = {}\n",
            body_timeout.as_millis()
        ),
        Arc::new(SystemClock),
    )
    .await;
    let started = Instant::now();
    let stream = connect(&app).await;
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: tally\r\nAuthorization: Bearer {SERVER_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.expect("write");
    // Complete headers, then a body byte every 20 ms: each byte would reset a per-read timeout.
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let answer = timeout(BOUND, async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("body_timeout") {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await;
    trickle.abort();
    let answer =
        answer.unwrap_or_else(|_| panic!("a trickled body was still read after {BOUND:?}"));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(started.elapsed() >= body_timeout);
    healthy(&app).await;
    app.stop().await;
}

async fn send_head(app: &TestApp, head: &[u8]) -> String {
    let mut stream = connect(app).await;
    // The server may answer and close before it has read everything: a failed write is fine,
    // the answer (or the close) is what counts.
    let _ = stream.write_all(head).await;
    let answer = closed_within(&mut stream, BOUND)
        .await
        .unwrap_or_else(|| panic!("the connection is still open after {BOUND:?}"));
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn oversized_headers_are_refused_and_the_server_carries_on() {
    let app = TestApp::start().await;
    let huge_value = "a".repeat(1024 * 1024);
    let one_huge = format!(
        "POST /v1/events HTTP/1.1\r\nHost: tally\r\nAuthorization: Bearer {SERVER_KEY}\r\nX-Big: {huge_value}\r\n\r\n"
    );
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many_small = format!(
        "POST /v1/events HTTP/1.1\r\nHost: tally\r\nAuthorization: Bearer {SERVER_KEY}\r\n{many}\r\n"
    );
    let huge_uri = format!(
        "GET /v1/ledger/{} HTTP/1.1\r\nHost: tally\r\n\r\n",
        "x".repeat(1024 * 1024)
    );
    for (name, head) in [
        ("one huge header", one_huge),
        ("500 headers", many_small),
        ("a 1 MiB path", huge_uri),
    ] {
        let answer = send_head(&app, head.as_bytes()).await;
        assert!(
            answer.is_empty()
                || answer.starts_with("HTTP/1.1 431")
                || answer.starts_with("HTTP/1.1 414")
                || answer.starts_with("HTTP/1.1 400"),
            "{name}: {}",
            answer.lines().next().unwrap_or("")
        );
        assert!(!answer.starts_with("HTTP/1.1 2"), "{name} was served");
    }
    healthy(&app).await;
    let (status, _) = app.post("/v1/events", &purchase("after-big-1", "B1")).await;
    assert_eq!(status, 200);
    app.stop().await;
}

const WEB_KEY: &str = "pk_web_abuse_0001";
const PARTNER_KEY: &str = "pk_partner_abuse_0001";
const SHOP: &str = "https://shop.example";
const PARTNER: &str = "https://partner.example";

/// Two browser sources with their own origins, and one server source.
async fn two_browser_sources_app() -> TestApp {
    TestApp::start_with(
        &format!(
            r#"
[[sources]]
name = "web"
kind = "browser"
key = "{WEB_KEY}"
allowed_origins = ["{SHOP}"]

[[sources]]
name = "partner"
kind = "browser"
key = "{PARTNER_KEY}"
allowed_origins = ["{PARTNER}"]

[[sources]]
name = "backend"
kind = "server"
key = "{SERVER_KEY}"
"#
        ),
        Arc::new(SystemClock),
    )
    .await
}

fn allow_origin(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap_or("(not text)").to_owned())
}

async fn preflight(app: &TestApp, path: &str, origin: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}{path}", app.url))
        .header("access-control-request-method", "POST");
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    req.send().await.expect("preflight")
}

async fn collect_from(app: &TestApp, origin: &str, body: String) -> reqwest::Response {
    app.client
        .post(format!("{}/v1/collect", app.url))
        .header("origin", origin)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .expect("collect")
}

fn browser_event(key: &str, event_id: &str) -> String {
    json!({"key": key, "event": "add_to_cart", "event_id": event_id}).to_string()
}

async fn ledger_status(app: &TestApp, event_id: &str) -> u16 {
    app.admin_get(&format!("/v1/ledger/{event_id}")).await.0
}

#[tokio::test]
async fn cors_preflight_allows_exactly_the_configured_origins() {
    let app = two_browser_sources_app().await;
    for origin in [SHOP, PARTNER] {
        let resp = preflight(&app, "/v1/collect", Some(origin)).await;
        assert_eq!(resp.status(), 204, "{origin}");
        assert_eq!(allow_origin(&resp).as_deref(), Some(origin));
        assert_eq!(resp.headers()["vary"], "Origin");
    }
    for origin in [
        None,
        Some("https://evil.example"),
        Some("https://shop.example.evil.example"),
        Some("https://evil-shop.example"),
        Some("http://shop.example"),
        Some("https://shop.example:8443"),
        Some("null"),
        Some("*"),
    ] {
        let resp = preflight(&app, "/v1/collect", origin).await;
        assert_eq!(resp.status(), 403, "{origin:?}");
        assert_eq!(allow_origin(&resp), None, "{origin:?}");
        let body: Value = resp.json().await.expect("json error body");
        assert_eq!(body["code"], "origin_not_allowed", "{origin:?}");
    }
    // Only the browser door speaks CORS.
    for path in ["/v1/events", "/v1/ledger/x", "/v1/track"] {
        let resp = preflight(&app, path, Some(SHOP)).await;
        assert_eq!(allow_origin(&resp), None, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_browser_key_is_answered_with_cors_only_from_its_own_origins() {
    let app = two_browser_sources_app().await;
    let resp = collect_from(&app, SHOP, browser_event(WEB_KEY, "cors-ok")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(allow_origin(&resp).as_deref(), Some(SHOP));
    assert_eq!(ledger_status(&app, "cors-ok").await, 200);

    // Another browser source's origin, and an origin nobody allows: refused, unreadable for
    // the page, nothing stored.
    for (origin, event_id) in [
        (PARTNER, "cors-partner"),
        ("https://evil.example", "cors-evil"),
    ] {
        let resp = collect_from(&app, origin, browser_event(WEB_KEY, event_id)).await;
        assert_eq!(resp.status(), 403, "{origin}");
        assert_eq!(allow_origin(&resp), None, "{origin}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["code"], "origin_not_allowed");
        assert_eq!(ledger_status(&app, event_id).await, 404, "{origin}");
    }
    // The partner key from its own origin works.
    let resp = collect_from(&app, PARTNER, browser_event(PARTNER_KEY, "cors-p-ok")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(allow_origin(&resp).as_deref(), Some(PARTNER));

    // Before a key is known, an allowed origin may read the error; another may not.
    let resp = collect_from(&app, SHOP, "{not json".into()).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(allow_origin(&resp).as_deref(), Some(SHOP));
    let resp = collect_from(&app, "https://evil.example", "{not json".into()).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(allow_origin(&resp), None);

    // The server door never answers with CORS headers, whatever the origin.
    let resp = app
        .client
        .post(format!("{}/v1/events", app.url))
        .bearer_auth(SERVER_KEY)
        .header("origin", SHOP)
        .json(&purchase("cors-server", "C1"))
        .send()
        .await
        .expect("events");
    assert_eq!(resp.status(), 200);
    assert_eq!(allow_origin(&resp), None);
    app.stop().await;
}

/// Every admin endpoint, with a method, a path and (for POSTs) a valid body.
const ADMIN_ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/v1/ledger/some-event"),
    ("GET", "/v1/quarantine"),
    ("POST", "/v1/quarantine/replay"),
    ("GET", "/v1/stats/dedup"),
    ("GET", "/v1/destinations"),
    ("POST", "/v1/destinations/nowhere/live"),
    ("GET", "/v1/deliveries"),
    ("POST", "/v1/deliveries/replay"),
    ("POST", "/v1/erase"),
];

async fn admin_call(
    app: &TestApp,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> (u16, Option<String>, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = app.client.request(method, format!("{}{path}", app.url));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let resp = req.send().await.expect("admin call");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    (status, content_type, resp.text().await.unwrap_or_default())
}

/// A 401 with exactly the documented `{"code", "message"}` body.
fn assert_documented_401(
    what: &str,
    status: u16,
    content_type: Option<String>,
    body: &str,
    code: &str,
) {
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(content_type.as_deref(), Some("application/json"), "{what}");
    let body: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{what}: {body}"));
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["code", "message"], "{what}");
    assert_eq!(body["code"], code, "{what}");
}

#[tokio::test]
async fn admin_endpoints_refuse_everything_but_the_admin_token() {
    let app = TestApp::start().await;
    let mut off_by_one = ADMIN_TOKEN.to_owned();
    off_by_one.pop();
    off_by_one.push('X');
    let basic = reqwest::Client::new()
        .get("http://tally")
        .basic_auth("admin", Some(ADMIN_TOKEN))
        .build()
        .expect("request")
        .headers()["authorization"]
        .to_str()
        .expect("text")
        .to_owned();
    let wrong: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some(format!("Bearer {off_by_one}")),
        Some(format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1])),
        Some(format!("Bearer {ADMIN_TOKEN}0")),
        Some(format!("Bearer {}", ADMIN_TOKEN.to_uppercase())),
        Some(format!("Token {ADMIN_TOKEN}")),
        Some(ADMIN_TOKEN.to_owned()),
        Some(basic),
        Some(format!("Bearer {SERVER_KEY}")),
        Some(format!("Bearer {BROWSER_KEY}")),
    ];
    for (method, path) in ADMIN_ENDPOINTS {
        let body = (*method == "POST").then_some("{}");
        for auth in &wrong {
            let (status, content_type, text) =
                admin_call(&app, method, path, auth.as_deref(), body).await;
            let what = format!("{method} {path} with {auth:?}");
            assert_documented_401(&what, status, content_type, &text, "unauthorized");
            assert!(
                !text.contains(ADMIN_TOKEN) && !text.contains(&off_by_one),
                "{what}: {text}"
            );
        }
        // The token in the query string is not a credential either.
        let with_query = if path.contains('?') {
            format!("{path}&token={ADMIN_TOKEN}")
        } else {
            format!("{path}?token={ADMIN_TOKEN}")
        };
        let (status, _, _) = admin_call(&app, method, &with_query, None, body).await;
        assert_eq!(status, 401, "{method} {with_query}");
        // The right token opens it (404/400 are the endpoint's own answers, past the door).
        let (status, _, text) = admin_call(
            &app,
            method,
            path,
            Some(&format!("Bearer {ADMIN_TOKEN}")),
            body,
        )
        .await;
        assert!(
            status != 401 && status != 403,
            "{method} {path}: {status} {text}"
        );
        let (status, _, text) = admin_call(
            &app,
            method,
            path,
            Some(&format!("bearer   {ADMIN_TOKEN}")),
            body,
        )
        .await;
        assert!(
            status != 401,
            "the scheme is case-insensitive: {method} {path}: {text}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn admin_endpoints_check_the_token_before_reading_query_or_body() {
    let app = TestApp::start().await;
    for (method, path) in ADMIN_ENDPOINTS {
        let bad_query = format!("{path}?colour=blue&limit=lots");
        let body = (*method == "POST").then_some("{\"colour\": ");
        let (status, content_type, text) = admin_call(&app, method, &bad_query, None, body).await;
        let what = format!("{method} {bad_query} without a token");
        assert_documented_401(&what, status, content_type, &text, "unauthorized");
        // With the token the same request is a documented 400, not a plain-text rejection.
        let (status, content_type, text) = admin_call(
            &app,
            method,
            &bad_query,
            Some(&format!("Bearer {ADMIN_TOKEN}")),
            body,
        )
        .await;
        if path.starts_with("/v1/ledger") || path.ends_with("/live") || *path == "/v1/destinations"
        {
            // No query parameters: unknown ones are ignored; the body is still read.
            if body.is_none() {
                continue;
            }
        }
        assert_eq!(status, 400, "{method} {bad_query} with the token: {text}");
        assert_eq!(content_type.as_deref(), Some("application/json"), "{text}");
        let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
        assert!(
            parsed["code"].is_string() && parsed["message"].is_string(),
            "{text}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn without_an_admin_token_configured_no_credential_opens_the_admin_api() {
    let app = TestApp::start_with("admin_token = \"\"\n", Arc::new(SystemClock)).await;
    for (method, path) in ADMIN_ENDPOINTS {
        let body = (*method == "POST").then_some("{}");
        for auth in [
            None,
            Some("Bearer ".to_owned()),
            Some(format!("Bearer {ADMIN_TOKEN}")),
            Some(format!("Bearer {SERVER_KEY}")),
        ] {
            let (status, content_type, text) =
                admin_call(&app, method, path, auth.as_deref(), body).await;
            let what = format!("{method} {path} with {auth:?}");
            assert_documented_401(&what, status, content_type, &text, "admin_disabled");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_browser_key_opens_neither_the_server_door_nor_revocation_and_a_server_key_not_the_browser_door()
 {
    let app = two_browser_sources_app().await;
    let event = purchase("scope-1", "S1");
    // A browser key as a bearer on the server door.
    let (status, body) = app
        .post_raw(
            "/v1/events",
            event.to_string().into_bytes(),
            &[
                ("authorization", &format!("Bearer {WEB_KEY}")),
                ("origin", SHOP),
            ],
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("wrong_key_kind"))
    );
    // A browser key in the body or the query of the server door is no credential at all.
    let mut with_key = event.clone();
    with_key["key"] = json!(WEB_KEY);
    let (status, body) = app
        .post_raw(
            &format!("/v1/events?k={WEB_KEY}"),
            with_key.to_string().into_bytes(),
            &[],
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("missing_key")));
    assert_eq!(ledger_status(&app, "scope-1").await, 404, "nothing stored");

    // A browser key cannot revoke consent (it is public; revocation cancels deliveries).
    let (status, body) = app
        .post_raw(
            "/v1/consent/revoke",
            json!({"anonymous_id": "a-1"}).to_string().into_bytes(),
            &[("authorization", &format!("Bearer {WEB_KEY}"))],
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("wrong_key_kind"))
    );

    // A server key is secret: the browser door refuses it even from an allowed origin.
    let resp = collect_from(&app, SHOP, browser_event(SERVER_KEY, "scope-2")).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "wrong_key_kind");
    assert_eq!(ledger_status(&app, "scope-2").await, 404, "nothing stored");
    app.stop().await;
}
