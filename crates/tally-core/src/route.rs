//! Which events go to which destination, under which name, with which value, and when
//! (the delivery side of the configuration, shared by delivery planning and the dispatcher).

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::consent::ConsentNeeds;
use crate::event::Event;
use crate::timestamp::Timestamp;

/// One destination's routing rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination name (deliveries are keyed by it).
    pub destination: String,
    /// Destination kind (`meta_capi`, `ga4`, ...).
    pub kind: String,
    /// tally event name → the platform's event name. Events not listed are not sent here.
    pub events: BTreeMap<String, String>,
    /// tally event name → the property sent as the conversion value (`value` when absent).
    pub value_properties: BTreeMap<String, String>,
    /// What consent this destination needs.
    pub consent: ConsentNeeds,
    /// Send everything in the platform's test mode (a new destination starts here until a
    /// test conversion passes).
    pub test_mode: bool,
    /// Live events wait until a test conversion through this destination passed (C8: a new
    /// destination must not learn from data nobody checked).
    pub require_test_conversion: bool,
    /// How long after the first copy arrives a delivery waits for its twin, in milliseconds.
    pub join_window_ms: i64,
    /// How long after the event's own time the platform accepts it, in milliseconds.
    pub max_age_ms: i64,
}

impl Route {
    /// The platform's name for `event_name`, when this destination receives it.
    pub fn platform_name(&self, event_name: &str) -> Option<&str> {
        self.events.get(event_name).map(String::as_str)
    }

    /// When a delivery of `event`, first received at `received_at`, may first be attempted and
    /// by when the platform must have it; `None` when the event does not go here.
    pub fn schedule(
        &self,
        event: &Event,
        received_at: Timestamp,
    ) -> Option<(Timestamp, Timestamp)> {
        self.platform_name(&event.name)?;
        let not_before = Timestamp::from_millis(received_at.millis() + self.join_window_ms);
        let deadline =
            Timestamp::from_millis(event.timestamp.millis().saturating_add(self.max_age_ms));
        Some((not_before, deadline))
    }

    /// The conversion value to report for `event`: its configured value property (an exact
    /// decimal, from a JSON number or numeric string), else the event's value.
    pub fn value(&self, event: &Event) -> Option<Decimal> {
        match self.value_properties.get(&event.name).map(String::as_str) {
            None | Some("value") => event.value,
            Some(property) => match event.properties.get(property)? {
                serde_json::Value::Number(n) => Decimal::from_str(&n.to_string())
                    .or_else(|_| Decimal::from_scientific(&n.to_string()))
                    .ok(),
                serde_json::Value::String(s) => Decimal::from_str(s.trim()).ok(),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{ParseContext, ParseLimits, parse_event};

    fn event(json: serde_json::Value) -> Event {
        let limits = ParseLimits::default();
        let ctx = ParseContext {
            source: "backend",
            source_kind: crate::event::SourceKind::Server,
            received_at: Timestamp::from_millis(1_763_633_700_000),
            limits: &limits,
        };
        parse_event(&json, &ctx).unwrap().event
    }

    fn route() -> Route {
        Route {
            destination: "meta".into(),
            kind: "meta_capi".into(),
            events: [("purchase".to_owned(), "Purchase".to_owned())].into(),
            value_properties: BTreeMap::new(),
            consent: ConsentNeeds::default(),
            test_mode: false,
            require_test_conversion: false,
            join_window_ms: 5_000,
            max_age_ms: 7 * 86_400_000,
        }
    }

    #[test]
    fn only_mapped_events_are_scheduled_after_the_join_window_until_the_platform_deadline() {
        let r = route();
        let e = event(serde_json::json!({"event": "purchase", "event_id": "e1",
            "timestamp": 1_763_633_000_000_i64, "properties": {"value": 10, "currency": "EUR"}}));
        let received = Timestamp::from_millis(1_763_633_700_000);
        assert_eq!(
            r.schedule(&e, received),
            Some((
                Timestamp::from_millis(1_763_633_705_000),
                Timestamp::from_millis(1_763_633_000_000 + 7 * 86_400_000)
            ))
        );
        let other = event(serde_json::json!({"event": "add_to_cart", "event_id": "e2"}));
        assert_eq!(r.schedule(&other, received), None);
        assert_eq!(r.platform_name("purchase"), Some("Purchase"));
    }

    #[test]
    fn the_value_property_picks_an_exact_decimal() {
        let mut r = route();
        let e = event(serde_json::json!({"event": "purchase", "event_id": "e1",
            "properties": {"value": "129.90", "currency": "EUR", "margin": 41.07, "ltv": "300.5", "bad": true}}));
        assert_eq!(r.value(&e), Some(Decimal::from_str("129.90").unwrap()));
        r.value_properties
            .insert("purchase".into(), "margin".into());
        assert_eq!(r.value(&e).unwrap().to_string(), "41.07");
        r.value_properties.insert("purchase".into(), "ltv".into());
        assert_eq!(r.value(&e).unwrap().to_string(), "300.5");
        r.value_properties.insert("purchase".into(), "bad".into());
        assert_eq!(r.value(&e), None);
        r.value_properties
            .insert("purchase".into(), "absent".into());
        assert_eq!(r.value(&e), None);
    }
}
