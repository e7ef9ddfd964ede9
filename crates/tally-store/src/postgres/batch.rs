//! A group's new events written per table instead of per event.
//!
//! Handled one by one, a new event costs about seven statements (lookups by event ID and
//! business key, remembered clicks, revocations, the insert, person keys, deliveries), each a
//! round trip, and a group of a thousand events seven thousand. Here a run of consecutive
//! event items costs a handful for the whole run: the lookups in one pipelined wave of
//! `= ANY($1)` queries, the inserts in one `unnest` statement per table.
//!
//! Why the lookups may run before the run is decided: the group already holds the advisory
//! locks of every dedup key it carries ([`lock_keys`]), and every tally
//! transaction that inserts an event takes them first, so no other node can store an event
//! with one of these keys until this transaction ends. An event with no stored row by either
//! key is therefore new for the whole transaction, and nothing is locked or merged for it.
//!
//! Everything else goes the careful way, one by one, with row locks ([`writer::apply`]): an
//! event that has a stored row (a duplicate, a collision, an expired window), one that shares a
//! key with an earlier event of the run, a replay. Before such an event the new events decided
//! so far are written, so it sees the database as if every earlier item had been applied in
//! order. Remembered clicks change during a run (each new browser event remembers its clicks
//! for its visitor), so the run keeps what it remembered in memory and lays it over the
//! looked-up rows, with the upsert's rule: the newer click wins, a tie goes to the later event.
//! Identify links and revocations change only through items that end a run.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Transaction;
use tally_core::dedup::Candidate;
use tally_core::event::SourceKind;
use tally_core::timestamp::Timestamp;
use tokio_postgres::types::{ToSql, Type};

use super::writer::{self, TxError, execute, query};
use crate::model::{IngestItem, IngestOutcome, PlannedDelivery, person_keys};
use crate::shared::{self, Remembered};

/// Applies a group's items in order, writing runs of new events per table. First takes the
/// advisory locks of every dedup key the group carries ([`lock_keys`]).
pub(super) async fn apply_all(
    tx: &Transaction<'_>,
    items: &[(Timestamp, &IngestItem)],
) -> Result<Vec<IngestOutcome>, TxError> {
    let dedup: Vec<Vec<String>> = items
        .iter()
        .map(|(_, item)| match item {
            IngestItem::Event { candidate, .. } => dedup_keys(candidate),
            _ => Vec::new(),
        })
        .collect();
    lock_keys(tx, &dedup).await?;
    let mut outcomes: Vec<Option<IngestOutcome>> = vec![None; items.len()];
    let mut start = 0;
    while start < items.len() {
        if !in_run(items[start].1) {
            outcomes[start] = Some(writer::apply(tx, items[start].0, items[start].1).await?);
            start += 1;
            continue;
        }
        let end = start
            + items[start..]
                .iter()
                .take_while(|(_, item)| in_run(item))
                .count();
        apply_run(
            tx,
            &items[start..end],
            &dedup[start..end],
            &mut outcomes[start..end],
        )
        .await?;
        start = end;
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every item of the group is answered"))
        .collect())
}

/// Takes a transaction-scoped advisory lock for each dedup key of the group's events, in one
/// global order (sorted), before anything else. Two groups that share an event (the same batch
/// sent to two nodes, a browser and a server copy) then run one after the other instead of
/// locking rows in opposite orders: PostgreSQL takes `deadlock_timeout` (1 s) to find such a
/// deadlock, and the groups that retried after it met again, until a request was answered 503.
async fn lock_keys(tx: &Transaction<'_>, dedup: &[Vec<String>]) -> Result<(), TxError> {
    let mut keys: Vec<&str> = dedup.iter().flatten().map(String::as_str).collect();
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort_unstable();
    keys.dedup();
    // unnest keeps the array's order, so the locks are taken in sorted order.
    query(
        tx,
        "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) AS k",
        &[&keys],
    )
    .await?;
    Ok(())
}

/// Whether an item may be part of a run: an event that is not a replay, or a quarantine row
/// (which reads nothing the run writes, so it does not end one).
fn in_run(item: &IngestItem) -> bool {
    matches!(
        item,
        IngestItem::Event {
            replay_of: None,
            ..
        } | IngestItem::Quarantine(_)
    )
}

/// The key of an event ID, as the advisory locks and the run name it.
fn id_key(name: &str, event_id: &str) -> String {
    format!("id\u{1f}{name}\u{1f}{event_id}")
}

/// The key of a business dedup value (e.g. an order ID).
fn business_key(name: &str, value: &str) -> String {
    format!("key\u{1f}{name}\u{1f}{value}")
}

/// The keys an event is deduplicated by.
fn dedup_keys(c: &Candidate) -> Vec<String> {
    let name = &c.event.name;
    let mut keys = vec![id_key(name, &c.event.event_id)];
    keys.extend(c.dedup_value.as_deref().map(|v| business_key(name, v)));
    keys
}

/// A remembered click as the table holds it: value, click time, expiry.
#[derive(Clone)]
struct Click {
    value: String,
    clicked_ms: i64,
    expires_ms: i64,
}

impl Click {
    /// Whether `self`, written after `earlier`, replaces it (the upsert's `>=`).
    fn replaces(&self, earlier: &Click) -> bool {
        self.clicked_ms >= earlier.clicked_ms
    }
}

/// Remembered clicks by visitor key: each kind's current click.
type ClicksByVisitor = HashMap<String, Vec<(&'static str, Click)>>;

/// An event item of the run, with the keys it is found by, made once.
struct RunEvent<'a> {
    slot: usize,
    now: Timestamp,
    item: &'a IngestItem,
    candidate: &'a Candidate,
    encoded: &'a str,
    deliveries: &'a [PlannedDelivery],
    click_ids_until: Option<Timestamp>,
    dedup: &'a [String],
    /// `person_keys`: revocations and `event_people`.
    people: Vec<String>,
    /// `visitor_keys`: the click memory.
    visitors: Vec<String>,
}

/// What the database holds for the run's events, kept current by the run.
#[derive(Default)]
struct Snapshot {
    /// Dedup keys with a stored row (any epoch), as looked up.
    stored_keys: HashSet<String>,
    /// Remembered clicks by visitor key and kind: the looked-up rows, then each click the run
    /// remembers applied over them with the upsert's rule ([`remember`]).
    clicks: ClicksByVisitor,
    /// Visitor keys linked by identify: `anon:` key → `ext:` keys and back.
    links: HashMap<String, Vec<String>>,
    /// Latest revocation per person key.
    revocations: HashMap<String, i64>,
}

/// A new event decided by the run, waiting for its run's next write.
struct NewEvent<'a> {
    event: &'a RunEvent<'a>,
    body: std::borrow::Cow<'a, str>,
    revoked: Option<Timestamp>,
}

async fn apply_run(
    tx: &Transaction<'_>,
    items: &[(Timestamp, &IngestItem)],
    dedup: &[Vec<String>],
    outcomes: &mut [Option<IngestOutcome>],
) -> Result<(), TxError> {
    let mut events: Vec<RunEvent<'_>> = Vec::with_capacity(items.len());
    for (slot, &(now, item)) in items.iter().enumerate() {
        match item {
            IngestItem::Event {
                candidate,
                encoded,
                deliveries,
                click_ids_until,
                ..
            } => events.push(RunEvent {
                slot,
                now,
                item,
                candidate,
                encoded,
                deliveries,
                click_ids_until: *click_ids_until,
                dedup: &dedup[slot],
                people: person_keys(&candidate.event.user),
                visitors: shared::visitor_keys(&candidate.event),
            }),
            // A quarantine row: written where it stands, it touches nothing the run reads.
            _ => outcomes[slot] = Some(writer::apply(tx, now, item).await?),
        }
    }
    let mut snapshot = look_up(tx, &events).await?;
    let mut run_keys: HashSet<&str> = HashSet::new();
    let mut pending: Vec<NewEvent<'_>> = Vec::new();

    for ev in &events {
        let c = ev.candidate;
        let known = ev
            .dedup
            .iter()
            .any(|k| snapshot.stored_keys.contains(k) || run_keys.contains(k.as_str()));
        run_keys.extend(ev.dedup.iter().map(String::as_str));
        if known {
            write_new(tx, std::mem::take(&mut pending), outcomes).await?;
            let outcome = writer::apply(tx, ev.now, ev.item).await?;
            if matches!(
                outcome,
                IngestOutcome::Accepted | IngestOutcome::Duplicate { .. }
            ) && let Some(until) = ev.click_ids_until
            {
                remember(&mut snapshot.clicks, ev, until);
            }
            outcomes[ev.slot] = Some(outcome);
            continue;
        }
        let attached = shared::with_remembered(&c.event, snapshot.remembered_for(ev));
        let body = match &attached {
            Some(enriched) => std::borrow::Cow::Owned(serde_json::to_string(enriched)?),
            None => std::borrow::Cow::Borrowed(ev.encoded),
        };
        if let Some(until) = ev.click_ids_until {
            remember(&mut snapshot.clicks, ev, until);
        }
        pending.push(NewEvent {
            event: ev,
            body,
            revoked: snapshot.revoked_at(ev),
        });
    }
    write_new(tx, pending, outcomes).await
}

/// Records `ev`'s click IDs as remembered for its visitor keys, as the upsert would: a click
/// replaces the one held for its visitor and kind unless that one is newer.
fn remember(clicks: &mut ClicksByVisitor, ev: &RunEvent<'_>, until: Timestamp) {
    let e = &ev.candidate.event;
    let clicked_ms = e.user.click_ids.clicked_at.unwrap_or(e.timestamp).millis();
    for (kind, value) in e.user.click_ids.named() {
        let Some(value) = value else { continue };
        for visitor in &ev.visitors {
            let click = Click {
                value: value.clone(),
                clicked_ms,
                expires_ms: until.millis(),
            };
            let kinds = clicks.entry(visitor.clone()).or_default();
            match kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, held)) if click.replaces(held) => *held = click,
                Some(_) => {}
                None => kinds.push((kind, click)),
            }
        }
    }
}

impl Snapshot {
    /// The unexpired clicks remembered for `ev`'s visitors, newest click first: its own
    /// visitor keys and those linked to them by identify (as
    /// [`super::people::REMEMBERED_CLICKS`] finds them).
    fn remembered_for(&self, ev: &RunEvent<'_>) -> Vec<Remembered> {
        let at = ev.candidate.event.timestamp.millis();
        let mut visitors: Vec<&String> = ev.visitors.iter().collect();
        for key in &ev.visitors {
            for linked in self.links.get(key).into_iter().flatten() {
                if !visitors.contains(&linked) {
                    visitors.push(linked);
                }
            }
        }
        let mut rows: Vec<Remembered> = visitors
            .into_iter()
            .filter_map(|v| self.clicks.get(v))
            .flatten()
            .filter(|(_, c)| c.expires_ms > at)
            .map(|(kind, c)| ((*kind).to_owned(), c.value.clone(), c.clicked_ms))
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.2));
        rows
    }

    /// When a person `ev` is about revoked consent at or after the event's time.
    fn revoked_at(&self, ev: &RunEvent<'_>) -> Option<Timestamp> {
        ev.people
            .iter()
            .filter_map(|k| self.revocations.get(k).copied())
            .max()
            .filter(|at| *at >= ev.candidate.event.timestamp.millis())
            .map(Timestamp::from_millis)
    }
}

/// Stored dedup keys among the run's (any epoch): by event ID, and by business key (name and
/// value pairs, joined so that both columns reach the index: with `name = ANY AND
/// dedup_value = ANY` PostgreSQL 15 looked up the name alone and filtered every stored
/// purchase). Each row is a name with an event ID or with a business value.
pub(super) const STORED_KEYS: &str = "SELECT name, event_id, NULL FROM events
  WHERE event_id = ANY ($1::text[])
 UNION ALL
 SELECT e.name, NULL, e.dedup_value
   FROM unnest($2::text[], $3::text[]) AS u (name, value)
   JOIN events e ON e.name = u.name AND e.dedup_value = u.value";

/// Identify links of the run's anonymous and external IDs.
pub(super) const LINKS: &str = "SELECT anonymous_id, external_id FROM identity_links
  WHERE anonymous_id = ANY ($1::text[]) AND external_id IS NOT NULL
 UNION
 SELECT anonymous_id, external_id FROM identity_links
  WHERE external_id = ANY ($2::text[]) AND anonymous_id IS NOT NULL";

/// Remembered clicks of the run's visitors and of the visitors linked to them. It follows the
/// links itself rather than waiting for [`LINKS`], so both go out in the same round trip.
/// `= ANY (ARRAY(...))` keeps the primary-key lookup in a generic plan (see
/// [`super::people::REMEMBERED_CLICKS`]).
pub(super) const CLICKS: &str =
    "SELECT visitor, kind, value, clicked_ms, expires_ms FROM visitor_click_ids
  WHERE visitor = ANY (ARRAY(
        SELECT unnest($3::text[])
        UNION SELECT 'ext:' || external_id FROM identity_links
               WHERE anonymous_id = ANY ($1::text[]) AND external_id IS NOT NULL
        UNION SELECT 'anon:' || anonymous_id FROM identity_links
               WHERE external_id = ANY ($2::text[]) AND anonymous_id IS NOT NULL))";

pub(super) const REVOCATIONS: &str =
    "SELECT person, at_ms FROM revocations WHERE person = ANY ($1::text[])";

/// Runs one of the run's lookups (every parameter a `text[]`) as an unnamed statement, which
/// PostgreSQL plans with the arrays it is given, in the same single round trip. A prepared
/// statement soon runs a generic plan, and one made while the tables were still small stays a
/// sequential scan as they grow: the key lookup of a fresh database scanned all of `events`
/// for every group until autovacuum's first analyze.
async fn lookup(
    tx: &Transaction<'_>,
    sql: &str,
    arrays: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, TxError> {
    let params: Vec<(&(dyn ToSql + Sync), Type)> =
        arrays.iter().map(|a| (*a, Type::TEXT_ARRAY)).collect();
    Ok(tx.query_typed(sql, &params).await?)
}

/// Reads what the run's decisions depend on, in one pipelined wave of four statements.
async fn look_up(tx: &Transaction<'_>, events: &[RunEvent<'_>]) -> Result<Snapshot, TxError> {
    let mut snapshot = Snapshot::default();
    if events.is_empty() {
        return Ok(snapshot);
    }
    let event_ids: Vec<&str> = events
        .iter()
        .map(|ev| ev.candidate.event.event_id.as_str())
        .collect();
    let (mut names, mut values): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let (mut anons, mut exts, mut visitors, mut people) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ev in events {
        let e = &ev.candidate.event;
        if let Some(value) = &ev.candidate.dedup_value {
            names.push(&e.name);
            values.push(value);
        }
        anons.extend(e.user.anonymous_id.as_deref());
        exts.extend(e.user.identity.external_id.as_deref());
        visitors.extend(ev.visitors.iter().map(String::as_str));
        people.extend(ev.people.iter().map(String::as_str));
    }
    let (stored, links, clicks, revocations) = tokio::try_join!(
        async { lookup(tx, STORED_KEYS, &[&event_ids, &names, &values]).await },
        async {
            if anons.is_empty() && exts.is_empty() {
                return Ok(Vec::new());
            }
            lookup(tx, LINKS, &[&anons, &exts]).await
        },
        async {
            if visitors.is_empty() {
                return Ok(Vec::new());
            }
            lookup(tx, CLICKS, &[&anons, &exts, &visitors]).await
        },
        async {
            if people.is_empty() {
                return Ok(Vec::new());
            }
            lookup(tx, REVOCATIONS, &[&people]).await
        },
    )?;
    for r in &stored {
        let name: &str = r.try_get(0)?;
        let key = match r.try_get::<_, Option<&str>>(1)? {
            Some(event_id) => id_key(name, event_id),
            None => business_key(name, r.try_get(2)?),
        };
        snapshot.stored_keys.insert(key);
    }
    for r in &links {
        let anon: String = r.try_get(0)?;
        let ext: String = r.try_get(1)?;
        let (anon, ext) = (format!("anon:{anon}"), format!("ext:{ext}"));
        snapshot
            .links
            .entry(anon.clone())
            .or_default()
            .push(ext.clone());
        snapshot.links.entry(ext).or_default().push(anon);
    }
    for r in &clicks {
        let kind: String = r.try_get(1)?;
        // Kinds are written from `ClickIds::named`, so an unknown one is not ours: skip it.
        let Some(kind) = known_kind(&kind) else {
            continue;
        };
        snapshot.clicks.entry(r.try_get(0)?).or_default().push((
            kind,
            Click {
                value: r.try_get(2)?,
                clicked_ms: r.try_get(3)?,
                expires_ms: r.try_get(4)?,
            },
        ));
    }
    for r in &revocations {
        snapshot.revocations.insert(r.try_get(0)?, r.try_get(1)?);
    }
    Ok(snapshot)
}

fn known_kind(kind: &str) -> Option<&'static str> {
    tally_core::event::ClickIds::default()
        .named()
        .map(|(k, _)| k)
        .find(|k| *k == kind)
}

/// Writes the run's new events decided so far, one statement per table, and answers them.
/// An event whose insert found its key taken after all (a writer outside tally's locks) is
/// decided again the careful way.
async fn write_new(
    tx: &Transaction<'_>,
    pending: Vec<NewEvent<'_>>,
    outcomes: &mut [Option<IngestOutcome>],
) -> Result<(), TxError> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut cols = EventColumns::default();
    for p in &pending {
        cols.push(p)?;
    }
    let inserted = query(
        tx,
        "INSERT INTO events (name, event_id, id_epoch, dedup_value, key_epoch, first_seen_ms,
                             event_time_ms, has_browser, source, source_kind, first_consent, body)
         SELECT u.name, u.event_id, 0, u.dedup_value, 0, u.first_seen, u.event_time,
                u.has_browser, u.source, u.source_kind, u.consent, u.body
           FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                       $6::boolean[], $7::text[], $8::text[], $9::text[], $10::text[])
                AS u (name, event_id, dedup_value, first_seen, event_time, has_browser, source,
                      source_kind, consent, body)
         ON CONFLICT DO NOTHING RETURNING id, name, event_id",
        &[
            &cols.names,
            &cols.event_ids,
            &cols.dedup_values,
            &cols.first_seen,
            &cols.event_time,
            &cols.has_browser,
            &cols.sources,
            &cols.source_kinds,
            &cols.consents,
            &cols.bodies,
        ],
    )
    .await?;
    // The run's pending events have distinct event IDs (a repeated key goes the careful way).
    let mut rowids: HashMap<&str, (&str, i64)> = HashMap::with_capacity(inserted.len());
    for r in &inserted {
        rowids.insert(r.try_get(2)?, (r.try_get(1)?, r.try_get(0)?));
    }

    let mut people = PeopleColumns::default();
    let mut deliveries = DeliveryColumns::default();
    // One upsert cannot touch a row twice: each (visitor, kind) pair's winner, by the upsert's
    // own rule.
    let mut clicks = ClicksByVisitor::new();
    let mut raced = Vec::new();
    for p in &pending {
        let ev = p.event;
        let e = &ev.candidate.event;
        let rowid = match rowids.get(e.event_id.as_str()) {
            Some(&(name, rowid)) if name == e.name => rowid,
            _ => {
                raced.push(ev);
                continue;
            }
        };
        for key in &ev.people {
            people.rowids.push(rowid);
            people.keys.push(key);
        }
        deliveries.push(p, rowid);
        if let Some(until) = ev.click_ids_until {
            remember(&mut clicks, ev, until);
        }
        outcomes[ev.slot] = Some(IngestOutcome::Accepted);
    }
    // In key order, so two groups upserting the same visitors' rows lock them in one order
    // instead of deadlocking.
    let mut clicks: Vec<(&String, &'static str, &Click)> = clicks
        .iter()
        .flat_map(|(visitor, kinds)| kinds.iter().map(move |(kind, c)| (visitor, *kind, c)))
        .collect();
    clicks.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    tokio::try_join!(
        people.write(tx),
        deliveries.write(tx),
        write_clicks(tx, &clicks)
    )?;
    for ev in raced {
        outcomes[ev.slot] = Some(writer::apply(tx, ev.now, ev.item).await?);
    }
    Ok(())
}

#[derive(Default)]
struct EventColumns<'a> {
    names: Vec<&'a str>,
    event_ids: Vec<&'a str>,
    dedup_values: Vec<Option<&'a str>>,
    first_seen: Vec<i64>,
    event_time: Vec<i64>,
    has_browser: Vec<bool>,
    sources: Vec<&'a str>,
    source_kinds: Vec<&'static str>,
    consents: Vec<String>,
    bodies: Vec<&'a str>,
}

impl<'a> EventColumns<'a> {
    fn push(&mut self, p: &'a NewEvent<'a>) -> Result<(), TxError> {
        let e = &p.event.candidate.event;
        self.names.push(&e.name);
        self.event_ids.push(&e.event_id);
        self.dedup_values
            .push(p.event.candidate.dedup_value.as_deref());
        self.first_seen.push(p.event.now.millis());
        self.event_time.push(e.timestamp.millis());
        self.has_browser.push(e.source_kind == SourceKind::Browser);
        self.sources.push(&e.source);
        self.source_kinds.push(e.source_kind.as_str());
        self.consents.push(serde_json::to_string(&e.consent)?);
        self.bodies.push(&p.body);
        Ok(())
    }
}

#[derive(Default)]
struct PeopleColumns<'a> {
    rowids: Vec<i64>,
    keys: Vec<&'a str>,
}

impl PeopleColumns<'_> {
    async fn write(&self, tx: &Transaction<'_>) -> Result<(), TxError> {
        if self.rowids.is_empty() {
            return Ok(());
        }
        execute(
            tx,
            "INSERT INTO event_people (event_rowid, person)
             SELECT * FROM unnest($1::bigint[], $2::text[])",
            &[&self.rowids, &self.keys],
        )
        .await?;
        Ok(())
    }
}

#[derive(Default)]
struct DeliveryColumns<'a> {
    rowids: Vec<i64>,
    destinations: Vec<&'a str>,
    states: Vec<&'static str>,
    not_before: Vec<i64>,
    deadlines: Vec<i64>,
    updated: Vec<i64>,
    reasons: Vec<Option<String>>,
    test: Vec<bool>,
}

impl<'a> DeliveryColumns<'a> {
    /// A new event's deliveries: pending, or withheld when the person revoked consent at or
    /// after the event's time (as [`super::writer`] creates them one by one).
    fn push(&mut self, p: &NewEvent<'a>, rowid: i64) {
        for d in p.event.deliveries {
            self.rowids.push(rowid);
            self.destinations.push(&d.destination);
            let (state, reason) = match p.revoked {
                Some(at) => ("withheld", Some(format!("consent revoked at {at}"))),
                None => ("pending", None),
            };
            self.states.push(state);
            self.reasons.push(reason);
            self.not_before.push(d.not_before.millis());
            self.deadlines.push(d.deadline.millis());
            self.updated.push(p.event.now.millis());
            self.test.push(d.test);
        }
    }

    async fn write(&self, tx: &Transaction<'_>) -> Result<(), TxError> {
        if self.rowids.is_empty() {
            return Ok(());
        }
        execute(
            tx,
            "INSERT INTO deliveries (event_rowid, destination, state, not_before_ms, deadline_ms,
                                     updated_ms, last_reason, test)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[],
                                  $5::bigint[], $6::bigint[], $7::text[], $8::boolean[])",
            &[
                &self.rowids,
                &self.destinations,
                &self.states,
                &self.not_before,
                &self.deadlines,
                &self.updated,
                &self.reasons,
                &self.test,
            ],
        )
        .await?;
        Ok(())
    }
}

/// Remembers clicks (distinct `(visitor, kind)` pairs) in one upsert; a newer click replaces
/// an older one of the same kind.
async fn write_clicks(
    tx: &Transaction<'_>,
    clicks: &[(&String, &'static str, &Click)],
) -> Result<(), TxError> {
    if clicks.is_empty() {
        return Ok(());
    }
    let visitors: Vec<&str> = clicks.iter().map(|(v, _, _)| v.as_str()).collect();
    let kinds: Vec<&str> = clicks.iter().map(|(_, k, _)| *k).collect();
    let values: Vec<&str> = clicks.iter().map(|(_, _, c)| c.value.as_str()).collect();
    let clicked: Vec<i64> = clicks.iter().map(|(_, _, c)| c.clicked_ms).collect();
    let expires: Vec<i64> = clicks.iter().map(|(_, _, c)| c.expires_ms).collect();
    execute(
        tx,
        "INSERT INTO visitor_click_ids (visitor, kind, value, clicked_ms, expires_ms)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
         ON CONFLICT (visitor, kind) DO UPDATE
            SET value = excluded.value, clicked_ms = excluded.clicked_ms,
                expires_ms = excluded.expires_ms
          WHERE excluded.clicked_ms >= visitor_click_ids.clicked_ms",
        &[&visitors, &kinds, &values, &clicked, &expires],
    )
    .await?;
    Ok(())
}
