//! `tally migrate` for either backend: bring a store's schema up to date (what opening it
//! does anyway) and report the version it is at.

use rusqlite::{Connection, OpenFlags};

use crate::postgres::{PostgresConfig, PostgresStore};
use crate::sqlite::{SqliteConfig, SqliteStore};
use crate::{Store, StoreError};

/// Applies SQLite migrations and returns the schema version (`PRAGMA user_version`).
///
/// # Errors
/// When the database cannot be opened or is newer than this binary.
pub async fn sqlite(config: SqliteConfig) -> Result<i64, StoreError> {
    let path = config.path.clone();
    let store = SqliteStore::open(config)?;
    store.close().await;
    let read = || -> Result<i64, rusqlite::Error> {
        Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?.query_row(
            "PRAGMA user_version",
            [],
            |r| r.get(0),
        )
    };
    read().map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        source: Box::new(e),
    })
}

/// Applies PostgreSQL migrations and returns the schema version.
///
/// # Errors
/// When the database is unreachable, refuses the migration, or is newer than this binary.
pub async fn postgres(config: &PostgresConfig) -> Result<i64, StoreError> {
    PostgresStore::migrate(config).await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn sqlite_migrate_creates_the_database_and_reports_its_version() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = crate::sqlite::SqliteConfig::new(dir.path().join("tally.db"));
        let first = super::sqlite(config.clone()).await.expect("migrate");
        assert!(first >= 1);
        assert_eq!(super::sqlite(config).await.expect("again"), first);
    }
}
