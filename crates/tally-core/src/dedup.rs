//! Dedup decisions (C3): is an incoming copy new, a duplicate of a stored event, or a reuse of
//! an event ID for a different business action?
//!
//! The store finds the candidates (by `(event, event_id)` and by business key, each within its
//! window) inside its write transaction and asks [`decide`]; keeping the rule here means SQLite
//! and PostgreSQL decide identically.

use serde::{Deserialize, Serialize};

use crate::event::{Event, SourceKind};
use crate::timestamp::Timestamp;

/// An event ready for the store: parsed, planned, with its dedup keys.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The event.
    pub event: Event,
    /// Business dedup key value (e.g. the order ID), when planned and present.
    pub dedup_value: Option<String>,
    /// `(event, event_id)` window.
    pub event_id_window_ms: i64,
    /// Business-key window.
    pub dedup_key_window_ms: i64,
}

/// How a duplicate was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// Same event name and event ID.
    EventId,
    /// Same event name and business key (e.g. order ID), different event ID.
    DedupKey,
}

/// A stored event the store found for a candidate.
#[derive(Clone, Copy, Debug)]
pub struct Found<'a> {
    /// The stored (merged) event.
    pub event: &'a Event,
    /// Its business key value.
    pub dedup_value: Option<&'a str>,
    /// Whether any stored copy came from a browser.
    pub has_browser_copy: bool,
}

/// The decision for one incoming copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Store it as a new event.
    New,
    /// A copy of a stored event: merge it in and answer `duplicate`.
    Duplicate {
        /// Which key matched.
        matched_by: MatchedBy,
        /// Two browser copies of one action with different event IDs: a tag installed twice.
        ghost: bool,
    },
    /// The event ID is already used by this event name for a different business action.
    Collision {
        /// The business key the stored event carries.
        stored_value: String,
    },
}

/// Decides what an incoming copy is, given what the store found within the windows.
pub fn decide(
    candidate: &Candidate,
    by_event_id: Option<Found<'_>>,
    by_key: Option<Found<'_>>,
) -> Decision {
    if let Some(found) = by_event_id {
        return match (found.dedup_value, candidate.dedup_value.as_deref()) {
            (Some(stored), Some(incoming)) if stored != incoming => Decision::Collision {
                stored_value: stored.to_owned(),
            },
            _ => Decision::Duplicate {
                matched_by: MatchedBy::EventId,
                ghost: false,
            },
        };
    }
    if let Some(found) = by_key {
        let ghost = candidate.event.source_kind == SourceKind::Browser
            && found.has_browser_copy
            && found.event.event_id != candidate.event.event_id;
        return Decision::Duplicate {
            matched_by: MatchedBy::DedupKey,
            ghost,
        };
    }
    Decision::New
}

/// Whether a stored row first seen at `first_seen` still deduplicates at `now`.
pub fn within_window(first_seen: Timestamp, now: Timestamp, window_ms: i64) -> bool {
    now.millis().saturating_sub(first_seen.millis()) < window_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Consent, User};

    fn event(id: &str, kind: SourceKind) -> Event {
        Event {
            name: "purchase".into(),
            event_id: id.into(),
            timestamp: Timestamp::from_millis(1),
            received_at: Timestamp::from_millis(1),
            source: "s".into(),
            source_kind: kind,
            user: User::default(),
            value: None,
            currency: None,
            properties: Default::default(),
            page: None,
            consent: Consent::default(),
            test: false,
        }
    }

    fn candidate(id: &str, kind: SourceKind, key: Option<&str>) -> Candidate {
        Candidate {
            event: event(id, kind),
            dedup_value: key.map(str::to_owned),
            event_id_window_ms: 10,
            dedup_key_window_ms: 10,
        }
    }

    #[test]
    fn same_event_id_is_a_duplicate_unless_the_order_differs() {
        let stored = event("a", SourceKind::Browser);
        let found = Found {
            event: &stored,
            dedup_value: Some("1001"),
            has_browser_copy: true,
        };
        let same = candidate("a", SourceKind::Server, Some("1001"));
        assert_eq!(
            decide(&same, Some(found), None),
            Decision::Duplicate {
                matched_by: MatchedBy::EventId,
                ghost: false
            }
        );
        let other = candidate("a", SourceKind::Server, Some("1002"));
        assert_eq!(
            decide(&other, Some(found), None),
            Decision::Collision {
                stored_value: "1001".into()
            }
        );
    }

    #[test]
    fn two_browser_copies_with_different_ids_for_one_order_are_ghosts() {
        let stored = event("a", SourceKind::Browser);
        let found = Found {
            event: &stored,
            dedup_value: Some("1001"),
            has_browser_copy: true,
        };
        let ghost = candidate("b", SourceKind::Browser, Some("1001"));
        assert_eq!(
            decide(&ghost, None, Some(found)),
            Decision::Duplicate {
                matched_by: MatchedBy::DedupKey,
                ghost: true
            }
        );
        let server = candidate("b", SourceKind::Server, Some("1001"));
        assert_eq!(
            decide(&server, None, Some(found)),
            Decision::Duplicate {
                matched_by: MatchedBy::DedupKey,
                ghost: false
            }
        );
    }

    #[test]
    fn windows_are_half_open() {
        assert!(within_window(
            Timestamp::from_millis(0),
            Timestamp::from_millis(9),
            10
        ));
        assert!(!within_window(
            Timestamp::from_millis(0),
            Timestamp::from_millis(10),
            10
        ));
    }
}
