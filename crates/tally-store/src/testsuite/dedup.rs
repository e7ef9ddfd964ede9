//! Dedup: IDs, business keys, windows, collisions and concurrency.

use std::sync::Arc;

use tally_core::dedup::MatchedBy;
use tally_core::event::SourceKind::{Browser, Server};
use tally_core::timestamp::Timestamp;

use super::{DAY, NOW, TestStore, purchase};
use crate::{IngestOutcome, QuarantineFilter};

pub async fn first_copy_is_accepted_and_a_retry_is_a_duplicate<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    let first = store
        .ingest(NOW, vec![purchase("e1", "1001", Server, NOW)])
        .await
        .unwrap();
    assert_eq!(first, [IngestOutcome::Accepted]);
    let retry = store
        .ingest(NOW, vec![purchase("e1", "1001", Server, NOW)])
        .await
        .unwrap();
    assert_eq!(
        retry,
        [IngestOutcome::Duplicate {
            matched_by: MatchedBy::EventId,
            stored_event_id: "e1".into()
        }]
    );
}

pub async fn fifty_concurrent_copies_give_exactly_one_accepted<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            let kind = if i % 2 == 0 { Browser } else { Server };
            tokio::spawn(async move {
                store
                    .ingest(NOW, vec![purchase("race", "2001", kind, NOW)])
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        let out = t.await.unwrap();
        match &out[0] {
            IngestOutcome::Accepted => accepted += 1,
            IngestOutcome::Duplicate { .. } => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(accepted, 1);
    let ledger = store.ledger("race").await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].copies.len(), 50);
}

pub async fn same_order_under_another_event_id_is_a_duplicate<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    store
        .ingest(NOW, vec![purchase("e1", "1001", Browser, NOW)])
        .await
        .unwrap();
    let out = store
        .ingest(NOW, vec![purchase("e2", "1001", Server, NOW)])
        .await
        .unwrap();
    assert_eq!(
        out,
        [IngestOutcome::Duplicate {
            matched_by: MatchedBy::DedupKey,
            stored_event_id: "e1".into()
        }]
    );
}

pub async fn event_id_is_accepted_again_after_its_window<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    store
        .ingest(NOW, vec![purchase("e1", "1001", Server, NOW)])
        .await
        .unwrap();
    // Within 7 days: duplicate. After: a new event (with a new order, so the key does not match).
    let day6 = Timestamp::from_millis(NOW.millis() + 6 * DAY);
    let out = store
        .ingest(day6, vec![purchase("e1", "1001", Server, day6)])
        .await
        .unwrap();
    assert!(matches!(out[0], IngestOutcome::Duplicate { .. }), "{out:?}");
    let day8 = Timestamp::from_millis(NOW.millis() + 8 * DAY);
    let out = store
        .ingest(day8, vec![purchase("e1", "1002", Server, day8)])
        .await
        .unwrap();
    assert_eq!(out, [IngestOutcome::Accepted]);
    assert_eq!(store.ledger("e1").await.unwrap().len(), 2);
}

pub async fn order_id_is_accepted_again_after_its_window<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    store
        .ingest(NOW, vec![purchase("e1", "1001", Server, NOW)])
        .await
        .unwrap();
    let day29 = Timestamp::from_millis(NOW.millis() + 29 * DAY);
    let out = store
        .ingest(day29, vec![purchase("e2", "1001", Server, day29)])
        .await
        .unwrap();
    assert!(
        matches!(
            out[0],
            IngestOutcome::Duplicate {
                matched_by: MatchedBy::DedupKey,
                ..
            }
        ),
        "{out:?}"
    );
    let day31 = Timestamp::from_millis(NOW.millis() + 31 * DAY);
    let out = store
        .ingest(day31, vec![purchase("e3", "1001", Server, day31)])
        .await
        .unwrap();
    assert_eq!(out, [IngestOutcome::Accepted]);
    // And the next copy within the new window dedups against the new row.
    let out = store
        .ingest(day31, vec![purchase("e4", "1001", Server, day31)])
        .await
        .unwrap();
    assert_eq!(
        out,
        [IngestOutcome::Duplicate {
            matched_by: MatchedBy::DedupKey,
            stored_event_id: "e3".into()
        }]
    );
}

pub async fn event_id_reused_for_another_order_is_quarantined_as_a_collision<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    store
        .ingest(NOW, vec![purchase("e1", "1001", Server, NOW)])
        .await
        .unwrap();
    let out = store
        .ingest(NOW, vec![purchase("e1", "1002", Server, NOW)])
        .await
        .unwrap();
    let IngestOutcome::Collision {
        quarantine_id,
        rejection,
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert_eq!(rejection.code, "event_id_reused");
    let rows = store.quarantine(QuarantineFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, *quarantine_id);
    assert_eq!(rows[0].event_id.as_deref(), Some("e1"));
}

pub async fn duplicates_inside_one_batch_are_caught<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    let out = store
        .ingest(
            NOW,
            vec![
                purchase("a", "1", Server, NOW),
                purchase("a", "1", Server, NOW),
                purchase("b", "1", Browser, NOW),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out[0], IngestOutcome::Accepted);
    assert!(matches!(
        out[1],
        IngestOutcome::Duplicate {
            matched_by: MatchedBy::EventId,
            ..
        }
    ));
    assert!(matches!(
        out[2],
        IngestOutcome::Duplicate {
            matched_by: MatchedBy::DedupKey,
            ..
        }
    ));
}
