//! The publish linter: what would make a container count wrong, found before it reaches a
//! page. Errors refuse the publish; warnings are answered with it.
//!
//! Rules (codes are stable, documented in docs/API.md):
//! - `invalid_name`, `empty_field`, `unknown_trigger`, `no_trigger`: the document does not
//!   hold together;
//! - `undefined_variable`: a template references a variable that is neither defined nor
//!   built in, so it would resolve to nothing on every page;
//! - `duplicate_conversion`: two tags of one kind send the same action on the same trigger
//!   (every firing would count twice);
//! - `purchase_without_order_id`: a purchase on a page-view trigger with no order ID, so a
//!   reload of the thank-you page counts again (tally deduplicates by the order ID and by an
//!   event ID derived from it); `generated_event_id_on_page_view` warns when the order ID is
//!   there but the event ID is generated per load, which the platform pixels cannot dedup;
//! - `pixel_event_id_mismatch`: a platform pixel and the tally event for the same action do
//!   not share an event ID, so the platform counts the pixel and the server copy twice;
//!   `pixel_without_tally_event` warns when a pixel has no tally event at all;
//! - `unused_variable`, `unused_trigger`: warnings.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::document::{Container, Tag, TagKind, valid_name};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Refuses the publish.
    Error,
    /// Reported; the publish goes ahead.
    Warning,
}

/// One problem the linter found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Stable rule code (`duplicate_conversion`).
    pub code: &'static str,
    /// What is wrong, naming the tags, triggers or variables, and how to fix it.
    pub message: String,
}

impl Finding {
    fn error(code: &'static str, message: String) -> Finding {
        Finding {
            severity: Severity::Error,
            code,
            message,
        }
    }

    fn warning(code: &'static str, message: String) -> Finding {
        Finding {
            severity: Severity::Warning,
            code,
            message,
        }
    }
}

/// Every finding for `container`, errors first, in a stable order.
pub fn lint(container: &Container) -> Vec<Finding> {
    let mut out = Vec::new();
    structure(container, &mut out);
    variables(container, &mut out);
    duplicates(container, &mut out);
    purchases(container, &mut out);
    event_ids(container, &mut out);
    out.sort_by_key(|f| f.severity);
    out
}

fn structure(c: &Container, out: &mut Vec<Finding>) {
    let names = c
        .variables
        .keys()
        .map(|n| ("variable", n))
        .chain(c.triggers.keys().map(|n| ("trigger", n)))
        .chain(c.tags.keys().map(|n| ("tag", n)));
    for (what, name) in names {
        if !valid_name(name) {
            out.push(Finding::error(
                "invalid_name",
                format!("{what} name `{name}` must be 1-64 letters, digits, `_`, `-` or `.`"),
            ));
        }
    }
    for (name, t) in &c.triggers {
        let empty = match t {
            crate::Trigger::Click { selector, .. } => selector.trim().is_empty(),
            crate::Trigger::FormSubmit {
                selector: Some(s), ..
            } => s.trim().is_empty(),
            crate::Trigger::DataLayer { event, .. } => event.trim().is_empty(),
            _ => false,
        };
        if empty {
            out.push(Finding::error(
                "empty_field",
                format!("trigger `{name}` has an empty selector or event"),
            ));
        }
    }
    for name in c.empty_url_matches() {
        out.push(Finding::error(
            "empty_field",
            format!(
                "trigger `{name}` has a `path` with no condition; give equals, contains, starts_with, ends_with or regex, or remove it"
            ),
        ));
    }
    for (name, v) in &c.variables {
        let empty = match v {
            crate::Variable::DataLayer { path } => path.trim().is_empty(),
            crate::Variable::UrlParameter { name } | crate::Variable::Cookie { name } => {
                name.trim().is_empty()
            }
            crate::Variable::Dom { selector, .. } => selector.trim().is_empty(),
            crate::Variable::Constant { .. } => false,
        };
        if empty {
            out.push(Finding::error(
                "empty_field",
                format!("variable `{name}` has an empty path, name or selector"),
            ));
        }
    }
    for (name, tag) in &c.tags {
        if tag.event.trim().is_empty() {
            out.push(Finding::error(
                "empty_field",
                format!("tag `{name}` has no event name"),
            ));
        }
        if tag.triggers.is_empty() {
            out.push(Finding::error(
                "no_trigger",
                format!("tag `{name}` has no triggers, so it never fires"),
            ));
        }
        for t in &tag.triggers {
            if !c.triggers.contains_key(t) {
                out.push(Finding::error(
                    "unknown_trigger",
                    format!("tag `{name}` fires on trigger `{t}`, which is not defined"),
                ));
            }
        }
    }
    let used: BTreeSet<&String> = c.tags.values().flat_map(|t| &t.triggers).collect();
    for name in c.triggers.keys().filter(|n| !used.contains(n)) {
        out.push(Finding::warning(
            "unused_trigger",
            format!("trigger `{name}` fires no tag"),
        ));
    }
}

fn variables(c: &Container, out: &mut Vec<Finding>) {
    let mut used = BTreeSet::new();
    for (name, tag) in &c.tags {
        for r in tag.references() {
            if !c.has_variable(&r) {
                out.push(Finding::error(
                    "undefined_variable",
                    format!(
                        "tag `{name}` uses `{{{{{r}}}}}`, but no variable `{r}` is defined (built in: {})",
                        crate::document::BUILT_IN_VARIABLES.join(", ")
                    ),
                ));
            }
            used.insert(r);
        }
    }
    for name in c.variables.keys().filter(|n| !used.contains(*n)) {
        out.push(Finding::warning(
            "unused_variable",
            format!("variable `{name}` is used by no tag"),
        ));
    }
}

fn shared_triggers<'a>(a: &'a Tag, b: &Tag) -> Vec<&'a str> {
    a.triggers
        .iter()
        .filter(|t| b.triggers.contains(t))
        .map(String::as_str)
        .collect()
}

fn duplicates(c: &Container, out: &mut Vec<Finding>) {
    let tags: Vec<(&String, &Tag)> = c.tags.iter().collect();
    for (i, (a_name, a)) in tags.iter().enumerate() {
        for (b_name, b) in &tags[i + 1..] {
            if a.kind != b.kind || a.action() != b.action() {
                continue;
            }
            let shared = shared_triggers(a, b);
            if let Some(t) = shared.first() {
                out.push(Finding::error(
                    "duplicate_conversion",
                    format!(
                        "tags `{a_name}` and `{b_name}` both send {} `{}` on trigger `{t}`: every firing would count twice; remove one or give them different triggers",
                        a.kind.name(),
                        a.action()
                    ),
                ));
            }
        }
    }
}

/// Whether a property or event ID template carries an order ID.
fn has_order_id(tag: &Tag) -> bool {
    ["order_id", "transaction_id"]
        .iter()
        .any(|k| tag.properties.get(*k).is_some_and(|v| !v.is_null()))
}

fn purchases(c: &Container, out: &mut Vec<Finding>) {
    for (name, tag) in c.tags.iter().filter(|(_, t)| t.action() == "purchase") {
        let Some(page_trigger) = tag
            .triggers
            .iter()
            .find(|t| c.triggers.get(*t).is_some_and(|t| t.fires_per_page()))
        else {
            continue;
        };
        let derived_id = tag.event_id.as_ref().is_some_and(|t| t.contains("{{"));
        if tag.kind == TagKind::Tally {
            if !has_order_id(tag) && !derived_id {
                out.push(Finding::error(
                    "purchase_without_order_id",
                    format!(
                        "tag `{name}` sends a purchase on page-view trigger `{page_trigger}` without an order ID: every reload of the page would count it again. Set properties.order_id (from a variable) and an event_id derived from it, like \"ord-{{{{order_id}}}}-purchase\""
                    ),
                ));
            } else if !derived_id {
                out.push(Finding::warning(
                    "generated_event_id_on_page_view",
                    format!(
                        "tag `{name}` sends a purchase on page-view trigger `{page_trigger}` with a new event ID on every load: tally deduplicates reloads by the order ID, but pixels sharing the ID cannot; set an event_id derived from the order ID"
                    ),
                ));
            }
        } else if !derived_id {
            // A pixel without its own template takes the tally event's ID (checked below);
            // with none to take, each load has a fresh ID.
            let borrows = c.tags.values().any(|t| {
                t.kind == TagKind::Tally
                    && t.action() == "purchase"
                    && !shared_triggers(tag, t).is_empty()
                    && t.event_id.as_ref().is_some_and(|id| id.contains("{{"))
            });
            if !borrows {
                out.push(Finding::error(
                    "purchase_without_order_id",
                    format!(
                        "tag `{name}` sends a purchase on page-view trigger `{page_trigger}` with no event ID derived from the order: the platform would count every reload; share the tally purchase tag's event_id, like \"ord-{{{{order_id}}}}-purchase\""
                    ),
                ));
            }
        }
    }
}

fn event_ids(c: &Container, out: &mut Vec<Finding>) {
    for (p_name, pixel) in c.tags.iter().filter(|(_, t)| t.kind != TagKind::Tally) {
        let action = pixel.action();
        let tallies: Vec<(&String, &Tag)> = c
            .tags
            .iter()
            .filter(|(_, t)| t.kind == TagKind::Tally && t.action() == action)
            .collect();
        if tallies.is_empty() {
            out.push(Finding::warning(
                "pixel_without_tally_event",
                format!(
                    "{} tag `{p_name}` reports `{action}`, but no tally tag sends `{action}`: the platform cannot deduplicate the pixel with a server copy; add a tally tag on the same trigger",
                    pixel.kind.name()
                ),
            ));
            continue;
        }
        for (t_name, tally) in tallies {
            let shares_trigger = !shared_triggers(pixel, tally).is_empty();
            let same_id = match (&pixel.event_id, &tally.event_id) {
                // Fired together, the pixel takes the tally event's ID.
                (None, _) => shares_trigger,
                (Some(p), Some(t)) => p == t,
                (Some(_), None) => false,
            };
            if !same_id {
                let why = match (&pixel.event_id, shares_trigger) {
                    (None, false) => format!(
                        "they fire on different triggers ({} vs {}), so the pixel cannot take the tally event's ID; put them on the same trigger, or give both the same event_id derived from the action (an order ID)",
                        pixel.triggers.join(", "),
                        tally.triggers.join(", ")
                    ),
                    _ => format!(
                        "the pixel's event_id {:?} differs from the tally tag's {}; remove the pixel's event_id to share the tally event's, or make them equal",
                        pixel.event_id.as_deref().unwrap_or(""),
                        tally
                            .event_id
                            .as_deref()
                            .map_or("(generated)".to_owned(), |t| format!("{t:?}"))
                    ),
                };
                out.push(Finding::error(
                    "pixel_event_id_mismatch",
                    format!(
                        "{} tag `{p_name}` and tally tag `{t_name}` report `{action}` without sharing an event ID, so the platform would count the pixel and the server copy twice: {why}",
                        pixel.kind.name()
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(json: &str) -> Container {
        Container::parse(json).unwrap_or_else(|e| panic!("{e}"))
    }

    fn codes(c: &Container) -> Vec<(Severity, &'static str)> {
        lint(c).into_iter().map(|f| (f.severity, f.code)).collect()
    }

    fn errors(c: &Container) -> Vec<Finding> {
        lint(c)
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            .collect()
    }

    /// A container the linter has nothing to say about.
    const CLEAN: &str = r#"{
      "variables": {"order_id": {"type": "data_layer", "path": "ecommerce.transaction_id"},
                    "value": {"type": "data_layer", "path": "ecommerce.value"}},
      "triggers": {"thanks": {"type": "page_view", "path": {"starts_with": "/thanks"}},
                   "buy": {"type": "click", "selector": ".buy"}},
      "tags": {
        "purchase": {"type": "tally", "triggers": ["thanks"], "event": "purchase",
                     "properties": {"order_id": "{{order_id}}", "value": "{{value}}", "currency": "EUR"},
                     "event_id": "ord-{{order_id}}-purchase"},
        "meta_purchase": {"type": "meta_pixel", "triggers": ["thanks"], "event": "Purchase",
                          "properties": {"value": "{{value}}", "currency": "EUR"}},
        "cart": {"type": "tally", "triggers": ["buy"], "event": "add_to_cart"},
        "meta_cart": {"type": "meta_pixel", "triggers": ["buy"], "event": "AddToCart"},
        "ga_cart": {"type": "google_tag", "triggers": ["buy"], "event": "add_to_cart"},
        "tt_cart": {"type": "tiktok_pixel", "triggers": ["buy"], "event": "AddToCart"}
      }
    }"#;

    #[test]
    fn a_consistent_container_has_no_findings() {
        assert_eq!(lint(&container(CLEAN)), []);
    }

    #[test]
    fn two_tags_sending_one_conversion_on_one_trigger_are_refused() {
        let mut c = container(CLEAN);
        let mut again = c.tags["cart"].clone();
        again.properties.insert("value".into(), 1.into());
        c.tags.insert("cart_again".into(), again);
        let e = errors(&c);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].code, "duplicate_conversion");
        assert!(
            e[0].message.contains(
                "tags `cart` and `cart_again` both send tally `add_to_cart` on trigger `buy`"
            ),
            "{}",
            e[0].message
        );
        // Two pixels of one platform for one action count twice on the platform too.
        let mut c = container(CLEAN);
        let mut pixel = c.tags["meta_cart"].clone();
        pixel.action = Some("add_to_cart".into());
        c.tags.insert("meta_cart_2".into(), pixel);
        assert_eq!(errors(&c)[0].code, "duplicate_conversion");
        // The same action on different triggers is not a duplicate.
        let mut c = container(CLEAN);
        c.triggers.insert(
            "form".into(),
            crate::Trigger::FormSubmit {
                selector: None,
                path: None,
            },
        );
        let mut other = c.tags["cart"].clone();
        other.triggers = vec!["form".into()];
        c.tags.insert("cart_form".into(), other);
        assert!(!codes(&c).contains(&(Severity::Error, "duplicate_conversion")));
    }

    #[test]
    fn a_purchase_on_a_page_view_without_an_order_id_is_refused() {
        let mut c = container(CLEAN);
        let tag = c.tags.get_mut("purchase").unwrap();
        tag.properties.remove("order_id");
        tag.event_id = None;
        let e = errors(&c);
        let finding = e
            .iter()
            .find(|f| f.message.contains("tag `purchase`"))
            .expect("the tally purchase is refused");
        assert_eq!(finding.code, "purchase_without_order_id");
        assert!(
            finding.message.contains("every reload"),
            "{}",
            finding.message
        );
        // The pixel riding on it has no order-derived ID either.
        assert!(
            e.iter()
                .any(|f| f.code == "purchase_without_order_id"
                    && f.message.contains("meta_purchase"))
        );
        // With the order ID but a generated event ID: tally dedups, pixels cannot; a warning.
        let mut c = container(CLEAN);
        c.tags.get_mut("purchase").unwrap().event_id = None;
        c.tags.remove("meta_purchase");
        assert_eq!(
            codes(&c),
            [(Severity::Warning, "generated_event_id_on_page_view")]
        );
        // A purchase on a click is not reloaded with the page.
        let mut c = container(CLEAN);
        let tag = c.tags.get_mut("purchase").unwrap();
        tag.properties.remove("order_id");
        tag.event_id = None;
        tag.triggers = vec!["buy".into()];
        c.tags.get_mut("meta_purchase").unwrap().triggers = vec!["buy".into()];
        assert!(
            !codes(&c)
                .iter()
                .any(|(_, code)| *code == "purchase_without_order_id")
        );
    }

    #[test]
    fn a_pixel_not_sharing_the_tally_event_id_is_refused() {
        // Its own event ID, different from the tally tag's.
        let mut c = container(CLEAN);
        c.tags.get_mut("meta_purchase").unwrap().event_id = Some("{{order_id}}".into());
        let e = errors(&c);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].code, "pixel_event_id_mismatch");
        assert!(
            e[0].message.contains(
                "meta_pixel tag `meta_purchase` and tally tag `purchase` report `purchase`"
            ),
            "{}",
            e[0].message
        );
        // The same template is shared.
        c.tags.get_mut("meta_purchase").unwrap().event_id =
            Some("ord-{{order_id}}-purchase".into());
        assert!(errors(&c).is_empty());
        // On another trigger, it cannot take the tally event's ID.
        let mut c = container(CLEAN);
        c.tags.get_mut("tt_cart").unwrap().triggers = vec!["thanks".into()];
        let e = errors(&c);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].code, "pixel_event_id_mismatch");
        assert!(
            e[0].message.contains("different triggers"),
            "{}",
            e[0].message
        );
        // A pixel with no tally event at all: a warning.
        let mut c = container(CLEAN);
        c.tags.get_mut("ga_cart").unwrap().event = "generate_lead".into();
        assert_eq!(
            codes(&c),
            [(Severity::Warning, "pixel_without_tally_event")]
        );
    }

    #[test]
    fn variables_that_do_not_resolve_are_refused() {
        let mut c = container(CLEAN);
        c.tags.get_mut("cart").unwrap().properties.insert(
            "sku".into(),
            serde_json::json!([{"id": "{{sku}}", "page": "{{page_path}}"}]),
        );
        let e = errors(&c);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].code, "undefined_variable");
        assert!(
            e[0].message
                .starts_with("tag `cart` uses `{{sku}}`, but no variable `sku` is defined"),
            "{}",
            e[0].message
        );
        // An event ID template counts too; a defined but unused variable is a warning.
        let mut c = container(CLEAN);
        c.tags.get_mut("purchase").unwrap().event_id = Some("ord-{{order}}".into());
        c.tags.get_mut("meta_purchase").unwrap().event_id = Some("ord-{{order}}".into());
        assert!(codes(&c).contains(&(Severity::Error, "undefined_variable")));
        let mut c = container(CLEAN);
        c.variables.insert(
            "spare".into(),
            crate::Variable::Cookie { name: "_ga".into() },
        );
        assert_eq!(codes(&c), [(Severity::Warning, "unused_variable")]);
    }

    #[test]
    fn broken_references_and_empty_fields_are_refused() {
        let mut c = container(CLEAN);
        c.tags.get_mut("cart").unwrap().triggers = vec!["nowhere".into()];
        c.tags.get_mut("meta_cart").unwrap().triggers.clear();
        c.triggers.insert(
            "bad name!".into(),
            crate::Trigger::Click {
                selector: " ".into(),
                path: Some(crate::UrlMatch::default()),
            },
        );
        let got = codes(&c);
        for code in [
            "unknown_trigger",
            "no_trigger",
            "invalid_name",
            "empty_field",
        ] {
            assert!(got.contains(&(Severity::Error, code)), "{code}: {got:?}");
        }
        assert!(got.contains(&(Severity::Warning, "unused_trigger")));
        // Errors come before warnings.
        let first_warning = got
            .iter()
            .position(|(s, _)| *s == Severity::Warning)
            .unwrap();
        assert!(
            got[first_warning..]
                .iter()
                .all(|(s, _)| *s == Severity::Warning)
        );
    }
}
