//! [`SqliteStore`]: the handle the rest of tally holds.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tally_core::timestamp::Timestamp;
use tokio::sync::{mpsc, oneshot};

use super::container;
use super::people::PeopleMemory;
use super::read::{self, ReadPool};
use super::schema;
use super::writer::{self, WriteRequest, WriterHealth, WriterMessage};
use crate::container::*;
use crate::model::*;
use crate::{Store, StoreError};

/// `[store]` settings for SQLite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// Database file.
    pub path: PathBuf,
    /// Most items one group commit takes.
    pub max_group_items: usize,
    /// Requests that may wait for the writer before callers get `Overloaded`.
    pub queue_capacity: usize,
    /// How long a request waits for a place in the queue.
    pub enqueue_timeout: Duration,
    /// How often the background checkpointer moves the WAL into the database file; the writer
    /// also checkpoints in its idle moments, so this is the backstop for sustained load.
    pub checkpoint_interval: Duration,
}

impl SqliteConfig {
    /// Defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            max_group_items: 8192,
            queue_capacity: 4096,
            enqueue_timeout: Duration::from_secs(5),
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

/// The embedded SQLite store.
pub struct SqliteStore {
    sender: mpsc::Sender<WriterMessage>,
    health: Arc<WriterHealth>,
    reads: Arc<ReadPool>,
    enqueue_timeout: Duration,
    threads: Mutex<Vec<JoinHandle<()>>>,
    closing: Arc<AtomicBool>,
    /// The database file, for the container's own write connections.
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating and migrating) the database and starts the writer and checkpointer.
    ///
    /// # Errors
    /// When the file cannot be opened or its schema is newer than this binary.
    pub fn open(config: SqliteConfig) -> Result<Self, StoreError> {
        let conn = schema::open_writer(&config.path)?;
        let people = PeopleMemory::load(&conn).map_err(|e| StoreError::Open {
            path: config.path.display().to_string(),
            source: Box::new(e),
        })?;
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let health = Arc::new(WriterHealth {
            healthy: AtomicBool::new(true),
        });
        let closing = Arc::new(AtomicBool::new(false));
        let writer_health = health.clone();
        let max_group = config.max_group_items;
        let writer = std::thread::Builder::new()
            .name("tally-sqlite-writer".into())
            .spawn(move || writer::run(conn, rx, max_group, writer_health, people))
            .map_err(|e| StoreError::Open {
                path: config.path.display().to_string(),
                source: Box::new(e),
            })?;
        let checkpointer = spawn_checkpointer(&config, closing.clone())?;
        Ok(SqliteStore {
            sender: tx,
            health,
            reads: Arc::new(ReadPool::new(config.path.clone())),
            enqueue_timeout: config.enqueue_timeout,
            threads: Mutex::new(vec![writer, checkpointer]),
            closing,
            path: config.path.clone(),
        })
    }

    /// Opens an existing database for reading only (the CLI beside a running server).
    ///
    /// # Errors
    /// When the file does not exist or cannot be opened.
    pub fn open_read_only(path: impl Into<PathBuf>) -> Result<ReadOnlySqlite, StoreError> {
        let path = path.into();
        if !path.exists() {
            return Err(StoreError::Open {
                path: path.display().to_string(),
                source: "no database here (has `tally serve` run with this data_dir?)".into(),
            });
        }
        Ok(ReadOnlySqlite {
            reads: Arc::new(ReadPool::new(path)),
        })
    }
}

fn spawn_checkpointer(
    config: &SqliteConfig,
    closing: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, StoreError> {
    let conn = schema::open_reader(&config.path)?;
    conn.execute_batch("PRAGMA query_only = 0;")
        .map_err(|e| StoreError::Open {
            path: config.path.display().to_string(),
            source: Box::new(e),
        })?;
    let interval = config.checkpoint_interval;
    std::thread::Builder::new()
        .name("tally-sqlite-checkpoint".into())
        .spawn(move || {
            // PASSIVE never waits for the writer, so commits never wait for a checkpoint.
            while !closing.load(Ordering::Relaxed) {
                std::thread::park_timeout(interval);
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint failed; will retry.");
                }
            }
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        })
        .map_err(|e| StoreError::Open {
            path: config.path.display().to_string(),
            source: Box::new(e),
        })
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(
        &self,
        now: Timestamp,
        items: Vec<IngestItem>,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest { now, items, reply };
        match tokio::time::timeout(
            self.enqueue_timeout,
            self.sender.send(WriterMessage::Write(request)),
        )
        .await
        {
            Err(_) => return Err(StoreError::Overloaded),
            Ok(Err(_)) => return Err(StoreError::Closed),
            Ok(Ok(())) => {}
        }
        let (outcomes, _items) = answer.await.map_err(|_| StoreError::Closed)??;
        outcomes.into_iter().map(writer::Applied::decode).collect()
    }

    async fn ledger(&self, event_id: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        let id = event_id.to_owned();
        self.reads.run(move |c| read::ledger(c, &id)).await
    }

    async fn quarantine(
        &self,
        filter: QuarantineFilter,
    ) -> Result<Vec<QuarantineRecord>, StoreError> {
        self.reads.run(move |c| read::quarantine(c, &filter)).await
    }

    async fn dedup_stats(&self, since: Timestamp) -> Result<Vec<EventDedupStats>, StoreError> {
        self.reads.run(move |c| read::dedup_stats(c, since)).await
    }

    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError> {
        self.reads.run(read::destination_stats).await
    }

    async fn deliveries_in_state(
        &self,
        state: DeliveryState,
        destination: Option<String>,
        limit: u32,
    ) -> Result<Vec<DeliverySummary>, StoreError> {
        self.reads
            .run(move |c| read::deliveries_in_state(c, state, destination.as_deref(), limit))
            .await
    }

    async fn container_draft(&self, name: &str) -> Result<Option<ContainerDraft>, StoreError> {
        let name = name.to_owned();
        self.reads.run(move |c| container::draft(c, &name)).await
    }

    async fn save_container_draft(
        &self,
        now: Timestamp,
        name: &str,
        document: &str,
    ) -> Result<(), StoreError> {
        let (path, name, document) = (self.path.clone(), name.to_owned(), document.to_owned());
        blocking(move || container::save_draft(&path, now, &name, &document)).await
    }

    async fn publish_container(
        &self,
        now: Timestamp,
        name: &str,
        publish: ContainerPublish,
    ) -> Result<ContainerVersionInfo, StoreError> {
        let (path, name) = (self.path.clone(), name.to_owned());
        blocking(move || container::publish(&path, now, &name, &publish)).await
    }

    async fn container_versions(
        &self,
        name: &str,
    ) -> Result<Vec<ContainerVersionInfo>, StoreError> {
        let name = name.to_owned();
        self.reads.run(move |c| container::versions(c, &name)).await
    }

    async fn container_version(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<ContainerVersion>, StoreError> {
        let name = name.to_owned();
        self.reads
            .run(move |c| container::version(c, &name, version))
            .await
    }

    async fn live_container_version(&self, name: &str) -> Result<Option<u32>, StoreError> {
        let name = name.to_owned();
        self.reads
            .run(move |c| container::live_version(c, &name))
            .await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if self.closing.load(Ordering::Relaxed) || self.sender.is_closed() {
            return Err(StoreError::Closed);
        }
        if self.health.healthy.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(StoreError::Unavailable("the last commit failed".into()))
        }
    }

    async fn close(&self) {
        if self.closing.swap(true, Ordering::Relaxed) {
            return;
        }
        let _ = self.sender.send(WriterMessage::Shutdown).await;
        let threads: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.threads.lock().expect("store lock"));
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                t.thread().unpark();
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Runs a container write on a blocking thread.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?
}

/// Read access to an SQLite database another process writes (the CLI's `ledger`).
pub struct ReadOnlySqlite {
    reads: Arc<ReadPool>,
}

impl ReadOnlySqlite {
    /// See [`Store::ledger`].
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn ledger(&self, event_id: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        let id = event_id.to_owned();
        self.reads.run(move |c| read::ledger(c, &id)).await
    }

    /// See [`Store::quarantine`].
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn quarantine(
        &self,
        filter: QuarantineFilter,
    ) -> Result<Vec<QuarantineRecord>, StoreError> {
        self.reads.run(move |c| read::quarantine(c, &filter)).await
    }
}
