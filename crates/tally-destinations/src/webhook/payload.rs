//! Events → the webhook's signed JSON body and its headers' values.
//!
//! The body is `{"events":[...]}`: each event exactly as tally stores it (the canonical
//! [`Event`](tally_core::event::Event) serialised with serde), with `name` replaced by the
//! destination's name for it, `value` by the value chosen for this destination (absent when
//! none), and a `delivery` object `{"destination": <name>, "test": <bool>}`. Without
//! identifiers the whole `user` (hashed identity, anonymous ID, IP, user agent, click IDs) is
//! left out.
//!
//! Not here: HTTP, the address guard, reading answers.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tally_core::money;
use tally_core::secret::Secret;

use crate::Outgoing;

/// One event as the receiver gets it.
pub fn event_json(destination: &str, o: &Outgoing<'_>) -> Value {
    let mut fields = match serde_json::to_value(o.event) {
        Ok(Value::Object(fields)) => fields,
        // Serialising an `Event` cannot fail; an empty object would still carry the delivery.
        _ => Map::new(),
    };
    fields.insert("name".into(), Value::String(o.name.to_owned()));
    match o.value {
        Some(value) => {
            fields.insert("value".into(), money::value_to_json(&value));
        }
        None => {
            fields.remove("value");
        }
    }
    if !o.identifiers {
        fields.remove("user");
    }
    fields.insert(
        "delivery".into(),
        json!({"destination": destination, "test": o.test}),
    );
    Value::Object(fields)
}

/// The request body for `batch`.
pub fn body(destination: &str, batch: &[Outgoing<'_>]) -> Vec<u8> {
    let events: Vec<Value> = batch.iter().map(|o| event_json(destination, o)).collect();
    let mut body = Map::new();
    body.insert("events".into(), Value::Array(events));
    serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
}

/// `X-Tally-Signature`: `sha256=` and the lowercase hex HMAC-SHA256, keyed with `secret`, of
/// `"{timestamp}.{body}"`.
pub fn signature(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `Idempotency-Key`: the hex SHA-256 of the destination name and the batch's event IDs, one
/// per line. The same events to the same destination always get the same key, so a receiver
/// can drop a retry of a request it already processed.
pub fn idempotency_key(destination: &str, batch: &[Outgoing<'_>]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(destination.as_bytes());
    for o in batch {
        hasher.update(b"\n");
        hasher.update(o.event.event_id.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use tally_testkit::events;

    use super::*;

    fn outgoing(event: &tally_core::event::Event) -> Outgoing<'_> {
        Outgoing {
            event,
            name: "order_completed",
            value: event.value,
            identifiers: true,
            test: false,
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // `printf '%s' '1700000000.{}' | openssl dgst -sha256 -hmac key`
        let secret = Secret::new("key");
        let signed = signature(&secret, 1_700_000_000, b"{}");
        assert_eq!(
            signed,
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
        assert_ne!(signature(&secret, 1_700_000_001, b"{}"), signed);
        assert_ne!(
            signature(&Secret::new("other"), 1_700_000_000, b"{}"),
            signed
        );
    }

    #[test]
    fn events_keep_their_stored_shape_with_the_destinations_name_value_and_delivery() {
        let event = events::purchase("evt-1");
        let json = event_json("hooks", &outgoing(&event));
        assert_eq!(json["name"], "order_completed");
        assert_eq!(json["event_id"], "evt-1");
        assert_eq!(serde_json::to_string(&json["value"]).unwrap(), "129.90");
        assert_eq!(
            json["delivery"],
            json!({"destination": "hooks", "test": false})
        );
        assert_eq!(json["user"]["identity"]["external_id"], "cust-42");

        let stripped = event_json(
            "hooks",
            &Outgoing {
                identifiers: false,
                value: None,
                ..outgoing(&event)
            },
        );
        assert!(stripped.get("user").is_none());
        assert!(stripped.get("value").is_none());
        assert_eq!(stripped["currency"], "EUR");
    }

    #[test]
    fn the_idempotency_key_depends_on_the_events_and_destination_only() {
        let a = events::purchase("a");
        let b = events::purchase("b");
        let key = idempotency_key("hooks", &[outgoing(&a), outgoing(&b)]);
        assert_eq!(key, idempotency_key("hooks", &[outgoing(&a), outgoing(&b)]));
        assert_eq!(key.len(), 64);
        assert_ne!(key, idempotency_key("hooks", &[outgoing(&a)]));
        assert_ne!(key, idempotency_key("other", &[outgoing(&a), outgoing(&b)]));
    }
}
