//! What the sink was sent: requests and events by answer, every event ID it saw, and when the
//! last new one arrived, so a benchmark can check that nothing was lost or delivered twice and
//! time the delivery from the sink's side.
//!
//! Event IDs are found by scanning the raw body for `"event_id"` keys, not by parsing it: both
//! the Meta payload (`data[].event_id`) and the webhook payload (`events[].event_id`) carry
//! exactly one per event, and a scan keeps the sink cheap next to the server it measures. An
//! event counts as delivered once the sink answered its request with success; a 503 is an
//! attempt, not a delivery.

use std::collections::HashMap;

use serde::Serialize;

/// The key scanned for.
const KEY: &[u8] = br#""event_id""#;

/// The event IDs in a request body, as their raw JSON string contents (escapes left as sent).
pub fn event_ids(body: &[u8]) -> Vec<&[u8]> {
    let mut ids = Vec::new();
    let mut from = 0;
    while let Some(offset) = body[from..].iter().position(|&b| b == b'"') {
        let at = from + offset;
        if body[at..].starts_with(KEY) {
            if let Some(id) = string_value(&body[at + KEY.len()..]) {
                ids.push(id);
            }
            from = at + KEY.len();
        } else {
            from = at + 1;
        }
    }
    ids
}

/// The string after `: "` at the start of `rest` (whitespace allowed around the colon), up to
/// the closing unescaped quote; `None` when the value is not a string.
fn string_value(rest: &[u8]) -> Option<&[u8]> {
    let rest = rest.trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"\"")?;
    let mut escaped = false;
    for (i, &b) in rest.iter().enumerate() {
        match b {
            b'\\' if !escaped => escaped = true,
            b'"' if !escaped => return Some(&rest[..i]),
            _ => escaped = false,
        }
    }
    None
}

/// Counts since the sink started; `GET` on the sink answers with them as JSON.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    /// POSTs answered.
    pub requests: u64,
    /// Of those, answered with success.
    pub requests_ok: u64,
    /// Of those, answered 503.
    pub requests_failed: u64,
    /// Events in all answered POSTs (attempts).
    pub events: u64,
    /// Events in POSTs answered with success (deliveries, repeats included).
    pub events_ok: u64,
    /// Distinct event IDs in any answered POST.
    pub distinct: u64,
    /// Distinct event IDs answered with success at least once.
    pub distinct_ok: u64,
    /// Events answered with success whose ID had already been answered with success: what the
    /// platform would have had to deduplicate.
    pub duplicates_ok: u64,
    /// Unix time in milliseconds of the first answered POST.
    pub first_request_unix_ms: Option<i64>,
    /// Unix time in milliseconds of the last answer that carried an ID never seen before.
    pub last_new_unix_ms: Option<i64>,
    /// Unix time in milliseconds of the last success that delivered an ID for the first time.
    pub last_new_ok_unix_ms: Option<i64>,
}

/// Every event ID seen, with how often it was answered with success.
#[derive(Debug, Default)]
pub struct Ledger {
    counts: Counts,
    ids: HashMap<Box<[u8]>, u32>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one answered POST carrying `ids`, answered with success when `ok`, at
    /// `now_unix_ms`.
    pub fn record(&mut self, ids: &[&[u8]], ok: bool, now_unix_ms: i64) {
        let c = &mut self.counts;
        c.requests += 1;
        c.first_request_unix_ms.get_or_insert(now_unix_ms);
        let n = ids.len() as u64;
        c.events += n;
        if ok {
            c.requests_ok += 1;
            c.events_ok += n;
        } else {
            c.requests_failed += 1;
        }
        for id in ids {
            let delivered = match self.ids.get_mut(*id) {
                Some(delivered) => delivered,
                None => {
                    c.distinct += 1;
                    c.last_new_unix_ms = Some(now_unix_ms);
                    self.ids.entry((*id).into()).or_insert(0)
                }
            };
            if ok {
                if *delivered == 0 {
                    c.distinct_ok += 1;
                    c.last_new_ok_unix_ms = Some(now_unix_ms);
                } else {
                    c.duplicates_ok += 1;
                }
                *delivered += 1;
            }
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_event_id_in_a_meta_body() {
        let body = br#"{"data":[{"event_name":"Purchase","event_id":"lg-a-1","user_data":{}},
            {"event_name":"Purchase","event_id" : "lg-a-2"},{"event_id":7},{"event_id":"q\"x"}]}"#;
        let ids = event_ids(body);
        assert_eq!(ids, [&b"lg-a-1"[..], b"lg-a-2", br#"q\"x"#]);
    }

    #[test]
    fn a_body_without_ids_has_none() {
        assert!(event_ids(b"").is_empty());
        assert!(event_ids(br#"{"event_id":"unterminated"#).is_empty());
    }

    #[test]
    fn counts_deliveries_failures_and_repeats() {
        let mut l = Ledger::new();
        l.record(&[b"a", b"b"], false, 10);
        l.record(&[b"a", b"b"], true, 20);
        l.record(&[b"b", b"c"], true, 30);
        let c = l.counts();
        assert_eq!((c.requests, c.requests_ok, c.requests_failed), (3, 2, 1));
        assert_eq!((c.events, c.events_ok), (6, 4));
        assert_eq!((c.distinct, c.distinct_ok, c.duplicates_ok), (3, 3, 1));
        assert_eq!(c.first_request_unix_ms, Some(10));
        assert_eq!(c.last_new_unix_ms, Some(30));
        assert_eq!(c.last_new_ok_unix_ms, Some(30));
    }

    #[test]
    fn a_retry_after_failure_is_no_duplicate() {
        let mut l = Ledger::new();
        l.record(&[b"a"], false, 1);
        l.record(&[b"a"], false, 2);
        l.record(&[b"a"], true, 3);
        let c = l.counts();
        assert_eq!((c.distinct, c.distinct_ok, c.duplicates_ok), (1, 1, 0));
        assert_eq!(c.last_new_unix_ms, Some(1));
    }
}
