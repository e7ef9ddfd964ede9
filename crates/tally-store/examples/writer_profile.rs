//! A fixed ingest workload for instruction counting: `valgrind --tool=callgrind
//! --toggle-collect='*commit_group*'` on this example counts only the SQLite writer's work, which
//! stays the same however busy the machine is (throughput runs on a shared machine do not).
//!
//! 20,000 new purchases in groups of 10, each from a new visitor with a Google click ID that
//! is remembered for 90 days — the browser-copy shape of the ingest benchmark.

use serde_json::json;
use tally_core::event::SourceKind;
use tally_core::plan::TrackingPlan;
use tally_core::timestamp::Timestamp;
use tally_store::sqlite::{SqliteConfig, SqliteStore};
use tally_store::{IngestItem, Store};

#[path = "../benches/workload/mod.rs"]
mod workload;

const EVENTS: u64 = 20_000;
const GROUP: u64 = 10;

fn purchase(plan: &TrackingPlan, n: u64, now: Timestamp) -> IngestItem {
    let v = json!({"event": "purchase", "event_id": format!("p-{n}"),
        "user": {"email": format!("user{n}@example.com"), "phone": "+16505551212",
                 "anonymous_id": format!("a-{n}"), "click_ids": {"gclid": format!("Cj0K{n}")}},
        "properties": {"value": "129.90", "currency": "EUR", "order_id": format!("o-{n}")},
        "consent": {"ad_storage": "granted", "ad_user_data": "granted"}});
    workload::item(plan, &v, SourceKind::Browser, now)
        .remember_click_ids_until(Timestamp::from_millis(now.millis() + 90 * 86_400_000))
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(SqliteConfig::new(dir.path().join("profile.db"))).expect("open");
    let plan = workload::plan();
    let now = Timestamp::from_millis(1_763_633_700_000);
    for start in (0..EVENTS).step_by(GROUP as usize) {
        let items = (start..start + GROUP)
            .map(|n| purchase(&plan, n, now))
            .collect();
        rt.block_on(store.ingest(now, items)).expect("ingest");
    }
    rt.block_on(store.close());
}
