//! Request bodies, written from a fixed template so building them costs a few `memcpy`s and
//! integer formats rather than a serde pass per event.
//!
//! Event number `n` always produces the same identity fields (`event_id`, `order_id`, email,
//! phone, anonymous id, gclid); only the timestamp changes. A duplicate is therefore just an
//! earlier `n` written again, and the server sees exactly what a retrying client would send.

use bytes::{BufMut, BytesMut};

/// One event slot in a request: which event number to write and whether it repeats one the
/// server has already accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Event number; unique per run unless `duplicate`.
    pub n: u64,
    /// The server should answer `duplicate` for this slot.
    pub duplicate: bool,
}

const AFTER_EVENT_ID: &[u8] = br#"","timestamp":"#;
const AFTER_TIMESTAMP: &[u8] = br#","user":{"email":"user"#;
const AFTER_EMAIL: &[u8] = br#"@example.com","phone":"+1650555"#;
const AFTER_PHONE: &[u8] = br#"","anonymous_id":"a-"#;
const AFTER_ANONYMOUS_ID: &[u8] =
    br#"","ip":"203.0.113.9","user_agent":"Mozilla/5.0 (loadgen)","click_ids":{"gclid":"Cj0K"#;
const AFTER_ORDER_ID: &[u8] = concat!(
    r#"","items":[{"id":"sku-1","quantity":2,"price":64.95}]},"#,
    r#""page":{"url":"https://shop.example/checkout/thanks"},"#,
    r#""consent":{"ad_storage":"granted","analytics_storage":"granted","#,
    r#""ad_user_data":"granted","ad_personalization":"denied"}}"#
)
.as_bytes();

/// Writes purchase events for one run into caller-owned buffers.
#[derive(Debug, Clone)]
pub struct EventWriter {
    run: String,
    /// Template text up to the event number in `event_id`; holds the run prefix.
    head: Vec<u8>,
    /// Template text from the gclid number up to the event number in `order_id`.
    before_order_id: Vec<u8>,
}

impl EventWriter {
    /// A writer whose ids all carry `run`, so separate runs never collide in dedup.
    pub fn new(run: &str) -> Self {
        Self {
            run: run.to_owned(),
            head: format!(r#"{{"event":"purchase","event_id":"lg-{run}-"#).into_bytes(),
            before_order_id: format!(
                r#""}}}},"properties":{{"value":129.90,"currency":"EUR","order_id":"{run}-"#
            )
            .into_bytes(),
        }
    }

    /// The random prefix shared by every id of this run.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// Recovers the event number from an `event_id` this writer produced.
    pub fn parse_event_id(&self, event_id: &str) -> Option<u64> {
        event_id
            .strip_prefix("lg-")?
            .strip_prefix(self.run.as_str())?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    /// Appends the body for `events` (a bare event when there is one and `batch` is false,
    /// otherwise `{"batch": [...]}`) to `buf`.
    pub fn write_body(
        &self,
        buf: &mut BytesMut,
        events: &[PlannedEvent],
        batch: bool,
        timestamp_ms: u64,
    ) {
        if batch {
            buf.put_slice(br#"{"batch":["#);
            for (i, e) in events.iter().enumerate() {
                if i > 0 {
                    buf.put_u8(b',');
                }
                self.write_event(buf, e.n, timestamp_ms);
            }
            buf.put_slice(b"]}");
        } else {
            debug_assert_eq!(events.len(), 1, "single mode sends one event per request");
            for e in events {
                self.write_event(buf, e.n, timestamp_ms);
            }
        }
    }

    /// Appends event number `n` stamped `timestamp_ms` to `buf`.
    pub fn write_event(&self, buf: &mut BytesMut, n: u64, timestamp_ms: u64) {
        let mut num = itoa::Buffer::new();
        let n_text = num.format(n).as_bytes();
        buf.put_slice(&self.head);
        buf.put_slice(n_text);
        buf.put_slice(AFTER_EVENT_ID);
        buf.put_slice(itoa::Buffer::new().format(timestamp_ms).as_bytes());
        buf.put_slice(AFTER_TIMESTAMP);
        buf.put_slice(n_text);
        buf.put_slice(AFTER_EMAIL);
        put_four_digits(buf, n % 10_000);
        buf.put_slice(AFTER_PHONE);
        buf.put_slice(n_text);
        buf.put_slice(AFTER_ANONYMOUS_ID);
        buf.put_slice(n_text);
        buf.put_slice(&self.before_order_id);
        buf.put_slice(n_text);
        buf.put_slice(AFTER_ORDER_ID);
    }
}

fn put_four_digits(buf: &mut BytesMut, v: u64) {
    let digits = [
        b'0' + (v / 1000 % 10) as u8,
        b'0' + (v / 100 % 10) as u8,
        b'0' + (v / 10 % 10) as u8,
        b'0' + (v % 10) as u8,
    ];
    buf.put_slice(&digits);
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn parse(buf: &BytesMut) -> Value {
        serde_json::from_slice(buf).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(buf));
        })
    }

    #[test]
    fn writes_the_documented_event_shape() {
        let w = EventWriter::new("r1");
        let mut buf = BytesMut::new();
        w.write_event(&mut buf, 42, 1_700_000_000_123);
        let v = parse(&buf);
        assert_eq!(v["event"], "purchase");
        assert_eq!(v["event_id"], "lg-r1-42");
        assert_eq!(v["timestamp"].to_string(), "1700000000123");
        assert_eq!(v["user"]["email"], "user42@example.com");
        assert_eq!(v["user"]["phone"], "+16505550042");
        assert_eq!(v["user"]["anonymous_id"], "a-42");
        assert_eq!(v["user"]["ip"], "203.0.113.9");
        assert_eq!(v["user"]["user_agent"], "Mozilla/5.0 (loadgen)");
        assert_eq!(v["user"]["click_ids"]["gclid"], "Cj0K42");
        assert_eq!(v["properties"]["value"].to_string(), "129.90");
        assert_eq!(v["properties"]["currency"], "EUR");
        assert_eq!(v["properties"]["order_id"], "r1-42");
        assert_eq!(v["properties"]["items"][0]["id"], "sku-1");
        assert_eq!(v["properties"]["items"][0]["quantity"].to_string(), "2");
        assert_eq!(v["properties"]["items"][0]["price"].to_string(), "64.95");
        assert_eq!(v["page"]["url"], "https://shop.example/checkout/thanks");
        assert_eq!(v["consent"]["ad_storage"], "granted");
        assert_eq!(v["consent"]["analytics_storage"], "granted");
        assert_eq!(v["consent"]["ad_user_data"], "granted");
        assert_eq!(v["consent"]["ad_personalization"], "denied");
    }

    #[test]
    fn phone_keeps_four_digits_for_large_numbers() {
        let w = EventWriter::new("r");
        let mut buf = BytesMut::new();
        w.write_event(&mut buf, 1_234_567, 0);
        assert_eq!(parse(&buf)["user"]["phone"], "+16505554567");
    }

    #[test]
    fn batch_body_wraps_events_in_order() {
        let w = EventWriter::new("r");
        let mut buf = BytesMut::new();
        let events = [
            PlannedEvent {
                n: 3,
                duplicate: false,
            },
            PlannedEvent {
                n: 1,
                duplicate: true,
            },
        ];
        w.write_body(&mut buf, &events, true, 5);
        let v = parse(&buf);
        let ids: Vec<_> = v["batch"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["event_id"])
            .collect();
        assert_eq!(ids, ["lg-r-3", "lg-r-1"]);
    }

    #[test]
    fn single_body_is_a_bare_event() {
        let w = EventWriter::new("r");
        let mut buf = BytesMut::new();
        w.write_body(
            &mut buf,
            &[PlannedEvent {
                n: 7,
                duplicate: false,
            }],
            false,
            5,
        );
        assert_eq!(parse(&buf)["event_id"], "lg-r-7");
    }

    #[test]
    fn parses_back_its_own_event_ids_only() {
        let w = EventWriter::new("ab12");
        assert_eq!(w.parse_event_id("lg-ab12-99"), Some(99));
        assert_eq!(w.parse_event_id("lg-ab13-99"), None);
        assert_eq!(w.parse_event_id("lg-ab12-x"), None);
    }
}
