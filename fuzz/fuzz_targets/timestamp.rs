//! Timestamp handling: RFC 3339 strings and Unix-time numbers as clients send them.
//!
//! Properties: nothing panics; whatever is accepted lies in 2000-01-01..9999-12-31 and
//! round-trips through its RFC 3339 form, its `Display`/`FromStr` and its serde form; a JSON
//! string is judged exactly like the same text given to `parse_str`; a whole number of seconds
//! (below 1e11) becomes exactly that many thousand milliseconds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tally_core::timestamp::Timestamp;

const MIN_MILLIS: i64 = 946_684_800_000;
const MAX_MILLIS: i64 = 253_402_300_799_999;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        if let Ok(t) = Timestamp::from_json(&value) {
            round_trips(t);
        }
        if let Value::Number(n) = &value
            && let Ok(secs) = n.as_str().parse::<i64>()
            && (1..100_000_000_000).contains(&secs)
            && let Ok(t) = Timestamp::from_json(&value)
        {
            assert_eq!(t.millis(), secs * 1000, "{n} seconds");
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let direct = Timestamp::parse_str(text);
    let via_json = Timestamp::from_json(&Value::String(text.to_owned()));
    match (&direct, &via_json) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code()),
        _ => panic!("parse_str and from_json disagree on {text:?}: {direct:?} vs {via_json:?}"),
    }
    if let Ok(t) = direct {
        round_trips(t);
    }
});

fn round_trips(t: Timestamp) {
    assert!(
        (MIN_MILLIS..=MAX_MILLIS).contains(&t.millis()),
        "accepted {} outside the range",
        t.millis()
    );
    let text = t.to_rfc3339();
    assert_eq!(Timestamp::parse_str(&text).ok(), Some(t), "{text}");
    assert_eq!(t.to_string().parse::<Timestamp>().ok(), Some(t));
    let json = serde_json::to_string(&t).expect("serialises");
    assert_eq!(
        serde_json::from_str::<Timestamp>(&json).ok(),
        Some(t),
        "{json}"
    );
}
