//! [`PostgresStore`]: the handle the rest of tally holds, its settings, and the committers
//! that fold queued requests into shared transactions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Pool, PoolError, TimeoutType};
use tally_core::secret::Secret;
use tally_core::timestamp::Timestamp;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::batch;
use super::container;
use super::read;
use super::schema;
use super::writer::TxError;
use crate::container::*;
use crate::model::*;
use crate::{Store, StoreError};

/// How often a group is run again after a deadlock or serialisation failure before its
/// requests are answered with an error.
const MAX_TX_RETRIES: usize = 10;

/// Most a group waits before running again after a deadlock: a random wait up to 2 ms doubled
/// per try, so the transactions that deadlocked do not all start again at once and meet in the
/// same order (nodes receiving the same batches at once did so five times in a row).
const MAX_RETRY_WAIT: Duration = Duration::from_millis(200);

/// Longest a group's transaction may take, from its first statement to its commit. Past it
/// the connection is thrown away (the database may be unreachable, and TCP would take hours to
/// say so) and the group answered 503; a commit that did land is found by dedup on the retry.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Group commits slower than this are logged at debug level.
const SLOW_COMMIT: Duration = Duration::from_millis(20);

/// `[store]` settings for PostgreSQL.
#[derive(Clone, Debug, PartialEq)]
pub struct PostgresConfig {
    /// Connection URL (`postgres://user:password@host:port/database`); a secret, since it may
    /// hold a password.
    pub url: Secret,
    /// Schema to keep tally's tables in (created if missing); `None`: the server's search
    /// path (normally `public`).
    pub schema: Option<String>,
    /// Most connections this node opens (committers and reads share them).
    pub pool_size: usize,
    /// Transactions this node runs at once; queued requests are folded into them. Fewer,
    /// larger groups beat more, smaller ones on a database with few cores (docs/BENCHMARKS.md):
    /// nodes x committers about the database's cores.
    pub committers: usize,
    /// Most items one transaction takes.
    pub max_group_items: usize,
    /// Requests that may wait for a committer before callers wait for a place.
    pub queue_capacity: usize,
    /// How long a request waits for a place in the queue (or a read for a connection).
    pub enqueue_timeout: Duration,
    /// How long connecting may take before the database counts as unreachable.
    pub connect_timeout: Duration,
}

impl PostgresConfig {
    /// Defaults for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: Secret::new(url),
            schema: None,
            pool_size: 16,
            committers: 2,
            max_group_items: 8192,
            queue_capacity: 4096,
            enqueue_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A request for a committer.
struct WriteRequest {
    now: Timestamp,
    items: Vec<IngestItem>,
    reply: oneshot::Sender<Result<Vec<IngestOutcome>, StoreError>>,
}

enum Message {
    Write(WriteRequest),
    /// Stops the one committer that receives it.
    Stop,
}

/// The PostgreSQL store: any number of nodes may share one database.
pub struct PostgresStore {
    pool: Pool,
    target: String,
    sender: mpsc::Sender<Message>,
    committers: std::sync::Mutex<Vec<JoinHandle<()>>>,
    closing: AtomicBool,
    enqueue_timeout: Duration,
}

/// A database error as a store error: the store cannot commit or read now (503).
pub(super) fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Timeout(TimeoutType::Wait) => StoreError::Overloaded,
        PoolError::Closed => StoreError::Closed,
        other => unavailable(other),
    }
}

fn retryable(e: &TxError) -> bool {
    use tokio_postgres::error::SqlState;
    match e {
        TxError::Pg(e) => matches!(
            e.code(),
            Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        ),
        _ => false,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CommitFailure(String);

/// One error per request of a failed group (store errors are not `Clone`).
fn group_error(e: &TxError) -> StoreError {
    match e {
        TxError::Pool(PoolError::Timeout(TimeoutType::Wait)) => StoreError::Overloaded,
        TxError::Pool(PoolError::Closed) => StoreError::Closed,
        TxError::Json(j) => StoreError::Corrupt {
            table: "events",
            message: j.to_string(),
        },
        other => unavailable(CommitFailure(error_chain(other))),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl PostgresStore {
    /// Connects, applies migrations and starts the committers.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the database is unreachable or refuses us,
    /// [`StoreError::SchemaTooNew`] when it was migrated by a newer tally.
    pub async fn open(config: PostgresConfig) -> Result<Self, StoreError> {
        let (pool, target) = schema::pool(&config)?;
        schema::migrate(&pool, config.schema.as_deref(), &target).await?;
        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let committers = (0..config.committers.max(1))
            .map(|_| {
                tokio::spawn(run_committer(
                    pool.clone(),
                    receiver.clone(),
                    config.max_group_items.max(1),
                ))
            })
            .collect();
        Ok(PostgresStore {
            pool,
            target,
            sender,
            committers: std::sync::Mutex::new(committers),
            closing: AtomicBool::new(false),
            enqueue_timeout: config.enqueue_timeout,
        })
    }

    /// Connects and applies migrations only (`tally migrate`); returns the schema version.
    ///
    /// # Errors
    /// As [`PostgresStore::open`].
    pub async fn migrate(config: &PostgresConfig) -> Result<i64, StoreError> {
        let (pool, target) = schema::pool(config)?;
        let version = schema::migrate(&pool, config.schema.as_deref(), &target).await;
        pool.close();
        version
    }

    /// Where this store is, without the password: `postgres://user@host:port/database`.
    pub fn target(&self) -> &str {
        &self.target
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        if self.closing.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        self.pool.get().await.map_err(pool_error)
    }
}

/// Takes queued requests (everything waiting, up to `max_group_items` items) and runs them in
/// one transaction, until it receives [`Message::Stop`] or the queue closes. Several
/// committers share the queue: while one commits, the next gathers.
async fn run_committer(
    pool: Pool,
    receiver: Arc<Mutex<mpsc::Receiver<Message>>>,
    max_group_items: usize,
) {
    let mut stop = false;
    while !stop {
        let mut group: Vec<WriteRequest> = Vec::new();
        {
            let mut rx = receiver.lock().await;
            let mut count = 0;
            match rx.recv().await {
                Some(Message::Write(req)) => {
                    count += req.items.len();
                    group.push(req);
                }
                Some(Message::Stop) | None => stop = true,
            }
            while !stop && count < max_group_items {
                match rx.try_recv() {
                    Ok(Message::Write(req)) => {
                        count += req.items.len();
                        group.push(req);
                    }
                    Ok(Message::Stop) => stop = true,
                    Err(_) => break,
                }
            }
        }
        if group.is_empty() {
            continue;
        }
        match commit_group(&pool, &group).await {
            Ok(outcomes) => {
                for (req, out) in group.into_iter().zip(outcomes) {
                    let _ = req.reply.send(Ok(out));
                }
            }
            Err(e) => {
                let items: usize = group.iter().map(|r| r.items.len()).sum();
                tracing::error!(error = %error_chain(&e), requests = group.len(), items, "Group commit failed; answering 503.");
                for req in group {
                    let _ = req.reply.send(Err(group_error(&e)));
                }
            }
        }
    }
}

/// Runs a group in one transaction, again from the start after a deadlock (PostgreSQL chose
/// this transaction as the victim; nothing of it was committed).
async fn commit_group(
    pool: &Pool,
    group: &[WriteRequest],
) -> Result<Vec<Vec<IngestOutcome>>, TxError> {
    let started = Instant::now();
    let mut client = pool.get().await?;
    let mut tries = 0;
    loop {
        tries += 1;
        let attempt = tokio::time::timeout(COMMIT_TIMEOUT, try_commit(&mut client, group)).await;
        let Ok(result) = attempt else {
            // The transaction's state is unknown: the connection must not go back to the pool.
            drop(deadpool_postgres::Object::take(client));
            return Err(TxError::Timeout(COMMIT_TIMEOUT));
        };
        match result {
            Err(e) if retryable(&e) && tries < MAX_TX_RETRIES => {
                tracing::debug!(error = %e, tries, "Group transaction lost a deadlock; running it again.");
                tokio::time::sleep(retry_wait(tries)).await;
            }
            Ok(out) => {
                let elapsed = started.elapsed();
                if elapsed > SLOW_COMMIT {
                    tracing::debug!(
                        requests = group.len(),
                        tries,
                        ms = elapsed.as_secs_f64() * 1e3,
                        "Slow group commit."
                    );
                }
                return Ok(out);
            }
            Err(e) => return Err(e),
        }
    }
}

/// A random wait before try `tries + 1` of a group that deadlocked.
fn retry_wait(tries: usize) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // A fresh std hasher key is random: jitter without a dependency.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let most = Duration::from_millis(2)
        .saturating_mul(1 << tries.min(16))
        .min(MAX_RETRY_WAIT);
    most.mul_f64((random >> 11) as f64 / (1u64 << 53) as f64)
}

async fn try_commit(
    client: &mut deadpool_postgres::Client,
    group: &[WriteRequest],
) -> Result<Vec<Vec<IngestOutcome>>, TxError> {
    let tx = client.transaction().await?;
    let items: Vec<(Timestamp, &IngestItem)> = group
        .iter()
        .flat_map(|r| r.items.iter().map(move |item| (r.now, item)))
        .collect();
    let mut outcomes = batch::apply_all(&tx, &items).await?.into_iter();
    let all = group
        .iter()
        .map(|r| outcomes.by_ref().take(r.items.len()).collect())
        .collect();
    // A commit returns once PostgreSQL has flushed its WAL (synchronous_commit = on, the
    // server's default), so the answer that follows means durable.
    tx.commit().await?;
    Ok(all)
}

#[async_trait]
impl Store for PostgresStore {
    async fn ingest(
        &self,
        now: Timestamp,
        items: Vec<IngestItem>,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if self.closing.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest { now, items, reply };
        match tokio::time::timeout(
            self.enqueue_timeout,
            self.sender.send(Message::Write(request)),
        )
        .await
        {
            Err(_) => return Err(StoreError::Overloaded),
            Ok(Err(_)) => return Err(StoreError::Closed),
            Ok(Ok(())) => {}
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn ledger(&self, event_id: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        read::ledger(&self.client().await?, event_id).await
    }

    async fn container_draft(&self, name: &str) -> Result<Option<ContainerDraft>, StoreError> {
        container::draft(&self.client().await?, name).await
    }

    async fn save_container_draft(
        &self,
        now: Timestamp,
        name: &str,
        document: &str,
    ) -> Result<(), StoreError> {
        container::save_draft(&self.client().await?, now, name, document).await
    }

    async fn publish_container(
        &self,
        now: Timestamp,
        name: &str,
        publish: ContainerPublish,
    ) -> Result<ContainerVersionInfo, StoreError> {
        container::publish(&mut self.client().await?, now, name, &publish).await
    }

    async fn container_versions(
        &self,
        name: &str,
    ) -> Result<Vec<ContainerVersionInfo>, StoreError> {
        container::versions(&self.client().await?, name).await
    }

    async fn container_version(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<ContainerVersion>, StoreError> {
        container::version(&self.client().await?, name, version).await
    }

    async fn live_container_version(&self, name: &str) -> Result<Option<u32>, StoreError> {
        container::live_version(&self.client().await?, name).await
    }

    async fn quarantine(
        &self,
        filter: QuarantineFilter,
    ) -> Result<Vec<QuarantineRecord>, StoreError> {
        read::quarantine(&self.client().await?, &filter).await
    }

    async fn dedup_stats(&self, since: Timestamp) -> Result<Vec<EventDedupStats>, StoreError> {
        read::dedup_stats(&self.client().await?, since).await
    }

    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError> {
        read::destination_stats(&self.client().await?).await
    }

    async fn deliveries_in_state(
        &self,
        state: DeliveryState,
        destination: Option<String>,
        limit: u32,
    ) -> Result<Vec<DeliverySummary>, StoreError> {
        read::deliveries_in_state(&self.client().await?, state, destination.as_deref(), limit).await
    }

    // Asks the database, so a node reports ready again as soon as the database is back, not
    // only after its next successful commit.
    async fn ready(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(unavailable)?;
        Ok(())
    }

    async fn close(&self) {
        if self.closing.swap(true, Ordering::Relaxed) {
            return;
        }
        let committers: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.committers.lock().expect("store lock"));
        // Queued writes come before the stops, so they are committed first.
        for _ in &committers {
            let _ = self.sender.send(Message::Stop).await;
        }
        for c in committers {
            let _ = c.await;
        }
        self.pool.close();
    }
}
