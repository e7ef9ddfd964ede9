//! Merging a later copy of an event into the stored one (C3).
//!
//! Who wins, field by field: the server copy is authoritative for value, currency, properties
//! and customer data; the browser copy for what only a browser knows (click IDs and cookies,
//! user agent, IP, page). Anything the authoritative side lacks is filled from the other, so
//! the merged event carries the union of identifiers. Two copies of the same kind (a retried
//! call) only fill gaps: the first one wins. Consent takes the stricter answer per signal.

use crate::event::{ConsentSignal, Event, SourceKind};

/// Merges `incoming` into `stored` and returns what the incoming copy contributed (field
/// paths), for the ledger. An empty list means the copy added nothing.
pub fn merge(stored: &mut Event, incoming: &Event) -> Vec<String> {
    let mut contributed = Vec::new();
    let server_overrides =
        incoming.source_kind == SourceKind::Server && stored.source_kind == SourceKind::Browser;
    let browser_overrides =
        incoming.source_kind == SourceKind::Browser && stored.source_kind == SourceKind::Server;

    // Business data: value, currency, properties.
    if server_overrides {
        if incoming.value.is_some() && incoming.value != stored.value {
            stored.value = incoming.value;
            contributed.push("value".to_owned());
        }
        if incoming.currency.is_some() && incoming.currency != stored.currency {
            stored.currency = incoming.currency;
            contributed.push("currency".to_owned());
        }
        for (k, v) in &incoming.properties {
            if stored.properties.get(k) != Some(v) {
                stored.properties.insert(k.clone(), v.clone());
                contributed.push(format!("properties.{k}"));
            }
        }
        for f in stored.user.identity.override_from(&incoming.user.identity) {
            contributed.push(format!("user.{f}"));
        }
    } else {
        if stored.value.is_none() && incoming.value.is_some() {
            stored.value = incoming.value;
            contributed.push("value".to_owned());
        }
        if stored.currency.is_none() && incoming.currency.is_some() {
            stored.currency = incoming.currency;
            contributed.push("currency".to_owned());
        }
        for (k, v) in &incoming.properties {
            if !stored.properties.contains_key(k) {
                stored.properties.insert(k.clone(), v.clone());
                contributed.push(format!("properties.{k}"));
            }
        }
        for f in stored.user.identity.fill_from(&incoming.user.identity) {
            contributed.push(format!("user.{f}"));
        }
    }

    // Browser context.
    let take = |contributed: &mut Vec<String>,
                field: &str,
                stored: &mut Option<String>,
                incoming: &Option<String>| {
        let replace = match (stored.as_ref(), incoming.as_ref()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(s), Some(i)) => browser_overrides && s != i,
        };
        if replace {
            stored.clone_from(incoming);
            contributed.push(field.to_owned());
        }
    };
    take(
        &mut contributed,
        "user.anonymous_id",
        &mut stored.user.anonymous_id,
        &incoming.user.anonymous_id,
    );
    take(
        &mut contributed,
        "user.ip",
        &mut stored.user.ip,
        &incoming.user.ip,
    );
    take(
        &mut contributed,
        "user.user_agent",
        &mut stored.user.user_agent,
        &incoming.user.user_agent,
    );
    let incoming_ids: Vec<(&str, Option<String>)> = incoming
        .user
        .click_ids
        .named()
        .map(|(n, v)| (n, v.clone()))
        .collect();
    for (name, value) in incoming_ids {
        if let Some(slot) = stored.user.click_ids.field_mut(name) {
            take(
                &mut contributed,
                &format!("user.click_ids.{name}"),
                slot,
                &value,
            );
        }
    }
    if stored.user.click_ids.clicked_at.is_none() && incoming.user.click_ids.clicked_at.is_some() {
        stored.user.click_ids.clicked_at = incoming.user.click_ids.clicked_at;
        contributed.push("user.click_ids.clicked_at".to_owned());
    }
    for (k, v) in &incoming.user.click_ids.other {
        if !stored.user.click_ids.other.contains_key(k) {
            stored.user.click_ids.other.insert(k.clone(), v.clone());
            contributed.push(format!("user.click_ids.{k}"));
        }
    }
    match (&mut stored.page, &incoming.page) {
        (_, None) => {}
        (None, Some(p)) => {
            stored.page = Some(p.clone());
            contributed.push("page".to_owned());
        }
        (Some(s), Some(p)) => {
            take(&mut contributed, "page.url", &mut s.url, &p.url);
            take(
                &mut contributed,
                "page.referrer",
                &mut s.referrer,
                &p.referrer,
            );
            take(&mut contributed, "page.title", &mut s.title, &p.title);
        }
    }

    // The action happened when the earliest copy says it did.
    if incoming.timestamp < stored.timestamp {
        stored.timestamp = incoming.timestamp;
        contributed.push("timestamp".to_owned());
    }

    // Consent: a denial from either side wins; unknowns are filled.
    let incoming_signals: Vec<(&str, Option<ConsentSignal>)> = incoming.consent.signals().collect();
    for (name, signal) in incoming_signals {
        let Some(signal) = signal else { continue };
        let slot = stored
            .consent
            .signal_mut(name)
            .expect("signal names come from signals()");
        let merged = match *slot {
            None => Some(signal),
            Some(ConsentSignal::Denied) => Some(ConsentSignal::Denied),
            Some(ConsentSignal::Granted) => Some(signal),
        };
        if merged != *slot {
            *slot = merged;
            contributed.push(format!("consent.{name}"));
        }
    }
    if stored.consent.tcf.is_none() && incoming.consent.tcf.is_some() {
        stored.consent.tcf.clone_from(&incoming.consent.tcf);
        contributed.push("consent.tcf".to_owned());
    }
    if incoming.test && !stored.test {
        stored.test = true;
        contributed.push("test".to_owned());
    }
    contributed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{ParseContext, ParseLimits, parse_event};
    use crate::timestamp::Timestamp;
    use rust_decimal::Decimal;
    use serde_json::{Value, json};

    fn event(v: Value, kind: SourceKind) -> Event {
        let limits = ParseLimits::default();
        let ctx = ParseContext {
            source: kind.as_str(),
            source_kind: kind,
            received_at: Timestamp::from_millis(1_763_633_700_000),
            limits: &limits,
        };
        parse_event(&v, &ctx).unwrap().event
    }

    fn browser() -> Event {
        event(
            json!({"event": "purchase", "event_id": "e1", "timestamp": 1_763_633_600_000i64,
                "user": {"anonymous_id": "a-1", "ip": "198.51.100.7", "user_agent": "Mozilla/5.0",
                         "click_ids": {"gclid": "G1", "fbp": "fb.1.1558571054389.1098115397"}},
                "properties": {"value": 99, "currency": "EUR", "order_id": "1001"},
                "page": {"url": "https://shop.example/thanks"},
                "consent": {"ad_storage": "granted", "ad_user_data": "denied"}}),
            SourceKind::Browser,
        )
    }

    fn server() -> Event {
        event(
            json!({"event": "purchase", "event_id": "e1", "timestamp": 1_763_633_650_000i64,
                "user": {"email": "jane@example.com", "ip": "10.0.0.5", "external_id": "cust-42"},
                "properties": {"value": 129.90, "currency": "EUR", "order_id": "1001", "margin": 40},
                "consent": {"ad_user_data": "granted", "ad_personalization": "granted"}}),
            SourceKind::Server,
        )
    }

    #[test]
    fn server_copy_wins_value_and_customer_data_browser_keeps_its_context() {
        let mut merged = browser();
        let contributed = merge(&mut merged, &server());
        assert_eq!(merged.value, Some(Decimal::new(12990, 2)));
        assert!(merged.user.identity.email_sha256.is_some());
        assert_eq!(
            merged.user.ip.as_deref(),
            Some("198.51.100.7"),
            "browser IP kept over the backend's"
        );
        assert_eq!(merged.user.click_ids.gclid.as_deref(), Some("G1"));
        assert_eq!(
            merged.page.as_ref().unwrap().url.as_deref(),
            Some("https://shop.example/thanks")
        );
        assert_eq!(merged.timestamp, Timestamp::from_millis(1_763_633_600_000));
        assert!(contributed.contains(&"value".to_owned()));
        assert!(contributed.contains(&"properties.margin".to_owned()));
        assert!(!contributed.contains(&"user.ip".to_owned()));
    }

    #[test]
    fn merge_order_does_not_change_the_result_for_browser_and_server_twins() {
        let mut a = browser();
        merge(&mut a, &server());
        let mut b = server();
        merge(&mut b, &browser());
        assert_eq!(a.value, b.value);
        assert_eq!(a.user.identity, b.user.identity);
        assert_eq!(a.user.ip, b.user.ip);
        assert_eq!(a.user.click_ids, b.user.click_ids);
        assert_eq!(a.consent, b.consent);
        assert_eq!(a.page, b.page);
        assert_eq!(a.timestamp, b.timestamp);
    }

    #[test]
    fn consent_denial_wins() {
        let mut merged = browser();
        merge(&mut merged, &server());
        assert_eq!(merged.consent.ad_user_data, Some(ConsentSignal::Denied));
        assert_eq!(
            merged.consent.ad_personalization,
            Some(ConsentSignal::Granted)
        );
    }

    #[test]
    fn an_identical_retry_contributes_nothing() {
        let mut merged = server();
        assert!(merge(&mut merged, &server()).is_empty());
    }
}
