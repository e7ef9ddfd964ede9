//! Events for the store's benchmarks and profiling examples, built through the real parser and
//! plan (shared by `benches/ingest.rs` and `examples/writer_profile.rs`).

use serde_json::Value;
use tally_core::dedup::Candidate;
use tally_core::event::SourceKind;
use tally_core::parse::{ParseContext, ParseLimits, parse_event};
use tally_core::plan::{EventPlanConfig, PlanSettings, TrackingPlan};
use tally_core::timestamp::Timestamp;
use tally_store::IngestItem;

/// Purchases deduplicate on `order_id`.
pub fn plan() -> TrackingPlan {
    TrackingPlan::new(
        vec![EventPlanConfig {
            name: "purchase".into(),
            require: vec!["value".into(), "currency".into(), "order_id".into()],
            dedup_key: Some("order_id".into()),
            ..Default::default()
        }],
        PlanSettings::default(),
    )
    .expect("valid plan")
}

/// `v` parsed and planned as received at `now` from a source of `kind`.
pub fn item(plan: &TrackingPlan, v: &Value, kind: SourceKind, now: Timestamp) -> IngestItem {
    let limits = ParseLimits::default();
    let ctx = ParseContext {
        source: kind.as_str(),
        source_kind: kind,
        received_at: now,
        limits: &limits,
    };
    let mut event = parse_event(v, &ctx).expect("parses").event;
    let d = plan.check(&mut event).expect("planned");
    IngestItem::event(
        Candidate {
            event,
            dedup_value: d.dedup_value,
            event_id_window_ms: d.event_id_window_ms,
            dedup_key_window_ms: d.dedup_key_window_ms,
        },
        None,
    )
}
