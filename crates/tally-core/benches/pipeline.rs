//! Per-event CPU cost of the ingest pipeline's pure part: JSON text to `Value`, `parse_event`
//! (which hashes the identity), and `TrackingPlan::check`; plus identity hashing alone and the
//! store's encoding of the parsed event. Each iteration is one event (`Throughput::Elements(1)`).
//!
//! Run with `cargo bench -p tally-core --bench pipeline` (add `-- --quick` for a short run).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;
use tally_core::event::SourceKind;
use tally_core::identity::{HashedIdentity, RawIdentity};
use tally_core::parse::{ParseContext, ParseLimits, parse_event};
use tally_core::plan::{EventPlanConfig, PlanSettings, TrackingPlan};
use tally_core::timestamp::Timestamp;

/// 2026-11-20T10:15:30Z: receipt time, 30 s after the events' own timestamp.
const RECEIVED_AT_MS: i64 = 1_795_169_730_000;

/// The PRODUCT.md §2 example purchase, with every identity field, click IDs, consent and items.
const FULL_PURCHASE: &str = r#"{
  "event": "purchase",
  "event_id": "ord-1001-purchase",
  "timestamp": "2026-11-20T10:15:00Z",
  "user": {"email": "Jane.Doe@Example.com", "phone": "+1 (650) 555-1212", "external_id": "cust-42",
           "anonymous_id": "a-7f3c", "first_name": "Jane", "last_name": "Doe", "city": "Menlo Park",
           "state": "CA", "zip": "94025", "country": "US", "ip": "203.0.113.9",
           "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15",
           "click_ids": {"gclid": "Cj0KCQiA-bench-gclid-value", "fbclid": "IwAR2bench-fbclid-value",
                         "fbc": "fb.1.1596403881668.IwAR2bench", "fbp": "fb.1.1558571054389.1098115397",
                         "ttclid": "E.C.P.bench-ttclid-value"}},
  "properties": {"value": 129.90, "currency": "EUR", "order_id": "1001",
                 "items": [{"id": "sku-1", "quantity": 2, "price": 64.95}]},
  "page": {"url": "https://shop.example/checkout/thanks", "referrer": "https://shop.example/cart"},
  "consent": {"ad_storage": "granted", "analytics_storage": "granted", "ad_user_data": "granted",
              "ad_personalization": "denied", "tcf": "CPc7TgPPc7TgPAGABCENB4CgAAAAAAAAAAYgAAAAAAAA"},
  "test": false
}"#;

/// The same purchase without any user identity.
const ANONYMOUS_PURCHASE: &str = r#"{
  "event": "purchase",
  "event_id": "ord-1002-purchase",
  "timestamp": "2026-11-20T10:15:00Z",
  "properties": {"value": 129.90, "currency": "EUR", "order_id": "1002",
                 "items": [{"id": "sku-1", "quantity": 2, "price": 64.95}]},
  "page": {"url": "https://shop.example/checkout/thanks", "referrer": "https://shop.example/cart"},
  "consent": {"ad_storage": "granted", "analytics_storage": "granted", "ad_user_data": "granted",
              "ad_personalization": "denied", "tcf": "CPc7TgPPc7TgPAGABCENB4CgAAAAAAAAAAYgAAAAAAAA"},
  "test": false
}"#;

fn plan() -> TrackingPlan {
    TrackingPlan::new(
        vec![EventPlanConfig {
            name: "purchase".into(),
            conversion: true,
            require: vec!["value".into(), "currency".into(), "order_id".into()],
            dedup_key: Some("order_id".into()),
            aliases: vec!["Order Completed".into()],
            ..EventPlanConfig::default()
        }],
        PlanSettings::default(),
    )
    .expect("the bench plan is valid")
}

/// JSON text → `Value` → `parse_event` (identity hashed inside) → `TrackingPlan::check`.
fn ingest_one(text: &str, ctx: &ParseContext<'_>, plan: &TrackingPlan) -> usize {
    let value: Value = serde_json::from_str(text).expect("bench JSON is valid");
    let mut event = parse_event(&value, ctx).expect("bench event parses").event;
    let decision = plan.check(&mut event).expect("bench event passes the plan");
    decision.dedup_value.map_or(0, |v| v.len()) + event.properties.len()
}

fn full_identity() -> RawIdentity<'static> {
    RawIdentity {
        email: Some("Jane.Doe@Example.com"),
        phone: Some("+1 (650) 555-1212"),
        first_name: Some("Jane"),
        last_name: Some("Doe"),
        city: Some("Menlo Park"),
        state: Some("CA"),
        zip: Some("94025"),
        country: Some("US"),
        date_of_birth: Some("1990-04-12"),
        gender: Some("f"),
        external_id: Some("cust-42"),
    }
}

fn pipeline(c: &mut Criterion) {
    let limits = ParseLimits::default();
    let ctx = ParseContext {
        source: "backend",
        source_kind: SourceKind::Server,
        received_at: Timestamp::from_millis(RECEIVED_AT_MS),
        limits: &limits,
    };
    let plan = plan();
    // Fail loudly before measuring if a fixture stopped passing.
    assert!(ingest_one(FULL_PURCHASE, &ctx, &plan) > 0);
    assert!(ingest_one(ANONYMOUS_PURCHASE, &ctx, &plan) > 0);
    let full =
        parse_event(&serde_json::from_str(FULL_PURCHASE).expect("valid"), &ctx).expect("parses");
    assert!(full.warnings.is_empty(), "{:?}", full.warnings);
    assert!(full.event.user.identity.phone_digits_sha256.is_some());

    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));

    group.bench_function("parse_check/full_purchase", |b| {
        b.iter(|| ingest_one(black_box(FULL_PURCHASE), &ctx, &plan));
    });

    group.bench_function("parse_check/anonymous_purchase", |b| {
        b.iter(|| ingest_one(black_box(ANONYMOUS_PURCHASE), &ctx, &plan));
    });

    let raw = full_identity();
    let (identity, warnings) = HashedIdentity::hash(&raw);
    assert!(
        warnings.is_empty() && identity.email_sha256.is_some(),
        "{warnings:?}"
    );
    group.bench_function("identity_hash/full", |b| {
        b.iter(|| HashedIdentity::hash(black_box(&raw)));
    });

    let value: Value = serde_json::from_str(FULL_PURCHASE).expect("bench JSON is valid");
    let mut event = parse_event(&value, &ctx).expect("bench event parses").event;
    plan.check(&mut event).expect("bench event passes the plan");
    group.bench_function("encode/full_purchase", |b| {
        b.iter(|| serde_json::to_string(black_box(&event)).expect("an event serialises"));
    });

    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
