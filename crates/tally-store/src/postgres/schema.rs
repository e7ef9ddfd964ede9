//! Connecting and applying migrations. The schema version is the one row of `tally_schema`;
//! migrations run in one transaction under an advisory lock, so nodes starting together
//! migrate once and a failed migration leaves nothing half done (PostgreSQL DDL is
//! transactional).

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use super::store::PostgresConfig;
use super::tls;
use crate::StoreError;

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_containers.sql"),
];

/// Newest schema version this binary knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Where a config points, for messages: `postgres://user@host:port/db`, never the password.
pub(super) fn describe(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().unwrap_or("");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}")
}

/// Whether `name` is a plain schema name (it is put into SQL as an identifier).
pub fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Parses the URL and builds the pool with the TLS it asks for (reading the CA file, if any);
/// connects nothing yet.
pub(super) fn pool(config: &PostgresConfig) -> Result<(Pool, String), StoreError> {
    // Until the URL parsed it cannot be described without echoing it.
    let unparsed = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
        path: "postgres (store.url)".to_owned(),
        source,
    };
    let (url, asked) = tls::split_url(config.url.expose()).map_err(|e| unparsed(e.into()))?;
    let mut pg: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| unparsed(Box::new(e)))?;
    let mode = tls::mode(&pg, &asked).map_err(|e| StoreError::Open {
        path: describe(&pg),
        source: e.into(),
    })?;
    let target = format!("{}?sslmode={}", describe(&pg), mode.as_str());
    let (ssl_mode, tls) = tls::connector(mode, &asked).map_err(|e| StoreError::Open {
        path: target.clone(),
        source: e.into(),
    })?;
    pg.ssl_mode(ssl_mode);
    if pg.get_hosts().is_empty() {
        pg.host("localhost");
    }
    if pg.get_application_name().is_none() {
        pg.application_name("tally");
    }
    pg.connect_timeout(config.connect_timeout);
    if let Some(schema) = &config.schema {
        if !valid_schema_name(schema) {
            return Err(StoreError::Open {
                path: target,
                source: format!(
                    "schema `{schema}` must be lowercase letters, digits and underscores"
                )
                .into(),
            });
        }
        // Every connection of the pool works in this schema (libpq's `options`).
        let options = match pg.get_options() {
            Some(o) if !o.is_empty() => format!("{o} -c search_path={schema}"),
            _ => format!("-c search_path={schema}"),
        };
        pg.options(options);
    }
    let manager = Manager::from_config(
        pg,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(config.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.enqueue_timeout))
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|e| StoreError::Open {
            path: target.clone(),
            source: Box::new(e),
        })?;
    Ok((pool, target))
}

/// Applies missing migrations; returns the schema version now in the database.
///
/// # Errors
/// [`StoreError::SchemaTooNew`] when the database was migrated by a newer tally, otherwise
/// [`StoreError::Open`] with the reason (unreachable, refused, no privilege).
pub(super) async fn migrate(
    pool: &Pool,
    schema: Option<&str>,
    target: &str,
) -> Result<i64, StoreError> {
    let open = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
        path: target.to_owned(),
        source: e,
    };
    let mut client = pool.get().await.map_err(|e| match e {
        // The connection's own error says it best ("Connection refused", "password ...").
        deadpool_postgres::PoolError::Backend(e) => open(Box::new(e)),
        other => open(Box::new(other)),
    })?;
    let tx = client.transaction().await.map_err(|e| open(Box::new(e)))?;
    // One migrator per schema at a time (keyed by the search path: the schema may not exist
    // yet); the lock ends with the transaction.
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(hashtext('tally migrate ' || current_setting('search_path')))",
    )
        .await
        .map_err(|e| open(Box::new(e)))?;
    if let Some(schema) = schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .map_err(|e| open(Box::new(e)))?;
    }
    tx.batch_execute("CREATE TABLE IF NOT EXISTS tally_schema (version BIGINT NOT NULL)")
        .await
        .map_err(|e| open(Box::new(e)))?;
    let found: i64 = tx
        .query_opt("SELECT version FROM tally_schema", &[])
        .await
        .map_err(|e| open(Box::new(e)))?
        .map(|r| r.get(0))
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(found);
    }
    for sql in MIGRATIONS.iter().skip(found as usize) {
        tx.batch_execute(sql).await.map_err(|e| open(Box::new(e)))?;
    }
    tx.batch_execute("DELETE FROM tally_schema")
        .await
        .map_err(|e| open(Box::new(e)))?;
    tx.execute(
        "INSERT INTO tally_schema (version) VALUES ($1)",
        &[&SCHEMA_VERSION],
    )
    .await
    .map_err(|e| open(Box::new(e)))?;
    tx.commit().await.map_err(|e| open(Box::new(e)))?;
    tracing::info!(from = found, to = SCHEMA_VERSION, store = %target, "Migrated the PostgreSQL schema.");
    Ok(SCHEMA_VERSION)
}
