//! The outbox: deliveries created with new events, leases, retries, dead letters.

use std::sync::Arc;

use tally_core::event::SourceKind::{Browser, Server};
use tally_core::retry::Next;
use tally_core::timestamp::Timestamp;

use super::{NOW, TestStore, candidate, purchase};
use crate::{AttemptRecord, DeliveryState, IngestItem, PlannedDelivery, Settlement};

const MINUTE: i64 = 60_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(NOW.millis() + offset_ms)
}

fn with_deliveries(item: IngestItem, destinations: &[&str]) -> IngestItem {
    item.with_deliveries(
        destinations
            .iter()
            .map(|d| PlannedDelivery {
                destination: d.to_string(),
                not_before: at(5_000),
                deadline: at(7 * 1440 * MINUTE),
                test: false,
            })
            .collect(),
    )
}

fn attempt(outcome: &str, when: Timestamp) -> AttemptRecord {
    AttemptRecord {
        at: when,
        outcome: outcome.into(),
        status: Some(503),
        summary: format!("{outcome} at {when}"),
        consent: Some("ad_storage=granted".into()),
    }
}

pub async fn deliveries_are_created_with_a_new_event_and_never_for_a_duplicate<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    store
        .ingest(
            NOW,
            vec![with_deliveries(
                purchase("d-1", "1", Browser, NOW),
                &["meta", "ga4"],
            )],
        )
        .await
        .unwrap();
    store
        .ingest(
            NOW,
            vec![with_deliveries(
                purchase("d-1", "1", Server, NOW),
                &["meta", "ga4"],
            )],
        )
        .await
        .unwrap();
    let ledger = store.ledger("d-1").await.unwrap();
    let destinations: Vec<&str> = ledger[0]
        .deliveries
        .iter()
        .map(|d| d.destination.as_str())
        .collect();
    assert_eq!(destinations, ["ga4", "meta"]);
    assert!(
        ledger[0]
            .deliveries
            .iter()
            .all(|d| d.state == DeliveryState::Pending && d.attempts.is_empty())
    );
}

pub async fn nothing_is_claimed_before_the_join_window_and_the_claim_carries_the_merged_event<
    S: TestStore,
>() {
    let (store, _guard) = S::for_test().await;
    store
        .ingest(
            NOW,
            vec![with_deliveries(
                purchase("d-2", "2", Browser, NOW),
                &["meta"],
            )],
        )
        .await
        .unwrap();
    assert!(
        store
            .claim(at(4_999), "meta", "w1", at(MINUTE), 10, false)
            .await
            .unwrap()
            .is_empty()
    );
    // The server twin arrives inside the join window and merges its value in.
    let server = candidate(
        serde_json::json!({"event": "purchase", "event_id": "d-2", "properties": {"value": "99.50", "currency": "EUR", "order_id": "2"}}),
        Server,
        at(1_000),
    );
    store
        .ingest(at(1_000), vec![IngestItem::event(server, None)])
        .await
        .unwrap();
    let claimed = store
        .claim(at(5_000), "meta", "w1", at(MINUTE), 10, false)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].event.value.unwrap().to_string(), "99.50");
    assert_eq!(claimed[0].attempts, 0);
    assert!(
        store
            .claim(at(5_000), "ga4", "w1", at(MINUTE), 10, false)
            .await
            .unwrap()
            .is_empty(),
        "other destinations untouched"
    );
}

pub async fn claims_are_exclusive_across_workers<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    let items: Vec<IngestItem> = (0..40)
        .map(|i| {
            with_deliveries(
                purchase(&format!("x-{i}"), &format!("o-{i}"), Server, NOW),
                &["meta"],
            )
        })
        .collect();
    store.ingest(NOW, items).await.unwrap();
    let store = Arc::new(store);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .claim(at(5_000), "meta", &format!("w{w}"), at(MINUTE), 15, false)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for w in workers {
        ids.extend(w.await.unwrap().into_iter().map(|c| c.delivery_id));
    }
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "a delivery was leased twice");
    assert_eq!(total, 40);
}

pub async fn an_expired_lease_is_reclaimable_and_the_old_holder_cannot_settle<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    store
        .ingest(
            NOW,
            vec![with_deliveries(
                purchase("d-3", "3", Server, NOW),
                &["meta"],
            )],
        )
        .await
        .unwrap();
    let first = store
        .claim(at(5_000), "meta", "w1", at(MINUTE), 10, false)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        store
            .claim(at(30_000), "meta", "w2", at(2 * MINUTE), 10, false)
            .await
            .unwrap()
            .is_empty(),
        "still leased"
    );
    let second = store
        .claim(at(MINUTE), "meta", "w2", at(2 * MINUTE), 10, false)
        .await
        .unwrap();
    assert_eq!(second.len(), 1, "w1 crashed; its lease expired");
    let stale = Settlement {
        delivery_id: first[0].delivery_id,
        owner: "w1".into(),
        next: Next::Delivered,
        attempt: attempt("succeeded", at(MINUTE)),
    };
    assert_eq!(
        store.settle(at(MINUTE), vec![stale]).await.unwrap(),
        [false]
    );
    let current = Settlement {
        delivery_id: second[0].delivery_id,
        owner: "w2".into(),
        next: Next::Delivered,
        attempt: attempt("succeeded", at(MINUTE)),
    };
    assert_eq!(
        store.settle(at(MINUTE), vec![current]).await.unwrap(),
        [true]
    );
    let d = &store.ledger("d-3").await.unwrap()[0].deliveries[0];
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.attempts.len(), 1);
    assert!(
        store
            .claim(at(10 * MINUTE), "meta", "w3", at(11 * MINUTE), 10, false)
            .await
            .unwrap()
            .is_empty(),
        "delivered once"
    );
}

pub async fn a_retry_waits_for_its_time_and_a_dead_letter_keeps_every_attempt<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    store
        .ingest(
            NOW,
            vec![with_deliveries(
                purchase("d-4", "4", Server, NOW),
                &["meta"],
            )],
        )
        .await
        .unwrap();
    let c = store
        .claim(at(5_000), "meta", "w1", at(MINUTE), 10, false)
        .await
        .unwrap();
    let retry = Settlement {
        delivery_id: c[0].delivery_id,
        owner: "w1".into(),
        next: Next::RetryAt(at(10 * MINUTE)),
        attempt: attempt("retry", at(6_000)),
    };
    assert_eq!(store.settle(at(6_000), vec![retry]).await.unwrap(), [true]);
    assert!(
        store
            .claim(
                at(10 * MINUTE - 1),
                "meta",
                "w1",
                at(11 * MINUTE),
                10,
                false
            )
            .await
            .unwrap()
            .is_empty()
    );
    let c = store
        .claim(at(10 * MINUTE), "meta", "w1", at(11 * MINUTE), 10, false)
        .await
        .unwrap();
    assert_eq!(c[0].attempts, 1);
    let dead = Settlement {
        delivery_id: c[0].delivery_id,
        owner: "w1".into(),
        next: Next::DeadLetter("the platform's deadline passed".into()),
        attempt: attempt("dead", at(10 * MINUTE)),
    };
    assert_eq!(
        store.settle(at(10 * MINUTE), vec![dead]).await.unwrap(),
        [true]
    );
    let d = &store.ledger("d-4").await.unwrap()[0].deliveries[0];
    assert_eq!(d.state, DeliveryState::Dead);
    assert_eq!(
        d.last_reason.as_deref(),
        Some("the platform's deadline passed")
    );
    let outcomes: Vec<&str> = d.attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "dead"]);
    assert_eq!(d.attempts[0].status, Some(503));
}

pub async fn a_gated_claim_takes_only_test_deliveries_until_the_destination_is_live<
    S: TestStore,
>() {
    let (store, _guard) = S::for_test().await;
    let planned = |test: bool| {
        vec![PlannedDelivery {
            destination: "meta".into(),
            not_before: NOW,
            deadline: at(7 * 1440 * MINUTE),
            test,
        }]
    };
    store
        .ingest(
            NOW,
            vec![
                purchase("g-live", "1", Server, NOW).with_deliveries(planned(false)),
                purchase("g-test", "2", Server, NOW).with_deliveries(planned(true)),
            ],
        )
        .await
        .unwrap();
    let claimed = store
        .claim(NOW, "meta", "w1", at(MINUTE), 10, true)
        .await
        .unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.event.event_id.as_str()).collect();
    assert_eq!(
        ids,
        ["g-test"],
        "live events wait for the destination to go live"
    );
    assert!(
        store.destination_stats().await.unwrap()[0]
            .live_since
            .is_none()
    );

    store
        .go_live(at(1), "meta", "test conversion passed")
        .await
        .unwrap();
    let claimed = store
        .claim(at(1), "meta", "w1", at(MINUTE), 10, true)
        .await
        .unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.event.event_id.as_str()).collect();
    assert_eq!(ids, ["g-live"]);
    assert_eq!(
        store.destination_stats().await.unwrap()[0].live_since,
        Some(at(1))
    );
}
