//! The writer thread: group commit and the ingest transaction.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tally_core::dedup::{self, Candidate, Decision, Found};
use tally_core::event::{Event, SourceKind};
use tally_core::merge::merge;
use tally_core::timestamp::Timestamp;
use tokio::sync::{mpsc, oneshot};

use super::health::{self, Probe, WriterHealth};
use super::people::{self, PeopleMemory};
use crate::StoreError;
use crate::model::{
    ClaimedDelivery, IngestItem, IngestOutcome, NewQuarantine, PlannedDelivery, QuarantineBody,
    Settlement, person_keys,
};

/// Least time between two checkpoints the writer runs in its idle moments.
const IDLE_CHECKPOINT_EVERY: Duration = Duration::from_millis(20);

/// Group commits slower than this are logged at debug level.
const SLOW_COMMIT: Duration = Duration::from_millis(5);

/// A committed request: its outcomes, and its items handed back.
pub(super) type Committed = (Vec<Applied>, Vec<IngestItem>);

/// One item's result as the writer answers it. Claimed events are handed over as stored text
/// and decoded by the caller ([`Applied::decode`]), so the single writer, which every ingest
/// waits on, spends no time on them.
pub(super) enum Applied {
    Outcome(IngestOutcome),
    Claimed(Vec<StoredClaim>),
}

/// A leased delivery with its event as stored.
pub(super) struct StoredClaim {
    delivery_id: i64,
    destination: String,
    attempts: u32,
    deadline: Timestamp,
    body: String,
}

impl Applied {
    /// The public outcome, decoding claimed events.
    pub(super) fn decode(self) -> Result<IngestOutcome, StoreError> {
        match self {
            Applied::Outcome(outcome) => Ok(outcome),
            Applied::Claimed(claims) => claims
                .into_iter()
                .map(|c| {
                    let event = serde_json::from_str(&c.body).map_err(|e| StoreError::Corrupt {
                        table: "events",
                        message: format!("event of delivery {}: {e}", c.delivery_id),
                    })?;
                    Ok(ClaimedDelivery {
                        delivery_id: c.delivery_id,
                        destination: c.destination,
                        attempts: c.attempts,
                        deadline: c.deadline,
                        event,
                    })
                })
                .collect::<Result<_, _>>()
                .map(IngestOutcome::Claimed),
        }
    }
}

/// A request for the writer.
pub(super) struct WriteRequest {
    pub now: Timestamp,
    pub items: Vec<IngestItem>,
    /// Answered with the outcomes and the items themselves, so the caller's thread (not the
    /// writer) pays for freeing them.
    pub reply: oneshot::Sender<Result<Committed, StoreError>>,
}

/// What the writer receives.
pub(super) enum WriterMessage {
    /// Commit these items.
    Write(WriteRequest),
    /// Commit what is queued, then stop.
    Shutdown,
    /// Probe for room on the disk if a commit failed for lack of it ([`health`]); answered
    /// when done.
    Probe(oneshot::Sender<()>),
    /// Run SQL on the writer's connection (tests: limits that stand in for a full disk).
    #[cfg(test)]
    Exec(String, oneshot::Sender<rusqlite::Result<()>>),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CommitFailure(String);

/// Outbox work (claims and settlements) waits while ingest requests are queued, but never
/// longer than this, so delivery keeps moving under an ingest load that never lets up.
const OUTBOX_MAX_WAIT: Duration = Duration::from_millis(50);

/// Whether a request is the outbox's (a dispatcher's claim or settlement): ingest goes first.
fn is_outbox(req: &WriteRequest) -> bool {
    req.items
        .iter()
        .all(|i| matches!(i, IngestItem::Claim { .. } | IngestItem::Settle(_)))
}

/// Requests taken off the channel, waiting for their group: ingest and outbox apart.
#[derive(Default)]
struct Waiting {
    ingest: VecDeque<WriteRequest>,
    ingest_items: usize,
    outbox: VecDeque<WriteRequest>,
    outbox_since: Option<Instant>,
}

impl Waiting {
    fn push(&mut self, req: WriteRequest, now: Instant) {
        if is_outbox(&req) {
            self.outbox_since.get_or_insert(now);
            self.outbox.push_back(req);
        } else {
            self.ingest_items += req.items.len();
            self.ingest.push_back(req);
        }
    }

    fn is_empty(&self) -> bool {
        self.ingest.is_empty() && self.outbox.is_empty()
    }

    /// The next group: queued ingest requests, unless the outbox has waited its turn (or
    /// nothing else waits). At least one request, then up to `max_items` items.
    fn next_group(&mut self, max_items: usize, now: Instant) -> Vec<WriteRequest> {
        let outbox_turn = !self.outbox.is_empty()
            && (self.ingest.is_empty()
                || self
                    .outbox_since
                    .is_some_and(|since| now.duration_since(since) >= OUTBOX_MAX_WAIT));
        let queue = if outbox_turn {
            &mut self.outbox
        } else {
            &mut self.ingest
        };
        let mut group = Vec::new();
        let mut items = 0;
        while let Some(req) = queue.front() {
            if !group.is_empty() && items + req.items.len() > max_items {
                break;
            }
            items += req.items.len();
            group.extend(queue.pop_front());
        }
        if outbox_turn {
            self.outbox_since = (!self.outbox.is_empty()).then_some(now);
        } else {
            self.ingest_items -= items;
        }
        group
    }
}

/// What the writer thread owns besides its connection.
pub(super) struct Writer {
    pub max_group_items: usize,
    pub health: Arc<WriterHealth>,
    pub people: PeopleMemory,
    pub probe: Probe,
}

/// Messages that are not writes, taken off the channel beside them.
#[derive(Default)]
struct Chores {
    probes: Vec<oneshot::Sender<()>>,
    shutting_down: bool,
}

impl Chores {
    /// Files `message`, a write into `waiting`.
    fn take(
        &mut self,
        message: WriterMessage,
        waiting: &mut Waiting,
        #[cfg_attr(not(test), allow(unused_variables))] conn: &Connection,
    ) {
        match message {
            WriterMessage::Write(req) => waiting.push(req, Instant::now()),
            WriterMessage::Shutdown => self.shutting_down = true,
            WriterMessage::Probe(reply) => self.probes.push(reply),
            #[cfg(test)]
            WriterMessage::Exec(sql, reply) => {
                let _ = reply.send(conn.execute_batch(&sql));
            }
        }
    }
}

/// Runs until every sender is dropped, then returns.
pub(super) fn run(mut conn: Connection, mut rx: mpsc::Receiver<WriterMessage>, writer: Writer) {
    let Writer {
        max_group_items,
        health,
        mut people,
        probe,
    } = writer;
    let mut waiting = Waiting::default();
    let mut chores = Chores::default();
    let mut disconnected = false;
    let mut last_checkpoint = Instant::now();
    let mut wal_dirty = false;
    loop {
        // Take what is queued without blocking, until a group's worth of ingest is known (all
        // of it when shutting down: queued writes are committed before the writer stops).
        while (waiting.ingest_items < max_group_items || chores.shutting_down) && !disconnected {
            match rx.try_recv() {
                Ok(message) => chores.take(message, &mut waiting, &conn),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => disconnected = true,
            }
        }
        // Probes asked for meanwhile: one run answers them all. Here, between groups, no
        // commit competes with the probe's file for room.
        if !chores.probes.is_empty() {
            health::probe(&mut conn, &health, &probe);
            for reply in chores.probes.drain(..) {
                let _ = reply.send(());
            }
        }
        if waiting.is_empty() {
            if chores.shutting_down || disconnected {
                break;
            }
            // Idle: move the WAL into the database now, so the copying and its sync do not
            // land in the middle of a busy stretch and stall commits behind them.
            if wal_dirty && last_checkpoint.elapsed() >= IDLE_CHECKPOINT_EVERY {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint failed; will retry.");
                }
                last_checkpoint = Instant::now();
                wal_dirty = false;
            }
            match rx.blocking_recv() {
                Some(message) => chores.take(message, &mut waiting, &conn),
                None => disconnected = true,
            }
            continue;
        }
        let group = waiting.next_group(max_group_items, Instant::now());
        let changes_before = conn.total_changes();
        match commit_group(&mut conn, &mut people, &group) {
            Ok(outcomes) => {
                wal_dirty = true;
                health.committed(conn.total_changes() > changes_before);
                for (req, out) in group.into_iter().zip(outcomes) {
                    let _ = req.reply.send(Ok((out, req.items)));
                }
            }
            Err(e) => {
                people.rolled_back();
                let message = e.to_string();
                let cause = match &e {
                    TxError::Sqlite(e) => health::cause_of(e),
                    TxError::Json(_) => health::Cause::Other,
                };
                health.failed(cause, message.clone());
                let items: usize = group.iter().map(|r| r.items.len()).sum();
                tracing::error!(error = %e, requests = group.len(), items, "Group commit failed; answering 503.");
                for req in group {
                    let failure = CommitFailure(message.clone());
                    let _ = req
                        .reply
                        .send(Err(StoreError::Unavailable(Box::new(failure))));
                }
            }
        }
    }
}

fn commit_group(
    conn: &mut Connection,
    people: &mut PeopleMemory,
    group: &[WriteRequest],
) -> Result<Vec<Vec<Applied>>, TxError> {
    let started = Instant::now();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    people.refresh(&tx)?;
    let mut all = Vec::with_capacity(group.len());
    let mut items = 0;
    for req in group {
        let mut outcomes = Vec::with_capacity(req.items.len());
        for item in &req.items {
            outcomes.push(apply(&tx, people, req.now, item)?);
        }
        items += req.items.len();
        all.push(outcomes);
    }
    let applied = started.elapsed();
    tx.commit()?;
    let total = started.elapsed();
    if total > SLOW_COMMIT {
        tracing::debug!(
            requests = group.len(),
            items,
            apply_ms = applied.as_secs_f64() * 1e3,
            commit_ms = (total - applied).as_secs_f64() * 1e3,
            "Slow group commit."
        );
    }
    Ok(all)
}

/// Anything that aborts a group: SQLite errors and rows that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub(super) enum TxError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

struct StoredRow {
    rowid: i64,
    epoch: i64,
    dedup_value: Option<String>,
    first_seen: Timestamp,
    has_browser: bool,
    body: String,
}

fn apply(
    tx: &Connection,
    people: &mut PeopleMemory,
    now: Timestamp,
    item: &IngestItem,
) -> Result<Applied, TxError> {
    let outcome = match item {
        IngestItem::Event {
            candidate,
            replay_of,
            encoded,
            deliveries,
            click_ids_until,
        } => {
            let outcome = ingest_event(
                tx,
                people,
                now,
                candidate,
                encoded,
                deliveries,
                *replay_of,
                *click_ids_until,
            )?;
            if let (Some(id), IngestOutcome::Accepted | IngestOutcome::Duplicate { .. }) =
                (replay_of, &outcome)
            {
                tx.prepare_cached(
                    "UPDATE quarantine SET status = 'replayed', replayed_ms = ?2 WHERE id = ?1",
                )?
                .execute(params![id, now.millis()])?;
            }
            outcome
        }
        IngestItem::Quarantine(q) => IngestOutcome::Quarantined {
            quarantine_id: insert_quarantine(tx, q)?,
        },
        IngestItem::Requarantine { id, rejection } => {
            tx.prepare_cached("UPDATE quarantine SET code = ?2, message = ?3 WHERE id = ?1")?
                .execute(params![id, rejection.code, rejection.message])?;
            IngestOutcome::Quarantined { quarantine_id: *id }
        }
        IngestItem::Claim {
            destination,
            owner,
            lease_until,
            limit,
            gated,
        } => {
            return Ok(Applied::Claimed(claim(
                tx,
                now,
                destination,
                owner,
                *lease_until,
                *limit,
                *gated,
            )?));
        }
        IngestItem::GoLive { destination, note } => {
            tx.prepare_cached(
                "INSERT INTO live_destinations (destination, since_ms, note) VALUES (?1, ?2, ?3)
                 ON CONFLICT (destination) DO NOTHING",
            )?
            .execute(params![destination, now.millis(), note])?;
            IngestOutcome::Live
        }
        IngestItem::Settle(settlement) => IngestOutcome::Settled {
            applied: settle(tx, now, settlement)?,
        },
        IngestItem::Revoke(revocation) => IngestOutcome::Revoked {
            cancelled: people::revoke(tx, people, now, revocation)?,
        },
        IngestItem::Erase(erasure) => IngestOutcome::Erased(super::erase::erase(tx, now, erasure)?),
        IngestItem::Replay(filter) => {
            let (requeued, expired) = people::replay(tx, now, filter)?;
            IngestOutcome::Replayed { requeued, expired }
        }
        IngestItem::Identify(link) => {
            people.linked(link.anonymous_id.as_deref(), link.external_id.as_deref());
            tx.prepare_cached(
                "INSERT INTO identity_links (at_ms, source, anonymous_id, external_id, identity) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                link.at.millis(),
                link.source,
                link.anonymous_id,
                link.external_id,
                serde_json::to_string(&link.identity)?
            ])?;
            IngestOutcome::Linked
        }
    };
    Ok(Applied::Outcome(outcome))
}

#[allow(clippy::too_many_arguments)]
fn ingest_event(
    tx: &Connection,
    people: &mut PeopleMemory,
    now: Timestamp,
    c: &Candidate,
    encoded: &str,
    deliveries: &[PlannedDelivery],
    replay_of: Option<i64>,
    click_ids_until: Option<Timestamp>,
) -> Result<IngestOutcome, TxError> {
    let e = &c.event;
    let by_id = tx
        .prepare_cached(
            "SELECT id, id_epoch, dedup_value, first_seen_ms, has_browser, body FROM events
             WHERE event_id = ?1 AND name = ?2 ORDER BY id_epoch DESC LIMIT 1",
        )?
        .query_row(params![e.event_id, e.name], stored_row)
        .optional()?;
    let by_id_live = by_id
        .as_ref()
        .filter(|r| dedup::within_window(r.first_seen, now, c.event_id_window_ms));
    let by_key = match (&c.dedup_value, by_id_live) {
        (Some(value), None) => tx
            .prepare_cached(
                "SELECT id, key_epoch, dedup_value, first_seen_ms, has_browser, body FROM events
                 WHERE name = ?1 AND dedup_value = ?2 ORDER BY key_epoch DESC LIMIT 1",
            )?
            .query_row(params![e.name, value], stored_row)
            .optional()?,
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
            let enriched = people::with_remembered_clicks(tx, people, e)?;
            if let Some(until) = click_ids_until {
                people::remember_click_ids(tx, people, e, until)?;
            }
            let reencoded = enriched.as_ref().map(serde_json::to_string).transpose()?;
            let encoded = reencoded.as_deref().unwrap_or(encoded);
            let keys = person_keys(&e.user);
            let revoked = people.revoked_at(&keys, e);
            let id_epoch = by_id.map_or(0, |r| r.epoch + 1);
            let key_epoch = by_key.map_or(0, |r| r.epoch + 1);
            tx.prepare_cached(
                "INSERT INTO events (name, event_id, id_epoch, dedup_value, key_epoch, first_seen_ms, event_time_ms,
                                     has_browser, source, source_kind, first_consent, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                e.name,
                e.event_id,
                id_epoch,
                c.dedup_value,
                key_epoch,
                now.millis(),
                e.timestamp.millis(),
                e.source_kind == SourceKind::Browser,
                e.source,
                e.source_kind.as_str(),
                serde_json::to_string(&e.consent)?,
                encoded
            ])?;
            let rowid = tx.last_insert_rowid();
            people::index_people(tx, rowid, &keys)?;
            let (state, reason) = match revoked {
                Some(at) => ("withheld", Some(format!("consent revoked at {at}"))),
                None => ("pending", None),
            };
            for d in deliveries {
                tx.prepare_cached(
                    "INSERT INTO deliveries (event_rowid, destination, state, not_before_ms, deadline_ms, updated_ms, last_reason, test)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![rowid, d.destination, state, d.not_before.millis(), d.deadline.millis(), now.millis(), reason, d.test])?;
            }
            Ok(IngestOutcome::Accepted)
        }
        Decision::Duplicate { matched_by, ghost } => {
            let row = live.expect("a duplicate has a live row");
            let mut merged = stored.expect("decoded above");
            let keys_before = person_keys(&merged.user);
            let contributed = merge(&mut merged, e);
            if let Some(until) = click_ids_until {
                people::remember_click_ids(tx, people, e, until)?;
            }
            if !contributed.is_empty() {
                // Only keys the merge added: the log has no unique key to absorb repeats.
                let mut added = person_keys(&merged.user);
                added.retain(|k| !keys_before.contains(k));
                people::index_people(tx, row.rowid, &added)?;
            }
            let incoming_browser = e.source_kind == SourceKind::Browser;
            if !contributed.is_empty() || (incoming_browser && !row.has_browser) {
                tx.prepare_cached("UPDATE events SET body = ?2, event_time_ms = ?3, has_browser = ?4 WHERE id = ?1")?
                    .execute(params![
                        row.rowid,
                        serde_json::to_string(&merged)?,
                        merged.timestamp.millis(),
                        row.has_browser || incoming_browser
                    ])?;
            }
            let seq: i64 = tx
                .prepare_cached(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM copies WHERE event_rowid = ?1",
                )?
                .query_row([row.rowid], |r| r.get(0))?;
            insert_duplicate_copy(tx, row.rowid, seq, e, matched_by, &contributed, ghost)?;
            if e.event_id != merged.event_id {
                tx.prepare_cached("INSERT OR IGNORE INTO event_aliases (event_id, name, event_rowid) VALUES (?1, ?2, ?3)")?
                    .execute(params![e.event_id, e.name, row.rowid])?;
            }
            Ok(IngestOutcome::Duplicate {
                matched_by,
                stored_event_id: merged.event_id,
            })
        }
        Decision::Collision { stored_value } => {
            let rejection = crate::shared::collision_rejection(c, &stored_value);
            if let Some(id) = replay_of {
                // A replay that collides stays in its own quarantine row with the new reason.
                tx.prepare_cached("UPDATE quarantine SET code = ?2, message = ?3 WHERE id = ?1")?
                    .execute(params![id, rejection.code, rejection.message])?;
                return Ok(IngestOutcome::Collision {
                    quarantine_id: id,
                    rejection,
                });
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
            )?;
            Ok(IngestOutcome::Collision {
                quarantine_id,
                rejection,
            })
        }
    }
}

fn found<'a>(r: &'a StoredRow, stored: Option<&'a Event>) -> Option<Found<'a>> {
    Some(Found {
        event: stored?,
        dedup_value: r.dedup_value.as_deref(),
        has_browser_copy: r.has_browser,
    })
}

fn stored_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRow> {
    Ok(StoredRow {
        rowid: r.get(0)?,
        epoch: r.get(1)?,
        dedup_value: r.get(2)?,
        first_seen: Timestamp::from_millis(r.get(3)?),
        has_browser: r.get(4)?,
        body: r.get(5)?,
    })
}

fn insert_duplicate_copy(
    tx: &Connection,
    rowid: i64,
    seq: i64,
    e: &Event,
    matched_by: dedup::MatchedBy,
    contributed: &[String],
    ghost: bool,
) -> Result<(), TxError> {
    let matched_by = match matched_by {
        dedup::MatchedBy::EventId => "event_id",
        dedup::MatchedBy::DedupKey => "dedup_key",
    };
    tx.prepare_cached(
        "INSERT INTO copies (event_rowid, seq, event_id, source, source_kind, received_ms, matched_by, contributed, ghost, consent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        rowid,
        seq,
        e.event_id,
        e.source,
        e.source_kind.as_str(),
        e.received_at.millis(),
        matched_by,
        serde_json::to_string(contributed)?,
        ghost,
        serde_json::to_string(&e.consent)?
    ])?;
    Ok(())
}

fn insert_quarantine(tx: &Connection, q: &NewQuarantine) -> Result<i64, TxError> {
    tx.prepare_cached(
        "INSERT INTO quarantine (received_ms, source, source_kind, event_name, event_id, code, message, status, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', ?8)",
    )?
    .execute(params![
        q.received_at.millis(),
        q.source,
        q.source_kind.as_str(),
        q.event_name,
        q.event_id,
        q.rejection.code,
        q.rejection.message,
        serde_json::to_string(&q.body)?
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Leases due, unleased deliveries of one destination, oldest due first.
///
/// One statement finds the due deliveries together with their events' bodies (decoded
/// straight from SQLite's buffer), and one prepared statement leases them: a batch of a
/// thousand costs no per-delivery body query, body copy or statement-cache lookup.
fn claim(
    tx: &Connection,
    now: Timestamp,
    destination: &str,
    owner: &str,
    lease_until: Timestamp,
    limit: u32,
    gated: bool,
) -> Result<Vec<StoredClaim>, TxError> {
    let live = !gated
        || tx
            .prepare_cached("SELECT 1 FROM live_destinations WHERE destination = ?1")?
            .exists([destination])?;
    let mut due = tx.prepare_cached(
        "SELECT d.id, d.attempts, d.deadline_ms, e.body FROM deliveries d JOIN events e ON e.id = d.event_rowid
          WHERE d.destination = ?1 AND d.state = 'pending' AND d.not_before_ms <= ?2
            AND (d.leased_until_ms IS NULL OR d.leased_until_ms <= ?2)
            AND (?4 OR d.test = 1)
          ORDER BY d.not_before_ms, d.id LIMIT ?3",
    )?;
    let mut rows = due.query(params![destination, now.millis(), limit, live])?;
    let mut claimed = Vec::new();
    while let Some(r) = rows.next()? {
        claimed.push(StoredClaim {
            delivery_id: r.get(0)?,
            destination: destination.to_owned(),
            attempts: r.get(1)?,
            deadline: Timestamp::from_millis(r.get(2)?),
            body: r.get(3)?,
        });
    }
    drop(rows);
    // Leased after the scan, so no row changes under the open cursor.
    let mut lease = tx.prepare_cached(
        "UPDATE deliveries SET lease_owner = ?2, leased_until_ms = ?3, updated_ms = ?4 WHERE id = ?1",
    )?;
    for c in &claimed {
        lease.execute(params![
            c.delivery_id,
            owner,
            lease_until.millis(),
            now.millis()
        ])?;
    }
    Ok(claimed)
}

/// Records one attempt for a delivery still leased by the settler; returns whether it was.
fn settle(tx: &Connection, now: Timestamp, s: &Settlement) -> Result<bool, TxError> {
    let (state, not_before, reason) = crate::shared::settled_state(s);
    let changed = tx
        .prepare_cached(
            "UPDATE deliveries
                SET state = ?3, not_before_ms = COALESCE(?4, not_before_ms), attempts = attempts + 1,
                    lease_owner = NULL, leased_until_ms = NULL, last_reason = COALESCE(?5, last_reason),
                    updated_ms = ?6
              WHERE id = ?1 AND lease_owner = ?2 AND state = 'pending'",
        )?
        .execute(params![s.delivery_id, s.owner, state.as_str(), not_before, reason, now.millis()])?;
    if changed == 0 {
        return Ok(false);
    }
    tx.prepare_cached(
        "INSERT INTO delivery_attempts (delivery_id, seq, at_ms, outcome, status, summary, consent)
         VALUES (?1, (SELECT attempts FROM deliveries WHERE id = ?1), ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        s.delivery_id,
        s.attempt.at.millis(),
        s.attempt.outcome,
        s.attempt.status,
        s.attempt.summary,
        s.attempt.consent
    ])?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttemptRecord, Settlement};
    use tally_core::retry::Next;

    fn request(items: Vec<IngestItem>) -> WriteRequest {
        let (reply, _) = oneshot::channel();
        WriteRequest {
            now: Timestamp::from_millis(0),
            items,
            reply,
        }
    }

    fn ingest_request(events: usize) -> WriteRequest {
        let link = IngestItem::Identify(crate::model::IdentityLink {
            at: Timestamp::from_millis(0),
            source: "web".into(),
            anonymous_id: Some("a".into()),
            external_id: None,
            identity: Default::default(),
        });
        request(vec![link; events])
    }

    fn settle_request() -> WriteRequest {
        request(vec![IngestItem::Settle(Settlement {
            delivery_id: 1,
            owner: "w".into(),
            next: Next::Delivered,
            attempt: AttemptRecord {
                at: Timestamp::from_millis(0),
                outcome: "succeeded".into(),
                status: Some(200),
                summary: String::new(),
                consent: None,
            },
        })])
    }

    #[test]
    fn ingest_goes_first_and_the_outbox_gets_its_turn_after_waiting_its_most() {
        let t0 = Instant::now();
        let mut waiting = Waiting::default();
        waiting.push(settle_request(), t0);
        waiting.push(ingest_request(3), t0);
        waiting.push(ingest_request(3), t0);
        waiting.push(settle_request(), t0);

        let first = waiting.next_group(4, t0);
        assert_eq!(first.len(), 1, "ingest first, up to the group size");
        assert!(!is_outbox(&first[0]));
        let second = waiting.next_group(4, t0 + Duration::from_millis(1));
        assert!(!is_outbox(&second[0]));
        assert_eq!(waiting.ingest_items, 0);

        waiting.push(ingest_request(1), t0 + Duration::from_millis(2));
        let late = t0 + OUTBOX_MAX_WAIT;
        let third = waiting.next_group(4, late);
        assert_eq!(
            third.len(),
            2,
            "the outbox waited its most: both settlements go"
        );
        assert!(third.iter().all(is_outbox));
        let fourth = waiting.next_group(4, late);
        assert!(!is_outbox(&fourth[0]));
        assert!(waiting.is_empty());
    }

    #[test]
    fn an_idle_writer_takes_outbox_work_at_once() {
        let t0 = Instant::now();
        let mut waiting = Waiting::default();
        waiting.push(settle_request(), t0);
        assert!(is_outbox(&waiting.next_group(100, t0)[0]));
        assert_eq!(waiting.outbox_since, None);
    }
}
