//! The embedded SQLite backend: WAL mode, `synchronous = FULL`, and group commit.
//!
//! All writes go through one writer thread that owns the only write connection. Requests queue
//! their items on a bounded channel; the writer takes everything queued (up to a cap), runs it
//! in one transaction and syncs once, then answers every request in the group. That is what
//! makes durable acknowledgement cheap, and a single writer makes dedup decisions race-free.
//! Reads (ledger, quarantine, stats) use a small pool of separate connections, which WAL lets
//! run beside the writer. A checkpointer thread keeps WAL checkpoints off the commit path.
//! Readiness (`/healthz`) follows the writer's commits, and after a commit failed for lack of
//! room, a probe that proves room again (`health.rs`).

mod container;
mod erase;
mod health;
mod people;
mod read;
mod schema;
mod store;
mod writer;

pub use store::{ReadOnlySqlite, SqliteConfig, SqliteStore};

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::{SqliteConfig, SqliteStore};
    use crate::Store;
    use crate::testsuite::{TestStore, store_test_suite};

    #[async_trait]
    impl TestStore for SqliteStore {
        type Guard = tempfile::TempDir;

        async fn for_test() -> (Self, Self::Guard) {
            // A real file, not `:memory:`, so WAL and locking are exercised.
            let dir = tempfile::tempdir().expect("temp dir");
            let store =
                SqliteStore::open(SqliteConfig::new(dir.path().join("tally.db"))).expect("open");
            (store, dir)
        }

        async fn reopen(self, guard: &Self::Guard) -> Self {
            self.close().await;
            SqliteStore::open(SqliteConfig::new(guard.path().join("tally.db"))).expect("reopen")
        }
    }

    store_test_suite!(SqliteStore);
}
