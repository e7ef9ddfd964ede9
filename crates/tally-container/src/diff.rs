//! What changed between two versions of a container, item by item and field by field, for
//! people to read before they publish.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::document::Container;

/// How an item changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Only in the new version.
    Added,
    /// Only in the old version.
    Removed,
    /// In both, different.
    Changed,
}

/// One field that differs (`properties.value`), with its old and new value (absent: `None`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    /// Dotted path inside the item.
    pub path: String,
    /// The old value.
    pub from: Option<Value>,
    /// The new value.
    pub to: Option<Value>,
}

/// One variable, trigger or tag that differs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// `variable`, `trigger` or `tag`.
    pub section: &'static str,
    /// Its name.
    pub name: String,
    /// Added, removed or changed.
    pub change: ChangeKind,
    /// The fields that differ (every field of an added or removed item).
    pub fields: Vec<FieldChange>,
}

/// The changes from `old` (none: nothing published yet) to `new`: variables, then triggers,
/// then tags, each by name.
pub fn diff(old: Option<&Container>, new: &Container) -> Vec<Change> {
    let empty = Container::default();
    let old = old.unwrap_or(&empty);
    let mut out = Vec::new();
    section(&mut out, "variable", &old.variables, &new.variables);
    section(&mut out, "trigger", &old.triggers, &new.triggers);
    section(&mut out, "tag", &old.tags, &new.tags);
    out
}

fn section<T: Serialize>(
    out: &mut Vec<Change>,
    name: &'static str,
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
) {
    let json = |t: &T| serde_json::to_value(t).expect("document items serialize");
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (a, b) = (old.get(key).map(json), new.get(key).map(json));
        let change = match (&a, &b) {
            (None, Some(_)) => ChangeKind::Added,
            (Some(_), None) => ChangeKind::Removed,
            (Some(x), Some(y)) if x != y => ChangeKind::Changed,
            _ => continue,
        };
        let (mut from, mut to) = (BTreeMap::new(), BTreeMap::new());
        if let Some(a) = &a {
            leaves("", a, &mut from);
        }
        if let Some(b) = &b {
            leaves("", b, &mut to);
        }
        let mut paths: Vec<&String> = from.keys().chain(to.keys()).collect();
        paths.sort();
        paths.dedup();
        let fields = paths
            .into_iter()
            .filter(|p| from.get(*p) != to.get(*p))
            .map(|p| FieldChange {
                path: p.clone(),
                from: from.get(p).cloned(),
                to: to.get(p).cloned(),
            })
            .collect();
        out.push(Change {
            section: name,
            name: key.clone(),
            change,
            fields,
        });
    }
}

/// Flattens objects into dotted paths; arrays and scalars are leaves.
fn leaves(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, v) in o {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned(), v.clone());
        }
    }
}

/// The changes as text, one item per line and its fields indented below:
///
/// ```text
/// ~ tag meta_purchase
///     event: "Lead" -> "Purchase"
/// + trigger buy (click)
/// ```
pub fn render(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no changes\n".to_owned();
    }
    let show = |v: &Option<Value>| v.as_ref().map_or("(none)".to_owned(), Value::to_string);
    let mut out = String::new();
    for c in changes {
        let mark = match c.change {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Changed => '~',
        };
        out.push_str(&format!("{mark} {} {}\n", c.section, c.name));
        for f in &c.fields {
            match c.change {
                ChangeKind::Added => out.push_str(&format!("    {}: {}\n", f.path, show(&f.to))),
                ChangeKind::Removed => {
                    out.push_str(&format!("    {}: {}\n", f.path, show(&f.from)))
                }
                ChangeKind::Changed => out.push_str(&format!(
                    "    {}: {} -> {}\n",
                    f.path,
                    show(&f.from),
                    show(&f.to)
                )),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_added_removed_and_changed_fields() {
        let old = Container::parse(
            r#"{"triggers": {"thanks": {"type": "page_view"}, "old": {"type": "history_change"}},
                "tags": {"p": {"type": "meta_pixel", "triggers": ["thanks"], "event": "Lead",
                               "properties": {"value": 1, "currency": "EUR"}}}}"#,
        )
        .unwrap();
        let new = Container::parse(
            r#"{"triggers": {"thanks": {"type": "page_view"}, "buy": {"type": "click", "selector": ".buy"}},
                "tags": {"p": {"type": "meta_pixel", "triggers": ["thanks"], "event": "Purchase",
                               "properties": {"value": 1}}}}"#,
        )
        .unwrap();
        let changes = diff(Some(&old), &new);
        let text = render(&changes);
        assert_eq!(
            text,
            "+ trigger buy\n    selector: \".buy\"\n    type: \"click\"\n\
             - trigger old\n    type: \"history_change\"\n\
             ~ tag p\n    event: \"Lead\" -> \"Purchase\"\n    properties.currency: \"EUR\" -> (none)\n"
        );
        assert_eq!(changes[2].change, ChangeKind::Changed);
        assert_eq!(render(&diff(Some(&new), &new)), "no changes\n");
        // Against nothing published, everything is added.
        assert!(
            diff(None, &new)
                .iter()
                .all(|c| c.change == ChangeKind::Added)
        );
    }
}
