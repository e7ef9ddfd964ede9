//! Pieces of the write path that do not depend on the database, for backends to share: the
//! collision rejection, how a settlement maps to a delivery state, and how remembered click
//! IDs are attached to a new event. Keeping them here is what stops two backends from
//! drifting apart on anything but SQL.

use tally_core::dedup::{Candidate, MatchedBy};
use tally_core::event::Event;
use tally_core::rejection::Rejection;
use tally_core::retry::Next;
use tally_core::timestamp::Timestamp;

use crate::model::{DeliveryState, Settlement};

/// The rejection for an event ID reused for another business action.
pub(crate) fn collision_rejection(c: &Candidate, stored_value: &str) -> Rejection {
    let e = &c.event;
    Rejection::new(
        "event_id_reused",
        format!(
            "event ID `{}` is already used by a `{}` with dedup key `{}`; this copy has `{}`",
            e.event_id,
            e.name,
            stored_value,
            c.dedup_value.as_deref().unwrap_or_default()
        ),
    )
}

/// Storage name of how a duplicate was matched.
pub(crate) fn matched_by_str(m: MatchedBy) -> &'static str {
    match m {
        MatchedBy::EventId => "event_id",
        MatchedBy::DedupKey => "dedup_key",
    }
}

/// What a settlement does to its delivery: the new state, the next attempt time (when it is
/// retried) and the reason to keep (`None`: keep the previous one).
pub(crate) fn settled_state(s: &Settlement) -> (DeliveryState, Option<i64>, Option<&str>) {
    match &s.next {
        Next::Delivered => (DeliveryState::Delivered, None, None),
        Next::RetryAt(at) => (
            DeliveryState::Pending,
            Some(at.millis()),
            Some(s.attempt.summary.as_str()),
        ),
        Next::DeadLetter(reason) => (DeliveryState::Dead, None, Some(reason.as_str())),
        Next::NeedsFix(reason) => (DeliveryState::NeedsFix, None, Some(reason.as_str())),
        Next::Withheld(reason) => (DeliveryState::Withheld, None, Some(reason.as_str())),
    }
}

/// The visitor keys click IDs are remembered under: the anonymous ID and the external ID.
pub(crate) fn visitor_keys(event: &Event) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    if let Some(a) = &event.user.anonymous_id {
        keys.push(format!("anon:{a}"));
    }
    if let Some(x) = &event.user.identity.external_id {
        keys.push(format!("ext:{x}"));
    }
    keys
}

/// Click IDs that belong together: an event carrying one of a group gets nothing else of that
/// group attached (a `gclid` and a remembered `wbraid` would describe two different clicks).
const GROUPS: &[&[&str]] = &[
    &["gclid", "gbraid", "wbraid"],
    &["fbclid", "fbc"],
    &["fbp"],
    &["ttclid"],
    &["ttp"],
    &["msclkid"],
    &["ga_client_id"],
];

/// A remembered click ID: kind, value, click time.
pub(crate) type Remembered = (String, String, i64);

/// A copy of `event` with the `remembered` click IDs attached, or `None` when nothing would be
/// (no rows, or the event already has a click of every remembered group): the event is cloned
/// only when something changes, since this runs for every new event of a visitor.
pub(crate) fn with_remembered(event: &Event, remembered: Vec<Remembered>) -> Option<Event> {
    if remembered.is_empty() {
        return None;
    }
    let mut enriched = event.clone();
    attach_remembered(&mut enriched, remembered).then_some(enriched)
}

/// Attaches `remembered` click IDs (newest click first; the first of a kind wins) to `event`
/// where it has none of a group. Returns whether anything was attached.
fn attach_remembered(event: &mut Event, rows: Vec<Remembered>) -> bool {
    let mut remembered: Vec<Remembered> = Vec::new();
    for row in rows {
        if !remembered.iter().any(|(k, _, _)| *k == row.0) {
            remembered.push(row);
        }
    }
    let mut attached = false;
    let click_ids = &mut event.user.click_ids;
    for group in GROUPS {
        let has_any = click_ids
            .named()
            .any(|(kind, v)| v.is_some() && group.contains(&kind));
        if has_any {
            continue;
        }
        for (kind, value, clicked) in remembered
            .iter()
            .filter(|(k, _, _)| group.contains(&k.as_str()))
        {
            if let Some(slot) = click_ids.field_mut(kind) {
                *slot = Some(value.clone());
                attached = true;
                if click_ids.clicked_at.is_none()
                    && !matches!(kind.as_str(), "fbp" | "ttp" | "ga_client_id")
                {
                    click_ids.clicked_at = Some(Timestamp::from_millis(*clicked));
                }
            }
        }
    }
    attached
}
