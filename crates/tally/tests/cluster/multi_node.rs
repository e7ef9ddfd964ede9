//! Several nodes on one PostgreSQL behave as one (PRODUCT.md C12): the same event sent to
//! several nodes at once is accepted once, a delivery is never sent by two nodes, and a killed
//! node's leased deliveries are taken over once their lease expires.

use std::collections::HashSet;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use tally_testkit::Reply;

use crate::support::{
    Delivery, Load, Node, Platform, Rng, TestStore, batch, check_platform, check_store, client,
    post_events, statuses, wait_drained, wait_until,
};

const DRAIN: Duration = Duration::from_secs(90);

/// Starts `n` nodes on `store`, each delivering to a fake of its own.
fn start_nodes(
    store: &TestStore,
    platform: &mut Platform,
    n: usize,
    delivery: Delivery,
) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let (fake, url) = platform.add();
            let name = format!("node-{i}");
            Node::start(
                store.dir.path(),
                &name,
                &store.config(&name, delivery, Some(&url)),
            )
            .with_fake(fake)
        })
        .collect()
}

/// Twelve clients (six per node) send the same batches at the same moment, each in its own
/// order (so two nodes' transactions meet the same rows in opposite orders): every event is
/// answered `accepted` exactly once and `duplicate` eleven times, is stored once, and reaches
/// the platform once although both nodes dispatch.
#[test]
fn the_same_events_sent_to_two_nodes_at_once_are_accepted_once_and_delivered_once() {
    let Some(store) = TestStore::postgres("the_same_events_sent_to_two_nodes_at_once") else {
        return;
    };
    let mut platform = Platform::new();
    let nodes = start_nodes(&store, &mut platform, 2, Delivery::default());
    const ROUNDS: usize = 60;
    const PER_BATCH: usize = 5;
    const CLIENTS: usize = 12;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let answers: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (barrier, answers) = (barrier.clone(), answers.clone());
            let url = nodes[c % 2].url.clone();
            std::thread::spawn(move || {
                let client = client();
                for round in 0..ROUNDS {
                    let mut ids: Vec<String> = (0..PER_BATCH)
                        .map(|i| format!("same-{round}-{i}"))
                        .collect();
                    ids.rotate_left(c % PER_BATCH);
                    if c % 2 == 1 {
                        ids.reverse();
                    }
                    barrier.wait();
                    // No panics here: the other clients would wait at the barrier forever.
                    let answer = match post_events(&client, &url, &batch(&ids)) {
                        Ok((200, body)) => statuses(&body),
                        Ok((status, body)) => vec![format!("{status} {body}"); ids.len()],
                        Err(e) => vec![format!("no answer: {e}"); ids.len()],
                    };
                    answers.lock().unwrap().extend(ids.into_iter().zip(answer));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
    let answers = answers.lock().unwrap().clone();
    assert_eq!(answers.len(), ROUNDS * PER_BATCH * CLIENTS);
    let mut accepted: HashSet<String> = HashSet::new();
    for (id, status) in &answers {
        match status.as_str() {
            "accepted" => assert!(accepted.insert(id.clone()), "{id} was accepted twice"),
            "duplicate" => {}
            other => panic!("{id}: {other}"),
        }
    }
    assert_eq!(
        accepted.len(),
        ROUNDS * PER_BATCH,
        "every event accepted once"
    );

    wait_drained(&nodes[0].url, accepted.len(), DRAIN);
    let db = platform.block_on(store.open(&store.config("check", Delivery::default(), None)));
    let check = platform.block_on(check_store(&*db, &accepted, &HashSet::new(), true));
    platform.block_on(db.close());
    let twice = check_platform(&platform, &check, &HashSet::new());
    assert_eq!(twice, 0, "no event reached the platform twice");
}

/// Three nodes, two dispatchers each, all claiming from one outbox while a load client spreads
/// events over them: every event reaches the platform exactly once (each node delivers to a fake
/// of its own, so the check also sees which node sent what), and more than one node did send.
#[test]
fn three_nodes_dispatching_one_destination_send_each_event_exactly_once() {
    let Some(store) = TestStore::postgres("three_nodes_dispatching_one_destination") else {
        return;
    };
    let mut rng = Rng::from_env("three_nodes_dispatching_one_destination");
    let mut platform = Platform::new();
    // Deliveries come due a second after receipt, in a stream, while six dispatchers poll.
    let delivery = Delivery {
        join_window_secs: 1,
        ..Delivery::default()
    };
    let nodes = start_nodes(&store, &mut platform, 3, delivery);
    let load = Load::start(
        "spread",
        nodes.iter().map(|n| n.url.clone()).collect(),
        6,
        rng.next(),
    );
    load.wait_for_acked(600, Duration::from_secs(120));
    let result = load.finish();
    assert_eq!(result.errors, 0, "no node failed a request");

    wait_drained(&nodes[0].url, result.acked.len(), DRAIN);
    let db = platform.block_on(store.open(&store.config("check", delivery, None)));
    let check = platform.block_on(check_store(&*db, &result.acked, &result.unacked, true));
    platform.block_on(db.close());
    assert_eq!(check.stored.len(), result.acked.len());
    let twice = check_platform(&platform, &check, &HashSet::new());
    assert_eq!(twice, 0, "no event reached the platform twice");
    let sending = nodes
        .iter()
        .filter(|n| platform.fake(n.fake.expect("fake")).request_count() > 0)
        .count();
    assert!(
        sending >= 2,
        "only {sending} node delivered: no contention was tested"
    );
}

/// Node A claims a batch and is killed (`kill -9`) while its request is still open at the
/// platform; node B, running meanwhile, sends the batch only after A's lease expired.
///
/// What is asserted: B's copies arrive no earlier than a third of the lease after A's request
/// was seen (B does not take deliveries another node still leases; the exact lease start is
/// A's claim, shortly before the request); tally records each delivery once, with one
/// successful attempt (B's); and each event reached the platform twice, A's copy being the
/// request A died holding, whose outcome tally could not know. Meta dedups such a pair by
/// `event_id`.
#[test]
fn a_killed_nodes_leased_deliveries_are_taken_over_after_the_lease_expires() {
    let Some(store) = TestStore::postgres("a_killed_nodes_leased_deliveries") else {
        return;
    };
    let delivery = Delivery::default();
    let mut platform = Platform::new();
    let (fake_a, url_a) = platform.add();
    for _ in 0..4 {
        // A's platform takes the requests and never answers within the test.
        platform
            .fake(fake_a)
            .script_one(Reply::status(200).delay(Duration::from_secs(120)));
    }
    let a = Node::start(
        store.dir.path(),
        "node-a",
        &store.config("node-a", delivery, Some(&url_a)),
    )
    .with_fake(fake_a);
    let ids: Vec<String> = (0..20).map(|i| format!("lease-{i}")).collect();
    let (status, body) = post_events(&client(), &a.url, &batch(&ids)).expect("answered");
    assert_eq!(
        (status, statuses(&body)),
        (200, vec!["accepted".to_owned(); ids.len()])
    );
    wait_until(
        "A's requests to hold every event",
        Duration::from_secs(30),
        || {
            let held: HashSet<String> = platform.requests(fake_a).into_iter().flatten().collect();
            (held.len() == ids.len()).then_some(())
        },
    );
    let seen = Instant::now();

    let (fake_b, url_b) = platform.add();
    let b = Node::start(
        store.dir.path(),
        "node-b",
        &store.config("node-b", delivery, Some(&url_b)),
    )
    .with_fake(fake_b);
    a.kill();
    let taken = wait_until("B's first takeover", DRAIN, || {
        (platform.fake(fake_b).request_count() > 0).then(Instant::now)
    });
    wait_until("B to take over every delivery", DRAIN, || {
        let sent: HashSet<String> = platform.requests(fake_b).into_iter().flatten().collect();
        (sent.len() == ids.len()).then_some(())
    });
    let waited = taken.duration_since(seen);
    assert!(
        waited >= Duration::from_secs(delivery.lease_secs) / 3,
        "B sent after {waited:?}, before A's {} s lease could expire",
        delivery.lease_secs
    );

    wait_drained(&b.url, ids.len(), DRAIN);
    let acked: HashSet<String> = ids.iter().cloned().collect();
    let db = platform.block_on(store.open(&store.config("check", delivery, None)));
    let check = platform.block_on(check_store(&*db, &acked, &HashSet::new(), true));
    platform.block_on(db.close());
    let twice = check_platform(&platform, &check, &HashSet::from([fake_a]));
    assert_eq!(twice, ids.len(), "each event: A's unanswered copy and B's");
    drop(b);
}
