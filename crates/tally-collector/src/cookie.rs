//! The anonymous-ID cookie the browser door renews (`[tag]`). A cookie set by a server response
//! outlives the short cap some browsers put on cookies written by scripts, so tally.js's
//! visitor ID survives tracking prevention when tally runs on the shop's own site
//! (`t.shop.example` for `shop.example`).
//!
//! Invariants: a cookie is set only for a page whose origin is on `cookie_domain` (so it is
//! first-party), only from an event that does not deny `analytics_storage`, only for an ID made
//! of URL-safe characters, and never `HttpOnly` (tally.js reads it).

use axum::http::HeaderValue;
use serde_json::Value;

use crate::body::RawEvent;
use crate::config::TagConfig;

const MAX_ID_BYTES: usize = 128;

/// The anonymous ID the answer to these events may renew: the last event's that carries one
/// and does not deny `analytics_storage`.
pub fn anonymous_id_to_renew(events: &[RawEvent]) -> Option<String> {
    events.iter().rev().find_map(|raw| {
        let event = &raw.value;
        let analytics = event.pointer("/consent/analytics_storage");
        if matches!(analytics, Some(Value::String(s)) if s == "denied")
            || analytics == Some(&Value::Bool(false))
        {
            return None;
        }
        let id = event.pointer("/user/anonymous_id")?.as_str()?;
        let valid = !id.is_empty()
            && id.len() <= MAX_ID_BYTES
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        valid.then(|| id.to_owned())
    })
}

/// The `Set-Cookie` value renewing `anonymous_id` for a page at `origin`, when `[tag]`
/// names a cookie domain that `origin` is on.
pub fn set_cookie(tag: &TagConfig, origin: &str, anonymous_id: &str) -> Option<HeaderValue> {
    let domain = tag.cookie_domain.trim().trim_start_matches('.');
    if domain.is_empty() {
        return None;
    }
    let (scheme, rest) = origin.split_once("://")?;
    if rest.starts_with('[') {
        return None; // an IPv6 literal has no cookie domain
    }
    let host = rest.split(':').next()?.to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    let on_site = host == domain
        || host
            .strip_suffix(&domain)
            .is_some_and(|sub| sub.ends_with('.'));
    if !on_site {
        return None;
    }
    let secure = if scheme.eq_ignore_ascii_case("https") {
        "; Secure"
    } else {
        ""
    };
    let max_age = u64::from(tag.cookie_max_age_days) * 86_400;
    HeaderValue::from_str(&format!(
        "{}={anonymous_id}; Max-Age={max_age}; Domain={domain}; Path=/; SameSite=Lax{secure}",
        tag.cookie_name
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn raw(value: Value) -> RawEvent {
        RawEvent { len: 0, value }
    }

    fn tag(domain: &str) -> TagConfig {
        TagConfig {
            cookie_domain: domain.into(),
            ..TagConfig::default()
        }
    }

    #[test]
    fn renews_the_last_anonymous_id_whose_consent_allows_analytics() {
        let events = [
            raw(json!({"event": "a", "user": {"anonymous_id": "first"}})),
            raw(json!({"event": "b", "user": {"anonymous_id": "second"},
                       "consent": {"analytics_storage": "granted", "ad_storage": "denied"}})),
            raw(json!({"event": "c", "user": {"anonymous_id": "third"},
                       "consent": {"analytics_storage": "denied"}})),
            raw(json!({"event": "d"})),
        ];
        assert_eq!(anonymous_id_to_renew(&events).as_deref(), Some("second"));
        assert_eq!(anonymous_id_to_renew(&events[2..]), None);
    }

    #[test]
    fn refuses_ids_that_are_not_cookie_safe() {
        for id in ["a;b", "a b", "", &"x".repeat(129), "é"] {
            let events = [raw(json!({"event": "a", "user": {"anonymous_id": id}}))];
            assert_eq!(anonymous_id_to_renew(&events), None, "{id:?}");
        }
    }

    #[test]
    fn sets_a_first_party_cookie_only_for_pages_on_the_cookie_domain() {
        let header = set_cookie(&tag("shop.example"), "https://www.shop.example", "a-1").unwrap();
        assert_eq!(
            header,
            "tally_id=a-1; Max-Age=34128000; Domain=shop.example; Path=/; SameSite=Lax; Secure"
        );
        let plain = set_cookie(&tag(".Shop.Example"), "http://shop.example:8000", "a-1").unwrap();
        assert_eq!(
            plain,
            "tally_id=a-1; Max-Age=34128000; Domain=shop.example; Path=/; SameSite=Lax"
        );
        for origin in [
            "https://evilshop.example",
            "https://shop.example.evil.test",
            "https://[::1]:8000",
            "null",
        ] {
            assert_eq!(
                set_cookie(&tag("shop.example"), origin, "a-1"),
                None,
                "{origin}"
            );
        }
        assert_eq!(set_cookie(&tag(""), "https://shop.example", "a-1"), None);
    }
}
