//! The store conformance suite: every backend runs every test here through
//! [`store_test_suite!`], so SQLite and PostgreSQL keep one contract.
//!
//! - `container.rs`: the tag container's drafts and versions;
//! - `dedup.rs`: dedup, windows, collisions, concurrency;
//! - `erase.rs`: right to erasure;
//! - `ledger.rs`: merge results, copies, aliases, stats;
//! - `outbox.rs`: deliveries, leases, retries, dead letters;
//! - `quarantine.rs`: quarantine rows, replay bookkeeping, identity links, durability.

pub mod container;
pub mod dedup;
pub mod erase;
pub mod ledger;
pub mod outbox;
pub mod people;
pub mod quarantine;

use async_trait::async_trait;
use serde_json::Value;
use tally_core::dedup::Candidate;
use tally_core::event::SourceKind;
use tally_core::parse::{ParseContext, ParseLimits, parse_event};
use tally_core::plan::{EventPlanConfig, PlanSettings, TrackingPlan};
use tally_core::timestamp::Timestamp;

use crate::{IngestItem, Store};

/// A backend that can be created empty for one test and reopened on the same data.
#[async_trait]
pub trait TestStore: Store + Sized {
    /// Keeps the backing data alive (a temp dir, a schema name).
    type Guard: Send + Sync;
    /// Whether this backend can run here (a database server may be missing); a backend that
    /// cannot says so loudly, and panics instead where it must run (CI).
    fn available() -> bool {
        true
    }
    /// A fresh, empty store.
    async fn for_test() -> (Self, Self::Guard);
    /// Closes this handle and opens a new one on the same data.
    async fn reopen(self, guard: &Self::Guard) -> Self;
}

/// 2025-11-20T10:15:00Z, the suite's "now".
pub const NOW: Timestamp = Timestamp::from_millis(1_763_633_700_000);
/// One day in milliseconds.
pub const DAY: i64 = 86_400_000;

/// The suite's plan: purchases deduplicate on `order_id`.
pub fn plan() -> TrackingPlan {
    TrackingPlan::new(
        vec![
            EventPlanConfig {
                name: "purchase".into(),
                conversion: true,
                require: vec!["value".into(), "currency".into(), "order_id".into()],
                dedup_key: Some("order_id".into()),
                ..Default::default()
            },
            EventPlanConfig {
                name: "add_to_cart".into(),
                ..Default::default()
            },
        ],
        PlanSettings::default(),
    )
    .expect("valid plan")
}

/// Parses and plans one event JSON as received at `at` from a source of `kind`.
pub fn candidate(v: Value, kind: SourceKind, at: Timestamp) -> Candidate {
    let limits = ParseLimits::default();
    let ctx = ParseContext {
        source: kind.as_str(),
        source_kind: kind,
        received_at: at,
        limits: &limits,
    };
    let mut event = parse_event(&v, &ctx).expect("test event parses").event;
    let decision = plan().check(&mut event).expect("test event is planned");
    Candidate {
        event,
        dedup_value: decision.dedup_value,
        event_id_window_ms: decision.event_id_window_ms,
        dedup_key_window_ms: decision.dedup_key_window_ms,
    }
}

/// A purchase with `event_id` and `order_id`.
pub fn purchase(event_id: &str, order_id: &str, kind: SourceKind, at: Timestamp) -> IngestItem {
    IngestItem::event(
        candidate(
            serde_json::json!({"event": "purchase", "event_id": event_id,
                "timestamp": at.millis() - 1000,
                "properties": {"value": 10, "currency": "EUR", "order_id": order_id}}),
            kind,
            at,
        ),
        None,
    )
}

/// Stamps out the whole suite for one backend type implementing [`TestStore`].
macro_rules! store_test_suite {
    ($store:ty) => {
        mod conformance {
            use super::*;
            use crate::testsuite::{container, dedup, erase, ledger, outbox, people, quarantine};

            macro_rules! case {
                ($module:ident :: $name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        if !<$store as crate::testsuite::TestStore>::available() {
                            return;
                        }
                        $module::$name::<$store>().await;
                    }
                };
            }

            case!(dedup::first_copy_is_accepted_and_a_retry_is_a_duplicate);
            case!(dedup::fifty_concurrent_copies_give_exactly_one_accepted);
            case!(dedup::same_order_under_another_event_id_is_a_duplicate);
            case!(dedup::event_id_is_accepted_again_after_its_window);
            case!(dedup::order_id_is_accepted_again_after_its_window);
            case!(dedup::event_id_reused_for_another_order_is_quarantined_as_a_collision);
            case!(dedup::duplicates_inside_one_batch_are_caught);
            case!(ledger::browser_and_server_copies_merge_into_one_event_with_every_copy_kept);
            case!(ledger::ledger_finds_an_event_by_a_duplicate_s_own_event_id);
            case!(ledger::dedup_stats_count_duplicates_ghosts_collisions_and_source_pairs);
            case!(ledger::dedup_stats_count_only_copies_since_the_given_time);
            case!(ledger::unknown_event_id_has_an_empty_ledger);
            case!(outbox::deliveries_are_created_with_a_new_event_and_never_for_a_duplicate);
            case!(outbox::nothing_is_claimed_before_the_join_window_and_the_claim_carries_the_merged_event);
            case!(outbox::claims_are_exclusive_across_workers);
            case!(outbox::an_expired_lease_is_reclaimable_and_the_old_holder_cannot_settle);
            case!(outbox::a_retry_waits_for_its_time_and_a_dead_letter_keeps_every_attempt);
            case!(outbox::a_gated_claim_takes_only_test_deliveries_until_the_destination_is_live);
            case!(people::a_later_server_event_of_the_visitor_gets_the_remembered_click_ids);
            case!(people::click_ids_follow_identify_links_and_expire);
            case!(people::revocation_withholds_pending_deliveries_and_later_arrivals);
            case!(people::replay_requeues_stopped_deliveries_by_filter_but_not_expired_ones);
            case!(people::click_memory_links_and_revocations_survive_a_reopen_in_any_order);
            case!(people::one_group_decides_its_events_as_if_they_arrived_one_by_one);
            case!(erase::erasure_by_email_removes_the_person_s_data_found_through_identify_links);
            case!(quarantine::quarantined_events_are_listed_and_filtered);
            case!(quarantine::a_successful_replay_resolves_the_quarantine_row);
            case!(quarantine::a_failed_replay_keeps_the_row_open_with_the_new_reason);
            case!(quarantine::identify_links_are_recorded);
            case!(quarantine::committed_events_survive_a_reopen);
            case!(container::drafts_and_numbered_versions_survive_a_reopen);
            case!(container::concurrent_publishes_get_distinct_numbers);
        }
    };
}
pub(crate) use store_test_suite;
