//! Right to erasure inside a group's transaction: the search of [`crate::erase`] in SQL, then
//! the removal (or, for a dry run, the count) of everything found. The same steps as the
//! SQLite store's `erase.rs`.
//!
//! `event_people` is an unindexed append-only log (an index per key would cost every new
//! event four random-key entries), so each search round scans it once, and removing the rows
//! scans it once more: acceptable for a rare admin action. An event about the person that
//! another node commits while the erasure runs is not seen by it (erasure covers what was
//! committed before it); the answer's counts say what was removed.

use deadpool_postgres::Transaction;
use tally_core::timestamp::Timestamp;
use tokio_postgres::types::ToSql;

use super::writer::{TxError, execute, query};
use crate::erase::{Counts, Search};
use crate::model::{Erasure, ErasureReport};

/// Finds the person's rows and removes them (counts them only, for a dry run).
pub(super) async fn erase(
    tx: &Transaction<'_>,
    now: Timestamp,
    erasure: &Erasure,
) -> Result<ErasureReport, TxError> {
    let mut search = Search::new(erasure);
    while search.next_round() {
        let before = search.size();
        let known_events = search.events.clone();
        let keys: Vec<&String> = search.keys.iter().collect();
        let events: Vec<i64> = known_events.iter().copied().collect();
        let rows = query(
            tx,
            "SELECT event_rowid, person FROM event_people
              WHERE person = ANY($1::text[]) OR event_rowid = ANY($2::bigint[])",
            &[&keys, &events],
        )
        .await?;
        for r in &rows {
            search.saw_event_key(r.try_get(0)?, r.try_get(1)?, &known_events);
        }
        let rows = query(
            tx,
            "SELECT id, anonymous_id, external_id, identity FROM identity_links
              WHERE anonymous_id = ANY($1::text[]) OR external_id = ANY($2::text[])
                 OR EXISTS (SELECT 1 FROM unnest($3::text[]) AS n (value)
                             WHERE strpos(identity_links.identity, n.value) > 0)",
            &[
                &search.anonymous_ids(),
                &search.external_ids(),
                &search.identity_needles(),
            ],
        )
        .await?;
        for r in &rows {
            let identity: &str = r.try_get(3)?;
            search.saw_link(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, identity);
        }
        search.end_round(before);
    }

    let events: Vec<i64> = search.events.iter().copied().collect();
    let mut counts = Counts::default();
    let rows = query(
        tx,
        "SELECT state, attempts > 0, COALESCE(lease_owner IS NOT NULL AND leased_until_ms > $2, FALSE), COUNT(*)
           FROM deliveries WHERE event_rowid = ANY($1::bigint[])
          GROUP BY 1, 2, 3",
        &[&events, &now.millis()],
    )
    .await?;
    for r in &rows {
        let state: &str = r.try_get(0)?;
        let n: i64 = r.try_get(3)?;
        counts.add_deliveries(state, r.try_get(1)?, r.try_get(2)?, n.max(0) as u64);
    }
    let dry = erasure.dry_run;
    counts.attempts = remove(
        tx,
        dry,
        "delivery_attempts WHERE delivery_id IN
            (SELECT id FROM deliveries WHERE event_rowid = ANY($1::bigint[]))",
        &events,
    )
    .await?;
    remove(
        tx,
        dry,
        "deliveries WHERE event_rowid = ANY($1::bigint[])",
        &events,
    )
    .await?;
    counts.copies = remove(
        tx,
        dry,
        "copies WHERE event_rowid = ANY($1::bigint[])",
        &events,
    )
    .await?;
    counts.aliases = remove(
        tx,
        dry,
        "event_aliases WHERE event_rowid = ANY($1::bigint[])",
        &events,
    )
    .await?;
    counts.person_keys = remove(
        tx,
        dry,
        "event_people WHERE event_rowid = ANY($1::bigint[])",
        &events,
    )
    .await?;
    remove(tx, dry, "events WHERE id = ANY($1::bigint[])", &events).await?;
    counts.click_memories = remove(
        tx,
        dry,
        "visitor_click_ids WHERE visitor = ANY($1::text[])",
        &search.visitor_keys(),
    )
    .await?;
    let links: Vec<i64> = search.links.iter().copied().collect();
    remove(
        tx,
        dry,
        "identity_links WHERE id = ANY($1::bigint[])",
        &links,
    )
    .await?;

    // Quarantine keeps no identity columns: rows whose body contains one of the person's
    // identifiers are decoded and checked.
    let rows = query(
        tx,
        "SELECT id, body FROM quarantine
          WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) AS n (value)
                         WHERE strpos(quarantine.body, n.value) > 0)",
        &[&search.needles()],
    )
    .await?;
    let mut quarantined: Vec<i64> = Vec::new();
    for r in &rows {
        let body: &str = r.try_get(1)?;
        if search.owns_quarantine_body(body) {
            quarantined.push(r.try_get(0)?);
        }
    }
    counts.quarantine = remove(
        tx,
        dry,
        "quarantine WHERE id = ANY($1::bigint[])",
        &quarantined,
    )
    .await?;
    let keys: Vec<&String> = search.keys.iter().collect();
    let rows = query(
        tx,
        "SELECT COUNT(*) FROM revocations WHERE person = ANY($1::text[])",
        &[&keys],
    )
    .await?;
    let kept: i64 = match rows.first() {
        Some(r) => r.try_get(0)?,
        None => 0,
    };
    counts.revocations_kept = kept.max(0) as u64;
    Ok(search.report(dry, counts))
}

/// Deletes the rows `from_where` selects (`$1` bound to `set`), or counts them for a dry run.
async fn remove<T: ToSql + Sync>(
    tx: &Transaction<'_>,
    dry_run: bool,
    from_where: &str,
    set: &T,
) -> Result<u64, TxError> {
    if dry_run {
        let rows = query(tx, &format!("SELECT COUNT(*) FROM {from_where}"), &[set]).await?;
        let n: i64 = match rows.first() {
            Some(r) => r.try_get(0)?,
            None => 0,
        };
        Ok(n.max(0) as u64)
    } else {
        execute(tx, &format!("DELETE FROM {from_where}"), &[set]).await
    }
}
