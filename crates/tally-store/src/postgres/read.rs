//! Read queries (ledger, quarantine, statistics) on pooled connections, outside the write path.
//! Text is ordered with `COLLATE "C"` so listings come out in the same (byte) order as from
//! SQLite, whatever the database's collation.

use std::collections::BTreeMap;

use deadpool_postgres::Client;
use tally_core::dedup::MatchedBy;
use tally_core::event::SourceKind;
use tally_core::timestamp::Timestamp;
use tokio_postgres::Row;

use super::store::unavailable;
use super::writer::Params;
use crate::StoreError;
use crate::model::*;

async fn rows(client: &Client, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
    let stmt = client.prepare_cached(sql).await.map_err(unavailable)?;
    client.query(&stmt, params).await.map_err(unavailable)
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

fn count(r: &Row, i: usize) -> Result<u64, StoreError> {
    Ok(r.try_get::<_, i64>(i).map_err(unavailable)?.max(0) as u64)
}

pub(super) async fn ledger(
    client: &Client,
    event_id: &str,
) -> Result<Vec<LedgerEntry>, StoreError> {
    let found = rows(
        client,
        "SELECT id, dedup_value, first_seen_ms, body, event_id, source, source_kind, first_consent
           FROM events WHERE event_id = $1
         UNION
         SELECT e.id, e.dedup_value, e.first_seen_ms, e.body, e.event_id, e.source, e.source_kind,
                e.first_consent
           FROM event_aliases a JOIN events e ON e.id = a.event_rowid WHERE a.event_id = $1
         ORDER BY 3, 1",
        &[&event_id],
    )
    .await?;
    let mut entries = Vec::with_capacity(found.len());
    for r in &found {
        let text = |i| r.try_get::<_, String>(i).map_err(unavailable);
        let rowid: i64 = r.try_get(0).map_err(unavailable)?;
        let first_seen = Timestamp::from_millis(r.try_get(2).map_err(unavailable)?);
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
        copies_seen.extend(copies(client, rowid).await?);
        entries.push(LedgerEntry {
            event: serde_json::from_str(&text(3)?).map_err(|e| corrupt("events", e))?,
            dedup_value: r.try_get(1).map_err(unavailable)?,
            first_seen,
            copies: copies_seen,
            deliveries: deliveries(client, rowid).await?,
        });
    }
    Ok(entries)
}

async fn deliveries(client: &Client, event_rowid: i64) -> Result<Vec<DeliveryRecord>, StoreError> {
    let found = rows(
        client,
        "SELECT id, destination, state, not_before_ms, deadline_ms, last_reason
           FROM deliveries WHERE event_rowid = $1 ORDER BY destination COLLATE \"C\"",
        &[&event_rowid],
    )
    .await?;
    let mut out = Vec::with_capacity(found.len());
    for r in &found {
        let id: i64 = r.try_get(0).map_err(unavailable)?;
        let state: String = r.try_get(2).map_err(unavailable)?;
        let mut attempts = Vec::new();
        for a in rows(
            client,
            "SELECT at_ms, outcome, status, summary, consent FROM delivery_attempts
              WHERE delivery_id = $1 ORDER BY seq",
            &[&id],
        )
        .await?
        {
            attempts.push(AttemptRecord {
                at: Timestamp::from_millis(a.try_get(0).map_err(unavailable)?),
                outcome: a.try_get(1).map_err(unavailable)?,
                status: a
                    .try_get::<_, Option<i32>>(2)
                    .map_err(unavailable)?
                    .and_then(|s| u16::try_from(s).ok()),
                summary: a.try_get(3).map_err(unavailable)?,
                consent: a.try_get(4).map_err(unavailable)?,
            });
        }
        out.push(DeliveryRecord {
            destination: r.try_get(1).map_err(unavailable)?,
            state: DeliveryState::parse(&state)
                .ok_or_else(|| corrupt("deliveries", format!("unknown state `{state}`")))?,
            not_before: Timestamp::from_millis(r.try_get(3).map_err(unavailable)?),
            deadline: Timestamp::from_millis(r.try_get(4).map_err(unavailable)?),
            last_reason: r.try_get(5).map_err(unavailable)?,
            attempts,
        });
    }
    Ok(out)
}

async fn copies(client: &Client, rowid: i64) -> Result<Vec<CopyRecord>, StoreError> {
    let found = rows(
        client,
        "SELECT event_id, source, source_kind, received_ms, matched_by, contributed, ghost, consent
           FROM copies WHERE event_rowid = $1 ORDER BY seq",
        &[&rowid],
    )
    .await?;
    let mut copies = Vec::with_capacity(found.len());
    for r in &found {
        let text = |i| r.try_get::<_, String>(i).map_err(unavailable);
        let matched_by = match text(4)?.as_str() {
            "event_id" => MatchedBy::EventId,
            "dedup_key" => MatchedBy::DedupKey,
            other => return Err(corrupt("copies", format!("unknown matched_by `{other}`"))),
        };
        copies.push(CopyRecord {
            event_id: text(0)?,
            source: text(1)?,
            source_kind: source_kind("copies", &text(2)?)?,
            received_at: Timestamp::from_millis(r.try_get(3).map_err(unavailable)?),
            outcome: "duplicate".to_owned(),
            matched_by: Some(matched_by),
            contributed: serde_json::from_str(&text(5)?).map_err(|e| corrupt("copies", e))?,
            ghost: r.try_get(6).map_err(unavailable)?,
            consent: serde_json::from_str(&text(7)?).map_err(|e| corrupt("copies", e))?,
        });
    }
    Ok(copies)
}

pub(super) async fn quarantine(
    client: &Client,
    f: &QuarantineFilter,
) -> Result<Vec<QuarantineRecord>, StoreError> {
    let found = rows(
        client,
        "SELECT id, received_ms, source, source_kind, event_name, event_id, code, message, status,
                replayed_ms, body
           FROM quarantine
          WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR code = $2)
            AND ($3::text IS NULL OR event_name = $3) AND id > $4
          ORDER BY id LIMIT $5",
        &[
            &f.status.map(QuarantineStatus::as_str),
            &f.code,
            &f.event_name,
            &f.after_id.unwrap_or(0),
            &i64::from(f.limit.unwrap_or(100)),
        ],
    )
    .await?;
    let mut out = Vec::with_capacity(found.len());
    for r in &found {
        let text = |i| r.try_get::<_, String>(i).map_err(unavailable);
        let status = match text(8)?.as_str() {
            "open" => QuarantineStatus::Open,
            "replayed" => QuarantineStatus::Replayed,
            other => return Err(corrupt("quarantine", format!("unknown status `{other}`"))),
        };
        out.push(QuarantineRecord {
            id: r.try_get(0).map_err(unavailable)?,
            received_at: Timestamp::from_millis(r.try_get(1).map_err(unavailable)?),
            source: text(2)?,
            source_kind: source_kind("quarantine", &text(3)?)?,
            event_name: r.try_get(4).map_err(unavailable)?,
            event_id: r.try_get(5).map_err(unavailable)?,
            code: text(6)?,
            message: text(7)?,
            status,
            replayed_at: r
                .try_get::<_, Option<i64>>(9)
                .map_err(unavailable)?
                .map(Timestamp::from_millis),
            body: serde_json::from_str(&text(10)?).map_err(|e| corrupt("quarantine", e))?,
        });
    }
    Ok(out)
}

fn stats_for(
    by_name: &mut BTreeMap<String, EventDedupStats>,
    name: String,
) -> &mut EventDedupStats {
    by_name
        .entry(name.clone())
        .or_insert_with(|| EventDedupStats {
            event: name,
            ..Default::default()
        })
}

pub(super) async fn dedup_stats(
    client: &Client,
    since: Timestamp,
) -> Result<Vec<EventDedupStats>, StoreError> {
    let mut by_name: BTreeMap<String, EventDedupStats> = BTreeMap::new();
    for r in rows(
        client,
        "SELECT name, COUNT(*) FROM events WHERE first_seen_ms >= $1 GROUP BY name",
        &[&since.millis()],
    )
    .await?
    {
        let n = count(&r, 1)?;
        let s = stats_for(&mut by_name, r.try_get(0).map_err(unavailable)?);
        s.events = n;
        s.copies += n;
    }
    for r in rows(
        client,
        "SELECT e.name, e.source, c.source, COUNT(*),
                COUNT(*) FILTER (WHERE c.matched_by = 'event_id'),
                COUNT(*) FILTER (WHERE c.matched_by = 'dedup_key'),
                COUNT(*) FILTER (WHERE c.ghost)
           FROM copies c JOIN events e ON e.id = c.event_rowid
          WHERE c.received_ms >= $1
          GROUP BY 1, 2, 3
          ORDER BY e.name COLLATE \"C\", e.source COLLATE \"C\", c.source COLLATE \"C\"",
        &[&since.millis()],
    )
    .await?
    {
        let n = count(&r, 3)?;
        let s = stats_for(&mut by_name, r.try_get(0).map_err(unavailable)?);
        s.copies += n;
        s.duplicates_by_event_id += count(&r, 4)?;
        s.duplicates_by_dedup_key += count(&r, 5)?;
        s.ghost_duplicates += count(&r, 6)?;
        s.by_source_pair.push(SourcePairStats {
            first: r.try_get(1).map_err(unavailable)?,
            duplicate: r.try_get(2).map_err(unavailable)?,
            count: n,
        });
    }
    for r in rows(
        client,
        "SELECT event_name, COUNT(*) FROM quarantine
          WHERE code = 'event_id_reused' AND received_ms >= $1 AND event_name IS NOT NULL
          GROUP BY 1",
        &[&since.millis()],
    )
    .await?
    {
        let n = count(&r, 1)?;
        stats_for(&mut by_name, r.try_get(0).map_err(unavailable)?).key_collisions = n;
    }
    Ok(by_name.into_values().collect())
}

pub(super) async fn destination_stats(
    client: &Client,
) -> Result<Vec<DestinationStats>, StoreError> {
    let mut by_destination: BTreeMap<String, DestinationStats> = BTreeMap::new();
    for r in rows(
        client,
        "SELECT destination, state, COUNT(*) FROM deliveries GROUP BY 1, 2",
        &[],
    )
    .await?
    {
        let destination: String = r.try_get(0).map_err(unavailable)?;
        let state: String = r.try_get(1).map_err(unavailable)?;
        let n = count(&r, 2)?;
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
    for r in rows(
        client,
        "SELECT destination, since_ms FROM live_destinations",
        &[],
    )
    .await?
    {
        let destination: String = r.try_get(0).map_err(unavailable)?;
        let since = Timestamp::from_millis(r.try_get(1).map_err(unavailable)?);
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

pub(super) async fn deliveries_in_state(
    client: &Client,
    state: DeliveryState,
    destination: Option<&str>,
    limit: u32,
) -> Result<Vec<DeliverySummary>, StoreError> {
    let found = rows(
        client,
        "SELECT e.event_id, e.name, e.event_time_ms, d.destination, d.attempts, d.last_reason,
                d.updated_ms
           FROM deliveries d JOIN events e ON e.id = d.event_rowid
          WHERE d.state = $1 AND ($2::text IS NULL OR d.destination = $2)
          ORDER BY d.updated_ms DESC, d.id DESC LIMIT $3",
        &[&state.as_str(), &destination, &i64::from(limit)],
    )
    .await?;
    let mut out = Vec::with_capacity(found.len());
    for r in &found {
        out.push(DeliverySummary {
            event_id: r.try_get(0).map_err(unavailable)?,
            event_name: r.try_get(1).map_err(unavailable)?,
            event_time: Timestamp::from_millis(r.try_get(2).map_err(unavailable)?),
            destination: r.try_get(3).map_err(unavailable)?,
            state,
            attempts: r.try_get::<_, i32>(4).map_err(unavailable)?.max(0) as u32,
            last_reason: r.try_get(5).map_err(unavailable)?,
            updated: Timestamp::from_millis(r.try_get(6).map_err(unavailable)?),
        });
    }
    Ok(out)
}
