//! The container document: variables, triggers and tags, keyed by name, as JSON.
//!
//! Strings in a tag's `properties` and `event_id` may hold `{{name}}` references to variables
//! (or to the built-ins in [`BUILT_IN_VARIABLES`]); a string that is exactly one reference
//! takes the variable's value as it is (a number stays a number).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ContainerError;

/// Variables every page has without defining them.
pub const BUILT_IN_VARIABLES: &[&str] = &[
    "page_url",
    "page_path",
    "page_title",
    "referrer",
    "element_text",
];

/// Longest document accepted, in bytes of JSON.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// One container: what to fire, when, with which values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// Values read on the page, by name.
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    /// Moments tags fire on, by name.
    #[serde(default)]
    pub triggers: BTreeMap<String, Trigger>,
    /// What is sent, by name.
    #[serde(default)]
    pub tags: BTreeMap<String, Tag>,
}

/// Where a variable's value comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Variable {
    /// A dotted path into the data layer (`window.dataLayer`, pushes merged as Google Tag
    /// Manager merges them): `ecommerce.transaction_id`.
    DataLayer {
        /// The path.
        path: String,
    },
    /// A query parameter of the page URL.
    UrlParameter {
        /// Its name.
        name: String,
    },
    /// A first-party cookie.
    Cookie {
        /// Its name.
        name: String,
    },
    /// An element of the page: its `attribute`, or its value (form fields) or text.
    Dom {
        /// CSS selector of the element (the first match).
        selector: String,
        /// Attribute to read instead of the value or text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attribute: Option<String>,
    },
    /// A fixed value.
    Constant {
        /// The value.
        value: Value,
    },
}

/// Conditions on the page's path and query (`/checkout/thanks?order=1`); every one given must
/// hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlMatch {
    /// The whole path and query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// A part of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// Its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_with: Option<String>,
    /// Its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_with: Option<String>,
    /// A JavaScript regular expression it matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

impl UrlMatch {
    fn is_empty(&self) -> bool {
        self.equals.is_none()
            && self.contains.is_none()
            && self.starts_with.is_none()
            && self.ends_with.is_none()
            && self.regex.is_none()
    }
}

/// When tags fire. Every kind may be limited to pages whose path matches `path`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// The page loaded (once per page load).
    PageView {
        /// Only on these pages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<UrlMatch>,
    },
    /// A click on an element matching `selector` (or inside one).
    Click {
        /// CSS selector.
        selector: String,
        /// Only on these pages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<UrlMatch>,
    },
    /// A form submitted (one matching `selector`, if given).
    FormSubmit {
        /// CSS selector of the form.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        selector: Option<String>,
        /// Only on these pages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<UrlMatch>,
    },
    /// `dataLayer.push({event: <event>, ...})`.
    DataLayer {
        /// The data-layer event name.
        event: String,
        /// Only on these pages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<UrlMatch>,
    },
    /// The URL changed without a page load (`history.pushState`, `replaceState`, back and
    /// forward): single-page applications' page views.
    HistoryChange {
        /// Only to these pages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<UrlMatch>,
    },
}

impl Trigger {
    /// The trigger's page condition.
    pub fn path(&self) -> Option<&UrlMatch> {
        match self {
            Trigger::PageView { path }
            | Trigger::Click { path, .. }
            | Trigger::FormSubmit { path, .. }
            | Trigger::DataLayer { path, .. }
            | Trigger::HistoryChange { path } => path.as_ref(),
        }
    }

    /// Whether it fires once per page (a load or a URL change), so a reload fires it again.
    pub fn fires_per_page(&self) -> bool {
        matches!(
            self,
            Trigger::PageView { .. } | Trigger::HistoryChange { .. }
        )
    }

    /// Its `type` as written in the document.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Trigger::PageView { .. } => "page_view",
            Trigger::Click { .. } => "click",
            Trigger::FormSubmit { .. } => "form_submit",
            Trigger::DataLayer { .. } => "data_layer",
            Trigger::HistoryChange { .. } => "history_change",
        }
    }
}

/// What a tag sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagKind {
    /// A tally event, through `tally('track', ...)`: the browser copy.
    Tally,
    /// `fbq('track', event, properties, {eventID})` (`trackCustom` for non-standard events).
    MetaPixel,
    /// `gtag('event', event, {...properties, event_id, transaction_id})`.
    GoogleTag,
    /// `ttq.track(event, properties, {event_id})`.
    TiktokPixel,
}

impl TagKind {
    /// Its `type` as written in the document.
    pub fn name(self) -> &'static str {
        match self {
            TagKind::Tally => "tally",
            TagKind::MetaPixel => "meta_pixel",
            TagKind::GoogleTag => "google_tag",
            TagKind::TiktokPixel => "tiktok_pixel",
        }
    }
}

/// One tag: on `triggers`, send `event` with `properties`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    /// What it sends.
    #[serde(rename = "type")]
    pub kind: TagKind,
    /// Names of the triggers it fires on.
    pub triggers: Vec<String>,
    /// The event name (tally's, or the platform's: `Purchase`, `purchase`, `CompletePayment`).
    pub event: String,
    /// The event's properties (tally) or the call's parameters (pixels); strings may hold
    /// `{{variable}}` references.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, Value>,
    /// The event ID, a template (`ord-{{order_id}}-purchase`). Without it a tally tag's ID is
    /// generated per firing, and a pixel tag takes the ID of the tally event for the same
    /// action fired by the same trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The tally event a pixel tag reports (default: from its platform event name,
    /// `Purchase` → `purchase`; see [`Tag::action`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl Tag {
    /// The action it reports, in tally's event names: a tally tag's event, a pixel's
    /// `action`, or its platform event mapped to tally's name.
    pub fn action(&self) -> String {
        if let Some(a) = &self.action {
            return a.clone();
        }
        if self.kind == TagKind::Tally {
            return self.event.clone();
        }
        standard_action(self.kind, &self.event)
            .map(str::to_owned)
            .unwrap_or_else(|| self.event.to_ascii_lowercase())
    }

    /// Every variable name its templates reference.
    pub fn references(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for v in self.properties.values() {
            value_references(v, &mut out);
        }
        if let Some(id) = &self.event_id {
            template_references(id, &mut out);
        }
        out
    }
}

/// The tally event name of a platform's standard event.
fn standard_action(kind: TagKind, event: &str) -> Option<&'static str> {
    let table: &[(&str, &str)] = match kind {
        TagKind::Tally => return None,
        TagKind::MetaPixel => &[
            ("Purchase", "purchase"),
            ("Lead", "lead"),
            ("CompleteRegistration", "sign_up"),
            ("AddToCart", "add_to_cart"),
            ("InitiateCheckout", "begin_checkout"),
            ("AddPaymentInfo", "add_payment_info"),
            ("Subscribe", "subscribe"),
            ("StartTrial", "start_trial"),
            ("ViewContent", "view_item"),
            ("PageView", "page_view"),
            ("Contact", "contact"),
            ("Search", "search"),
        ],
        TagKind::GoogleTag => &[
            ("purchase", "purchase"),
            ("generate_lead", "lead"),
            ("sign_up", "sign_up"),
            ("add_to_cart", "add_to_cart"),
            ("begin_checkout", "begin_checkout"),
            ("add_payment_info", "add_payment_info"),
            ("view_item", "view_item"),
            ("page_view", "page_view"),
            ("search", "search"),
        ],
        TagKind::TiktokPixel => &[
            ("CompletePayment", "purchase"),
            ("PlaceAnOrder", "purchase"),
            ("SubmitForm", "lead"),
            ("CompleteRegistration", "sign_up"),
            ("AddToCart", "add_to_cart"),
            ("InitiateCheckout", "begin_checkout"),
            ("AddPaymentInfo", "add_payment_info"),
            ("Subscribe", "subscribe"),
            ("ViewContent", "view_item"),
            ("Contact", "contact"),
            ("Search", "search"),
        ],
    };
    table.iter().find(|(e, _)| *e == event).map(|(_, a)| *a)
}

/// Collects `{{name}}` references in a template string.
pub fn template_references(template: &str, out: &mut BTreeSet<String>) {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.insert(after[..end].trim().to_owned());
        rest = &after[end + 2..];
    }
}

fn value_references(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => template_references(s, out),
        Value::Array(a) => a.iter().for_each(|v| value_references(v, out)),
        Value::Object(o) => o.values().for_each(|v| value_references(v, out)),
        _ => {}
    }
}

/// Whether `name` may name a variable, trigger or tag: 1–64 of `A-Z a-z 0-9 _ - .`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Container {
    /// Reads a document from JSON; refuses unknown fields, wrong types and more than
    /// [`MAX_DOCUMENT_BYTES`].
    ///
    /// # Errors
    /// [`ContainerError::TooLarge`], or [`ContainerError::Invalid`] naming the path of the
    /// first problem (`tags.buy.type`).
    pub fn parse(json: &str) -> Result<Container, ContainerError> {
        if json.len() > MAX_DOCUMENT_BYTES {
            return Err(ContainerError::TooLarge {
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        let de = &mut serde_json::Deserializer::from_str(json);
        let container: Container = read_document(de)?;
        Ok(container)
    }

    /// The document as compact JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a container always serializes")
    }

    /// Whether `name` is a defined or built-in variable.
    pub fn has_variable(&self, name: &str) -> bool {
        self.variables.contains_key(name) || BUILT_IN_VARIABLES.contains(&name)
    }

    pub(crate) fn empty_url_matches(&self) -> impl Iterator<Item = &str> {
        self.triggers
            .iter()
            .filter(|(_, t)| t.path().is_some_and(UrlMatch::is_empty))
            .map(|(n, _)| n.as_str())
    }
}

/// Deserializes and ends the input, turning serde's message into [`ContainerError::Invalid`].
fn read_document(
    de: &mut serde_json::Deserializer<serde_json::de::StrRead<'_>>,
) -> Result<Container, ContainerError> {
    let container = Container::deserialize(&mut *de).map_err(|e| ContainerError::Invalid {
        message: e.to_string(),
    })?;
    de.end().map_err(|e| ContainerError::Invalid {
        message: e.to_string(),
    })?;
    Ok(container)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_keeps_numbers_exact() {
        let c = Container::parse(
            r#"{
              "variables": {
                "order_id": {"type": "data_layer", "path": "ecommerce.transaction_id"},
                "campaign": {"type": "url_parameter", "name": "utm_campaign"},
                "fbp": {"type": "cookie", "name": "_fbp"},
                "sku": {"type": "dom", "selector": ".product", "attribute": "data-sku"},
                "price": {"type": "constant", "value": 129.90}
              },
              "triggers": {
                "thanks": {"type": "page_view", "path": {"starts_with": "/thanks"}},
                "buy": {"type": "click", "selector": ".buy"},
                "signup": {"type": "form_submit"},
                "dl": {"type": "data_layer", "event": "purchase"},
                "spa": {"type": "history_change"}
              },
              "tags": {
                "t": {"type": "tally", "triggers": ["thanks"], "event": "purchase",
                      "properties": {"value": "{{price}}", "order_id": "{{order_id}}"},
                      "event_id": "ord-{{order_id}}-purchase"},
                "m": {"type": "meta_pixel", "triggers": ["thanks"], "event": "Purchase"}
              }
            }"#,
        )
        .unwrap();
        assert_eq!(c.variables.len(), 5);
        assert_eq!(c.triggers["buy"].kind_name(), "click");
        assert_eq!(
            serde_json::to_string(&c.variables["price"]).unwrap(),
            r#"{"type":"constant","value":129.90}"#
        );
        assert_eq!(c.tags["m"].action(), "purchase");
        assert_eq!(
            c.tags["t"].references().into_iter().collect::<Vec<_>>(),
            ["order_id", "price"]
        );
        assert_eq!(Container::parse(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn refuses_unknown_fields_and_kinds_naming_them() {
        let e = Container::parse(
            r#"{"tags": {"a": {"type": "tally", "triggers": [], "event": "x", "colour": 1}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("colour"), "{e}");
        let e = Container::parse(r#"{"triggers": {"a": {"type": "scroll"}}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("scroll"), "{e}");
        assert!(Container::parse(r#"{"macros": {}}"#).is_err());
        assert!(Container::parse("{} {}").is_err());
        let big = format!(
            r#"{{"variables": {{"a": {{"type": "constant", "value": "{}"}}}}}}"#,
            "x".repeat(MAX_DOCUMENT_BYTES)
        );
        assert!(matches!(
            Container::parse(&big),
            Err(ContainerError::TooLarge { .. })
        ));
    }

    #[test]
    fn finds_references_in_nested_values() {
        let mut out = BTreeSet::new();
        value_references(
            &serde_json::json!({"items": [{"id": "{{ sku }}"}], "note": "{{a}}-{{b}} {{"}),
            &mut out,
        );
        assert_eq!(out.into_iter().collect::<Vec<_>>(), ["a", "b", "sku"]);
    }
}
