//! The CLI commands other than `serve`: `init`, `config check`, `migrate`, `ledger`,
//! `quarantine`, `replay --quarantine`, `replay --dead-letters`, `test-conversion`. Each
//! returns the exit code to use: 0 ok, 1 "ran but found problems".

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use tally_core::clock::{Clock, SystemClock};
use tally_store::postgres::PostgresStore;
use tally_store::sqlite::{ReadOnlySqlite, SqliteStore};
use tally_store::{
    LedgerEntry, QuarantineFilter, QuarantineRecord, QuarantineStatus, ReplayFilter, Store,
    StoreError,
};

use crate::config::{self, Config, DEFAULT_TOML, Overrides, StoreSettings};

/// `tally init`: writes the commented default config to `path`.
///
/// # Errors
/// When the file exists (without `force`) or cannot be written.
pub fn init(path: &Path, force: bool) -> anyhow::Result<i32> {
    if path.exists() && !force {
        bail!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        );
    }
    std::fs::write(path, DEFAULT_TOML).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "wrote {}; edit it, then run `tally config check --config {}`",
        path.display(),
        path.display()
    );
    Ok(0)
}

/// `tally config check`: prints every problem, or a summary of a valid config.
pub fn config_check(file: Option<&Path>, overrides: &Overrides) -> i32 {
    match config::load(file, overrides) {
        Ok(c) => {
            let conversions = c.plan.events().filter(|e| e.config.conversion).count();
            println!(
                "config ok: listen {}, store {}, {} source(s), {} planned event(s) ({} conversions), {} destination(s), admin API {}",
                c.listen,
                match &c.store {
                    StoreSettings::Sqlite(s) => format!("sqlite at {}", s.path.display()),
                    StoreSettings::Postgres(p) => match &p.schema {
                        Some(schema) => format!("postgres (schema {schema})"),
                        None => "postgres".to_owned(),
                    },
                },
                c.sources.len(),
                c.plan.events().count(),
                conversions,
                c.destinations.len(),
                if c.admin_token.is_some() {
                    "on"
                } else {
                    "off (no admin_token)"
                },
            );
            0
        }
        Err(problems) => {
            eprint!("{problems}");
            1
        }
    }
}

/// `tally migrate`: applies the store's migrations and prints the schema version.
///
/// # Errors
/// When the store cannot be opened or migrated (unreachable, or newer than this binary).
pub async fn migrate(config: &Config) -> anyhow::Result<i32> {
    let (what, version) = match &config.store {
        StoreSettings::Sqlite(s) => (
            format!("sqlite at {}", s.path.display()),
            tally_store::migrate::sqlite(s.clone())
                .await
                .with_context(|| format!("migrating the SQLite store at {}", s.path.display()))?,
        ),
        StoreSettings::Postgres(p) => (
            "postgres".to_owned(),
            tally_store::migrate::postgres(p)
                .await
                .context("migrating the PostgreSQL store (store.url)")?,
        ),
    };
    println!("{what}: schema version {version}");
    Ok(0)
}

/// Read access for the CLI beside a running server: SQLite read-only, or a PostgreSQL
/// connection (a database is shared anyway).
enum Reader {
    Sqlite(ReadOnlySqlite),
    Postgres(PostgresStore),
}

impl Reader {
    async fn ledger(&self, event_id: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        match self {
            Reader::Sqlite(r) => r.ledger(event_id).await,
            Reader::Postgres(p) => p.ledger(event_id).await,
        }
    }

    async fn quarantine(
        &self,
        filter: QuarantineFilter,
    ) -> Result<Vec<QuarantineRecord>, StoreError> {
        match self {
            Reader::Sqlite(r) => r.quarantine(filter).await,
            Reader::Postgres(p) => p.quarantine(filter).await,
        }
    }

    async fn close(self) {
        if let Reader::Postgres(p) = self {
            p.close().await;
        }
    }
}

async fn read_only(config: &Config) -> anyhow::Result<Reader> {
    match &config.store {
        StoreSettings::Sqlite(s) => Ok(Reader::Sqlite(SqliteStore::open_read_only(&s.path)?)),
        StoreSettings::Postgres(p) => Ok(Reader::Postgres(
            PostgresStore::open(p.clone())
                .await
                .context("opening the PostgreSQL store (store.url)")?,
        )),
    }
}

/// `tally ledger <event_id>`: what happened to one event.
///
/// # Errors
/// When the store cannot be read.
pub async fn ledger(config: &Config, event_id: &str, json: bool) -> anyhow::Result<i32> {
    let reader = read_only(config).await?;
    let entries = reader.ledger(event_id).await;
    reader.close().await;
    let entries = entries?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"event_id": event_id, "events": entries})
            )?
        )?;
    } else if entries.is_empty() {
        writeln!(out, "no event with ID `{event_id}`")?;
    } else {
        for e in &entries {
            print_entry(&mut out, e)?;
        }
    }
    Ok(if entries.is_empty() { 1 } else { 0 })
}

fn print_entry(out: &mut impl Write, entry: &LedgerEntry) -> std::io::Result<()> {
    let e = &entry.event;
    writeln!(out, "{} {}", e.name, e.event_id)?;
    writeln!(out, "  happened     {}", e.timestamp)?;
    writeln!(
        out,
        "  first seen   {} from {} ({})",
        entry.first_seen,
        e.source,
        e.source_kind.as_str()
    )?;
    if let Some(v) = &entry.dedup_value {
        writeln!(out, "  dedup key    {v}")?;
    }
    if e.value.is_some() || e.currency.is_some() {
        let value = e.value.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        let currency = e
            .currency
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default();
        writeln!(out, "  value        {value} {currency}")?;
    }
    let mut ids: Vec<String> = e
        .user
        .identity
        .field_names_present()
        .iter()
        .map(|s| s.to_string())
        .collect();
    ids.extend(
        e.user
            .click_ids
            .named()
            .filter(|(_, v)| v.is_some())
            .map(|(n, _)| n.to_owned()),
    );
    if e.user.anonymous_id.is_some() {
        ids.push("anonymous_id".into());
    }
    if e.user.ip.is_some() {
        ids.push("ip".into());
    }
    if e.user.user_agent.is_some() {
        ids.push("user_agent".into());
    }
    writeln!(
        out,
        "  identifiers  {}",
        if ids.is_empty() {
            "none".into()
        } else {
            ids.join(", ")
        }
    )?;
    let consent: Vec<String> = e
        .consent
        .signals()
        .filter_map(|(n, s)| {
            s.map(|s| {
                format!(
                    "{n}={}",
                    if s == tally_core::event::ConsentSignal::Granted {
                        "granted"
                    } else {
                        "denied"
                    }
                )
            })
        })
        .chain(e.consent.tcf.as_ref().map(|_| "tcf=present".to_owned()))
        .collect();
    writeln!(
        out,
        "  consent      {}",
        if consent.is_empty() {
            "none sent".into()
        } else {
            consent.join(", ")
        }
    )?;
    if let Some(url) = e.page.as_ref().and_then(|p| p.url.as_ref()) {
        writeln!(out, "  page         {url}")?;
    }
    writeln!(out, "  copies       {}", entry.copies.len())?;
    for (i, c) in entry.copies.iter().enumerate() {
        let how = match c.matched_by {
            Some(tally_core::dedup::MatchedBy::EventId) => " by event_id",
            Some(tally_core::dedup::MatchedBy::DedupKey) => " by dedup key",
            None => "",
        };
        let ghost = if c.ghost {
            " (ghost: second browser copy under another event ID)"
        } else {
            ""
        };
        let added = if c.contributed.is_empty() {
            String::new()
        } else {
            format!("; contributed {}", c.contributed.join(", "))
        };
        writeln!(
            out,
            "    {}. {} {} ({}) {}{}{} [event_id {}]{}",
            i + 1,
            c.received_at,
            c.source,
            c.source_kind.as_str(),
            c.outcome,
            how,
            ghost,
            c.event_id,
            added
        )?;
    }
    if entry.deliveries.is_empty() {
        writeln!(out, "  deliveries   none")?;
    }
    for d in &entry.deliveries {
        let reason = d
            .last_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        writeln!(
            out,
            "  delivery     {} {}{} after {} attempt(s), deadline {}",
            d.destination,
            d.state.as_str(),
            reason,
            d.attempts.len(),
            d.deadline
        )?;
        for a in &d.attempts {
            let status = a.status.map(|s| format!(" HTTP {s}")).unwrap_or_default();
            writeln!(out, "    {} {}{}: {}", a.at, a.outcome, status, a.summary)?;
            if let Some(consent) = &a.consent {
                writeln!(out, "      consent {consent}")?;
            }
        }
    }
    Ok(())
}

/// `tally quarantine`: lists quarantined events.
///
/// # Errors
/// When the store cannot be read.
pub async fn quarantine(
    config: &Config,
    filter: QuarantineFilter,
    json: bool,
) -> anyhow::Result<i32> {
    let reader = read_only(config).await?;
    let rows = reader.quarantine(filter).await;
    reader.close().await;
    let rows = rows?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(0);
    }
    for r in &rows {
        writeln!(
            out,
            "#{} {} {} {} [{}] {}: {}",
            r.id,
            r.received_at,
            r.source,
            r.event_name.as_deref().unwrap_or("-"),
            r.status.as_str(),
            r.code,
            r.message
        )?;
    }
    if rows.is_empty() {
        writeln!(out, "quarantine is empty")?;
    }
    Ok(0)
}

/// `tally replay --quarantine`: re-runs open quarantine rows through the current plan.
///
/// # Errors
/// When the store cannot be opened or written.
pub async fn replay_quarantine(config: &Config, filter: QuarantineFilter) -> anyhow::Result<i32> {
    let store = crate::app::open_store(config).await?;
    let app = crate::app::build(config, store.clone(), Arc::new(SystemClock))?;
    let filter = QuarantineFilter {
        status: Some(QuarantineStatus::Open),
        ..filter
    };
    let summary = app
        .state
        .pipeline
        .replay_quarantine(filter, SystemClock.now())
        .await;
    store.close().await;
    let summary = summary?;
    println!(
        "replayed {} quarantined event(s): {} accepted, {} duplicate(s) merged, {} still failing",
        summary.examined, summary.accepted, summary.duplicates, summary.still_quarantined
    );
    Ok(if summary.still_quarantined > 0 { 1 } else { 0 })
}

/// `tally replay --dead-letters`: puts dead-lettered and needs-fix deliveries back in the
/// queue (after a fix); the running server's dispatchers pick them up.
///
/// # Errors
/// When the store cannot be opened or written.
pub async fn replay_dead_letters(config: &Config, filter: ReplayFilter) -> anyhow::Result<i32> {
    let store = crate::app::open_store(config).await?;
    let result = store.replay_deliveries(SystemClock.now(), filter).await;
    store.close().await;
    let (requeued, expired) = result?;
    println!(
        "requeued {requeued} delivery(ies); {expired} left dead because the platform no longer accepts them"
    );
    Ok(0)
}

/// Reads a time given on the command line (RFC 3339, or Unix seconds or milliseconds).
///
/// # Errors
/// When it is neither.
pub fn parse_time(s: &str) -> anyhow::Result<tally_core::timestamp::Timestamp> {
    let v = s
        .parse::<i64>()
        .map(serde_json::Value::from)
        .unwrap_or_else(|_| serde_json::Value::String(s.to_owned()));
    tally_core::timestamp::Timestamp::from_json(&v).map_err(|e| anyhow::anyhow!("`{s}`: {e}"))
}
