//! Read queries, on pooled connections separate from the writer.

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::{Connection, params};
use tally_core::dedup::MatchedBy;
use tally_core::event::SourceKind;
use tally_core::timestamp::Timestamp;

use super::schema;
use crate::StoreError;
use crate::model::*;

const MAX_IDLE_READERS: usize = 4;

/// A few read connections, opened on demand.
pub(super) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub fn new(path: PathBuf) -> Self {
        ReadPool {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on a pooled connection in a blocking task.
    pub async fn run<R: Send + 'static>(
        self: &std::sync::Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().expect("pool lock").pop() {
                Some(c) => c,
                None => schema::open_reader(&pool.path)?,
            };
            let result = f(&conn);
            let mut idle = pool.idle.lock().expect("pool lock");
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

fn corrupt(table: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        message: e.to_string(),
    }
}

fn source_kind(table: &'static str, s: &str) -> Result<SourceKind, StoreError> {
    match s {
        "browser" => Ok(SourceKind::Browser),
        "server" => Ok(SourceKind::Server),
        other => Err(corrupt(table, format!("unknown source kind `{other}`"))),
    }
}

pub(super) fn ledger(conn: &Connection, event_id: &str) -> Result<Vec<LedgerEntry>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, dedup_value, first_seen_ms, body, event_id, source, source_kind, first_consent
               FROM events WHERE event_id = ?1
             UNION
             SELECT e.id, e.dedup_value, e.first_seen_ms, e.body, e.event_id, e.source, e.source_kind, e.first_consent
               FROM event_aliases a JOIN events e ON e.id = a.event_rowid WHERE a.event_id = ?1
             ORDER BY 3, 1",
        )
        .map_err(unavailable)?;
    let mut rows = stmt.query([event_id]).map_err(unavailable)?;
    let mut entries = Vec::new();
    while let Some(r) = rows.next().map_err(unavailable)? {
        let text = |i| r.get::<_, String>(i).map_err(unavailable);
        let rowid: i64 = r.get(0).map_err(unavailable)?;
        let first_seen = Timestamp::from_millis(r.get(2).map_err(unavailable)?);
        // The first copy lives in the events row; later copies in `copies`.
        let mut copies_seen = vec![CopyRecord {
            event_id: text(4)?,
            source: text(5)?,
            source_kind: source_kind("events", &text(6)?)?,
            received_at: first_seen,
            outcome: "accepted".to_owned(),
            matched_by: None,
            contributed: Vec::new(),
            ghost: false,
            consent: serde_json::from_str(&text(7)?).map_err(|e| corrupt("events", e))?,
        }];
        copies_seen.extend(copies(conn, rowid)?);
        entries.push(LedgerEntry {
            event: serde_json::from_str(&text(3)?).map_err(|e| corrupt("events", e))?,
            dedup_value: r.get(1).map_err(unavailable)?,
            first_seen,
            copies: copies_seen,
            deliveries: deliveries(conn, rowid)?,
        });
    }
    Ok(entries)
}

fn deliveries(conn: &Connection, event_rowid: i64) -> Result<Vec<DeliveryRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, destination, state, not_before_ms, deadline_ms, last_reason
               FROM deliveries WHERE event_rowid = ?1 ORDER BY destination",
        )
        .map_err(unavailable)?;
    let mut attempts_stmt = conn
        .prepare_cached(
            "SELECT at_ms, outcome, status, summary, consent FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY seq",
        )
        .map_err(unavailable)?;
    let mut rows = stmt.query([event_rowid]).map_err(unavailable)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(unavailable)? {
        let state: String = r.get(2).map_err(unavailable)?;
        let attempts = attempts_stmt
            .query_map([r.get::<_, i64>(0).map_err(unavailable)?], |a| {
                Ok(AttemptRecord {
                    at: Timestamp::from_millis(a.get(0)?),
                    outcome: a.get(1)?,
                    status: a.get(2)?,
                    summary: a.get(3)?,
                    consent: a.get(4)?,
                })
            })
            .map_err(unavailable)?
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        out.push(DeliveryRecord {
            destination: r.get(1).map_err(unavailable)?,
            state: DeliveryState::parse(&state)
                .ok_or_else(|| corrupt("deliveries", format!("unknown state `{state}`")))?,
            not_before: Timestamp::from_millis(r.get(3).map_err(unavailable)?),
            deadline: Timestamp::from_millis(r.get(4).map_err(unavailable)?),
            last_reason: r.get(5).map_err(unavailable)?,
            attempts,
        });
    }
    Ok(out)
}

fn copies(conn: &Connection, rowid: i64) -> Result<Vec<CopyRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT event_id, source, source_kind, received_ms, matched_by, contributed, ghost, consent
               FROM copies WHERE event_rowid = ?1 ORDER BY seq",
        )
        .map_err(unavailable)?;
    let mut rows = stmt.query([rowid]).map_err(unavailable)?;
    let mut copies = Vec::new();
    while let Some(r) = rows.next().map_err(unavailable)? {
        let text = |i| r.get::<_, String>(i).map_err(unavailable);
        let matched_by = match text(4)?.as_str() {
            "event_id" => MatchedBy::EventId,
            "dedup_key" => MatchedBy::DedupKey,
            other => return Err(corrupt("copies", format!("unknown matched_by `{other}`"))),
        };
        copies.push(CopyRecord {
            event_id: text(0)?,
            source: text(1)?,
            source_kind: source_kind("copies", &text(2)?)?,
            received_at: Timestamp::from_millis(r.get(3).map_err(unavailable)?),
            outcome: "duplicate".to_owned(),
            matched_by: Some(matched_by),
            contributed: serde_json::from_str(&text(5)?).map_err(|e| corrupt("copies", e))?,
            ghost: r.get(6).map_err(unavailable)?,
            consent: serde_json::from_str(&text(7)?).map_err(|e| corrupt("copies", e))?,
        });
    }
    Ok(copies)
}

pub(super) fn quarantine(
    conn: &Connection,
    f: &QuarantineFilter,
) -> Result<Vec<QuarantineRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, received_ms, source, source_kind, event_name, event_id, code, message, status, replayed_ms, body
               FROM quarantine
              WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR code = ?2)
                AND (?3 IS NULL OR event_name = ?3) AND id > ?4
              ORDER BY id LIMIT ?5",
        )
        .map_err(unavailable)?;
    let mut rows = stmt
        .query(params![
            f.status.map(QuarantineStatus::as_str),
            f.code,
            f.event_name,
            f.after_id.unwrap_or(0),
            f.limit.unwrap_or(100)
        ])
        .map_err(unavailable)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(unavailable)? {
        let text = |i| r.get::<_, String>(i).map_err(unavailable);
        let status = match text(8)?.as_str() {
            "open" => QuarantineStatus::Open,
            "replayed" => QuarantineStatus::Replayed,
            other => return Err(corrupt("quarantine", format!("unknown status `{other}`"))),
        };
        out.push(QuarantineRecord {
            id: r.get(0).map_err(unavailable)?,
            received_at: Timestamp::from_millis(r.get(1).map_err(unavailable)?),
            source: text(2)?,
            source_kind: source_kind("quarantine", &text(3)?)?,
            event_name: r.get(4).map_err(unavailable)?,
            event_id: r.get(5).map_err(unavailable)?,
            code: text(6)?,
            message: text(7)?,
            status,
            replayed_at: r
                .get::<_, Option<i64>>(9)
                .map_err(unavailable)?
                .map(Timestamp::from_millis),
            body: serde_json::from_str(&text(10)?).map_err(|e| corrupt("quarantine", e))?,
        });
    }
    Ok(out)
}

/// The lowest event row first seen at or after `since`. Row IDs grow with time (one writer),
/// so a binary search over them replaces an index on time that every insert would pay for.
fn first_row_since(conn: &Connection, since: Timestamp) -> Result<i64, StoreError> {
    let bounds: (Option<i64>, Option<i64>) = conn
        .query_row("SELECT MIN(id), MAX(id) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(unavailable)?;
    let (Some(mut lo), Some(max)) = bounds else {
        return Ok(0);
    };
    let mut hi = max + 1;
    let mut stmt = conn
        .prepare_cached("SELECT first_seen_ms FROM events WHERE id >= ?1 ORDER BY id LIMIT 1")
        .map_err(unavailable)?;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let seen: i64 = stmt.query_row([mid], |r| r.get(0)).map_err(unavailable)?;
        if seen >= since.millis() {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

pub(super) fn dedup_stats(
    conn: &Connection,
    since: Timestamp,
) -> Result<Vec<EventDedupStats>, StoreError> {
    let mut by_name: std::collections::BTreeMap<String, EventDedupStats> = Default::default();
    let first_row = first_row_since(conn, since)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT name, COUNT(*) FROM events WHERE id >= ?1 AND first_seen_ms >= ?2 GROUP BY name",
        )
        .map_err(unavailable)?;
    let mut rows = stmt
        .query(params![first_row, since.millis()])
        .map_err(unavailable)?;
    while let Some(r) = rows.next().map_err(unavailable)? {
        let name: String = r.get(0).map_err(unavailable)?;
        let n = r.get::<_, i64>(1).map_err(unavailable)? as u64;
        let s = by_name
            .entry(name.clone())
            .or_insert_with(|| EventDedupStats {
                event: name,
                ..Default::default()
            });
        s.events = n;
        s.copies += n;
    }
    // Later copies are few next to events; their table is scanned rather than indexed by time.
    let mut stmt = conn
        .prepare_cached(
            "SELECT e.name, e.source, c.source, COUNT(*), SUM(c.matched_by = 'event_id'),
                    SUM(c.matched_by = 'dedup_key'), SUM(c.ghost)
               FROM copies c JOIN events e ON e.id = c.event_rowid
              WHERE c.received_ms >= ?1
              GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        .map_err(unavailable)?;
    let mut rows = stmt.query([since.millis()]).map_err(unavailable)?;
    while let Some(r) = rows.next().map_err(unavailable)? {
        let name: String = r.get(0).map_err(unavailable)?;
        let get = |i| r.get::<_, i64>(i).map(|v| v as u64).map_err(unavailable);
        let count = get(3)?;
        let s = by_name
            .entry(name.clone())
            .or_insert_with(|| EventDedupStats {
                event: name,
                ..Default::default()
            });
        s.copies += count;
        s.duplicates_by_event_id += get(4)?;
        s.duplicates_by_dedup_key += get(5)?;
        s.ghost_duplicates += get(6)?;
        s.by_source_pair.push(SourcePairStats {
            first: r.get(1).map_err(unavailable)?,
            duplicate: r.get(2).map_err(unavailable)?,
            count,
        });
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT event_name, COUNT(*) FROM quarantine
              WHERE code = 'event_id_reused' AND received_ms >= ?1 AND event_name IS NOT NULL GROUP BY 1",
        )
        .map_err(unavailable)?;
    let mut rows = stmt.query([since.millis()]).map_err(unavailable)?;
    while let Some(r) = rows.next().map_err(unavailable)? {
        let name: String = r.get(0).map_err(unavailable)?;
        let n = r.get::<_, i64>(1).map_err(unavailable)? as u64;
        by_name
            .entry(name.clone())
            .or_insert_with(|| EventDedupStats {
                event: name,
                ..Default::default()
            })
            .key_collisions = n;
    }
    Ok(by_name.into_values().collect())
}

pub(super) fn destination_stats(conn: &Connection) -> Result<Vec<DestinationStats>, StoreError> {
    let mut by_destination: std::collections::BTreeMap<String, DestinationStats> =
        Default::default();
    let mut stmt = conn
        .prepare_cached("SELECT destination, state, COUNT(*) FROM deliveries GROUP BY 1, 2")
        .map_err(unavailable)?;
    let mut rows = stmt.query([]).map_err(unavailable)?;
    while let Some(r) = rows.next().map_err(unavailable)? {
        let destination: String = r.get(0).map_err(unavailable)?;
        let state: String = r.get(1).map_err(unavailable)?;
        let n = r.get::<_, i64>(2).map_err(unavailable)? as u64;
        let s = by_destination
            .entry(destination.clone())
            .or_insert_with(|| DestinationStats {
                destination,
                ..Default::default()
            });
        match DeliveryState::parse(&state) {
            Some(DeliveryState::Pending) => s.pending = n,
            Some(DeliveryState::Delivered) => s.delivered = n,
            Some(DeliveryState::Dead) => s.dead = n,
            Some(DeliveryState::NeedsFix) => s.needs_fix = n,
            Some(DeliveryState::Withheld) => s.withheld = n,
            None => return Err(corrupt("deliveries", format!("unknown state `{state}`"))),
        }
    }
    let mut stmt = conn
        .prepare_cached("SELECT destination, since_ms FROM live_destinations")
        .map_err(unavailable)?;
    let mut rows = stmt.query([]).map_err(unavailable)?;
    while let Some(r) = rows.next().map_err(unavailable)? {
        let destination: String = r.get(0).map_err(unavailable)?;
        let since = Timestamp::from_millis(r.get(1).map_err(unavailable)?);
        by_destination
            .entry(destination.clone())
            .or_insert_with(|| DestinationStats {
                destination,
                ..Default::default()
            })
            .live_since = Some(since);
    }
    Ok(by_destination.into_values().collect())
}

pub(super) fn deliveries_in_state(
    conn: &Connection,
    state: DeliveryState,
    destination: Option<&str>,
    limit: u32,
) -> Result<Vec<DeliverySummary>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT e.event_id, e.name, e.event_time_ms, d.destination, d.attempts, d.last_reason, d.updated_ms
               FROM deliveries d JOIN events e ON e.id = d.event_rowid
              WHERE d.state = ?1 AND (?2 IS NULL OR d.destination = ?2)
              ORDER BY d.updated_ms DESC, d.id DESC LIMIT ?3",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![state.as_str(), destination, limit], |r| {
            Ok(DeliverySummary {
                event_id: r.get(0)?,
                event_name: r.get(1)?,
                event_time: Timestamp::from_millis(r.get(2)?),
                destination: r.get(3)?,
                state,
                attempts: r.get(4)?,
                last_reason: r.get(5)?,
                updated: Timestamp::from_millis(r.get(6)?),
            })
        })
        .map_err(unavailable)?;
    rows.collect::<Result<_, _>>().map_err(unavailable)
}
