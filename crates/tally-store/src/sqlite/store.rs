//! [`SqliteStore`]: the handle the rest of tally holds.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tally_core::timestamp::Timestamp;
use tokio::sync::{mpsc, oneshot};

use super::container;
use super::health::{Probe, WriterHealth};
use super::people::PeopleMemory;
use super::read::{self, ReadPool};
use super::schema;
use super::writer::{self, WriteRequest, Writer, WriterMessage};
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
    /// After a commit failed for lack of room, how much a probe must write and sync beside
    /// the database before the store reports ready again: room for a group commit of typical
    /// size (its WAL frames), which a one-page write does not show.
    pub probe_bytes: u64,
    /// Least time between two such probes (`ready()` asks for them; they run on the writer).
    pub probe_interval: Duration,
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
            probe_bytes: 8 << 20,
            probe_interval: Duration::from_secs(1),
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
    probe_interval: Duration,
    /// When `ready()` last asked the writer for a probe.
    last_probe: Mutex<Option<Instant>>,
}

/// How long `ready()` waits for the probe it asked for (the writer runs it between groups).
const PROBE_WAIT: Duration = Duration::from_secs(2);

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
        let health = Arc::new(WriterHealth::new(config.probe_bytes));
        let closing = Arc::new(AtomicBool::new(false));
        let probe = Probe::beside(&config.path, config.probe_bytes);
        probe.remove_leftover();
        let writer = Writer {
            max_group_items: config.max_group_items,
            health: health.clone(),
            people,
            probe,
        };
        let writer = std::thread::Builder::new()
            .name("tally-sqlite-writer".into())
            .spawn(move || writer::run(conn, rx, writer))
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
            probe_interval: config.probe_interval,
            last_probe: Mutex::new(None),
        })
    }

    /// Asks the writer for a probe unless one was asked for within `probe_interval`, or the
    /// queue is full (then queued writes will tell); the receiver is answered when it ran.
    fn ask_for_probe(&self) -> Option<oneshot::Receiver<()>> {
        let mut last = self.last_probe.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < self.probe_interval) {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        self.sender.try_send(WriterMessage::Probe(reply)).ok()?;
        *last = Some(Instant::now());
        Some(answer)
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

    /// Ready unless a commit failed and nothing has proved its cause gone since (see
    /// `sqlite/health.rs`); while the cause is lack of room, asks for a probe (rate-limited)
    /// and answers after it ran.
    async fn ready(&self) -> Result<(), StoreError> {
        if self.closing.load(Ordering::Relaxed) || self.sender.is_closed() {
            return Err(StoreError::Closed);
        }
        if self.health.is_ready() {
            return Ok(());
        }
        if self.health.lacks_room()
            && let Some(answer) = self.ask_for_probe()
        {
            let _ = tokio::time::timeout(PROBE_WAIT, answer).await;
        }
        self.health
            .check()
            .map_err(|why| StoreError::Unavailable(why.into()))
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

#[cfg(test)]
mod tests {
    use tally_core::event::SourceKind::Server;

    use super::*;
    use crate::testsuite::{NOW, purchase};

    fn config(dir: &tempfile::TempDir, probe_interval: Duration) -> SqliteConfig {
        let mut config = SqliteConfig::new(dir.path().join("tally.db"));
        config.probe_bytes = 1 << 20;
        config.probe_interval = probe_interval;
        config
    }

    /// Runs `sql` on the writer's own connection.
    async fn exec(store: &SqliteStore, sql: &str) {
        let (reply, answer) = oneshot::channel();
        store
            .sender
            .send(WriterMessage::Exec(sql.into(), reply))
            .await
            .expect("writer");
        answer.await.expect("answered").expect(sql);
    }

    /// Ingests new purchases one by one until one is refused; returns it.
    async fn ingest_until_refused(store: &SqliteStore) -> IngestItem {
        for i in 0..10_000 {
            let id = format!("fill-{i}");
            let item = purchase(&id, &id, Server, NOW);
            match store.ingest(NOW, vec![item.clone()]).await {
                Ok(outcome) => assert_eq!(outcome, [IngestOutcome::Accepted]),
                Err(StoreError::Unavailable(_)) => return item,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("the store never refused a write")
    }

    fn unready(result: Result<(), StoreError>) -> String {
        match result {
            Err(StoreError::Unavailable(why)) => why.to_string(),
            other => panic!("expected unavailable, got {other:?}"),
        }
    }

    // `max_page_count` stands in for the full disk: SQLite answers SQLITE_FULL, as it does for
    // ENOSPC. It does not stop the probe's file, so a directory in the file's place stands in
    // for the disk's lack of room; the real disk is in crates/tally/tests/cluster/store_down.rs.
    #[tokio::test]
    async fn after_a_commit_failed_for_lack_of_room_a_probe_makes_the_store_ready_without_a_write()
    {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(config(&dir, Duration::ZERO)).expect("open");
        store.ready().await.expect("ready when opened");
        exec(&store, "PRAGMA max_page_count = 1").await;
        let refused = ingest_until_refused(&store).await;

        let probe_path = dir.path().join("tally.db-space-probe");
        std::fs::create_dir(&probe_path).expect("block the probe");
        for n in 1..=3 {
            let why = unready(store.ready().await);
            assert!(why.starts_with("no room"), "{why}");
            assert!(why.contains(&format!("probes so far: {n}")), "{why}");
        }
        let once_more = store.ingest(NOW, vec![refused.clone()]).await;
        assert!(once_more.is_err(), "the database still may not grow");
        assert!(store.ready().await.is_err(), "nor may the probe");

        std::fs::remove_dir(&probe_path).expect("unblock the probe");
        exec(&store, "PRAGMA max_page_count = 1073741823").await;
        store
            .ready()
            .await
            .expect("ready after the probe, with no write");
        assert!(!probe_path.exists(), "the probe file is removed");
        let outcome = store.ingest(NOW, vec![refused]).await.expect("write");
        assert_eq!(outcome, [IngestOutcome::Accepted]);
        store.ready().await.expect("still ready");
        store.close().await;
    }

    #[tokio::test]
    async fn ready_probes_at_most_once_per_probe_interval() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(config(&dir, Duration::from_secs(3600))).expect("open");
        exec(&store, "PRAGMA max_page_count = 1").await;
        ingest_until_refused(&store).await;
        std::fs::create_dir(dir.path().join("tally.db-space-probe")).expect("block the probe");
        for _ in 0..5 {
            assert!(store.ready().await.is_err());
        }
        assert_eq!(store.health.probes(), 1);
        store.close().await;
    }

    #[tokio::test]
    async fn a_commit_that_failed_otherwise_is_not_probed_and_needs_a_commit_that_writes() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(config(&dir, Duration::ZERO)).expect("open");
        // A read-only database stands in for every failure that room does not cure.
        exec(&store, "PRAGMA query_only = 1").await;
        let refused = ingest_until_refused(&store).await;
        for _ in 0..3 {
            let why = unready(store.ready().await);
            assert!(why.contains("readonly"), "{why}");
            assert!(why.contains("once a commit that writes succeeds"), "{why}");
        }
        assert_eq!(
            store.health.probes(),
            0,
            "no probe for what room does not cure"
        );

        exec(&store, "PRAGMA query_only = 0").await;
        assert!(store.ready().await.is_err(), "nothing has proved it gone");
        let claimed = store
            .claim(NOW, "meta", "w1", NOW, 10, false)
            .await
            .expect("a claim commits");
        assert!(claimed.is_empty());
        assert!(
            store.ready().await.is_err(),
            "a commit that changed nothing proves nothing"
        );
        let outcome = store.ingest(NOW, vec![refused]).await.expect("write");
        assert_eq!(outcome, [IngestOutcome::Accepted]);
        store
            .ready()
            .await
            .expect("ready after a commit that wrote");
        store.close().await;
    }

    #[tokio::test]
    async fn opening_removes_a_probe_file_a_crash_left_behind() {
        let dir = tempfile::tempdir().expect("dir");
        let leftover = dir.path().join("tally.db-space-probe");
        std::fs::write(&leftover, vec![7u8; 4096]).expect("leftover");
        let store = SqliteStore::open(config(&dir, Duration::ZERO)).expect("open");
        assert!(!leftover.exists());
        store.close().await;
    }
}
