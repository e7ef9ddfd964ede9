//! Inside the write transaction: who an event is about (for revocation and erasure), the
//! visitor click-ID memory, revocations and dead-letter replay. The same rules as the SQLite
//! store's `people.rs`; backend-free parts live in [`crate::shared`].

use deadpool_postgres::Transaction;
use tally_core::event::Event;
use tally_core::timestamp::Timestamp;

use super::writer::{TxError, execute, query};
use crate::model::{ReplayFilter, Revocation, person_keys};
use crate::shared;

/// Records every key `event` (stored as `rowid`) can be found by, in one statement.
pub(super) async fn index_people(
    tx: &Transaction<'_>,
    rowid: i64,
    event: &Event,
) -> Result<(), TxError> {
    let keys = person_keys(&event.user);
    if keys.is_empty() {
        return Ok(());
    }
    execute(
        tx,
        "INSERT INTO event_people (event_rowid, person) SELECT $1, unnest($2::text[])",
        &[&rowid, &keys],
    )
    .await?;
    Ok(())
}

/// Remembers `event`'s click IDs and ad cookies for its visitor until `until`; a newer click
/// replaces an older one of the same kind.
pub(super) async fn remember_click_ids(
    tx: &Transaction<'_>,
    event: &Event,
    until: Timestamp,
) -> Result<(), TxError> {
    let visitors = shared::visitor_keys(event);
    if visitors.is_empty() {
        return Ok(());
    }
    let clicked = event.user.click_ids.clicked_at.unwrap_or(event.timestamp);
    let (mut who, mut kinds, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for (kind, value) in event.user.click_ids.named() {
        let Some(value) = value else { continue };
        for visitor in &visitors {
            who.push(visitor.as_str());
            kinds.push(kind);
            values.push(value.as_str());
        }
    }
    if who.is_empty() {
        return Ok(());
    }
    // (visitor, kind) pairs are distinct here, so one upsert can take them all.
    execute(
        tx,
        "INSERT INTO visitor_click_ids (visitor, kind, value, clicked_ms, expires_ms)
         SELECT u.visitor, u.kind, u.value, $4, $5
           FROM unnest($1::text[], $2::text[], $3::text[]) AS u (visitor, kind, value)
         ON CONFLICT (visitor, kind) DO UPDATE
            SET value = excluded.value, clicked_ms = excluded.clicked_ms,
                expires_ms = excluded.expires_ms
          WHERE excluded.clicked_ms >= visitor_click_ids.clicked_ms",
        &[&who, &kinds, &values, &clicked.millis(), &until.millis()],
    )
    .await?;
    Ok(())
}

/// Attaches the visitor's remembered, unexpired click IDs to `event` where it has none of a
/// group, following identify links between anonymous and external IDs. Returns whether
/// anything was attached.
/// The click IDs remembered for a visitor: their own keys and those linked to them by identify,
/// in one statement; newest click first, so the first row of a kind wins. `= ANY (ARRAY(...))`,
/// not `IN (...)`: with `IN`, the generic plan PostgreSQL settles on for a prepared statement
/// hash-joined a scan of the whole table, so every new event cost more as visitors accumulated
/// (3.6 ms at 10,000); with an array it looks the keys up in the primary key (0.2 ms).
pub(super) const REMEMBERED_CLICKS: &str = "SELECT kind, value, clicked_ms FROM visitor_click_ids
  WHERE expires_ms > $1 AND visitor = ANY (ARRAY(
        SELECT 'anon:' || $2::text UNION SELECT 'ext:' || $3::text
        UNION SELECT 'ext:' || external_id FROM identity_links
               WHERE anonymous_id = $2::text AND external_id IS NOT NULL
        UNION SELECT 'anon:' || anonymous_id FROM identity_links
               WHERE external_id = $3::text AND anonymous_id IS NOT NULL))
  ORDER BY clicked_ms DESC";

/// The event with its visitor's remembered, unexpired click IDs attached (following identify
/// links), or `None` when nothing would be attached.
pub(super) async fn with_remembered_clicks(
    tx: &Transaction<'_>,
    event: &Event,
) -> Result<Option<Event>, TxError> {
    let anon = event.user.anonymous_id.as_deref();
    let ext = event.user.identity.external_id.as_deref();
    if anon.is_none() && ext.is_none() {
        return Ok(None);
    }
    let rows = query(
        tx,
        REMEMBERED_CLICKS,
        &[&event.timestamp.millis(), &anon, &ext],
    )
    .await?;
    let mut remembered = Vec::with_capacity(rows.len());
    for r in &rows {
        remembered.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
    }
    Ok(shared::with_remembered(event, remembered))
}

/// When a person the event is about revoked consent at or after the event's time.
pub(super) async fn revoked_at(
    tx: &Transaction<'_>,
    event: &Event,
) -> Result<Option<Timestamp>, TxError> {
    let keys = person_keys(&event.user);
    if keys.is_empty() {
        return Ok(None);
    }
    let rows = query(
        tx,
        "SELECT MAX(at_ms) FROM revocations WHERE person = ANY($1::text[])",
        &[&keys],
    )
    .await?;
    let latest: Option<i64> = match rows.first() {
        Some(r) => r.try_get(0)?,
        None => None,
    };
    Ok(latest
        .filter(|at| *at >= event.timestamp.millis())
        .map(Timestamp::from_millis))
}

/// Records the revocation and withholds the person's pending deliveries; returns how many.
pub(super) async fn revoke(
    tx: &Transaction<'_>,
    now: Timestamp,
    r: &Revocation,
) -> Result<u64, TxError> {
    let reason = format!("consent revoked at {}", r.at);
    for person in &r.people {
        execute(
            tx,
            "INSERT INTO revocations (person, at_ms) VALUES ($1, $2)
             ON CONFLICT (person) DO UPDATE SET at_ms = GREATEST(revocations.at_ms, excluded.at_ms)",
            &[person, &r.at.millis()],
        )
        .await?;
    }
    // One statement for every key: a delivery found by two of the person's keys is counted once.
    execute(
        tx,
        "UPDATE deliveries
            SET state = 'withheld', last_reason = $2, lease_owner = NULL,
                leased_until_ms = NULL, updated_ms = $3
          WHERE state = 'pending'
            AND event_rowid IN (SELECT event_rowid FROM event_people WHERE person = ANY($1::text[]))",
        &[&r.people, &reason, &now.millis()],
    )
    .await
}

/// Puts stopped deliveries matching `f` back in the queue, due now. Deliveries past their
/// platform deadline stay as they are (a replay would only dead-letter them again).
pub(super) async fn replay(
    tx: &Transaction<'_>,
    now: Timestamp,
    f: &ReplayFilter,
) -> Result<(u64, u64), TxError> {
    let states = if f.include_withheld {
        "('dead', 'needs_fix', 'withheld')"
    } else {
        "('dead', 'needs_fix')"
    };
    let filter = format!(
        "d.state IN {states}
         AND ($1::text IS NULL OR d.destination = $1)
         AND ($2::text IS NULL OR e.event_id = $2
              OR e.id IN (SELECT event_rowid FROM event_aliases WHERE event_id = $2))
         AND ($3::bigint IS NULL OR e.event_time_ms >= $3)
         AND ($4::bigint IS NULL OR e.event_time_ms < $4)"
    );
    let since = f.since.map(|t| t.millis());
    let until = f.until.map(|t| t.millis());
    let rows = query(
        tx,
        &format!(
            "SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_rowid
              WHERE {filter} AND d.deadline_ms <= $5"
        ),
        &[&f.destination, &f.event_id, &since, &until, &now.millis()],
    )
    .await?;
    let expired: i64 = match rows.first() {
        Some(r) => r.try_get(0)?,
        None => 0,
    };
    let requeued = execute(
        tx,
        &format!(
            "UPDATE deliveries SET state = 'pending', not_before_ms = $5, lease_owner = NULL,
                    leased_until_ms = NULL, updated_ms = $5,
                    last_reason = 'replayed after: ' || COALESCE(last_reason, '')
              WHERE id IN (SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_rowid
                            WHERE {filter} AND d.deadline_ms > $5)"
        ),
        &[&f.destination, &f.event_id, &since, &until, &now.millis()],
    )
    .await?;
    Ok((requeued, expired.max(0) as u64))
}
