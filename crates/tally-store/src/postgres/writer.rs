//! The ingest transaction: what each [`IngestItem`] does, in SQL, inside a group's transaction.
//!
//! Correct across processes without a single writer:
//! - every lookup of a stored event takes its row lock (`FOR UPDATE`), so merges into one event
//!   are serialised and none is lost;
//! - a new event is inserted with `ON CONFLICT DO NOTHING`: when another transaction inserted
//!   the same key first, the insert waits for it, inserts nothing, and the decision is made
//!   again on the now visible row (a duplicate);
//! - claims lease rows with `FOR UPDATE SKIP LOCKED`, so two nodes never lease one delivery.
//!
//! Deadlocks between groups that touch the same rows in different orders are retried by the
//! caller with the whole group.

use deadpool_postgres::Transaction;
use tally_core::dedup::{self, Candidate, Decision, Found};
use tally_core::event::{Event, SourceKind};
use tally_core::merge::merge;
use tally_core::timestamp::Timestamp;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::people;
use crate::model::{
    ClaimedDelivery, IngestItem, IngestOutcome, NewQuarantine, PlannedDelivery, QuarantineBody,
    Settlement,
};
use crate::shared;

/// How often one event's decision is made again after losing an insert race before the group
/// gives up (each retry sees the row that won, so a second retry is already rare).
const MAX_INSERT_RACES: usize = 4;

/// Anything that aborts a group.
#[derive(Debug, thiserror::Error)]
pub(super) enum TxError {
    #[error(transparent)]
    Pg(#[from] tokio_postgres::Error),
    #[error("cannot get a database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("event `{0}` lost its insert race {MAX_INSERT_RACES} times")]
    Race(String),
    #[error("the transaction took longer than {0:?}; the database may be unreachable")]
    Timeout(std::time::Duration),
}

pub(super) type Params<'a> = [&'a (dyn ToSql + Sync)];

pub(super) async fn execute(
    tx: &Transaction<'_>,
    sql: &str,
    params: &Params<'_>,
) -> Result<u64, TxError> {
    let stmt = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&stmt, params).await?)
}

pub(super) async fn query(
    tx: &Transaction<'_>,
    sql: &str,
    params: &Params<'_>,
) -> Result<Vec<Row>, TxError> {
    let stmt = tx.prepare_cached(sql).await?;
    Ok(tx.query(&stmt, params).await?)
}

async fn query_one(tx: &Transaction<'_>, sql: &str, params: &Params<'_>) -> Result<Row, TxError> {
    let stmt = tx.prepare_cached(sql).await?;
    Ok(tx.query_one(&stmt, params).await?)
}

async fn query_opt(
    tx: &Transaction<'_>,
    sql: &str,
    params: &Params<'_>,
) -> Result<Option<Row>, TxError> {
    let stmt = tx.prepare_cached(sql).await?;
    Ok(tx.query_opt(&stmt, params).await?)
}

/// Applies one item inside the group's transaction.
pub(super) async fn apply(
    tx: &Transaction<'_>,
    now: Timestamp,
    item: &IngestItem,
) -> Result<IngestOutcome, TxError> {
    match item {
        IngestItem::Event {
            candidate,
            replay_of,
            encoded,
            deliveries,
            click_ids_until,
        } => {
            let mut outcome = None;
            for _ in 0..MAX_INSERT_RACES {
                outcome = ingest_event(
                    tx,
                    now,
                    candidate,
                    encoded,
                    deliveries,
                    *replay_of,
                    *click_ids_until,
                )
                .await?;
                if outcome.is_some() {
                    break;
                }
            }
            let outcome = outcome.ok_or_else(|| TxError::Race(candidate.event.event_id.clone()))?;
            if let (Some(id), IngestOutcome::Accepted | IngestOutcome::Duplicate { .. }) =
                (replay_of, &outcome)
            {
                execute(
                    tx,
                    "UPDATE quarantine SET status = 'replayed', replayed_ms = $2 WHERE id = $1",
                    &[id, &now.millis()],
                )
                .await?;
            }
            Ok(outcome)
        }
        IngestItem::Quarantine(q) => Ok(IngestOutcome::Quarantined {
            quarantine_id: insert_quarantine(tx, q).await?,
        }),
        IngestItem::Requarantine { id, rejection } => {
            execute(
                tx,
                "UPDATE quarantine SET code = $2, message = $3 WHERE id = $1",
                &[id, &rejection.code, &rejection.message],
            )
            .await?;
            Ok(IngestOutcome::Quarantined { quarantine_id: *id })
        }
        IngestItem::Claim {
            destination,
            owner,
            lease_until,
            limit,
            gated,
        } => Ok(IngestOutcome::Claimed(
            claim(tx, now, destination, owner, *lease_until, *limit, *gated).await?,
        )),
        IngestItem::GoLive { destination, note } => {
            execute(
                tx,
                "INSERT INTO live_destinations (destination, since_ms, note) VALUES ($1, $2, $3)
                 ON CONFLICT (destination) DO NOTHING",
                &[destination, &now.millis(), note],
            )
            .await?;
            Ok(IngestOutcome::Live)
        }
        IngestItem::Settle(settlement) => Ok(IngestOutcome::Settled {
            applied: settle(tx, now, settlement).await?,
        }),
        IngestItem::Revoke(revocation) => Ok(IngestOutcome::Revoked {
            cancelled: people::revoke(tx, now, revocation).await?,
        }),
        IngestItem::Erase(erasure) => Ok(IngestOutcome::Erased(
            super::erase::erase(tx, now, erasure).await?,
        )),
        IngestItem::Replay(filter) => {
            let (requeued, expired) = people::replay(tx, now, filter).await?;
            Ok(IngestOutcome::Replayed { requeued, expired })
        }
        IngestItem::Identify(link) => {
            execute(
                tx,
                "INSERT INTO identity_links (at_ms, source, anonymous_id, external_id, identity)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &link.at.millis(),
                    &link.source,
                    &link.anonymous_id,
                    &link.external_id,
                    &serde_json::to_string(&link.identity)?,
                ],
            )
            .await?;
            Ok(IngestOutcome::Linked)
        }
    }
}

struct StoredRow {
    rowid: i64,
    epoch: i32,
    dedup_value: Option<String>,
    first_seen: Timestamp,
    has_browser: bool,
    body: String,
}

fn stored_row(r: &Row) -> Result<StoredRow, TxError> {
    Ok(StoredRow {
        rowid: r.try_get(0)?,
        epoch: r.try_get(1)?,
        dedup_value: r.try_get(2)?,
        first_seen: Timestamp::from_millis(r.try_get(3)?),
        has_browser: r.try_get(4)?,
        body: r.try_get(5)?,
    })
}

fn found<'a>(r: &'a StoredRow, stored: Option<&'a Event>) -> Option<Found<'a>> {
    Some(Found {
        event: stored?,
        dedup_value: r.dedup_value.as_deref(),
        has_browser_copy: r.has_browser,
    })
}

/// Decides and stores one event; `None` when its insert lost a race to another transaction
/// (the caller decides again, now seeing the winner).
async fn ingest_event(
    tx: &Transaction<'_>,
    now: Timestamp,
    c: &Candidate,
    encoded: &str,
    deliveries: &[PlannedDelivery],
    replay_of: Option<i64>,
    click_ids_until: Option<Timestamp>,
) -> Result<Option<IngestOutcome>, TxError> {
    let e = &c.event;
    // Row locks: a concurrent merge into the same event waits here, then reads what it wrote.
    let by_id = query_opt(
        tx,
        "SELECT id, id_epoch, dedup_value, first_seen_ms, has_browser, body FROM events
          WHERE event_id = $1 AND name = $2 ORDER BY id_epoch DESC LIMIT 1 FOR UPDATE",
        &[&e.event_id, &e.name],
    )
    .await?
    .map(|r| stored_row(&r))
    .transpose()?;
    let by_id_live = by_id
        .as_ref()
        .filter(|r| dedup::within_window(r.first_seen, now, c.event_id_window_ms));
    let by_key = match (&c.dedup_value, by_id_live) {
        (Some(value), None) => query_opt(
            tx,
            "SELECT id, key_epoch, dedup_value, first_seen_ms, has_browser, body FROM events
              WHERE name = $1 AND dedup_value = $2 ORDER BY key_epoch DESC LIMIT 1 FOR UPDATE",
            &[&e.name, value],
        )
        .await?
        .map(|r| stored_row(&r))
        .transpose()?,
        _ => None,
    };
    let by_key_live = by_key
        .as_ref()
        .filter(|r| dedup::within_window(r.first_seen, now, c.dedup_key_window_ms));

    let live = by_id_live.or(by_key_live);
    let stored: Option<Event> = live.map(|r| serde_json::from_str(&r.body)).transpose()?;
    let decision = dedup::decide(
        c,
        by_id_live.and_then(|r| found(r, stored.as_ref())),
        by_key_live.and_then(|r| found(r, stored.as_ref())),
    );

    match decision {
        Decision::New => {
            // A later event of a visitor whose click was remembered carries that click too.
            // Looked up before this event's own clicks are remembered, which it has already.
            let enriched = people::with_remembered_clicks(tx, e).await?;
            let reencoded = enriched.as_ref().map(serde_json::to_string).transpose()?;
            let encoded = reencoded.as_deref().unwrap_or(encoded);
            let revoked = people::revoked_at(tx, e).await?;
            let id_epoch = by_id.map_or(0, |r| r.epoch + 1);
            let key_epoch = by_key.map_or(0, |r| r.epoch + 1);
            let inserted = query_opt(
                tx,
                "INSERT INTO events (name, event_id, id_epoch, dedup_value, key_epoch, first_seen_ms,
                                     event_time_ms, has_browser, source, source_kind, first_consent, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT DO NOTHING RETURNING id",
                &[
                    &e.name,
                    &e.event_id,
                    &id_epoch,
                    &c.dedup_value,
                    &key_epoch,
                    &now.millis(),
                    &e.timestamp.millis(),
                    &(e.source_kind == SourceKind::Browser),
                    &e.source,
                    &e.source_kind.as_str(),
                    &serde_json::to_string(&e.consent)?,
                    &encoded,
                ],
            )
            .await?;
            let Some(inserted) = inserted else {
                // Another transaction stored this key first; decide again against its row.
                return Ok(None);
            };
            let rowid: i64 = inserted.try_get(0)?;
            if let Some(until) = click_ids_until {
                people::remember_click_ids(tx, e, until).await?;
            }
            people::index_people(tx, rowid, e).await?;
            insert_deliveries(tx, now, rowid, deliveries, revoked).await?;
            Ok(Some(IngestOutcome::Accepted))
        }
        Decision::Duplicate { matched_by, ghost } => {
            let row = live.expect("a duplicate has a live row");
            let mut merged = stored.expect("decoded above");
            let contributed = merge(&mut merged, e);
            if let Some(until) = click_ids_until {
                people::remember_click_ids(tx, e, until).await?;
            }
            if !contributed.is_empty() {
                people::index_people(tx, row.rowid, &merged).await?;
            }
            let incoming_browser = e.source_kind == SourceKind::Browser;
            if !contributed.is_empty() || (incoming_browser && !row.has_browser) {
                execute(
                    tx,
                    "UPDATE events SET body = $2, event_time_ms = $3, has_browser = $4 WHERE id = $1",
                    &[
                        &row.rowid,
                        &serde_json::to_string(&merged)?,
                        &merged.timestamp.millis(),
                        &(row.has_browser || incoming_browser),
                    ],
                )
                .await?;
            }
            // The event's row lock (taken above) serialises copies of one event, so the next
            // sequence number cannot be taken twice.
            execute(
                tx,
                "INSERT INTO copies (event_rowid, seq, event_id, source, source_kind, received_ms,
                                     matched_by, contributed, ghost, consent)
                 SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9
                   FROM copies WHERE event_rowid = $1",
                &[
                    &row.rowid,
                    &e.event_id,
                    &e.source,
                    &e.source_kind.as_str(),
                    &e.received_at.millis(),
                    &shared::matched_by_str(matched_by),
                    &serde_json::to_string(&contributed)?,
                    &ghost,
                    &serde_json::to_string(&e.consent)?,
                ],
            )
            .await?;
            if e.event_id != merged.event_id {
                execute(
                    tx,
                    "INSERT INTO event_aliases (event_id, name, event_rowid) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&e.event_id, &e.name, &row.rowid],
                )
                .await?;
            }
            Ok(Some(IngestOutcome::Duplicate {
                matched_by,
                stored_event_id: merged.event_id,
            }))
        }
        Decision::Collision { stored_value } => {
            let rejection = shared::collision_rejection(c, &stored_value);
            if let Some(id) = replay_of {
                // A replay that collides stays in its own quarantine row with the new reason.
                execute(
                    tx,
                    "UPDATE quarantine SET code = $2, message = $3 WHERE id = $1",
                    &[&id, &rejection.code, &rejection.message],
                )
                .await?;
                return Ok(Some(IngestOutcome::Collision {
                    quarantine_id: id,
                    rejection,
                }));
            }
            let quarantine_id = insert_quarantine(
                tx,
                &NewQuarantine {
                    received_at: e.received_at,
                    source: e.source.clone(),
                    source_kind: e.source_kind,
                    event_name: Some(e.name.clone()),
                    event_id: Some(e.event_id.clone()),
                    rejection: rejection.clone(),
                    body: QuarantineBody::Event {
                        event: Box::new(e.clone()),
                    },
                },
            )
            .await?;
            Ok(Some(IngestOutcome::Collision {
                quarantine_id,
                rejection,
            }))
        }
    }
}

/// Creates a new event's deliveries in one statement: pending, or withheld when the person
/// revoked consent at or after the event's time.
async fn insert_deliveries(
    tx: &Transaction<'_>,
    now: Timestamp,
    rowid: i64,
    deliveries: &[PlannedDelivery],
    revoked: Option<Timestamp>,
) -> Result<(), TxError> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let (state, reason) = match revoked {
        Some(at) => ("withheld", Some(format!("consent revoked at {at}"))),
        None => ("pending", None),
    };
    let destinations: Vec<&str> = deliveries.iter().map(|d| d.destination.as_str()).collect();
    let not_before: Vec<i64> = deliveries.iter().map(|d| d.not_before.millis()).collect();
    let deadline: Vec<i64> = deliveries.iter().map(|d| d.deadline.millis()).collect();
    let test: Vec<bool> = deliveries.iter().map(|d| d.test).collect();
    execute(
        tx,
        "INSERT INTO deliveries (event_rowid, destination, state, not_before_ms, deadline_ms,
                                 updated_ms, last_reason, test)
         SELECT $1, u.destination, $2, u.not_before, u.deadline, $3, $4, u.test
           FROM unnest($5::text[], $6::bigint[], $7::bigint[], $8::boolean[])
                AS u (destination, not_before, deadline, test)",
        &[
            &rowid,
            &state,
            &now.millis(),
            &reason,
            &destinations,
            &not_before,
            &deadline,
            &test,
        ],
    )
    .await?;
    Ok(())
}

async fn insert_quarantine(tx: &Transaction<'_>, q: &NewQuarantine) -> Result<i64, TxError> {
    let row = query_one(
        tx,
        "INSERT INTO quarantine (received_ms, source, source_kind, event_name, event_id, code,
                                 message, status, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8) RETURNING id",
        &[
            &q.received_at.millis(),
            &q.source,
            &q.source_kind.as_str(),
            &q.event_name,
            &q.event_id,
            &q.rejection.code,
            &q.rejection.message,
            &serde_json::to_string(&q.body)?,
        ],
    )
    .await?;
    Ok(row.try_get(0)?)
}

/// Leases due, unleased deliveries of one destination, oldest due first, in one statement.
///
/// `FOR UPDATE SKIP LOCKED` passes over rows another transaction is leasing at this moment,
/// and the lease columns keep them from everyone else once it commits: two nodes never hold
/// one delivery, and neither waits for the other.
async fn claim(
    tx: &Transaction<'_>,
    now: Timestamp,
    destination: &str,
    owner: &str,
    lease_until: Timestamp,
    limit: u32,
    gated: bool,
) -> Result<Vec<ClaimedDelivery>, TxError> {
    let rows = query(
        tx,
        "WITH due AS (
             SELECT d.id FROM deliveries d
              WHERE d.destination = $1 AND d.state = 'pending' AND d.not_before_ms <= $2
                AND (d.leased_until_ms IS NULL OR d.leased_until_ms <= $2)
                AND (NOT $4 OR d.test
                     OR EXISTS (SELECT 1 FROM live_destinations l WHERE l.destination = $1))
              ORDER BY d.not_before_ms, d.id
              LIMIT $3
              FOR UPDATE OF d SKIP LOCKED)
         UPDATE deliveries d SET lease_owner = $5, leased_until_ms = $6, updated_ms = $2
           FROM due, events e
          WHERE d.id = due.id AND e.id = d.event_rowid
         RETURNING d.id, d.attempts, d.deadline_ms, d.not_before_ms, e.body",
        &[
            &destination,
            &now.millis(),
            &i64::from(limit),
            &gated,
            &owner,
            &lease_until.millis(),
        ],
    )
    .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for r in &rows {
        let attempts: i32 = r.try_get(1)?;
        let body: &str = r.try_get(4)?;
        claimed.push((
            r.try_get::<_, i64>(3)?,
            ClaimedDelivery {
                delivery_id: r.try_get(0)?,
                destination: destination.to_owned(),
                attempts: attempts.max(0) as u32,
                deadline: Timestamp::from_millis(r.try_get(2)?),
                event: serde_json::from_str(body)?,
            },
        ));
    }
    // RETURNING has no order; answer in due order, as the SQLite store does.
    claimed.sort_by_key(|(not_before, c)| (*not_before, c.delivery_id));
    Ok(claimed.into_iter().map(|(_, c)| c).collect())
}

/// Records one attempt for a delivery still leased by the settler; returns whether it was.
async fn settle(tx: &Transaction<'_>, now: Timestamp, s: &Settlement) -> Result<bool, TxError> {
    let (state, not_before, reason) = shared::settled_state(s);
    let updated = query_opt(
        tx,
        "UPDATE deliveries
            SET state = $3, not_before_ms = COALESCE($4, not_before_ms), attempts = attempts + 1,
                lease_owner = NULL, leased_until_ms = NULL, last_reason = COALESCE($5, last_reason),
                updated_ms = $6
          WHERE id = $1 AND lease_owner = $2 AND state = 'pending'
         RETURNING attempts",
        &[
            &s.delivery_id,
            &s.owner,
            &state.as_str(),
            &not_before,
            &reason,
            &now.millis(),
        ],
    )
    .await?;
    let Some(updated) = updated else {
        return Ok(false);
    };
    let seq: i32 = updated.try_get(0)?;
    execute(
        tx,
        "INSERT INTO delivery_attempts (delivery_id, seq, at_ms, outcome, status, summary, consent)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &s.delivery_id,
            &seq,
            &s.attempt.at.millis(),
            &s.attempt.outcome,
            &s.attempt.status.map(i32::from),
            &s.attempt.summary,
            &s.attempt.consent,
        ],
    )
    .await?;
    Ok(true)
}
