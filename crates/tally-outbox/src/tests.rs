//! Dispatcher behaviour against the real SQLite store, a scripted destination and a clock the
//! test moves; no sleeps.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tally_core::clock::{Clock, ManualClock};
use tally_core::consent::{ConsentNeeds, ConsentPolicy};
use tally_core::dedup::Candidate;
use tally_core::event::SourceKind;
use tally_core::parse::{ParseContext, ParseLimits, parse_event};
use tally_core::plan::{EventPlanConfig, PlanSettings, TrackingPlan};
use tally_core::retry::{Disposition, RetryPolicy};
use tally_core::route::Route;
use tally_core::timestamp::Timestamp;
use tally_store::sqlite::{SqliteConfig, SqliteStore};
use tally_store::{DeliveryState, IngestItem, PlannedDelivery, Store};

use crate::{AttemptSummary, Destination, Dispatcher, DispatcherConfig};
use tally_destinations::Outgoing;

const START: Timestamp = Timestamp::from_millis(1_763_633_700_000);

/// (event ID, platform name, value, identifiers, test) of one event sent.
type SentDetail = (String, String, Option<String>, bool, bool);

/// Answers from a script (then success) and records what it was sent.
struct ScriptedDestination {
    name: String,
    max_batch: usize,
    script: Mutex<VecDeque<Disposition>>,
    sent: Mutex<Vec<Vec<String>>>,
    details: Mutex<Vec<SentDetail>>,
}

impl ScriptedDestination {
    fn new(name: &str, max_batch: usize, script: Vec<Disposition>) -> Arc<Self> {
        Arc::new(ScriptedDestination {
            name: name.into(),
            max_batch,
            script: Mutex::new(script.into()),
            sent: Mutex::default(),
            details: Mutex::default(),
        })
    }

    fn sent_ids(&self) -> Vec<Vec<String>> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait]
impl Destination for ScriptedDestination {
    fn name(&self) -> &str {
        &self.name
    }
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    async fn send(&self, batch: &[Outgoing<'_>]) -> Vec<(Disposition, AttemptSummary)> {
        self.sent
            .lock()
            .unwrap()
            .push(batch.iter().map(|o| o.event.event_id.clone()).collect());
        self.details.lock().unwrap().extend(batch.iter().map(|o| {
            (
                o.event.event_id.clone(),
                o.name.to_owned(),
                o.value.map(|v| v.to_string()),
                o.identifiers,
                o.test,
            )
        }));
        let next = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Disposition::Succeeded);
        batch
            .iter()
            .map(|_| {
                (
                    next.clone(),
                    AttemptSummary {
                        status: None,
                        text: format!("{next:?}"),
                    },
                )
            })
            .collect()
    }
}

struct Harness {
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(SqliteStore::open(SqliteConfig::new(dir.path().join("t.db"))).unwrap());
        Harness {
            store,
            clock: Arc::new(ManualClock::new(START)),
            _dir: dir,
        }
    }

    async fn accept(&self, event_id: &str, destinations: &[&str], deadline_ms: i64) {
        self.accept_json(
            serde_json::json!({"event": "purchase", "event_id": event_id}),
            destinations,
            deadline_ms,
        )
        .await;
    }

    async fn accept_json(&self, json: serde_json::Value, destinations: &[&str], deadline_ms: i64) {
        let plan = TrackingPlan::new(
            vec![EventPlanConfig {
                name: "purchase".into(),
                ..Default::default()
            }],
            PlanSettings::default(),
        )
        .unwrap();
        let limits = ParseLimits::default();
        let now = self.clock.now();
        let ctx = ParseContext {
            source: "backend",
            source_kind: SourceKind::Server,
            received_at: now,
            limits: &limits,
        };
        let mut event = parse_event(&json, &ctx).unwrap().event;
        let d = plan.check(&mut event).unwrap();
        let candidate = Candidate {
            event,
            dedup_value: None,
            event_id_window_ms: d.event_id_window_ms,
            dedup_key_window_ms: d.dedup_key_window_ms,
        };
        let planned = destinations
            .iter()
            .map(|name| PlannedDelivery {
                destination: name.to_string(),
                not_before: now,
                deadline: Timestamp::from_millis(now.millis() + deadline_ms),
                test: false,
            })
            .collect();
        self.store
            .ingest(
                now,
                vec![IngestItem::event(candidate, None).with_deliveries(planned)],
            )
            .await
            .unwrap();
    }

    fn dispatcher(&self, destination: Arc<dyn Destination>, owner: &str) -> Dispatcher {
        let route = route(destination.name(), "webhook");
        self.dispatcher_with(destination, owner, route)
    }

    fn dispatcher_with(
        &self,
        destination: Arc<dyn Destination>,
        owner: &str,
        route: Route,
    ) -> Dispatcher {
        Dispatcher::new(
            self.store.clone(),
            destination,
            self.clock.clone(),
            DispatcherConfig {
                owner: owner.into(),
                lease: Duration::from_secs(60),
                idle_poll: Duration::from_millis(50),
                retry: RetryPolicy {
                    jitter: 0.0,
                    ..Default::default()
                },
                route,
                consent: ConsentPolicy::default(),
            },
        )
    }

    async fn delivery(&self, event_id: &str, destination: &str) -> tally_store::DeliveryRecord {
        let ledger = self.store.ledger(event_id).await.unwrap();
        ledger[0]
            .deliveries
            .iter()
            .find(|d| d.destination == destination)
            .unwrap()
            .clone()
    }
}

/// Purchases go out as `Purchase`, with the consent needs of `kind`.
fn route(destination: &str, kind: &str) -> Route {
    Route {
        destination: destination.into(),
        kind: kind.into(),
        events: [("purchase".to_owned(), "Purchase".to_owned())].into(),
        value_properties: Default::default(),
        consent: ConsentNeeds::for_kind(kind),
        test_mode: false,
        require_test_conversion: false,
        join_window_ms: 0,
        max_age_ms: 7 * 86_400_000,
    }
}

fn unavailable() -> Disposition {
    Disposition::Retry {
        reason: "HTTP 503".into(),
        retry_after: None,
        overloaded: false,
    }
}

#[tokio::test]
async fn retries_on_503_then_delivers_once() {
    let h = Harness::new();
    h.accept("e-1", &["meta"], 7 * 86_400_000).await;
    let meta = ScriptedDestination::new("meta", 100, vec![unavailable(), unavailable()]);
    let dispatcher = h.dispatcher(meta.clone(), "w1");

    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    assert_eq!(
        dispatcher.run_once().await.unwrap(),
        0,
        "not due before the first retry step"
    );
    h.clock.advance_ms(5_000);
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    h.clock.advance_ms(29_999);
    assert_eq!(dispatcher.run_once().await.unwrap(), 0);
    h.clock.advance_ms(1);
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    h.clock.advance_ms(3_600_000);
    assert_eq!(
        dispatcher.run_once().await.unwrap(),
        0,
        "delivered: nothing left"
    );

    let d = h.delivery("e-1", "meta").await;
    assert_eq!(d.state, DeliveryState::Delivered);
    let outcomes: Vec<&str> = d.attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "retry", "succeeded"]);
    assert_eq!(meta.sent_ids().len(), 3);
}

#[tokio::test]
async fn retry_after_is_respected() {
    let h = Harness::new();
    h.accept("e-2", &["tiktok"], 7 * 86_400_000).await;
    let limited = Disposition::Retry {
        reason: "HTTP 429".into(),
        retry_after: Some(Duration::from_secs(120)),
        overloaded: true,
    };
    let tiktok = ScriptedDestination::new("tiktok", 100, vec![limited]);
    let dispatcher = h.dispatcher(tiktok.clone(), "w1");
    dispatcher.run_once().await.unwrap();
    h.clock.advance_ms(119_999);
    assert_eq!(
        dispatcher.run_once().await.unwrap(),
        0,
        "asked to wait two minutes"
    );
    h.clock.advance_ms(1);
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    assert_eq!(
        h.delivery("e-2", "tiktok").await.state,
        DeliveryState::Delivered
    );
}

#[tokio::test]
async fn an_outage_past_the_platform_deadline_dead_letters_with_the_reason() {
    let h = Harness::new();
    h.accept("e-3", &["ga4"], 72 * 3_600_000).await;
    let ga4 = ScriptedDestination::new("ga4", 25, (0..1000).map(|_| unavailable()).collect());
    let dispatcher = h.dispatcher(ga4.clone(), "w1");
    let mut rounds = 0;
    // Move the clock to each retry time until the delivery stops.
    loop {
        let attempted = dispatcher.run_once().await.unwrap();
        if attempted == 0 {
            let d = h.delivery("e-3", "ga4").await;
            if d.state != DeliveryState::Pending {
                break;
            }
            h.clock.set(d.not_before);
            continue;
        }
        rounds += 1;
        assert!(rounds < 200, "never gave up");
    }
    let d = h.delivery("e-3", "ga4").await;
    assert_eq!(d.state, DeliveryState::Dead);
    assert!(
        d.last_reason.as_deref().unwrap().contains("deadline"),
        "{:?}",
        d.last_reason
    );
    assert!(
        h.clock.now().millis() - START.millis() <= 72 * 3_600_000,
        "never attempted past the deadline"
    );
    assert!(
        d.attempts.len() > 5,
        "kept retrying until the deadline: {}",
        d.attempts.len()
    );
}

#[tokio::test]
async fn a_dead_destination_does_not_hold_up_a_healthy_one() {
    let h = Harness::new();
    for i in 0..30 {
        h.accept(&format!("e-{i}"), &["dead", "healthy"], 7 * 86_400_000)
            .await;
    }
    let dead = ScriptedDestination::new("dead", 10, (0..100).map(|_| unavailable()).collect());
    let healthy = ScriptedDestination::new("healthy", 10, vec![]);
    let (dead_dispatcher, healthy_dispatcher) = (
        h.dispatcher(dead, "w1"),
        h.dispatcher(healthy.clone(), "w2"),
    );
    for _ in 0..3 {
        dead_dispatcher.run_once().await.unwrap();
        healthy_dispatcher.run_once().await.unwrap();
    }
    assert_eq!(
        healthy.sent_ids().concat().len(),
        30,
        "all delivered in max_batch-sized requests"
    );
    assert!(healthy.sent_ids().iter().all(|b| b.len() <= 10));
    assert_eq!(
        h.delivery("e-0", "dead").await.state,
        DeliveryState::Pending
    );
    assert_eq!(
        h.delivery("e-0", "healthy").await.state,
        DeliveryState::Delivered
    );
}

#[tokio::test]
async fn a_crashed_dispatcher_s_deliveries_are_taken_over_after_its_lease() {
    let h = Harness::new();
    h.accept("e-9", &["meta"], 7 * 86_400_000).await;
    // w1 claims and dies before settling.
    let claimed = h
        .store
        .claim(
            h.clock.now(),
            "meta",
            "w1",
            Timestamp::from_millis(h.clock.now().millis() + 60_000),
            10,
            false,
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let meta = ScriptedDestination::new("meta", 100, vec![]);
    let w2 = h.dispatcher(meta.clone(), "w2");
    assert_eq!(w2.run_once().await.unwrap(), 0, "still leased by w1");
    h.clock.advance_ms(60_000);
    assert_eq!(w2.run_once().await.unwrap(), 1);
    assert_eq!(
        h.delivery("e-9", "meta").await.state,
        DeliveryState::Delivered
    );
    assert_eq!(meta.sent_ids(), [vec!["e-9".to_owned()]]);
}

#[tokio::test]
async fn consent_denied_for_ads_sends_nothing_and_records_the_gap() {
    let h = Harness::new();
    h.accept_json(
        serde_json::json!({"event": "purchase", "event_id": "c-1",
            "consent": {"ad_storage": "denied", "ad_user_data": "denied", "analytics_storage": "granted"}}),
        &["meta", "ga4"],
        7 * 86_400_000,
    )
    .await;
    let meta = ScriptedDestination::new("meta", 100, vec![]);
    let ga4 = ScriptedDestination::new("ga4", 25, vec![]);
    let meta_dispatcher = h.dispatcher_with(meta.clone(), "w1", route("meta", "meta_capi"));
    let ga4_dispatcher = h.dispatcher_with(ga4.clone(), "w2", route("ga4", "ga4"));
    assert_eq!(meta_dispatcher.run_once().await.unwrap(), 1);
    assert_eq!(ga4_dispatcher.run_once().await.unwrap(), 1);

    assert!(meta.sent_ids().is_empty(), "nothing may reach Meta");
    let d = h.delivery("c-1", "meta").await;
    assert_eq!(d.state, DeliveryState::Withheld);
    assert_eq!(
        d.last_reason.as_deref(),
        Some("consent: ad_storage, ad_user_data not granted")
    );
    let audit = d.attempts[0].consent.as_deref().unwrap();
    assert!(audit.starts_with("ad_storage=denied"), "{audit}");
    let stats = h.store.destination_stats().await.unwrap();
    let gap: Vec<(&str, u64)> = stats
        .iter()
        .map(|s| (s.destination.as_str(), s.withheld))
        .collect();
    assert_eq!(gap, [("ga4", 0), ("meta", 1)]);
    assert!(
        meta_dispatcher.run_once().await.unwrap() == 0,
        "withheld is final"
    );

    // GA4 may receive it, without personal identifiers.
    let details = ga4.details.lock().unwrap().clone();
    assert_eq!(details.len(), 1);
    assert!(!details[0].3, "sent without identifiers");
    let d = h.delivery("c-1", "ga4").await;
    assert_eq!(d.state, DeliveryState::Delivered);
    assert!(
        d.attempts[0]
            .consent
            .as_deref()
            .unwrap()
            .contains("sent without identifiers")
    );
}

#[tokio::test]
async fn the_route_names_values_and_test_mode_what_is_sent() {
    let h = Harness::new();
    h.accept_json(
        serde_json::json!({"event": "purchase", "event_id": "v-1",
            "properties": {"value": "129.90", "currency": "EUR", "margin": "41.07"}}),
        &["meta"],
        7 * 86_400_000,
    )
    .await;
    h.accept_json(
        serde_json::json!({"event": "purchase", "event_id": "v-2", "test": true,
            "properties": {"value": "5", "currency": "EUR"}}),
        &["meta"],
        7 * 86_400_000,
    )
    .await;
    let meta = ScriptedDestination::new("meta", 100, vec![]);
    let mut r = route("meta", "meta_capi");
    r.value_properties
        .insert("purchase".into(), "margin".into());
    h.dispatcher_with(meta.clone(), "w1", r)
        .run_once()
        .await
        .unwrap();
    let mut details = meta.details.lock().unwrap().clone();
    details.sort();
    assert_eq!(
        details,
        [
            (
                "v-1".to_owned(),
                "Purchase".to_owned(),
                Some("41.07".to_owned()),
                true,
                false
            ),
            ("v-2".to_owned(), "Purchase".to_owned(), None, true, true),
        ]
    );
}

#[tokio::test]
async fn an_event_past_its_deadline_is_dead_lettered_without_a_request() {
    let h = Harness::new();
    h.accept("old-1", &["meta"], 1_000).await;
    h.clock.advance_ms(1_001);
    let meta = ScriptedDestination::new("meta", 100, vec![]);
    assert_eq!(
        h.dispatcher(meta.clone(), "w1").run_once().await.unwrap(),
        1
    );
    assert!(meta.sent_ids().is_empty());
    let d = h.delivery("old-1", "meta").await;
    assert_eq!(d.state, DeliveryState::Dead);
    assert!(
        d.last_reason
            .unwrap()
            .contains("accepts this event only until")
    );
}

/// Runs the dispatcher, moving the clock to each next due time, until nothing is pending or
/// the clock passes `until`.
async fn drive(
    h: &Harness,
    dispatcher: &Dispatcher,
    ids: &[String],
    destination: &str,
    until: Timestamp,
) {
    loop {
        while dispatcher.run_once().await.unwrap() > 0 {}
        let mut next_due: Option<Timestamp> = None;
        for id in ids {
            let d = h.delivery(id, destination).await;
            if d.state == DeliveryState::Pending {
                next_due = Some(next_due.map_or(d.not_before, |n| n.min(d.not_before)));
            }
        }
        match next_due {
            Some(due) if due <= until => h.clock.set(due.max(h.clock.now())),
            _ => return,
        }
    }
}

#[tokio::test]
async fn a_destination_down_for_six_hours_drains_completely_when_it_returns() {
    let h = Harness::new();
    let ids: Vec<String> = (0..120).map(|i| format!("o-{i}")).collect();
    for id in &ids {
        h.accept(id, &["meta"], 7 * 86_400_000).await;
    }
    let down = Arc::new(AtomicBool::new(true));
    let meta = SwitchableDestination::new("meta", 50, down.clone());
    let dispatcher = h.dispatcher(meta.clone(), "w1");
    let back_at = Timestamp::from_millis(START.millis() + 6 * 3_600_000);
    drive(&h, &dispatcher, &ids, "meta", back_at).await;
    assert!(meta.delivered().is_empty());
    down.store(false, Ordering::SeqCst);
    drive(
        &h,
        &dispatcher,
        &ids,
        "meta",
        Timestamp::from_millis(back_at.millis() + 2 * 3_600_000),
    )
    .await;
    let mut delivered = meta.delivered();
    delivered.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(delivered, expected, "every event exactly once");
    for id in &ids {
        assert_eq!(h.delivery(id, "meta").await.state, DeliveryState::Delivered);
    }
}

#[tokio::test]
async fn a_destination_down_for_eight_days_dead_letters_what_meta_no_longer_accepts() {
    let h = Harness::new();
    let ids: Vec<String> = (0..10).map(|i| format!("m-{i}")).collect();
    for id in &ids {
        h.accept(id, &["meta"], 7 * 86_400_000).await;
    }
    let meta = SwitchableDestination::new("meta", 50, Arc::new(AtomicBool::new(true)));
    let dispatcher = h.dispatcher(meta.clone(), "w1");
    drive(
        &h,
        &dispatcher,
        &ids,
        "meta",
        Timestamp::from_millis(START.millis() + 8 * 86_400_000),
    )
    .await;
    assert!(meta.delivered().is_empty());
    for id in &ids {
        let d = h.delivery(id, "meta").await;
        assert_eq!(d.state, DeliveryState::Dead, "{id}");
        let reason = d.last_reason.unwrap();
        assert!(
            reason.contains("deadline") && reason.contains("HTTP 503"),
            "{reason}"
        );
    }
}

/// Answers 503 while `down`, then accepts; records what it accepted.
struct SwitchableDestination {
    name: String,
    max_batch: usize,
    down: Arc<AtomicBool>,
    accepted: Mutex<Vec<String>>,
}

impl SwitchableDestination {
    fn new(name: &str, max_batch: usize, down: Arc<AtomicBool>) -> Arc<Self> {
        Arc::new(SwitchableDestination {
            name: name.into(),
            max_batch,
            down,
            accepted: Mutex::default(),
        })
    }

    fn delivered(&self) -> Vec<String> {
        self.accepted.lock().unwrap().clone()
    }
}

#[async_trait]
impl Destination for SwitchableDestination {
    fn name(&self) -> &str {
        &self.name
    }
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    async fn send(&self, batch: &[Outgoing<'_>]) -> Vec<(Disposition, AttemptSummary)> {
        if self.down.load(Ordering::SeqCst) {
            return batch
                .iter()
                .map(|_| (unavailable(), AttemptSummary::new(Some(503), "HTTP 503")))
                .collect();
        }
        self.accepted
            .lock()
            .unwrap()
            .extend(batch.iter().map(|o| o.event.event_id.clone()));
        batch
            .iter()
            .map(|_| (Disposition::Succeeded, AttemptSummary::new(Some(200), "ok")))
            .collect()
    }
}

/// Never answers.
struct Hanging;

#[async_trait]
impl Destination for Hanging {
    fn name(&self) -> &str {
        "hanging"
    }
    fn max_batch(&self) -> usize {
        10
    }
    async fn send(&self, _: &[Outgoing<'_>]) -> Vec<(Disposition, AttemptSummary)> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_send_that_would_outlive_its_lease_is_abandoned_and_retried() {
    let h = Harness::new();
    h.accept("slow-1", &["hanging"], 7 * 86_400_000).await;
    let mut dispatcher = h.dispatcher(Arc::new(Hanging), "w1");
    // A lease short enough to run out in the test (the default is minutes).
    dispatcher.config.lease = Duration::from_millis(40);
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    let d = h.delivery("slow-1", "hanging").await;
    assert_eq!(d.state, DeliveryState::Pending);
    assert!(
        d.attempts[0]
            .summary
            .contains("three quarters of the lease"),
        "{:?}",
        d.attempts[0]
    );
}
