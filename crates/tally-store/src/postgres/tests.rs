//! The conformance suite on PostgreSQL, and what only a shared database has to prove: two
//! store handles (two nodes) racing on one event or one delivery, migrations and refusals.
//!
//! Each test works in its own fresh schema of the database at `TALLY_TEST_POSTGRES_URL`, so
//! tests run in parallel. Without the variable they skip loudly; with `CI=true` they fail.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tally_core::event::SourceKind::{Browser, Server};
use tally_core::timestamp::Timestamp;
use tokio_postgres::NoTls;

use super::{PostgresConfig, PostgresStore, SCHEMA_VERSION};
use crate::testsuite::{DAY, NOW, TestStore, purchase, store_test_suite};
use crate::{IngestItem, IngestOutcome, PlannedDelivery, Store, StoreError};

const URL_VAR: &str = "TALLY_TEST_POSTGRES_URL";

/// The test database's URL; `None` (after saying so) when there is none and that is allowed.
///
/// # Panics
/// When there is none and `CI=true`: CI must not go green without PostgreSQL.
fn test_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "{URL_VAR} is not set but CI=true: the PostgreSQL store must be tested in CI \
             (scripts/test starts a private PostgreSQL and sets it)"
        ),
        _ => {
            eprintln!(
                "\n**** SKIPPED: {URL_VAR} is not set, so this PostgreSQL test did not run. ****\n\
                 **** Run scripts/test (it starts a private PostgreSQL) or set {URL_VAR}. ****\n"
            );
            None
        }
    }
}

/// A schema of its own for one test, dropped when the test ends.
pub struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    fn new(url: String) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "tally_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        TestSchema { url, name }
    }

    fn config(&self) -> PostgresConfig {
        let mut c = PostgresConfig::new(self.url.clone());
        c.schema = Some(self.name.clone());
        c.pool_size = 4;
        c.committers = 2;
        c
    }

    async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which must not block on itself: a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test schema {}: {e}", self.name);
        }
    }
}

#[async_trait]
impl TestStore for PostgresStore {
    type Guard = TestSchema;

    fn available() -> bool {
        test_url().is_some()
    }

    async fn for_test() -> (Self, Self::Guard) {
        let url = test_url().expect("checked by available()");
        let schema = TestSchema::new(url);
        let store = PostgresStore::open(schema.config())
            .await
            .expect("open the test store");
        (store, schema)
    }

    async fn reopen(self, guard: &Self::Guard) -> Self {
        self.close().await;
        PostgresStore::open(guard.config()).await.expect("reopen")
    }
}

store_test_suite!(PostgresStore);

/// Two handles on one fresh schema, like two nodes on one database.
async fn two_nodes() -> Option<(Arc<PostgresStore>, Arc<PostgresStore>, TestSchema)> {
    let schema = TestSchema::new(test_url()?);
    let a = PostgresStore::open(schema.config()).await.expect("node a");
    let b = PostgresStore::open(schema.config()).await.expect("node b");
    Some((Arc::new(a), Arc::new(b), schema))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_accept_one_copy_of_an_event_sent_to_both_at_once() {
    let Some((a, b, _schema)) = two_nodes().await else {
        return;
    };
    for round in 0..25 {
        let event_id = format!("both-{round}");
        // The second node's copy comes from another door under another ID half of the time,
        // so the race is decided by the business key as well as by the event ID.
        let other_id = if round % 2 == 0 {
            event_id.clone()
        } else {
            format!("other-{round}")
        };
        let order = format!("order-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let send = |store: Arc<PostgresStore>, item: IngestItem| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.ingest(NOW, vec![item]).await.expect("ingest")
            })
        };
        let first = send(a.clone(), purchase(&event_id, &order, Browser, NOW));
        let second = send(b.clone(), purchase(&other_id, &order, Server, NOW));
        let outcomes = [first.await.unwrap(), second.await.unwrap()];
        let accepted = outcomes
            .iter()
            .filter(|o| o[0] == IngestOutcome::Accepted)
            .count();
        assert_eq!(accepted, 1, "round {round}: {outcomes:?}");
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o[0], IngestOutcome::Duplicate { .. })),
            "round {round}: {outcomes:?}"
        );
        let ledger = a.ledger(&event_id).await.unwrap();
        assert_eq!(ledger.len(), 1, "round {round}");
        assert_eq!(ledger[0].copies.len(), 2, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_never_claim_one_delivery_twice() {
    let Some((a, b, _schema)) = two_nodes().await else {
        return;
    };
    const EVENTS: usize = 120;
    let items: Vec<IngestItem> = (0..EVENTS)
        .map(|i| {
            purchase(&format!("claim-{i}"), &format!("o-{i}"), Server, NOW).with_deliveries(vec![
                PlannedDelivery {
                    destination: "meta".into(),
                    not_before: NOW,
                    deadline: Timestamp::from_millis(NOW.millis() + DAY),
                    test: false,
                },
            ])
        })
        .collect();
    let out = a.ingest(NOW, items).await.unwrap();
    assert!(out.iter().all(|o| *o == IngestOutcome::Accepted));
    let lease_until = Timestamp::from_millis(NOW.millis() + 60_000);
    let worker = |store: Arc<PostgresStore>, owner: &'static str| {
        tokio::spawn(async move {
            let mut ids = Vec::new();
            // Bounded: every round leases at least one delivery until none is left.
            for _ in 0..EVENTS {
                let claimed = store
                    .claim(NOW, "meta", owner, lease_until, 7, false)
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    break;
                }
                ids.extend(claimed.into_iter().map(|c| c.delivery_id));
            }
            ids
        })
    };
    let (from_a, from_b) = (worker(a.clone(), "node-a"), worker(b.clone(), "node-b"));
    let (from_a, from_b) = (from_a.await.unwrap(), from_b.await.unwrap());
    let mut seen = HashSet::new();
    for id in from_a.iter().chain(&from_b) {
        assert!(seen.insert(*id), "delivery {id} was claimed twice");
    }
    assert_eq!(seen.len(), EVENTS);
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error_at_open() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let mut config = PostgresConfig::new("postgres://tally:not-this-password@127.0.0.1:1/tally");
    config.connect_timeout = Duration::from_secs(2);
    let err = match PostgresStore::open(config).await {
        Err(e) => e,
        Ok(_) => panic!("opened a store on a closed port"),
    };
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    let text = format!("{err}");
    assert!(
        text.contains("postgres://tally@127.0.0.1:1/tally"),
        "{text}"
    );
    assert!(!format!("{err:?}").contains("not-this-password"), "{err:?}");
}

#[tokio::test]
async fn a_bad_schema_name_is_refused() {
    let mut config = PostgresConfig::new("postgres://tally@127.0.0.1:1/tally");
    config.schema = Some("tally; DROP TABLE events".into());
    let err = PostgresStore::open(config).await.err().expect("refused");
    assert!(format!("{err:#?}").contains("lowercase letters"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_a_newer_schema_is_refused() {
    let Some(url) = test_url() else {
        return;
    };
    let schema = TestSchema::new(url);
    assert_eq!(
        PostgresStore::migrate(&schema.config()).await.unwrap(),
        SCHEMA_VERSION
    );
    // Again: nothing to do, same version.
    assert_eq!(
        PostgresStore::migrate(&schema.config()).await.unwrap(),
        SCHEMA_VERSION
    );
    let client = schema.connect().await;
    client
        .batch_execute(&format!(
            "UPDATE {}.tally_schema SET version = version + 1",
            schema.name
        ))
        .await
        .unwrap();
    match PostgresStore::open(schema.config()).await {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        Err(other) => panic!("expected SchemaTooNew, got {other:?}"),
        Ok(_) => panic!("opened a schema newer than the binary"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_refuses_writes() {
    let Some(url) = test_url() else {
        return;
    };
    let schema = TestSchema::new(url);
    let store = PostgresStore::open(schema.config()).await.unwrap();
    store.ready().await.expect("ready");
    store.close().await;
    let err = store
        .ingest(NOW, vec![purchase("late", "1", Server, NOW)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Closed), "{err:?}");
    assert!(store.ready().await.is_err());
}

/// The plan of `EXECUTE statement` (a statement prepared on `client`), as text.
async fn explain(client: &tokio_postgres::Client, statement: &str) -> String {
    client
        .simple_query(&format!("EXPLAIN EXECUTE {statement}"))
        .await
        .expect("explain")
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Over grown, not yet analyzed tables every ingest lookup must find its rows by index, never
/// by a scan of the table, or every event would cost more as the tables grow. The run's lookups
/// (`batch.rs`) run as unnamed statements, planned with their arrays each time, but must hold
/// in a generic plan too; the careful path's remembered-click lookup is a prepared statement,
/// which PostgreSQL soon runs with a generic plan (it scanned the table while it was not
/// analyzed yet, and ingest slowed as visitors accumulated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_lookups_use_indexes_over_grown_unanalyzed_tables() {
    let Some(url) = test_url() else {
        return;
    };
    let schema = TestSchema::new(url);
    let store = PostgresStore::open(schema.config()).await.expect("open");
    let client = schema.connect().await;
    use super::batch::{CLICKS, LINKS, REVOCATIONS, STORED_KEYS};
    use super::people::REMEMBERED_CLICKS;
    client
        .batch_execute(&format!(
            "SET search_path = {};
             INSERT INTO events (name, event_id, dedup_value, first_seen_ms, event_time_ms,
                                 has_browser, source, source_kind, first_consent, body)
                  SELECT 'purchase', 'e-' || i, 'o-' || i, i, i, false, 'backend', 'server', '{{}}', '{{}}'
                    FROM generate_series(1, 20000) AS i;
             INSERT INTO visitor_click_ids
                  SELECT 'anon:a-' || i, 'gclid', 'Cj0K' || i, 1795632321306, 1803408321306
                    FROM generate_series(1, 20000) AS i;
             INSERT INTO identity_links (at_ms, source, anonymous_id, external_id, identity)
                  SELECT i, 'web', 'a-' || i, 'c-' || i, '{{}}' FROM generate_series(1, 20000) AS i;
             INSERT INTO revocations SELECT 'anon:a-' || i, i FROM generate_series(1, 20000) AS i;
             PREPARE stored(text[], text[], text[]) AS {STORED_KEYS};
             PREPARE links(text[], text[]) AS {LINKS};
             PREPARE clicks(text[], text[], text[]) AS {CLICKS};
             PREPARE revocations(text[]) AS {REVOCATIONS};
             PREPARE remembered(bigint, text, text) AS {REMEMBERED_CLICKS};",
            schema.name,
        ))
        .await
        .expect("prepare");
    for mode in ["force_custom_plan", "force_generic_plan"] {
        client
            .batch_execute(&format!("SET plan_cache_mode = {mode}"))
            .await
            .expect("plan mode");
        for (statement, tables) in [
            (
                "stored('{e-1,e-2}', '{purchase,purchase}', '{o-1,o-2}')",
                &["events"][..],
            ),
            ("links('{a-1}', '{c-2}')", &["identity_links"]),
            (
                "clicks('{a-1}', '{c-2}', '{anon:a-1,ext:c-2}')",
                &["visitor_click_ids", "identity_links"],
            ),
            ("revocations('{anon:a-1}')", &["revocations"]),
            (
                "remembered(1, 'a-1', NULL)",
                &["visitor_click_ids", "identity_links"],
            ),
        ] {
            let plan = explain(&client, statement).await;
            if statement.starts_with("remembered") {
                assert!(plan.contains("visitor_click_ids_pkey"), "{mode} {plan}");
            }
            // An index looked up by its first column alone, the rest filtered row by row, is a
            // scan of every stored event of that name.
            assert!(
                !plan.contains("Filter: (dedup_value"),
                "{mode} {statement}: {plan}"
            );
            for table in tables {
                assert!(
                    plan.contains(&format!("on {table}")),
                    "{mode} {statement}: {plan}"
                );
                assert!(
                    !plan.contains(&format!("Seq Scan on {table}")),
                    "{mode} {statement}: {plan}"
                );
            }
        }
    }
    store.close().await;
}
