//! The tracking plan (C2): which events exist, what each must carry, and which property is its
//! business dedup key. Built once from config; checking an event is a few map lookups.
//!
//! An event that fails the plan is not dropped: the caller quarantines it with the
//! [`Rejection`] this module returns, and it can be replayed once the plan is fixed.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::currency::Currency;
use crate::event::Event;
use crate::money;
use crate::rejection::Rejection;

/// Type a planned property must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PropertyType {
    /// A JSON string.
    String,
    /// A JSON number or a decimal string.
    Number,
    /// A whole number.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// An ISO 4217 code.
    Currency,
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
}

/// What to do with an event whose name is not in the plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnplannedPolicy {
    /// Quarantine it with `unplanned_event` (the default: typos in event names surface at once).
    #[default]
    Quarantine,
    /// Accept it unchecked, without a business dedup key.
    Accept,
}

/// One `[[events]]` entry of the config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventPlanConfig {
    /// Canonical event name, e.g. `purchase`.
    pub name: String,
    /// Whether this is a conversion (sent to ad platforms as one).
    #[serde(default)]
    pub conversion: bool,
    /// Properties that must be present and non-empty.
    #[serde(default)]
    pub require: Vec<String>,
    /// Property that identifies the business action (e.g. `order_id`) for dedup across event IDs.
    #[serde(default)]
    pub dedup_key: Option<String>,
    /// Dedup window for `dedup_key`; defaults to `[dedup] dedup_key_window_secs`.
    #[serde(default)]
    pub dedup_key_window_secs: Option<u64>,
    /// Property types to check when the property is present.
    #[serde(default)]
    pub types: BTreeMap<String, PropertyType>,
    /// Other names clients use for this event (`Order Completed`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Accept a negative `value` (refunds, chargebacks).
    #[serde(default)]
    pub allow_negative_value: bool,
    /// Property destinations receive as the conversion value (`value` by default; e.g. `margin`).
    #[serde(default)]
    pub value_property: Option<String>,
}

/// Plan-wide settings (`[plan]` and `[dedup]`).
#[derive(Clone, Debug, PartialEq)]
pub struct PlanSettings {
    /// Unplanned events policy.
    pub unplanned: UnplannedPolicy,
    /// `(event, event_id)` dedup window in milliseconds.
    pub event_id_window_ms: i64,
    /// Default business-key dedup window in milliseconds.
    pub dedup_key_window_ms: i64,
}

impl Default for PlanSettings {
    fn default() -> Self {
        PlanSettings {
            unplanned: UnplannedPolicy::Quarantine,
            event_id_window_ms: 7 * 86_400_000,
            dedup_key_window_ms: 30 * 86_400_000,
        }
    }
}

/// A planned event, resolved from its config.
#[derive(Clone, Debug)]
pub struct EventPlan {
    /// The config it came from.
    pub config: EventPlanConfig,
    /// Business-key window in milliseconds.
    pub dedup_key_window_ms: i64,
}

/// The checked tracking plan.
#[derive(Clone, Debug)]
pub struct TrackingPlan {
    events: HashMap<String, EventPlan>,
    aliases: HashMap<String, String>,
    settings: PlanSettings,
}

/// What the plan decided for an accepted event: how to deduplicate it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanDecision {
    /// The business dedup key's value, as text, when the plan names one and the event has it.
    pub dedup_value: Option<String>,
    /// `(event, event_id)` window.
    pub event_id_window_ms: i64,
    /// Business-key window.
    pub dedup_key_window_ms: i64,
}

impl TrackingPlan {
    /// Builds the plan.
    ///
    /// # Errors
    /// Every problem found (duplicate names or aliases, a dedup key or type on a reserved
    /// name), each with the config key it concerns.
    pub fn new(
        events: Vec<EventPlanConfig>,
        settings: PlanSettings,
    ) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut plans = HashMap::new();
        let mut aliases = HashMap::new();
        for (i, cfg) in events.into_iter().enumerate() {
            let key = format!("events[{i}]");
            if cfg.name.trim().is_empty() {
                problems.push((format!("{key}.name"), "must not be empty".to_owned()));
                continue;
            }
            if cfg.name == crate::parse::IDENTIFY_EVENT {
                problems.push((
                    format!("{key}.name"),
                    "`identify` is built in and cannot be planned".to_owned(),
                ));
            }
            for alias in &cfg.aliases {
                if let Some(prev) = aliases.insert(alias.clone(), cfg.name.clone()) {
                    problems.push((
                        format!("{key}.aliases"),
                        format!("alias `{alias}` is already used by `{prev}`"),
                    ));
                }
            }
            if let Some(ty) = cfg
                .types
                .get("currency")
                .filter(|t| **t != PropertyType::Currency)
            {
                problems.push((
                    format!("{key}.types.currency"),
                    format!("`currency` is always an ISO 4217 code, not {ty:?}"),
                ));
            }
            let window = cfg
                .dedup_key_window_secs
                .map_or(settings.dedup_key_window_ms, |s| {
                    s.saturating_mul(1000) as i64
                });
            let name = cfg.name.clone();
            let plan = EventPlan {
                config: cfg,
                dedup_key_window_ms: window,
            };
            if plans.insert(name.clone(), plan).is_some() {
                problems.push((
                    format!("{key}.name"),
                    format!("event `{name}` is planned twice"),
                ));
            }
        }
        for (alias, target) in &aliases {
            if plans.contains_key(alias) {
                problems.push((
                    "events".to_owned(),
                    format!("`{alias}` is both a planned event and an alias of `{target}`"),
                ));
            }
        }
        if problems.is_empty() {
            Ok(TrackingPlan {
                events: plans,
                aliases,
                settings,
            })
        } else {
            Err(problems)
        }
    }

    /// The planned event called `name`, if any.
    pub fn event(&self, name: &str) -> Option<&EventPlan> {
        self.events.get(name)
    }

    /// Planned events, by name.
    pub fn events(&self) -> impl Iterator<Item = &EventPlan> {
        self.events.values()
    }

    /// Plan-wide settings.
    pub fn settings(&self) -> &PlanSettings {
        &self.settings
    }

    /// Resolves an alias in place, then checks the event against its plan.
    ///
    /// # Errors
    /// `unplanned_event`, `missing_property`, `wrong_property_type`, `negative_value`.
    pub fn check(&self, event: &mut Event) -> Result<PlanDecision, Rejection> {
        if let Some(canonical) = self.aliases.get(&event.name) {
            event.name = canonical.clone();
        }
        let Some(plan) = self.events.get(&event.name) else {
            return match self.settings.unplanned {
                UnplannedPolicy::Quarantine => Err(Rejection::new(
                    "unplanned_event",
                    format!("`{}` is not in the tracking plan", event.name),
                )),
                UnplannedPolicy::Accept => Ok(PlanDecision {
                    dedup_value: None,
                    event_id_window_ms: self.settings.event_id_window_ms,
                    dedup_key_window_ms: self.settings.dedup_key_window_ms,
                }),
            };
        };
        let cfg = &plan.config;
        let missing: Vec<&str> = cfg
            .require
            .iter()
            .filter(|p| is_missing(event.properties.get(p.as_str())))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(Rejection::new(
                "missing_property",
                format!("`{}` requires {}", event.name, quoted_list(&missing)),
            ));
        }
        for (prop, ty) in &cfg.types {
            if let Some(v) = event.properties.get(prop).filter(|v| !v.is_null())
                && !has_type(v, *ty)
            {
                return Err(Rejection::new(
                    "wrong_property_type",
                    format!("`properties.{prop}` must be {}", type_name(*ty)),
                ));
            }
        }
        if let Some(v) = event.value
            && v.is_sign_negative()
            && !v.is_zero()
            && !cfg.allow_negative_value
        {
            return Err(Rejection::new(
                "negative_value",
                format!(
                    "`properties.value` is negative; set allow_negative_value for `{}` to accept refunds",
                    event.name
                ),
            ));
        }
        let dedup_value = match &cfg.dedup_key {
            None => None,
            Some(key) => match event.properties.get(key) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Some(s.trim().to_owned()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(_) => {
                    return Err(Rejection::new(
                        "wrong_property_type",
                        format!(
                            "`properties.{key}` is the dedup key and must be a string or number"
                        ),
                    ));
                }
            },
        };
        Ok(PlanDecision {
            dedup_value,
            event_id_window_ms: self.settings.event_id_window_ms,
            dedup_key_window_ms: plan.dedup_key_window_ms,
        })
    }
}

fn is_missing(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        _ => false,
    }
}

fn has_type(v: &Value, ty: PropertyType) -> bool {
    match ty {
        PropertyType::String => v.is_string(),
        PropertyType::Number => money::parse_value(v).is_ok(),
        PropertyType::Integer => v.is_i64() || v.is_u64(),
        PropertyType::Boolean => v.is_boolean(),
        PropertyType::Currency => v.as_str().is_some_and(|s| Currency::parse(s).is_ok()),
        PropertyType::Array => v.is_array(),
        PropertyType::Object => v.is_object(),
    }
}

fn type_name(ty: PropertyType) -> &'static str {
    match ty {
        PropertyType::String => "a string",
        PropertyType::Number => "a number",
        PropertyType::Integer => "a whole number",
        PropertyType::Boolean => "true or false",
        PropertyType::Currency => "an ISO 4217 currency code",
        PropertyType::Array => "an array",
        PropertyType::Object => "an object",
    }
}

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SourceKind;
    use crate::parse::{ParseContext, ParseLimits, parse_event};
    use crate::timestamp::Timestamp;
    use serde_json::json;

    fn plan() -> TrackingPlan {
        TrackingPlan::new(
            vec![
                EventPlanConfig {
                    name: "purchase".into(),
                    conversion: true,
                    require: vec!["value".into(), "currency".into(), "order_id".into()],
                    dedup_key: Some("order_id".into()),
                    aliases: vec!["Order Completed".into()],
                    types: [("items".to_owned(), PropertyType::Array)].into(),
                    ..Default::default()
                },
                EventPlanConfig {
                    name: "add_to_cart".into(),
                    ..Default::default()
                },
            ],
            PlanSettings::default(),
        )
        .unwrap()
    }

    fn event(v: Value) -> Event {
        let limits = ParseLimits::default();
        let ctx = ParseContext {
            source: "s",
            source_kind: SourceKind::Server,
            received_at: Timestamp::from_millis(1_763_633_700_000),
            limits: &limits,
        };
        parse_event(&v, &ctx).unwrap().event
    }

    #[test]
    fn accepts_a_complete_purchase_and_extracts_its_dedup_key() {
        let mut e = event(
            json!({"event": "purchase", "properties": {"value": 10, "currency": "EUR", "order_id": 1001}}),
        );
        let d = plan().check(&mut e).unwrap();
        assert_eq!(d.dedup_value.as_deref(), Some("1001"));
        assert_eq!(d.dedup_key_window_ms, 30 * 86_400_000);
    }

    #[test]
    fn names_every_missing_property() {
        let mut e =
            event(json!({"event": "purchase", "properties": {"value": 10, "order_id": ""}}));
        let r = plan().check(&mut e).unwrap_err();
        assert_eq!(r.code, "missing_property");
        assert_eq!(r.message, "`purchase` requires `currency`, `order_id`");
    }

    #[test]
    fn resolves_segment_aliases() {
        let mut e = event(
            json!({"event": "Order Completed", "properties": {"value": 1, "currency": "USD", "order_id": "9"}}),
        );
        plan().check(&mut e).unwrap();
        assert_eq!(e.name, "purchase");
    }

    #[test]
    fn quarantines_unplanned_events_unless_told_to_accept() {
        let mut e = event(json!({"event": "purchse"}));
        assert_eq!(plan().check(&mut e).unwrap_err().code, "unplanned_event");
        let lenient = TrackingPlan::new(
            vec![],
            PlanSettings {
                unplanned: UnplannedPolicy::Accept,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(lenient.check(&mut e).is_ok());
    }

    #[test]
    fn checks_property_types_and_negative_values() {
        let mut e = event(
            json!({"event": "purchase", "properties": {"value": 1, "currency": "USD", "order_id": "9", "items": "x"}}),
        );
        assert_eq!(
            plan().check(&mut e).unwrap_err().code,
            "wrong_property_type"
        );
        let mut e = event(
            json!({"event": "purchase", "properties": {"value": -1, "currency": "USD", "order_id": "9"}}),
        );
        assert_eq!(plan().check(&mut e).unwrap_err().code, "negative_value");
    }

    #[test]
    fn reports_every_config_problem_with_its_key() {
        let dup = EventPlanConfig {
            name: "a".into(),
            aliases: vec!["b".into()],
            ..Default::default()
        };
        let problems = TrackingPlan::new(
            vec![
                dup.clone(),
                dup,
                EventPlanConfig {
                    name: "b".into(),
                    ..Default::default()
                },
            ],
            PlanSettings::default(),
        )
        .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["events[1].aliases", "events[1].name", "events"]);
    }
}
