//! The backend-free half of right to erasure: the search state both backends drive, and how a
//! quarantine row or an identity link is recognised as the person's.
//!
//! What the search follows, round by round, starting from the keys the request names:
//! 1. every event with a known key in `event_people` (the keys an event was ever indexed
//!    under, including those a merge added), and every key of every event found so far;
//! 2. every identity link (identify call) whose anonymous ID, external ID, or hashed email or
//!    phone trait is a known key, and every key of those links.
//!
//! It stops when a round adds nothing (complete) or after the round bound (incomplete: events
//! reachable only through further links stay). Quarantine rows are matched with the final
//! keys but not followed: a refused event is not known to be the person's beyond its keys.
//! Revocations are never removed.

use std::collections::BTreeSet;

use serde_json::Value;
use tally_core::event::User;
use tally_core::identity::HashedIdentity;

use crate::model::{
    DeliveryCounts, Erasure, ErasureReport, QuarantineBody, erasure_key_digest, person_keys,
};

/// What an erasure has found so far.
pub(crate) struct Search {
    /// Every key the person is known by.
    pub keys: BTreeSet<String>,
    /// Every event (row ID) about the person.
    pub events: BTreeSet<i64>,
    /// Every identity link (row ID) of the person.
    pub links: BTreeSet<i64>,
    /// Rounds run.
    pub rounds: u32,
    /// Whether the last round found nothing new.
    pub complete: bool,
    max_rounds: u32,
}

impl Search {
    pub fn new(erasure: &Erasure) -> Search {
        Search {
            keys: erasure.people.iter().cloned().collect(),
            events: BTreeSet::new(),
            links: BTreeSet::new(),
            rounds: 0,
            complete: erasure.people.is_empty(),
            max_rounds: erasure.max_rounds.max(1),
        }
    }

    /// Whether another round should run; counts it.
    pub fn next_round(&mut self) -> bool {
        if self.complete || self.rounds >= self.max_rounds {
            return false;
        }
        self.rounds += 1;
        true
    }

    /// Ends a round: complete when it grew nothing (compare with [`Search::size`] before).
    pub fn end_round(&mut self, size_before: (usize, usize, usize)) {
        self.complete = self.size() == size_before;
    }

    /// How much is known, to tell whether a round grew it.
    pub fn size(&self) -> (usize, usize, usize) {
        (self.keys.len(), self.events.len(), self.links.len())
    }

    /// Takes one `event_people` row seen in a scan for `person IN keys OR event IN events`.
    pub fn saw_event_key(&mut self, event: i64, person: String, known_events: &BTreeSet<i64>) {
        if self.keys.contains(&person) {
            self.events.insert(event);
        }
        if known_events.contains(&event) {
            self.keys.insert(person);
        }
    }

    /// Takes an identity link that may be the person's; keeps it (and its keys) when it is.
    pub fn saw_link(
        &mut self,
        id: i64,
        anonymous_id: Option<String>,
        external_id: Option<String>,
        identity: &str,
    ) {
        let keys = link_keys(anonymous_id, external_id, identity);
        if keys.iter().any(|k| self.keys.contains(k)) {
            self.links.insert(id);
            self.keys.extend(keys);
        }
    }

    /// Anonymous IDs among the keys (`anon:` prefix removed).
    pub fn anonymous_ids(&self) -> Vec<String> {
        self.with_prefix("anon:")
    }

    /// External IDs among the keys.
    pub fn external_ids(&self) -> Vec<String> {
        self.with_prefix("ext:")
    }

    /// Visitor keys (`anon:`/`ext:`), as `visitor_click_ids` stores them.
    pub fn visitor_keys(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter(|k| k.starts_with("anon:") || k.starts_with("ext:"))
            .cloned()
            .collect()
    }

    fn with_prefix(&self, prefix: &str) -> Vec<String> {
        self.keys
            .iter()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_owned))
            .collect()
    }

    /// Texts a stored JSON document about the person must contain (each key's value as it
    /// appears inside a JSON string): a cheap filter before a row is decoded and checked.
    pub fn needles(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter_map(|k| k.split_once(':'))
            .map(|(_, v)| {
                let quoted = serde_json::to_string(v).expect("a string serialises");
                quoted[1..quoted.len() - 1].to_owned()
            })
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// Hashed-identifier texts (email, phone, external ID) a link's identity JSON must contain.
    pub fn identity_needles(&self) -> Vec<String> {
        let mut needles = self.needles();
        let anons: BTreeSet<String> = self.anonymous_ids().into_iter().collect();
        needles.retain(|n| !anons.contains(n));
        needles
    }

    /// Whether a quarantine row's body is about the person.
    pub fn owns_quarantine_body(&self, body: &str) -> bool {
        quarantine_keys(body).iter().any(|k| self.keys.contains(k))
    }

    /// The report, with the counts the backend gathered.
    pub fn report(&self, dry_run: bool, counts: Counts) -> ErasureReport {
        let mut keys: Vec<String> = self.keys.iter().map(|k| erasure_key_digest(k)).collect();
        keys.sort();
        keys.dedup();
        ErasureReport {
            dry_run,
            keys_searched: keys,
            rounds: self.rounds,
            complete: self.complete,
            events: self.events.len() as u64,
            copies: counts.copies,
            aliases: counts.aliases,
            person_keys: counts.person_keys,
            deliveries: counts.deliveries,
            attempts: counts.attempts,
            quarantine: counts.quarantine,
            click_memories: counts.click_memories,
            identity_links: self.links.len() as u64,
            revocations_kept: counts.revocations_kept,
        }
    }
}

/// Row counts a backend gathers for the report.
#[derive(Default)]
pub(crate) struct Counts {
    pub copies: u64,
    pub aliases: u64,
    pub person_keys: u64,
    pub deliveries: DeliveryCounts,
    pub attempts: u64,
    pub quarantine: u64,
    pub click_memories: u64,
    pub revocations_kept: u64,
}

impl Counts {
    /// Adds `n` deliveries in storage state `state` (`retrying`: pending with attempts made).
    pub fn add_deliveries(&mut self, state: &str, retried: bool, leased: bool, n: u64) {
        let d = &mut self.deliveries;
        match state {
            "pending" if leased => d.in_flight += n,
            "pending" if retried => d.retrying += n,
            "pending" => d.pending += n,
            "delivered" => d.delivered += n,
            "dead" => d.dead += n,
            "needs_fix" => d.needs_fix += n,
            _ => d.withheld += n,
        }
    }
}

/// The person keys of an identity link: its anonymous and external IDs and its hashed traits.
fn link_keys(
    anonymous_id: Option<String>,
    external_id: Option<String>,
    identity: &str,
) -> Vec<String> {
    let mut identity: HashedIdentity = serde_json::from_str(identity).unwrap_or_default();
    if external_id.is_some() {
        identity.external_id = external_id;
    }
    person_keys(&User {
        anonymous_id,
        identity,
        ..User::default()
    })
}

/// The person keys of a quarantine row: those of the parsed event, or of the scrubbed input's
/// anonymous ID and hashed identity.
fn quarantine_keys(body: &str) -> Vec<String> {
    match serde_json::from_str::<QuarantineBody>(body) {
        Ok(QuarantineBody::Event { event }) => person_keys(&event.user),
        Ok(QuarantineBody::Input { input, identity }) => {
            let anonymous_id = match input.pointer("/user/anonymous_id") {
                Some(Value::String(s)) => Some(s.trim().to_owned()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            }
            .filter(|a| !a.is_empty());
            person_keys(&User {
                anonymous_id,
                identity,
                ..User::default()
            })
        }
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(keys: &[&str]) -> Search {
        Search::new(&Erasure {
            people: keys.iter().map(|k| k.to_string()).collect(),
            max_rounds: 3,
            dry_run: false,
        })
    }

    #[test]
    fn a_link_is_the_person_s_by_any_of_its_keys_and_brings_the_others() {
        let mut s = search(&["em:abc"]);
        s.saw_link(1, Some("v-1".into()), None, r#"{"email_sha256":"abc"}"#);
        s.saw_link(2, Some("v-2".into()), Some("c-2".into()), "{}");
        assert_eq!(s.links.iter().copied().collect::<Vec<_>>(), [1]);
        assert!(s.keys.contains("anon:v-1"));
        assert!(!s.keys.contains("anon:v-2"));
    }

    #[test]
    fn quarantine_inputs_are_matched_by_anonymous_id_and_hashed_identity() {
        let s = search(&["anon:v-7"]);
        let body = r#"{"format":"input","input":{"user":{"anonymous_id":" v-7 "}},"identity":{}}"#;
        assert!(s.owns_quarantine_body(body));
        let other = r#"{"format":"input","input":{"user":{"anonymous_id":"v-70"}},"identity":{}}"#;
        assert!(!s.owns_quarantine_body(other));
        assert!(!s.owns_quarantine_body("not json"));
    }

    #[test]
    fn needles_are_json_escaped_values_and_rounds_are_bounded() {
        let mut s = search(&["ext:a\"b", "anon:v"]);
        assert_eq!(s.needles(), ["v", "a\\\"b"]);
        assert_eq!(s.identity_needles(), ["a\\\"b"]);
        assert!(s.next_round());
        s.keys.insert("anon:w".into());
        s.end_round((2, 0, 0));
        assert!(!s.complete);
        assert!(s.next_round() && s.next_round());
        assert!(!s.next_round(), "three rounds at most");
    }
}
