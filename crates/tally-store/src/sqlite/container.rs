//! The tag container's drafts and versions in SQLite.
//!
//! Reads use the read pool. Writes are rare admin actions, so they do not go through the
//! ingest writer's queue: each opens its own connection and runs one `BEGIN IMMEDIATE`
//! transaction of a few rows, which the writer (also `IMMEDIATE`, with a busy timeout) waits
//! for like any lock holder. The connection never checkpoints (the store's checkpointer does).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tally_core::timestamp::Timestamp;

use crate::StoreError;
use crate::container::*;

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

fn version_number(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        table: "container_versions",
        message: format!("version {v} out of range"),
    })
}

fn info(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, i64, String, Option<i64>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_info(
    (version, published_ms, note, copied_from): (i64, i64, String, Option<i64>),
) -> Result<ContainerVersionInfo, StoreError> {
    Ok(ContainerVersionInfo {
        version: version_number(version)?,
        published: Timestamp::from_millis(published_ms),
        note,
        copied_from: copied_from.map(version_number).transpose()?,
    })
}

pub(super) fn draft(
    conn: &Connection,
    container: &str,
) -> Result<Option<ContainerDraft>, StoreError> {
    conn.query_row(
        "SELECT document, updated_ms FROM container_drafts WHERE container = ?1",
        params![container],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
    )
    .optional()
    .map_err(unavailable)
    .map(|found| {
        found.map(|(document, ms)| ContainerDraft {
            document,
            updated: Timestamp::from_millis(ms),
        })
    })
}

pub(super) fn versions(
    conn: &Connection,
    container: &str,
) -> Result<Vec<ContainerVersionInfo>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT version, published_ms, note, copied_from FROM container_versions
              WHERE container = ?1 ORDER BY version DESC",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![container], info)
        .map_err(unavailable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)?;
    rows.into_iter().map(to_info).collect()
}

pub(super) fn version(
    conn: &Connection,
    container: &str,
    version: Option<u32>,
) -> Result<Option<ContainerVersion>, StoreError> {
    let row = conn
        .query_row(
            "SELECT version, published_ms, note, copied_from, document FROM container_versions
              WHERE container = ?1 AND (?2 IS NULL OR version = ?2)
              ORDER BY version DESC LIMIT 1",
            params![container, version],
            |r| Ok((info(r)?, r.get::<_, String>(4)?)),
        )
        .optional()
        .map_err(unavailable)?;
    row.map(|(i, document)| {
        Ok(ContainerVersion {
            info: to_info(i)?,
            document,
        })
    })
    .transpose()
}

pub(super) fn live_version(conn: &Connection, container: &str) -> Result<Option<u32>, StoreError> {
    let v: Option<i64> = conn
        .query_row(
            "SELECT MAX(version) FROM container_versions WHERE container = ?1",
            params![container],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    v.map(version_number).transpose()
}

fn open_for_write(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(unavailable)?;
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 5000;
         PRAGMA wal_autocheckpoint = 0;",
    )
    .map_err(unavailable)?;
    Ok(conn)
}

pub(super) fn save_draft(
    path: &Path,
    now: Timestamp,
    container: &str,
    document: &str,
) -> Result<(), StoreError> {
    let conn = open_for_write(path)?;
    conn.execute(
        "INSERT INTO container_drafts (container, document, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (container) DO UPDATE SET document = excluded.document,
                                               updated_ms = excluded.updated_ms",
        params![container, document, now.millis()],
    )
    .map_err(unavailable)?;
    Ok(())
}

pub(super) fn publish(
    path: &Path,
    now: Timestamp,
    container: &str,
    publish: &ContainerPublish,
) -> Result<ContainerVersionInfo, StoreError> {
    let mut conn = open_for_write(path)?;
    // IMMEDIATE takes the write lock first, so two publishes cannot pick one number.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    let newest: Option<i64> = tx
        .query_row(
            "SELECT MAX(version) FROM container_versions WHERE container = ?1",
            params![container],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    let version = newest.unwrap_or(0) + 1;
    tx.execute(
        "INSERT INTO container_versions (container, version, document, note, published_ms, copied_from)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            container,
            version,
            publish.document,
            publish.note,
            now.millis(),
            publish.copied_from
        ],
    )
    .map_err(unavailable)?;
    tx.commit().map_err(unavailable)?;
    to_info((
        version,
        now.millis(),
        publish.note.clone(),
        publish.copied_from.map(i64::from),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_version_cannot_be_changed_or_deleted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tally.db");
        drop(super::super::schema::open_writer(&path).expect("migrated"));
        let doc = ContainerPublish {
            document: "{}".into(),
            note: "first".into(),
            copied_from: None,
        };
        publish(&path, Timestamp::from_millis(1), "web", &doc).expect("published");
        let conn = open_for_write(&path).unwrap();
        for sql in [
            "UPDATE container_versions SET document = '{\"tags\":{}}'",
            "DELETE FROM container_versions",
        ] {
            let e = conn.execute(sql, []).unwrap_err().to_string();
            assert!(e.contains("container versions are immutable"), "{sql}: {e}");
        }
        assert_eq!(live_version(&conn, "web").unwrap(), Some(1));
    }
}
