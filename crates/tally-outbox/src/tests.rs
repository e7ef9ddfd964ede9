//! Dispatcher behaviour against the real SQLite store, a scripted destination and a clock the
//! test moves; no sleeps.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tally_core::clock::{Clock, ManualClock};
use tally_core::dedup::Candidate;
use tally_core::event::SourceKind;
use tally_core::parse::{ParseContext, ParseLimits, parse_event};
use tally_core::plan::{EventPlanConfig, PlanSettings, TrackingPlan};
use tally_core::retry::{Disposition, RetryPolicy};
use tally_core::timestamp::Timestamp;
use tally_store::sqlite::{SqliteConfig, SqliteStore};
use tally_store::{DeliveryState, IngestItem, PlannedDelivery, Store};

use crate::{AttemptSummary, Destination, Dispatcher, DispatcherConfig};
use tally_destinations::Outgoing;

const START: Timestamp = Timestamp::from_millis(1_763_633_700_000);

/// Answers from a script (then success) and records what it was sent.
struct ScriptedDestination {
    name: String,
    max_batch: usize,
    script: Mutex<VecDeque<Disposition>>,
    sent: Mutex<Vec<Vec<String>>>,
}

impl ScriptedDestination {
    fn new(name: &str, max_batch: usize, script: Vec<Disposition>) -> Arc<Self> {
        Arc::new(ScriptedDestination {
            name: name.into(),
            max_batch,
            script: Mutex::new(script.into()),
            sent: Mutex::default(),
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
        let mut event = parse_event(
            &serde_json::json!({"event": "purchase", "event_id": event_id}),
            &ctx,
        )
        .unwrap()
        .event;
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
