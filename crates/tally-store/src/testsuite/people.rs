//! People: the visitor click-ID memory, consent revocation, replay of stopped deliveries and
//! the delivery overview.

use serde_json::json;
use tally_core::event::SourceKind::{Browser, Server};
use tally_core::identity::HashedIdentity;
use tally_core::retry::Next;
use tally_core::timestamp::Timestamp;

use super::{NOW, TestStore, candidate, purchase};
use crate::{
    AttemptRecord, DeliveryState, IdentityLink, IngestItem, PlannedDelivery, ReplayFilter,
    Revocation, Settlement,
};

const MINUTE: i64 = 60_000;
const DAY: i64 = 1440 * MINUTE;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(NOW.millis() + offset_ms)
}

fn deliver_to(item: IngestItem, destinations: &[&str], deadline: Timestamp) -> IngestItem {
    item.with_deliveries(
        destinations
            .iter()
            .map(|d| PlannedDelivery {
                destination: d.to_string(),
                not_before: NOW,
                deadline,
                test: false,
            })
            .collect(),
    )
}

fn event(v: serde_json::Value, kind: tally_core::event::SourceKind, when: Timestamp) -> IngestItem {
    IngestItem::event(candidate(v, kind, when), None)
}

/// A landing page view with click IDs, remembered for 90 days.
fn landing(anonymous_id: &str, when: Timestamp) -> IngestItem {
    event(
        json!({"event": "add_to_cart", "event_id": format!("land-{anonymous_id}"),
               "timestamp": when.millis(),
               "user": {"anonymous_id": anonymous_id,
                        "click_ids": {"gclid": "G-1", "fbclid": "F-1", "fbp": "fb.1.1763600000000.1098115397",
                                      "clicked_at": when.millis() - 30_000}}}),
        Browser,
        when,
    )
    .remember_click_ids_until(Timestamp::from_millis(when.millis() + 90 * DAY))
}

fn server_purchase(event_id: &str, user: serde_json::Value, when: Timestamp) -> IngestItem {
    event(
        json!({"event": "purchase", "event_id": event_id, "timestamp": when.millis(),
               "user": user,
               "properties": {"value": 10, "currency": "EUR", "order_id": event_id}}),
        Server,
        when,
    )
}

pub async fn a_later_server_event_of_the_visitor_gets_the_remembered_click_ids<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    store.ingest(NOW, vec![landing("v-1", NOW)]).await.unwrap();
    let later = at(2 * DAY);
    store
        .ingest(
            later,
            vec![server_purchase(
                "p-1",
                json!({"anonymous_id": "v-1"}),
                later,
            )],
        )
        .await
        .unwrap();
    let e = &store.ledger("p-1").await.unwrap()[0].event;
    assert_eq!(e.user.click_ids.gclid.as_deref(), Some("G-1"));
    assert_eq!(e.user.click_ids.fbclid.as_deref(), Some("F-1"));
    assert_eq!(
        e.user.click_ids.fbp.as_deref(),
        Some("fb.1.1763600000000.1098115397")
    );
    assert_eq!(
        e.user.click_ids.clicked_at,
        Some(at(-30_000)),
        "the real click time travels with the click ID"
    );

    // An event with its own Google click keeps it and gets no other Google click ID.
    store
        .ingest(
            later,
            vec![server_purchase(
                "p-2",
                json!({"anonymous_id": "v-1", "click_ids": {"wbraid": "W-9"}}),
                later,
            )],
        )
        .await
        .unwrap();
    let e = &store.ledger("p-2").await.unwrap()[0].event;
    assert_eq!(e.user.click_ids.wbraid.as_deref(), Some("W-9"));
    assert_eq!(e.user.click_ids.gclid, None);
    assert_eq!(e.user.click_ids.fbclid.as_deref(), Some("F-1"));
}

pub async fn click_ids_follow_identify_links_and_expire<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    store.ingest(NOW, vec![landing("v-2", NOW)]).await.unwrap();
    store
        .ingest(
            NOW,
            vec![IngestItem::Identify(IdentityLink {
                at: NOW,
                source: "web".into(),
                anonymous_id: Some("v-2".into()),
                external_id: Some("cust-2".into()),
                identity: HashedIdentity::default(),
            })],
        )
        .await
        .unwrap();
    // A CRM event knows only the customer ID.
    let later = at(10 * DAY);
    store
        .ingest(
            later,
            vec![server_purchase(
                "p-3",
                json!({"external_id": "cust-2"}),
                later,
            )],
        )
        .await
        .unwrap();
    let e = &store.ledger("p-3").await.unwrap()[0].event;
    assert_eq!(e.user.click_ids.gclid.as_deref(), Some("G-1"));

    let expired = at(91 * DAY);
    store
        .ingest(
            expired,
            vec![server_purchase(
                "p-4",
                json!({"anonymous_id": "v-2"}),
                expired,
            )],
        )
        .await
        .unwrap();
    let e = &store.ledger("p-4").await.unwrap()[0].event;
    assert!(
        e.user.click_ids.is_empty(),
        "expired clicks are not attached: {:?}",
        e.user.click_ids
    );

    let stranger = at(DAY);
    store
        .ingest(
            stranger,
            vec![server_purchase(
                "p-5",
                json!({"anonymous_id": "v-other"}),
                stranger,
            )],
        )
        .await
        .unwrap();
    assert!(
        store.ledger("p-5").await.unwrap()[0]
            .event
            .user
            .click_ids
            .is_empty()
    );
}

pub async fn revocation_withholds_pending_deliveries_and_later_arrivals<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    let deadline = at(7 * DAY);
    let user = json!({"anonymous_id": "v-3", "email": "jane@example.com"});
    store
        .ingest(
            NOW,
            vec![
                deliver_to(
                    server_purchase("r-1", user.clone(), NOW),
                    &["meta", "ga4"],
                    deadline,
                ),
                deliver_to(
                    server_purchase("r-2", user.clone(), NOW),
                    &["meta"],
                    deadline,
                ),
                deliver_to(
                    server_purchase("r-3", json!({"anonymous_id": "v-someone-else"}), NOW),
                    &["meta"],
                    deadline,
                ),
            ],
        )
        .await
        .unwrap();
    // r-2's delivery already went out: a revocation cannot recall it.
    let claimed = store
        .claim(NOW, "meta", "w1", at(MINUTE), 10, false)
        .await
        .unwrap();
    let r2 = claimed.iter().find(|c| c.event.event_id == "r-2").unwrap();
    store
        .settle(
            NOW,
            vec![Settlement {
                delivery_id: r2.delivery_id,
                owner: "w1".into(),
                next: Next::Delivered,
                attempt: AttemptRecord {
                    at: NOW,
                    outcome: "succeeded".into(),
                    status: Some(200),
                    summary: "ok".into(),
                    consent: Some("ad_storage=granted".into()),
                },
            }],
        )
        .await
        .unwrap();
    let email_key = store.ledger("r-1").await.unwrap()[0]
        .event
        .user
        .identity
        .email_sha256
        .clone()
        .map(|h| format!("em:{h}"))
        .unwrap();
    let cancelled = store
        .revoke(
            at(MINUTE),
            Revocation {
                people: vec![email_key],
                at: at(MINUTE),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        cancelled, 2,
        "r-1 to meta and ga4; r-2 was delivered, r-3 is someone else"
    );
    let r1 = &store.ledger("r-1").await.unwrap()[0];
    assert!(
        r1.deliveries
            .iter()
            .all(|d| d.state == DeliveryState::Withheld)
    );
    assert!(
        r1.deliveries[0]
            .last_reason
            .as_deref()
            .unwrap()
            .contains("revoked")
    );
    let r2 = &store.ledger("r-2").await.unwrap()[0];
    assert_eq!(r2.deliveries[0].state, DeliveryState::Delivered);
    let r3 = &store.ledger("r-3").await.unwrap()[0];
    assert_eq!(r3.deliveries[0].state, DeliveryState::Pending);
    // The lease taken before the revocation cannot settle the withheld delivery back to life.
    let r1_meta = claimed.iter().find(|c| c.event.event_id == "r-1").unwrap();
    let late = Settlement {
        delivery_id: r1_meta.delivery_id,
        owner: "w1".into(),
        next: Next::Delivered,
        attempt: AttemptRecord {
            at: at(MINUTE),
            outcome: "succeeded".into(),
            status: Some(200),
            summary: "ok".into(),
            consent: None,
        },
    };
    assert_eq!(store.settle(at(MINUTE), vec![late]).await.unwrap(), [false]);
    let reclaimed = store
        .claim(at(2 * MINUTE), "meta", "w2", at(3 * MINUTE), 10, false)
        .await
        .unwrap();
    let ids: Vec<&str> = reclaimed
        .iter()
        .map(|c| c.event.event_id.as_str())
        .collect();
    assert_eq!(ids, ["r-3"]);

    // An event from before the revocation that arrives late is withheld at once; one from
    // after it (the person consented again) is not.
    store
        .ingest(
            at(2 * MINUTE),
            vec![
                deliver_to(
                    server_purchase("r-4", user.clone(), NOW),
                    &["meta"],
                    deadline,
                ),
                deliver_to(
                    server_purchase("r-5", user, at(2 * MINUTE)),
                    &["meta"],
                    deadline,
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store.ledger("r-4").await.unwrap()[0].deliveries[0].state,
        DeliveryState::Withheld
    );
    assert_eq!(
        store.ledger("r-5").await.unwrap()[0].deliveries[0].state,
        DeliveryState::Pending
    );
}

pub async fn replay_requeues_stopped_deliveries_by_filter_but_not_expired_ones<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    let items = vec![
        deliver_to(
            purchase("x-1", "1", Server, NOW),
            &["meta", "ga4"],
            at(7 * DAY),
        ),
        deliver_to(purchase("x-2", "2", Server, NOW), &["meta"], at(7 * DAY)),
        deliver_to(purchase("x-3", "3", Server, NOW), &["meta"], at(HOUR_AGO)),
    ];
    store.ingest(NOW, items).await.unwrap();
    for destination in ["meta", "ga4"] {
        let claimed = store
            .claim(at(5_000), destination, "w1", at(MINUTE), 10, false)
            .await
            .unwrap();
        let settlements = claimed
            .iter()
            .map(|c| Settlement {
                delivery_id: c.delivery_id,
                owner: "w1".into(),
                next: if c.event.event_id == "x-2" {
                    Next::NeedsFix("HTTP 401".into())
                } else {
                    Next::DeadLetter("HTTP 400".into())
                },
                attempt: AttemptRecord {
                    at: at(5_000),
                    outcome: "dead".into(),
                    status: Some(400),
                    summary: "bad".into(),
                    consent: None,
                },
            })
            .collect();
        store.settle(at(5_000), settlements).await.unwrap();
    }
    let stats = store.destination_stats().await.unwrap();
    let meta = stats.iter().find(|s| s.destination == "meta").unwrap();
    assert_eq!((meta.dead, meta.needs_fix, meta.pending), (2, 1, 0));
    let dead = store
        .deliveries_in_state(DeliveryState::Dead, Some("meta".into()), 10)
        .await
        .unwrap();
    let mut ids: Vec<&str> = dead.iter().map(|d| d.event_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["x-1", "x-3"]);

    // By event: only x-1's deliveries (both destinations).
    let (requeued, expired) = store
        .replay_deliveries(
            at(MINUTE),
            ReplayFilter {
                event_id: Some("x-1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((requeued, expired), (2, 0));
    // By destination: x-2 (needs fix) is requeued; x-3 is past its deadline and stays dead.
    let (requeued, expired) = store
        .replay_deliveries(
            at(MINUTE),
            ReplayFilter {
                destination: Some("meta".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((requeued, expired), (1, 1));
    let claimed = store
        .claim(at(MINUTE), "meta", "w2", at(2 * MINUTE), 10, false)
        .await
        .unwrap();
    let mut ids: Vec<&str> = claimed.iter().map(|c| c.event.event_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["x-1", "x-2"]);
    assert_eq!(claimed[0].attempts, 1, "earlier attempts are kept");
    let x3 = &store.ledger("x-3").await.unwrap()[0].deliveries[0];
    assert_eq!(x3.state, DeliveryState::Dead);
    assert_eq!(
        store.ledger("x-1").await.unwrap()[0].deliveries[0].attempts[0].consent,
        None
    );
}

const HOUR_AGO: i64 = -60 * MINUTE;

fn link(anonymous_id: &str, external_id: &str) -> IngestItem {
    IngestItem::Identify(IdentityLink {
        at: NOW,
        source: "web".into(),
        anonymous_id: Some(anonymous_id.into()),
        external_id: Some(external_id.into()),
        identity: HashedIdentity::default(),
    })
}

pub async fn click_memory_links_and_revocations_survive_a_reopen_in_any_order<S: TestStore>() {
    let (store, guard) = S::for_test().await;
    // The click before the link, and the link before the click (remembered under the
    // customer ID, found from the anonymous ID).
    store.ingest(NOW, vec![landing("v-20", NOW)]).await.unwrap();
    store
        .ingest(NOW, vec![link("v-20", "cust-20"), link("v-21", "cust-21")])
        .await
        .unwrap();
    let crm_click = event(
        json!({"event": "add_to_cart", "event_id": "crm-21", "timestamp": NOW.millis(),
               "user": {"external_id": "cust-21", "click_ids": {"ttclid": "T-21"}}}),
        Server,
        NOW,
    )
    .remember_click_ids_until(at(90 * DAY));
    store.ingest(NOW, vec![crm_click]).await.unwrap();
    store
        .revoke(
            at(MINUTE),
            Revocation {
                people: vec!["anon:v-20".into()],
                at: at(MINUTE),
            },
        )
        .await
        .unwrap();

    let store = store.reopen(&guard).await;
    let later = at(DAY);
    store
        .ingest(
            later,
            vec![
                server_purchase("s-20", json!({"external_id": "cust-20"}), later),
                server_purchase("s-21", json!({"anonymous_id": "v-21"}), later),
                deliver_to(
                    server_purchase("s-22", json!({"anonymous_id": "v-20"}), NOW),
                    &["meta"],
                    at(7 * DAY),
                ),
            ],
        )
        .await
        .unwrap();
    let s20 = &store.ledger("s-20").await.unwrap()[0];
    assert_eq!(s20.event.user.click_ids.gclid.as_deref(), Some("G-1"));
    let s22 = &store.ledger("s-22").await.unwrap()[0];
    assert_eq!(
        s22.deliveries[0].state,
        DeliveryState::Withheld,
        "a revocation is remembered across a restart"
    );
    let s21 = &store.ledger("s-21").await.unwrap()[0];
    assert_eq!(s21.event.user.click_ids.ttclid.as_deref(), Some("T-21"));
}

/// One call whose events depend on each other: every event is decided as if the items had
/// arrived one by one (PostgreSQL writes a group's new events per table, so this is where its
/// run memory of clicks, its key checks and its ordering are proven).
pub async fn one_group_decides_its_events_as_if_they_arrived_one_by_one<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    store
        .ingest(NOW, vec![link("v-20", "cust-20")])
        .await
        .unwrap();
    let older_click = event(
        json!({"event": "add_to_cart", "event_id": "land-old", "timestamp": NOW.millis(),
               "user": {"anonymous_id": "v-10",
                        "click_ids": {"gclid": "G-OLD", "clicked_at": NOW.millis() - DAY}}}),
        Browser,
        NOW,
    )
    .remember_click_ids_until(at(90 * DAY));
    let refused = IngestItem::Quarantine(crate::NewQuarantine {
        received_at: NOW,
        source: "backend".into(),
        source_kind: Server,
        event_name: Some("purchase".into()),
        event_id: None,
        rejection: tally_core::rejection::Rejection::new("missing_property", "no value"),
        body: crate::QuarantineBody::Input {
            input: json!({"event": "purchase"}),
            identity: HashedIdentity::default(),
        },
    });
    let out = store
        .ingest(
            NOW,
            vec![
                landing("v-10", NOW),
                server_purchase("g-1", json!({"anonymous_id": "v-10"}), NOW),
                older_click,
                refused,
                server_purchase("g-2", json!({"anonymous_id": "v-10"}), NOW),
                // The same purchase again, by event ID and by order under another event ID.
                server_purchase("g-1", json!({"anonymous_id": "v-10"}), NOW),
                event(
                    json!({"event": "purchase", "event_id": "g-2-browser", "timestamp": NOW.millis(),
                           "user": {"anonymous_id": "v-10"},
                           "properties": {"value": 10, "currency": "EUR", "order_id": "g-2"}}),
                    Browser,
                    NOW,
                ),
                // A landing of a visitor identified earlier, then a CRM event by customer ID.
                landing("v-20", NOW),
                server_purchase("g-3", json!({"external_id": "cust-20"}), NOW),
                server_purchase("g-4", json!({"anonymous_id": "v-stranger"}), NOW),
            ],
        )
        .await
        .unwrap();
    let kinds: Vec<&str> = out
        .iter()
        .map(|o| match o {
            crate::IngestOutcome::Accepted => "accepted",
            crate::IngestOutcome::Duplicate { .. } => "duplicate",
            crate::IngestOutcome::Quarantined { .. } => "quarantined",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "accepted",
            "accepted",
            "accepted",
            "quarantined",
            "accepted",
            "duplicate",
            "duplicate",
            "accepted",
            "accepted",
            "accepted"
        ]
    );
    let gclid = |e: &tally_core::event::Event| e.user.click_ids.gclid.clone();
    let ledger = |id: &'static str| {
        let store = &store;
        async move { store.ledger(id).await.unwrap()[0].event.clone() }
    };
    assert_eq!(
        gclid(&ledger("g-1").await).as_deref(),
        Some("G-1"),
        "the click remembered by the landing earlier in the same call"
    );
    assert_eq!(
        gclid(&ledger("g-2").await).as_deref(),
        Some("G-1"),
        "an older click remembered later does not replace a newer one"
    );
    assert_eq!(
        gclid(&ledger("g-3").await).as_deref(),
        Some("G-1"),
        "through the identify link"
    );
    assert_eq!(gclid(&ledger("g-4").await), None, "another visitor's click");
    assert_eq!(
        store.ledger("g-2-browser").await.unwrap()[0].event.event_id,
        "g-2"
    );

    // What the call remembered is what the next call finds.
    let later = at(DAY);
    store
        .ingest(
            later,
            vec![server_purchase(
                "g-5",
                json!({"anonymous_id": "v-10"}),
                later,
            )],
        )
        .await
        .unwrap();
    assert_eq!(gclid(&ledger("g-5").await).as_deref(), Some("G-1"));
}
