//! Store ingest cost per event through the SQLite group commit: new events and duplicates, in
//! commits of 1, 10 and 100 events (one sync each).

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tally_core::event::SourceKind;
use tally_core::plan::TrackingPlan;
use tally_core::timestamp::Timestamp;
use tally_store::sqlite::{SqliteConfig, SqliteStore};
use tally_store::{IngestItem, Store};

mod workload;

fn candidate(plan: &TrackingPlan, id: u64, now: Timestamp) -> IngestItem {
    let v = json!({"event": "purchase", "event_id": format!("bench-{id}"),
        "user": {"email": format!("user{id}@example.com"), "phone": "+16505551212", "anonymous_id": "a-1",
                 "click_ids": {"gclid": "Cj0KCQiA"}},
        "properties": {"value": "129.90", "currency": "EUR", "order_id": format!("o-{id}"),
                       "items": [{"id": "sku-1", "quantity": 2, "price": 64.95}]},
        "page": {"url": "https://shop.example/checkout/thanks"},
        "consent": {"ad_storage": "granted", "ad_user_data": "granted"}});
    workload::item(plan, &v, SourceKind::Server, now)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteConfig::new(dir.path().join("bench.db"))).unwrap();
    let plan = workload::plan();
    let now = Timestamp::now();
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("sqlite_ingest");
    for size in [1u64, 10, 100] {
        group.throughput(Throughput::Elements(size));
        group.bench_with_input(BenchmarkId::new("new_events", size), &size, |b, &size| {
            b.iter_batched(
                || {
                    (0..size)
                        .map(|_| candidate(&plan, next.fetch_add(1, Ordering::Relaxed), now))
                        .collect::<Vec<_>>()
                },
                |items| rt.block_on(store.ingest(now, items)).unwrap(),
                criterion::BatchSize::SmallInput,
            );
        });
        group.bench_with_input(BenchmarkId::new("duplicates", size), &size, |b, &size| {
            let items: Vec<IngestItem> = (0..size).map(|i| candidate(&plan, i, now)).collect();
            rt.block_on(store.ingest(now, items.clone())).unwrap();
            b.iter_batched(
                || items.clone(),
                |items| rt.block_on(store.ingest(now, items)).unwrap(),
                criterion::BatchSize::SmallInput,
            );
        });
    }
    group.finish();
    rt.block_on(store.close());
}

criterion_group!(benches, bench);
criterion_main!(benches);
