//! The tag container's drafts and versions in PostgreSQL, on pooled connections outside the
//! committers (admin writes are rare). A publish takes a transaction-scoped advisory lock per
//! container, so nodes publishing at once get consecutive numbers instead of a conflict.

use deadpool_postgres::Client;
use tally_core::timestamp::Timestamp;
use tokio_postgres::Row;

use super::store::unavailable;
use crate::StoreError;
use crate::container::*;

fn version_number(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        table: "container_versions",
        message: format!("version {v} out of range"),
    })
}

fn to_info(r: &Row) -> Result<ContainerVersionInfo, StoreError> {
    Ok(ContainerVersionInfo {
        version: version_number(r.try_get(0).map_err(unavailable)?)?,
        published: Timestamp::from_millis(r.try_get(1).map_err(unavailable)?),
        note: r.try_get(2).map_err(unavailable)?,
        copied_from: r
            .try_get::<_, Option<i64>>(3)
            .map_err(unavailable)?
            .map(version_number)
            .transpose()?,
    })
}

pub(super) async fn draft(
    client: &Client,
    container: &str,
) -> Result<Option<ContainerDraft>, StoreError> {
    let row = client
        .query_opt(
            "SELECT document, updated_ms FROM container_drafts WHERE container = $1",
            &[&container],
        )
        .await
        .map_err(unavailable)?;
    row.map(|r| {
        Ok(ContainerDraft {
            document: r.try_get(0).map_err(unavailable)?,
            updated: Timestamp::from_millis(r.try_get(1).map_err(unavailable)?),
        })
    })
    .transpose()
}

pub(super) async fn save_draft(
    client: &Client,
    now: Timestamp,
    container: &str,
    document: &str,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO container_drafts (container, document, updated_ms) VALUES ($1, $2, $3)
             ON CONFLICT (container) DO UPDATE SET document = EXCLUDED.document,
                                                   updated_ms = EXCLUDED.updated_ms",
            &[&container, &document, &now.millis()],
        )
        .await
        .map_err(unavailable)?;
    Ok(())
}

pub(super) async fn publish(
    client: &mut Client,
    now: Timestamp,
    container: &str,
    publish: &ContainerPublish,
) -> Result<ContainerVersionInfo, StoreError> {
    let tx = client.transaction().await.map_err(unavailable)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('tally container ' || $1))",
        &[&container],
    )
    .await
    .map_err(unavailable)?;
    let copied_from = publish.copied_from.map(i64::from);
    let row = tx
        .query_one(
            "INSERT INTO container_versions (container, version, document, note, published_ms, copied_from)
             SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5
               FROM container_versions WHERE container = $1
             RETURNING version, published_ms, note, copied_from",
            &[
                &container,
                &publish.document,
                &publish.note,
                &now.millis(),
                &copied_from,
            ],
        )
        .await
        .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    to_info(&row)
}

pub(super) async fn versions(
    client: &Client,
    container: &str,
) -> Result<Vec<ContainerVersionInfo>, StoreError> {
    client
        .query(
            "SELECT version, published_ms, note, copied_from FROM container_versions
              WHERE container = $1 ORDER BY version DESC",
            &[&container],
        )
        .await
        .map_err(unavailable)?
        .iter()
        .map(to_info)
        .collect()
}

pub(super) async fn version(
    client: &Client,
    container: &str,
    version: Option<u32>,
) -> Result<Option<ContainerVersion>, StoreError> {
    let version = version.map(i64::from);
    let row = client
        .query_opt(
            "SELECT version, published_ms, note, copied_from, document FROM container_versions
              WHERE container = $1 AND ($2::BIGINT IS NULL OR version = $2)
              ORDER BY version DESC LIMIT 1",
            &[&container, &version],
        )
        .await
        .map_err(unavailable)?;
    row.map(|r| {
        Ok(ContainerVersion {
            info: to_info(&r)?,
            document: r.try_get(4).map_err(unavailable)?,
        })
    })
    .transpose()
}

pub(super) async fn live_version(
    client: &Client,
    container: &str,
) -> Result<Option<u32>, StoreError> {
    let row = client
        .query_one(
            "SELECT MAX(version) FROM container_versions WHERE container = $1",
            &[&container],
        )
        .await
        .map_err(unavailable)?;
    row.try_get::<_, Option<i64>>(0)
        .map_err(unavailable)?
        .map(version_number)
        .transpose()
}
