//! Merging and the ledger.

use serde_json::json;
use tally_core::dedup::MatchedBy;
use tally_core::event::SourceKind::{Browser, Server};

use super::{NOW, TestStore, candidate, purchase};
use crate::{IngestItem, IngestOutcome, SourcePairStats};

pub async fn browser_and_server_copies_merge_into_one_event_with_every_copy_kept<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    let browser = candidate(
        json!({"event": "purchase", "event_id": "ord-1", "properties": {"value": 99, "currency": "EUR", "order_id": "1"},
               "user": {"anonymous_id": "a-1", "ip": "198.51.100.7", "click_ids": {"gclid": "G-1"}},
               "page": {"url": "https://shop.example/thanks"}, "consent": {"ad_storage": "granted"}}),
        Browser,
        NOW,
    );
    let server = candidate(
        json!({"event": "purchase", "event_id": "ord-1", "properties": {"value": "129.90", "currency": "EUR", "order_id": "1"},
               "user": {"email": "jane@example.com", "ip": "10.0.0.1"}}),
        Server,
        NOW,
    );
    let out = store
        .ingest(NOW, vec![IngestItem::event(browser, None)])
        .await
        .unwrap();
    assert_eq!(out, [IngestOutcome::Accepted]);
    let out = store
        .ingest(NOW, vec![IngestItem::event(server, None)])
        .await
        .unwrap();
    assert!(matches!(
        out[0],
        IngestOutcome::Duplicate {
            matched_by: MatchedBy::EventId,
            ..
        }
    ));

    let ledger = store.ledger("ord-1").await.unwrap();
    assert_eq!(ledger.len(), 1);
    let entry = &ledger[0];
    assert_eq!(entry.event.value.unwrap().to_string(), "129.90");
    assert!(entry.event.user.identity.email_sha256.is_some());
    assert_eq!(entry.event.user.ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(entry.event.user.click_ids.gclid.as_deref(), Some("G-1"));
    assert_eq!(entry.dedup_value.as_deref(), Some("1"));
    assert_eq!(entry.copies.len(), 2);
    assert_eq!(entry.copies[0].outcome, "accepted");
    assert_eq!(entry.copies[0].source_kind, Browser);
    assert_eq!(entry.copies[1].outcome, "duplicate");
    assert_eq!(entry.copies[1].matched_by, Some(MatchedBy::EventId));
    assert!(entry.copies[1].contributed.contains(&"value".to_owned()));
    assert!(
        entry.copies[1]
            .contributed
            .iter()
            .any(|f| f.starts_with("user.email"))
    );
    assert!(entry.copies[0].consent.ad_storage.is_some());
}

pub async fn ledger_finds_an_event_by_a_duplicate_s_own_event_id<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    store
        .ingest(NOW, vec![purchase("browser-id", "7", Browser, NOW)])
        .await
        .unwrap();
    store
        .ingest(NOW, vec![purchase("server-id", "7", Server, NOW)])
        .await
        .unwrap();
    let by_alias = store.ledger("server-id").await.unwrap();
    assert_eq!(by_alias.len(), 1);
    assert_eq!(by_alias[0].event.event_id, "browser-id");
    assert_eq!(by_alias[0].copies[1].event_id, "server-id");
}

pub async fn dedup_stats_count_duplicates_ghosts_collisions_and_source_pairs<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    store
        .ingest(
            NOW,
            vec![
                purchase("a", "1", Browser, NOW),
                purchase("a", "1", Server, NOW), // by event ID, browser → server
                purchase("b", "1", Browser, NOW), // ghost: second browser copy, other ID
                purchase("c", "2", Server, NOW),
                purchase("c", "3", Server, NOW), // collision
            ],
        )
        .await
        .unwrap();
    let stats = store
        .dedup_stats(tally_core::timestamp::Timestamp::from_millis(0))
        .await
        .unwrap();
    assert_eq!(stats.len(), 1);
    let p = &stats[0];
    assert_eq!(p.event, "purchase");
    assert_eq!(p.events, 2);
    assert_eq!(p.copies, 4);
    assert_eq!(p.duplicates_by_event_id, 1);
    assert_eq!(p.duplicates_by_dedup_key, 1);
    assert_eq!(p.ghost_duplicates, 1);
    assert_eq!(p.key_collisions, 1);
    assert_eq!(
        p.by_source_pair,
        [
            SourcePairStats {
                first: "browser".into(),
                duplicate: "browser".into(),
                count: 1
            },
            SourcePairStats {
                first: "browser".into(),
                duplicate: "server".into(),
                count: 1
            },
        ]
    );
}

pub async fn dedup_stats_count_only_copies_since_the_given_time<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    let later = tally_core::timestamp::Timestamp::from_millis(NOW.millis() + 60_000);
    store
        .ingest(NOW, vec![purchase("old", "1", Browser, NOW)])
        .await
        .unwrap();
    store
        .ingest(
            later,
            vec![
                purchase("new", "2", Browser, later),
                purchase("new", "2", Server, later),
            ],
        )
        .await
        .unwrap();
    let stats = store.dedup_stats(later).await.unwrap();
    assert_eq!((stats[0].events, stats[0].copies), (1, 2));
    let stats = store.dedup_stats(NOW).await.unwrap();
    assert_eq!((stats[0].events, stats[0].copies), (2, 3));
    let future = tally_core::timestamp::Timestamp::from_millis(later.millis() + 1);
    assert!(store.dedup_stats(future).await.unwrap().is_empty());
}

pub async fn unknown_event_id_has_an_empty_ledger<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    assert!(store.ledger("nope").await.unwrap().is_empty());
}
