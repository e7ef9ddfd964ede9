//! Opening connections and applying migrations (`PRAGMA user_version` is the schema version).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::StoreError;

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_deliveries.sql"),
    include_str!("../../migrations/sqlite/0003_people_and_consent.sql"),
    include_str!("../../migrations/sqlite/0004_live_destinations.sql"),
    include_str!("../../migrations/sqlite/0005_people_log.sql"),
    include_str!("../../migrations/sqlite/0006_containers.sql"),
];

/// Newest schema version this binary knows.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn open_error(path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Open {
        path: path.display().to_string(),
        source: Box::new(e),
    }
}

/// Opens the write connection, creating and migrating the database as needed.
pub(super) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| open_error(path, e))?;
    }
    let mut conn = Connection::open(path).map_err(|e| open_error(path, e))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 5000;
         PRAGMA cache_size = -8192;
         PRAGMA temp_store = MEMORY;
         PRAGMA journal_size_limit = 67108864;
         PRAGMA wal_autocheckpoint = 0;",
    )
    .map_err(|e| open_error(path, e))?;
    migrate(&mut conn).map_err(|e| match e {
        StoreError::SchemaTooNew { .. } => e,
        other => open_error(path, other),
    })?;
    Ok(conn)
}

/// Opens a read-only connection to an existing database.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_error(path, e))?;
    conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = 1;")
        .map_err(|e| open_error(path, e))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn
            .transaction()
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        tx.commit()
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    }
    Ok(())
}
