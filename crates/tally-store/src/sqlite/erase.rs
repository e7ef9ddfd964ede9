//! Right to erasure inside the write transaction: the search of [`crate::erase`] in SQL, then
//! the removal (or, for a dry run, the count) of everything found.
//!
//! `event_people` is an unindexed append-only log (an index per key halved ingest), so each
//! search round scans it once, and removing the rows scans it once more. An erasure is a rare
//! admin action; the writer's other work waits while it runs. Sets of keys and events are
//! bound as JSON arrays and read with `json_each`, so no statement grows with them.
//!
//! The writer's [`super::people::PeopleMemory`] needs no update: revocations are kept, and its
//! visitor filter may keep an erased visitor (a superset only costs a lookup).

use rusqlite::{Connection, params};
use tally_core::timestamp::Timestamp;

use super::writer::TxError;
use crate::erase::{Counts, Search};
use crate::model::{Erasure, ErasureReport};

const IN_KEYS: &str = "(SELECT value FROM json_each(?1))";

/// Finds the person's rows and removes them (counts them only, for a dry run).
pub(super) fn erase(
    tx: &Connection,
    now: Timestamp,
    erasure: &Erasure,
) -> Result<ErasureReport, TxError> {
    let mut search = Search::new(erasure);
    while search.next_round() {
        let before = search.size();
        let known_events = search.events.clone();
        let keys = json(&search.keys)?;
        let mut scan = tx.prepare_cached(
            "SELECT event_rowid, person FROM event_people
              WHERE person IN (SELECT value FROM json_each(?1))
                 OR event_rowid IN (SELECT value FROM json_each(?2))",
        )?;
        let rows = scan
            .query_map(params![keys, json(&known_events)?], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (event, person) in rows {
            search.saw_event_key(event, person, &known_events);
        }
        let mut links = tx.prepare_cached(
            "SELECT id, anonymous_id, external_id, identity FROM identity_links
              WHERE anonymous_id IN (SELECT value FROM json_each(?1))
                 OR external_id IN (SELECT value FROM json_each(?2))
                 OR EXISTS (SELECT 1 FROM json_each(?3) n WHERE instr(identity_links.identity, n.value) > 0)",
        )?;
        let rows = links
            .query_map(
                params![
                    json(&search.anonymous_ids())?,
                    json(&search.external_ids())?,
                    json(&search.identity_needles())?
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        for (id, anonymous_id, external_id, identity) in rows {
            search.saw_link(id, anonymous_id, external_id, &identity);
        }
        search.end_round(before);
    }

    let events = json(&search.events)?;
    let mut counts = Counts::default();
    let mut by_state = tx.prepare_cached(
        "SELECT state, attempts > 0, COALESCE(lease_owner IS NOT NULL AND leased_until_ms > ?2, 0), COUNT(*)
           FROM deliveries WHERE event_rowid IN (SELECT value FROM json_each(?1))
          GROUP BY 1, 2, 3",
    )?;
    let rows = by_state
        .query_map(params![events, now.millis()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (state, retried, leased, n) in rows {
        counts.add_deliveries(&state, retried, leased, n as u64);
    }
    let dry = erasure.dry_run;
    counts.attempts = remove(
        tx,
        dry,
        &format!(
            "delivery_attempts WHERE delivery_id IN
                (SELECT id FROM deliveries WHERE event_rowid IN {IN_KEYS})"
        ),
        &events,
    )?;
    remove(
        tx,
        dry,
        &format!("deliveries WHERE event_rowid IN {IN_KEYS}"),
        &events,
    )?;
    counts.copies = remove(
        tx,
        dry,
        &format!("copies WHERE event_rowid IN {IN_KEYS}"),
        &events,
    )?;
    counts.aliases = remove(
        tx,
        dry,
        &format!("event_aliases WHERE event_rowid IN {IN_KEYS}"),
        &events,
    )?;
    counts.person_keys = remove(
        tx,
        dry,
        &format!("event_people WHERE event_rowid IN {IN_KEYS}"),
        &events,
    )?;
    remove(tx, dry, &format!("events WHERE id IN {IN_KEYS}"), &events)?;
    counts.click_memories = remove(
        tx,
        dry,
        &format!("visitor_click_ids WHERE visitor IN {IN_KEYS}"),
        &json(&search.visitor_keys())?,
    )?;
    remove(
        tx,
        dry,
        &format!("identity_links WHERE id IN {IN_KEYS}"),
        &json(&search.links)?,
    )?;

    // Quarantine keeps no identity columns: rows whose body contains one of the person's
    // identifiers are decoded and checked.
    let mut candidates = tx.prepare_cached(
        "SELECT id, body FROM quarantine
          WHERE EXISTS (SELECT 1 FROM json_each(?1) n WHERE instr(quarantine.body, n.value) > 0)",
    )?;
    let quarantined: Vec<i64> = candidates
        .query_map([json(&search.needles())?], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?
        .filter_map(|row| match row {
            Ok((id, body)) => search.owns_quarantine_body(&body).then_some(Ok(id)),
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    counts.quarantine = remove(
        tx,
        dry,
        &format!("quarantine WHERE id IN {IN_KEYS}"),
        &json(&quarantined)?,
    )?;
    counts.revocations_kept =
        tx.prepare_cached(
            "SELECT COUNT(*) FROM revocations WHERE person IN (SELECT value FROM json_each(?1))",
        )?
        .query_row([json(&search.keys)?], |r| r.get::<_, i64>(0))? as u64;
    Ok(search.report(dry, counts))
}

/// Deletes the rows `from_where` selects (`?1` bound to `set`), or counts them for a dry run.
fn remove(tx: &Connection, dry_run: bool, from_where: &str, set: &str) -> Result<u64, TxError> {
    if dry_run {
        let n: i64 = tx
            .prepare_cached(&format!("SELECT COUNT(*) FROM {from_where}"))?
            .query_row([set], |r| r.get(0))?;
        Ok(n as u64)
    } else {
        Ok(tx
            .prepare_cached(&format!("DELETE FROM {from_where}"))?
            .execute([set])? as u64)
    }
}

fn json<T: serde::Serialize>(set: &T) -> Result<String, TxError> {
    Ok(serde_json::to_string(set)?)
}
