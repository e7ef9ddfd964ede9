//! Quarantine bookkeeping, identity links and durability.

use serde_json::json;
use tally_core::event::SourceKind::{self, Server};
use tally_core::identity::HashedIdentity;
use tally_core::rejection::Rejection;

use super::{NOW, TestStore, candidate, purchase};
use crate::{
    IdentityLink, IngestItem, IngestOutcome, NewQuarantine, QuarantineBody, QuarantineFilter,
    QuarantineStatus,
};

fn quarantined(name: &str, code: &str) -> IngestItem {
    IngestItem::Quarantine(NewQuarantine {
        received_at: NOW,
        source: "backend".into(),
        source_kind: SourceKind::Server,
        event_name: Some(name.into()),
        event_id: Some(format!("{name}-1")),
        rejection: Rejection::new(code, "because"),
        body: QuarantineBody::Input {
            input: json!({"event": name}),
            identity: HashedIdentity::default(),
        },
    })
}

pub async fn quarantined_events_are_listed_and_filtered<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    let out = store
        .ingest(
            NOW,
            vec![
                quarantined("purchse", "unplanned_event"),
                quarantined("purchase", "missing_property"),
            ],
        )
        .await
        .unwrap();
    assert!(matches!(out[0], IngestOutcome::Quarantined { .. }));
    let all = store.quarantine(QuarantineFilter::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].code, "unplanned_event");
    assert_eq!(all[0].status, QuarantineStatus::Open);
    assert_eq!(
        all[0].body,
        QuarantineBody::Input {
            input: json!({"event": "purchse"}),
            identity: HashedIdentity::default()
        }
    );
    let filtered = store
        .quarantine(QuarantineFilter {
            code: Some("missing_property".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].event_name.as_deref(), Some("purchase"));
    let paged = store
        .quarantine(QuarantineFilter {
            after_id: Some(all[0].id),
            limit: Some(5),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(paged.len(), 1);
}

pub async fn a_successful_replay_resolves_the_quarantine_row<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    let out = store
        .ingest(NOW, vec![quarantined("purchase", "missing_property")])
        .await
        .unwrap();
    let IngestOutcome::Quarantined { quarantine_id } = out[0] else {
        panic!("{out:?}")
    };
    let fixed = candidate(
        json!({"event": "purchase", "event_id": "purchase-1", "properties": {"value": 1, "currency": "EUR", "order_id": "9"}}),
        Server,
        NOW,
    );
    let out = store
        .ingest(NOW, vec![IngestItem::event(fixed, Some(quarantine_id))])
        .await
        .unwrap();
    assert_eq!(out, [IngestOutcome::Accepted]);
    let rows = store.quarantine(QuarantineFilter::default()).await.unwrap();
    assert_eq!(rows[0].status, QuarantineStatus::Replayed);
    assert_eq!(rows[0].replayed_at, Some(NOW));
    let open = store
        .quarantine(QuarantineFilter {
            status: Some(QuarantineStatus::Open),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(open.is_empty());
}

pub async fn a_failed_replay_keeps_the_row_open_with_the_new_reason<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    let out = store
        .ingest(NOW, vec![quarantined("purchse", "unplanned_event")])
        .await
        .unwrap();
    let IngestOutcome::Quarantined { quarantine_id } = out[0] else {
        panic!("{out:?}")
    };
    store
        .ingest(
            NOW,
            vec![IngestItem::Requarantine {
                id: quarantine_id,
                rejection: Rejection::new("missing_property", "still"),
            }],
        )
        .await
        .unwrap();
    let rows = store.quarantine(QuarantineFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].code, "missing_property");
    assert_eq!(rows[0].status, QuarantineStatus::Open);
}

pub async fn identify_links_are_recorded<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    let out = store
        .ingest(
            NOW,
            vec![IngestItem::Identify(IdentityLink {
                at: NOW,
                source: "web".into(),
                anonymous_id: Some("a-1".into()),
                external_id: Some("cust-1".into()),
                identity: HashedIdentity::default(),
            })],
        )
        .await
        .unwrap();
    assert_eq!(out, [IngestOutcome::Linked]);
}

pub async fn committed_events_survive_a_reopen<S: TestStore>() {
    let (store, guard) = S::for_test().await;
    store
        .ingest(NOW, vec![purchase("keep", "1", Server, NOW)])
        .await
        .unwrap();
    let store = store.reopen(&guard).await;
    assert_eq!(store.ledger("keep").await.unwrap().len(), 1);
    let out = store
        .ingest(NOW, vec![purchase("keep", "1", Server, NOW)])
        .await
        .unwrap();
    assert!(matches!(out[0], IngestOutcome::Duplicate { .. }));
}
