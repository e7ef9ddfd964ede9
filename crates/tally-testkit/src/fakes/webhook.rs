//! A strict fake webhook receiver that verifies tally's signatures.
//!
//! It serves `POST /hooks/tally` ([`FakeWebhook::url`]) and does what the `webhook` module
//! documentation asks of a receiver: `Content-Type: application/json` (else 415), an
//! `X-Tally-Timestamp` within 5 minutes of its clock and an `X-Tally-Signature` equal to
//! `sha256=` + hex HMAC-SHA256 of `"{timestamp}.{body}"` with its secret (else 401), an
//! `Idempotency-Key` and a body `{"events":[...]}` whose events each have a string `event_id`
//! and `name` and a `delivery` `{destination, test}` (else 400). A request whose key it has
//! already accepted is answered 200 again without recording its events twice.
//! Scripted replies ([`FakeWebhook::script`], [`FakeWebhook::script_one`]) come first.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tally_core::timestamp::Timestamp;

use crate::{Captured, FakeDestination, Reply};

/// The path the fake serves.
pub const PATH: &str = "/hooks/tally";

/// Largest accepted distance between `X-Tally-Timestamp` and the fake's clock.
pub const MAX_SKEW_SECS: i64 = 300;

struct State {
    secret: String,
    received: Vec<Value>,
    keys: HashSet<String>,
    duplicates: usize,
}

/// The fake receiver.
pub struct FakeWebhook {
    server: FakeDestination,
    state: Arc<Mutex<State>>,
}

impl FakeWebhook {
    /// Starts a receiver that verifies signatures with `secret`.
    ///
    /// # Panics
    /// When it cannot bind a loopback port.
    pub async fn start(secret: &str) -> FakeWebhook {
        let state = Arc::new(Mutex::new(State {
            secret: secret.to_owned(),
            received: Vec::new(),
            keys: HashSet::new(),
            duplicates: 0,
        }));
        let judged = state.clone();
        let server = FakeDestination::start_with(Arc::new(move |request: &Captured| {
            answer(&mut judged.lock().expect("lock"), request)
        }))
        .await;
        FakeWebhook { server, state }
    }

    /// The hook URL, `http://127.0.0.1:<port>/hooks/tally`.
    pub fn url(&self) -> String {
        format!("{}{PATH}", self.server.url())
    }

    /// Queues plain status answers that come before the fake's own judgement.
    pub fn script(&self, statuses: impl IntoIterator<Item = u16>) {
        self.server.script(statuses);
    }

    /// Queues one answer that comes before the fake's own judgement.
    pub fn script_one(&self, reply: Reply) {
        self.server.script_one(reply);
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Captured> {
        self.server.requests()
    }

    /// The events of every accepted request, in order (repeats of an accepted
    /// `Idempotency-Key` not included).
    pub fn received(&self) -> Vec<Value> {
        self.state.lock().expect("lock").received.clone()
    }

    /// How many requests repeated an already accepted `Idempotency-Key`.
    pub fn duplicates(&self) -> usize {
        self.state.lock().expect("lock").duplicates
    }
}

/// `sha256=` + lowercase hex HMAC-SHA256 of `"{timestamp}.{body}"` keyed with `secret`: what a
/// receiver expects in `X-Tally-Signature`.
pub fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn error(status: u16, message: &str) -> Reply {
    Reply::json(status, json!({ "error": message }).to_string())
}

fn header<'a>(request: &'a Captured, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

fn answer(state: &mut State, request: &Captured) -> Reply {
    if request.path != PATH {
        return error(404, "no such hook");
    }
    if request.method != axum::http::Method::POST {
        return error(405, "POST only");
    }
    let json_type = header(request, "content-type")
        .is_some_and(|t| t.split(';').next() == Some("application/json"));
    if !json_type {
        return error(415, "content-type must be application/json");
    }
    let Some(timestamp) = header(request, "x-tally-timestamp") else {
        return error(401, "missing X-Tally-Timestamp");
    };
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (Timestamp::now().secs() - t).abs() <= MAX_SKEW_SECS);
    if !fresh {
        return error(401, "X-Tally-Timestamp is not within 5 minutes");
    }
    if !signature_matches(&state.secret, timestamp, request) {
        return error(401, "invalid signature");
    }
    let Some(key) = header(request, "idempotency-key").filter(|k| !k.is_empty()) else {
        return error(400, "missing Idempotency-Key");
    };
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(_) => return error(400, "body is not JSON"),
    };
    let Some(events) = body.get("events").and_then(Value::as_array) else {
        return error(400, "body must be {\"events\": [...]}");
    };
    if let Some(problem) = events.iter().find_map(event_problem) {
        return error(400, &problem);
    }
    if !state.keys.insert(key.to_owned()) {
        state.duplicates += 1;
        return Reply::json(200, json!({"received": 0, "duplicate": true}).to_string());
    }
    state.received.extend(events.iter().cloned());
    Reply::json(200, json!({ "received": events.len() }).to_string())
}

/// Constant-time comparison of the signature header with the expected one.
fn signature_matches(secret: &str, timestamp: &str, request: &Captured) -> bool {
    let Some(hex_signature) =
        header(request, "x-tally-signature").and_then(|s| s.strip_prefix("sha256="))
    else {
        return false;
    };
    let Ok(signature) = hex::decode(hex_signature) else {
        return false;
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    mac.verify_slice(&signature).is_ok()
}

fn event_problem(event: &Value) -> Option<String> {
    for field in ["event_id", "name"] {
        if !event.get(field).is_some_and(Value::is_string) {
            return Some(format!("every event needs a string `{field}`"));
        }
    }
    let delivery = event.get("delivery");
    let well_formed = delivery
        .and_then(|d| d.get("destination"))
        .is_some_and(Value::is_string)
        && delivery
            .and_then(|d| d.get("test"))
            .is_some_and(Value::is_boolean);
    if !well_formed {
        return Some("every event needs `delivery` {destination, test}".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(fake: &FakeWebhook, timestamp: i64, body: &str, sign_with: &str) -> u16 {
        let timestamp = timestamp.to_string();
        reqwest::Client::new()
            .post(fake.url())
            .header("content-type", "application/json")
            .header("x-tally-timestamp", &timestamp)
            .header(
                "x-tally-signature",
                expected_signature(sign_with, &timestamp, body.as_bytes()),
            )
            .header("idempotency-key", "k1")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    const BODY: &str = r#"{"events":[{"event_id":"e1","name":"purchase","delivery":{"destination":"d","test":false}}]}"#;

    #[tokio::test]
    async fn accepts_a_fresh_correctly_signed_request_once_per_key() {
        let fake = FakeWebhook::start("secret-secret-123").await;
        let now = Timestamp::now().secs();
        assert_eq!(post(&fake, now, BODY, "secret-secret-123").await, 200);
        assert_eq!(post(&fake, now, BODY, "secret-secret-123").await, 200);
        assert_eq!(fake.received().len(), 1);
        assert_eq!(fake.duplicates(), 1);
    }

    #[tokio::test]
    async fn refuses_wrong_keys_stale_times_and_malformed_events() {
        let fake = FakeWebhook::start("secret-secret-123").await;
        let now = Timestamp::now().secs();
        assert_eq!(post(&fake, now, BODY, "another-secret-456").await, 401);
        assert_eq!(post(&fake, now - 301, BODY, "secret-secret-123").await, 401);
        assert_eq!(post(&fake, now + 301, BODY, "secret-secret-123").await, 401);
        assert_eq!(
            post(
                &fake,
                now,
                r#"{"events":[{"name":"x"}]}"#,
                "secret-secret-123"
            )
            .await,
            400
        );
        assert!(fake.received().is_empty());
    }
}
