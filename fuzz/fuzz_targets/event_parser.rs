//! The event parser: any bytes a client can send, through JSON, the Segment mapping and
//! `parse_event`, as both a browser and a server copy.
//!
//! Properties: nothing panics; an accepted event survives the store's JSON round trip
//! unchanged; its identity holds only 64-lowercase-hex hashes (never raw contact data); its
//! timestamp is within the accepted window; a refused event has a stable snake_case code; and
//! the quarantine scrubber never panics either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tally_core::event::{Event, SourceKind};
use tally_core::parse::{ParseContext, ParseLimits, parse_event, scrub_for_quarantine};
use tally_core::segment::{CallType, to_event};
use tally_core::timestamp::Timestamp;

/// A fixed receipt time, so a run is reproducible: 2026-11-20T10:15:00Z.
const RECEIVED_MS: i64 = 1_795_687_700_000;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    check(&value);
    for call in [CallType::Track, CallType::Page, CallType::Identify] {
        if let Ok(native) = to_event(&value, call) {
            check(&native);
        }
    }
});

fn check(value: &Value) {
    let limits = ParseLimits::default();
    let received_at = Timestamp::from_millis(RECEIVED_MS);
    for source_kind in [SourceKind::Browser, SourceKind::Server] {
        let ctx = ParseContext {
            source: "fuzz",
            source_kind,
            received_at,
            limits: &limits,
        };
        match parse_event(value, &ctx) {
            Ok(parsed) => accepted(&parsed.event, &limits),
            Err(rejection) => {
                let code = rejection.code.as_str();
                assert!(
                    !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "rejection code {code:?}"
                );
                let (scrubbed, identity) = scrub_for_quarantine(value);
                hashes_only(&serde_json::to_value(&identity).expect("identity serialises"));
                let _ = scrubbed.to_string();
            }
        }
    }
}

fn accepted(event: &Event, limits: &ParseLimits) {
    assert!(!event.name.is_empty() && !event.event_id.is_empty());
    let ms = event.timestamp.millis();
    assert!(
        ms <= RECEIVED_MS + limits.max_future_ms && ms >= RECEIVED_MS - limits.max_age_ms,
        "timestamp {ms} outside the window"
    );
    let stored = serde_json::to_string(event).expect("an event serialises");
    let read_back: Event = serde_json::from_str(&stored).expect("a stored event reads back");
    assert_eq!(
        &read_back, event,
        "the store's JSON round trip changed the event"
    );
    hashes_only(&serde_json::to_value(&event.user.identity).expect("identity serialises"));
}

/// Every `*_sha256` field of a serialised identity is 64 lowercase hex.
fn hashes_only(identity: &Value) {
    let Some(fields) = identity.as_object() else {
        panic!("identity is not an object: {identity}");
    };
    for (name, v) in fields {
        if name.ends_with("_sha256") {
            let h = v.as_str().unwrap_or_default();
            assert!(
                h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{name} = {v}"
            );
        }
    }
}
