//! Inside the write transaction: who an event is about (for revocation and erasure), the
//! visitor click-ID memory, revocations and dead-letter replay.

use rusqlite::{Connection, params};
use tally_core::event::Event;
use tally_core::timestamp::Timestamp;

use super::writer::TxError;
use crate::model::{ReplayFilter, Revocation, person_keys};

/// Records every key `event` (stored as `rowid`) can be found by.
pub(super) fn index_people(tx: &Connection, rowid: i64, event: &Event) -> Result<(), TxError> {
    for key in person_keys(&event.user) {
        tx.prepare_cached("INSERT INTO event_people (person, event_rowid) VALUES (?1, ?2)")?
            .execute(params![key, rowid])?;
    }
    Ok(())
}

/// The visitor keys click IDs are remembered under: the anonymous ID and the external ID.
fn visitor_keys(event: &Event) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    if let Some(a) = &event.user.anonymous_id {
        keys.push(format!("anon:{a}"));
    }
    if let Some(x) = &event.user.identity.external_id {
        keys.push(format!("ext:{x}"));
    }
    keys
}

/// Remembers `event`'s click IDs and ad cookies for its visitor until `until`; a newer click
/// replaces an older one of the same kind.
pub(super) fn remember_click_ids(
    tx: &Connection,
    event: &Event,
    until: Timestamp,
) -> Result<(), TxError> {
    let visitors = visitor_keys(event);
    if visitors.is_empty() {
        return Ok(());
    }
    let clicked = event.user.click_ids.clicked_at.unwrap_or(event.timestamp);
    for (kind, value) in event.user.click_ids.named() {
        let Some(value) = value else { continue };
        for visitor in &visitors {
            tx.prepare_cached(
                "INSERT INTO visitor_click_ids (visitor, kind, value, clicked_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (visitor, kind) DO UPDATE
                    SET value = excluded.value, clicked_ms = excluded.clicked_ms,
                        expires_ms = excluded.expires_ms
                  WHERE excluded.clicked_ms >= visitor_click_ids.clicked_ms",
            )?
            .execute(params![
                visitor,
                kind,
                value,
                clicked.millis(),
                until.millis()
            ])?;
        }
    }
    Ok(())
}

/// Click IDs that belong together: an event carrying one of a group gets nothing else of that
/// group attached (a `gclid` and a remembered `wbraid` would describe two different clicks).
const GROUPS: &[&[&str]] = &[
    &["gclid", "gbraid", "wbraid"],
    &["fbclid", "fbc"],
    &["fbp"],
    &["ttclid"],
    &["ttp"],
    &["msclkid"],
    &["ga_client_id"],
];

/// Attaches the visitor's remembered, unexpired click IDs to `event` where it has none of a
/// group, following identify links between anonymous and external IDs. Returns whether
/// anything was attached.
pub(super) fn attach_click_ids(tx: &Connection, event: &mut Event) -> Result<bool, TxError> {
    let anon = event.user.anonymous_id.as_deref();
    let ext = event.user.identity.external_id.as_deref();
    if anon.is_none() && ext.is_none() {
        return Ok(false);
    }
    // The visitor's keys and those linked to them by identify, in one statement (this runs for
    // every new event that names a visitor); newest click first, so the first row of a kind wins.
    let mut query = tx.prepare_cached(
        "SELECT kind, value, clicked_ms FROM visitor_click_ids
          WHERE expires_ms > ?1 AND visitor IN (
                SELECT 'anon:' || ?2 UNION SELECT 'ext:' || ?3
                UNION SELECT 'ext:' || external_id FROM identity_links
                       WHERE anonymous_id = ?2 AND external_id IS NOT NULL
                UNION SELECT 'anon:' || anonymous_id FROM identity_links
                       WHERE external_id = ?3 AND anonymous_id IS NOT NULL)
          ORDER BY clicked_ms DESC",
    )?;
    let mut remembered: Vec<(String, String, i64)> = Vec::new();
    for row in query.query_map(params![event.timestamp.millis(), anon, ext], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let row = row?;
        if !remembered.iter().any(|(k, _, _)| *k == row.0) {
            remembered.push(row);
        }
    }
    if remembered.is_empty() {
        return Ok(false);
    }
    let mut attached = false;
    let click_ids = &mut event.user.click_ids;
    for group in GROUPS {
        let has_any = click_ids
            .named()
            .any(|(kind, v)| v.is_some() && group.contains(&kind));
        if has_any {
            continue;
        }
        for (kind, value, clicked) in remembered
            .iter()
            .filter(|(k, _, _)| group.contains(&k.as_str()))
        {
            if let Some(slot) = click_ids.field_mut(kind) {
                *slot = Some(value.clone());
                attached = true;
                if click_ids.clicked_at.is_none()
                    && !matches!(kind.as_str(), "fbp" | "ttp" | "ga_client_id")
                {
                    click_ids.clicked_at = Some(Timestamp::from_millis(*clicked));
                }
            }
        }
    }
    Ok(attached)
}

/// When a person the event is about revoked consent at or after the event's time.
pub(super) fn revoked_at(tx: &Connection, event: &Event) -> Result<Option<Timestamp>, TxError> {
    let keys = person_keys(&event.user);
    if keys.is_empty() {
        return Ok(None);
    }
    // One statement per key count (at most four), each prepared once.
    let sql = format!(
        "SELECT MAX(at_ms) FROM revocations WHERE person IN ({})",
        vec!["?"; keys.len()].join(", ")
    );
    let latest: Option<i64> = tx
        .prepare_cached(&sql)?
        .query_row(rusqlite::params_from_iter(&keys), |r| r.get(0))?;
    Ok(latest
        .filter(|at| *at >= event.timestamp.millis())
        .map(Timestamp::from_millis))
}

/// Records the revocation and withholds the person's pending deliveries; returns how many.
pub(super) fn revoke(tx: &Connection, now: Timestamp, r: &Revocation) -> Result<u64, TxError> {
    let mut cancelled = 0;
    let reason = format!("consent revoked at {}", r.at);
    for person in &r.people {
        tx.prepare_cached(
            "INSERT INTO revocations (person, at_ms) VALUES (?1, ?2)
             ON CONFLICT (person) DO UPDATE SET at_ms = MAX(at_ms, excluded.at_ms)",
        )?
        .execute(params![person, r.at.millis()])?;
        cancelled += tx
            .prepare_cached(
                "UPDATE deliveries
                    SET state = 'withheld', last_reason = ?2, lease_owner = NULL,
                        leased_until_ms = NULL, updated_ms = ?3
                  WHERE state = 'pending'
                    AND event_rowid IN (SELECT event_rowid FROM event_people WHERE person = ?1)",
            )?
            .execute(params![person, reason, now.millis()])? as u64;
    }
    Ok(cancelled)
}

/// Puts stopped deliveries matching `f` back in the queue, due now. Deliveries past their
/// platform deadline stay as they are (a replay would only dead-letter them again).
pub(super) fn replay(
    tx: &Connection,
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
         AND (?1 IS NULL OR d.destination = ?1)
         AND (?2 IS NULL OR e.event_id = ?2
              OR e.id IN (SELECT event_rowid FROM event_aliases WHERE event_id = ?2))
         AND (?3 IS NULL OR e.event_time_ms >= ?3)
         AND (?4 IS NULL OR e.event_time_ms < ?4)"
    );
    let args = params![
        f.destination,
        f.event_id,
        f.since.map(|t| t.millis()),
        f.until.map(|t| t.millis()),
        now.millis()
    ];
    let expired: i64 = tx
        .prepare(&format!(
            "SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_rowid
              WHERE {filter} AND d.deadline_ms <= ?5"
        ))?
        .query_row(args, |r| r.get(0))?;
    let requeued = tx
        .prepare(&format!(
            "UPDATE deliveries SET state = 'pending', not_before_ms = ?5, lease_owner = NULL,
                    leased_until_ms = NULL, updated_ms = ?5,
                    last_reason = 'replayed after: ' || COALESCE(last_reason, '')
              WHERE id IN (SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_rowid
                            WHERE {filter} AND d.deadline_ms > ?5)"
        ))?
        .execute(args)?;
    Ok((requeued as u64, expired as u64))
}
