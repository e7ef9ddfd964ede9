//! Right to erasure: a person's events, copies, deliveries, click memory, identity links and
//! quarantine rows go, found by any of their keys and through identify links; nobody else's.

use serde_json::json;
use tally_core::event::SourceKind::{self, Browser, Server};
use tally_core::identity::{HashedIdentity, RawIdentity};
use tally_core::parse::scrub_for_quarantine;
use tally_core::rejection::Rejection;
use tally_core::retry::Next;
use tally_core::timestamp::Timestamp;

use super::{NOW, TestStore, candidate};
use crate::{
    AttemptRecord, DeliveryCounts, DeliveryState, ERASE_MAX_ROUNDS, Erasure, ErasureReport,
    IdentityLink, IngestItem, NewQuarantine, PlannedDelivery, QuarantineBody, QuarantineFilter,
    Revocation, Settlement, erasure_key_digest,
};

const MINUTE: i64 = 60_000;
const DAY: i64 = 1440 * MINUTE;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(NOW.millis() + offset_ms)
}

fn email_key(email: &str) -> String {
    let (identity, _) = HashedIdentity::hash(&RawIdentity {
        email: Some(email),
        ..RawIdentity::default()
    });
    format!("em:{}", identity.email_sha256.expect("a valid email"))
}

fn event(v: serde_json::Value, kind: SourceKind, destinations: &[&str]) -> IngestItem {
    IngestItem::event(candidate(v, kind, NOW), None).with_deliveries(
        destinations
            .iter()
            .map(|d| PlannedDelivery {
                destination: d.to_string(),
                not_before: NOW,
                deadline: at(7 * DAY),
                test: false,
            })
            .collect(),
    )
}

fn purchase(event_id: &str, order_id: &str, user: serde_json::Value) -> serde_json::Value {
    json!({"event": "purchase", "event_id": event_id, "timestamp": NOW.millis() - 1000,
           "user": user, "properties": {"value": 10, "currency": "EUR", "order_id": order_id}})
}

/// A landing page view whose click IDs (gclid, fbclid, fbp) are remembered for its visitor.
fn landing(anonymous_id: &str) -> IngestItem {
    event(
        json!({"event": "add_to_cart", "event_id": format!("land-{anonymous_id}"),
               "timestamp": NOW.millis() - 2000,
               "user": {"anonymous_id": anonymous_id,
                        "click_ids": {"gclid": "G-1", "fbclid": "F-1", "fbp": "fb.1.1763600000000.1"}}}),
        Browser,
        &["meta", "ga4"],
    )
    .remember_click_ids_until(at(90 * DAY))
}

fn link(anonymous_id: &str, external_id: &str) -> IngestItem {
    IngestItem::Identify(IdentityLink {
        at: NOW,
        source: "web".into(),
        anonymous_id: Some(anonymous_id.into()),
        external_id: Some(external_id.into()),
        identity: HashedIdentity::default(),
    })
}

fn quarantined(body: QuarantineBody) -> IngestItem {
    IngestItem::Quarantine(NewQuarantine {
        received_at: NOW,
        source: "backend".into(),
        source_kind: Server,
        event_name: Some("purchase".into()),
        event_id: None,
        rejection: Rejection::new("missing_property", "no value"),
        body,
    })
}

/// A refused input, scrubbed as the collector does: only the hashed email stays.
fn refused_input(email: &str) -> IngestItem {
    let (input, identity) =
        scrub_for_quarantine(&json!({"event": "purchase", "user": {"email": email}}));
    quarantined(QuarantineBody::Input { input, identity })
}

/// A parsed event refused by the plan, known only by its anonymous ID.
fn refused_event(anonymous_id: &str) -> IngestItem {
    let c = candidate(
        json!({"event": "add_to_cart", "event_id": format!("q-{anonymous_id}"),
               "user": {"anonymous_id": anonymous_id}}),
        Browser,
        NOW,
    );
    quarantined(QuarantineBody::Event {
        event: Box::new(c.event),
    })
}

fn erasure(people: Vec<String>, dry_run: bool) -> Erasure {
    Erasure {
        people,
        max_rounds: ERASE_MAX_ROUNDS,
        dry_run,
    }
}

fn settle(delivery_id: i64, owner: &str, when: Timestamp) -> Settlement {
    Settlement {
        delivery_id,
        owner: owner.into(),
        next: Next::Delivered,
        attempt: AttemptRecord {
            at: when,
            outcome: "succeeded".into(),
            status: Some(200),
            summary: "ok".into(),
            consent: None,
        },
    }
}

pub async fn erasure_by_email_removes_the_person_s_data_found_through_identify_links<
    S: TestStore,
>() {
    let (store, _guard) = S::for_test().await;
    let jane = json!({"email": "Jane.Doe@Example.com", "external_id": "cust-jane"});
    let bob = json!({"email": "bob@example.com", "anonymous_id": "v-bob"});
    store
        .ingest(
            NOW,
            vec![
                // Jane: a landing on one device, identified later; a purchase by email and
                // customer ID, sent twice and once more under another event ID.
                landing("v-jane"),
                link("v-jane", "cust-jane"),
                event(
                    purchase("p-1", "o-1", jane.clone()),
                    Server,
                    &["meta", "ga4"],
                ),
                refused_input("jane.doe@example.com"),
                refused_event("v-jane"),
                // Bob, who must not be touched.
                landing("v-bob"),
                link("v-bob", "cust-bob"),
                event(purchase("b-1", "o-b", bob.clone()), Server, &["meta"]),
                refused_input("bob@example.com"),
            ],
        )
        .await
        .unwrap();
    store
        .ingest(
            at(1000),
            vec![
                event(purchase("p-1", "o-1", jane.clone()), Server, &["meta"]),
                event(purchase("p-1-alt", "o-1", json!({})), Server, &["meta"]),
            ],
        )
        .await
        .unwrap();
    // Jane revoked consent before asking for erasure.
    let jane_email = email_key("jane.doe@example.com");
    store
        .revoke(
            at(2000),
            Revocation {
                people: vec![jane_email.clone()],
                at: at(2000),
            },
        )
        .await
        .unwrap();
    // Both landings went out to GA4; on Meta, Bob's purchase and landing went out, Jane's
    // landing is on its way, and Jane's purchase is withheld by the revocation.
    let ga4 = store
        .claim(at(3000), "ga4", "w1", at(MINUTE), 10, false)
        .await
        .unwrap();
    assert_eq!(ga4.len(), 2, "{ga4:?}");
    let sent = ga4
        .iter()
        .map(|c| settle(c.delivery_id, "w1", at(3000)))
        .collect();
    store.settle(at(3000), sent).await.unwrap();
    let claimed = store
        .claim(at(3000), "meta", "w1", at(MINUTE), 10, false)
        .await
        .unwrap();
    let mut ids: Vec<&str> = claimed.iter().map(|c| c.event.event_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["b-1", "land-v-bob", "land-v-jane"]);
    let bob_deliveries: Vec<Settlement> = claimed
        .iter()
        .filter(|c| c.event.event_id != "land-v-jane")
        .map(|c| settle(c.delivery_id, "w1", at(3000)))
        .collect();
    store.settle(at(3000), bob_deliveries).await.unwrap();
    // Jane's landing stays leased: in flight when she is erased.
    let in_flight = claimed
        .iter()
        .find(|c| c.event.event_id == "land-v-jane")
        .unwrap()
        .delivery_id;

    let expected = ErasureReport {
        dry_run: false,
        keys_searched: {
            let mut k = vec![
                erasure_key_digest(&jane_email),
                erasure_key_digest("ext:cust-jane"),
                erasure_key_digest("anon:v-jane"),
            ];
            k.sort();
            k
        },
        rounds: 0,
        complete: true,
        events: 2,
        copies: 2,
        aliases: 1,
        person_keys: 0,
        deliveries: DeliveryCounts {
            delivered: 1,
            withheld: 2,
            in_flight: 1,
            ..DeliveryCounts::default()
        },
        attempts: 1,
        quarantine: 2,
        click_memories: 3,
        identity_links: 1,
        revocations_kept: 1,
    };
    let normalise = |mut r: ErasureReport| {
        assert!(
            r.rounds >= 3,
            "email → purchase → customer ID → link → visitor"
        );
        // A merge may index keys again; each of the two events has at least one.
        assert!(r.person_keys >= 3, "{r:?}");
        r.rounds = 0;
        r.person_keys = 0;
        r
    };

    // A search bounded to one round finds the purchase but says it stopped short.
    let bounded = store
        .erase(
            at(4000),
            Erasure {
                max_rounds: 1,
                ..erasure(vec![jane_email.clone()], true)
            },
        )
        .await
        .unwrap();
    assert!(!bounded.complete);
    assert_eq!((bounded.rounds, bounded.events), (1, 1));

    // A dry run counts what an erasure would remove, and removes nothing.
    let dry = store
        .erase(at(4000), erasure(vec![jane_email.clone()], true))
        .await
        .unwrap();
    assert_eq!(
        normalise(dry),
        ErasureReport {
            dry_run: true,
            ..expected.clone()
        }
    );
    assert_eq!(store.ledger("p-1").await.unwrap().len(), 1);

    let report = store
        .erase(at(4000), erasure(vec![jane_email.clone()], false))
        .await
        .unwrap();
    assert_eq!(normalise(report), expected);
    for id in ["p-1", "p-1-alt", "land-v-jane"] {
        assert!(store.ledger(id).await.unwrap().is_empty(), "{id} is gone");
    }
    // Nothing of Jane's is sent any more: the in-flight attempt cannot settle, and nothing is
    // left to claim once its lease has passed.
    assert_eq!(
        store
            .settle(at(5000), vec![settle(in_flight, "w1", at(5000))])
            .await
            .unwrap(),
        [false]
    );
    for destination in ["meta", "ga4"] {
        let left = store
            .claim(at(2 * MINUTE), destination, "w2", at(3 * MINUTE), 10, false)
            .await
            .unwrap();
        assert!(left.is_empty(), "{destination}: {left:?}");
    }
    let rows = store.quarantine(QuarantineFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 1, "only Bob's quarantine row is left");
    let QuarantineBody::Input { identity, .. } = &rows[0].body else {
        panic!("{:?}", rows[0].body)
    };
    assert_eq!(
        identity.email_sha256.as_ref().map(|h| format!("em:{h}")),
        Some(email_key("bob@example.com"))
    );

    // Bob is untouched: his events, their deliveries, his remembered click and his link.
    let b1 = &store.ledger("b-1").await.unwrap()[0];
    assert_eq!(b1.deliveries[0].state, DeliveryState::Delivered);
    assert_eq!(b1.deliveries[0].attempts.len(), 1);
    let land_bob = &store.ledger("land-v-bob").await.unwrap()[0];
    assert_eq!(land_bob.deliveries.len(), 2);
    assert!(
        land_bob
            .deliveries
            .iter()
            .all(|d| d.state == DeliveryState::Delivered && d.attempts.len() == 1)
    );
    let later = at(DAY);
    store
        .ingest(
            later,
            vec![
                IngestItem::event(
                    candidate(
                        purchase("b-2", "o-b2", json!({"external_id": "cust-bob"})),
                        Server,
                        later,
                    ),
                    None,
                ),
                IngestItem::event(
                    candidate(
                        purchase("p-2", "o-2", json!({"anonymous_id": "v-jane"})),
                        Server,
                        later,
                    ),
                    None,
                ),
            ],
        )
        .await
        .unwrap();
    let b2 = &store.ledger("b-2").await.unwrap()[0].event;
    assert_eq!(b2.user.click_ids.gclid.as_deref(), Some("G-1"));
    let p2 = &store.ledger("p-2").await.unwrap()[0].event;
    assert!(p2.user.click_ids.is_empty(), "Jane's click memory is gone");

    // The revocation is kept: a late event of Jane's from before it is still withheld.
    store
        .ingest(
            later,
            vec![event(
                json!({"event": "purchase", "event_id": "p-3", "timestamp": NOW.millis(),
                       "user": {"email": "jane.doe@example.com"},
                       "properties": {"value": 1, "currency": "EUR", "order_id": "o-3"}}),
                Server,
                &["meta"],
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        store.ledger("p-3").await.unwrap()[0].deliveries[0].state,
        DeliveryState::Withheld
    );

    // Erasing again finds only what arrived since (p-2 by the visitor, p-3 by email), and a
    // third time nothing at all.
    let again = store
        .erase(
            at(DAY + 1),
            erasure(vec![jane_email.clone(), "anon:v-jane".into()], false),
        )
        .await
        .unwrap();
    assert_eq!(again.events, 2);
    let last = store
        .erase(at(DAY + 2), erasure(vec![jane_email], false))
        .await
        .unwrap();
    assert_eq!(
        (
            last.events,
            last.copies,
            last.quarantine,
            last.click_memories,
            last.identity_links
        ),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(last.deliveries, DeliveryCounts::default());
    assert!(last.complete);
    assert_eq!(store.ledger("b-1").await.unwrap().len(), 1);
}
