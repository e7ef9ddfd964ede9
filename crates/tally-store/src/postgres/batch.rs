//! A group's new events written per table instead of per event.
//!
//! Handled one by one, a new event costs about seven statements (lookups by event ID and
//! business key, remembered clicks, revocations, the insert, person keys, deliveries), each a
//! round trip, and a group of a thousand events seven thousand. Here a run of consecutive
//! event items costs a handful for the whole run: the lookups in one pipelined wave of
//! `= ANY($1)` queries, the inserts in one `unnest` statement per table.
//!
//! Why the lookups may run before the run is decided: the group already holds the advisory
//! locks of every dedup key it carries ([`super::writer::lock_event_keys`]), and every tally
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
use tally_core::event::{Event, SourceKind};
use tally_core::timestamp::Timestamp;
use tokio_postgres::types::{ToSql, Type};

use super::writer::{self, TxError, execute, query};
use crate::model::{IngestItem, IngestOutcome, PlannedDelivery, person_keys};
use crate::shared::{self, Remembered};

/// Applies a group's items in order, writing runs of new events per table.
pub(super) async fn apply_all(
    tx: &Transaction<'_>,
    items: &[(Timestamp, &IngestItem)],
) -> Result<Vec<IngestOutcome>, TxError> {
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
        apply_run(tx, &items[start..end], &mut outcomes[start..end]).await?;
        start = end;
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every item of the group is answered"))
        .collect())
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

/// The keys an event is deduplicated by, as the advisory locks name them.
pub(super) fn dedup_keys(c: &Candidate) -> impl Iterator<Item = String> + '_ {
    let name = &c.event.name;
    std::iter::once(format!("id\u{1f}{name}\u{1f}{}", c.event.event_id)).chain(
        c.dedup_value
            .as_ref()
            .map(|value| format!("key\u{1f}{name}\u{1f}{value}")),
    )
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

type ClickKey = (String, &'static str);

/// Remembered clicks by visitor key: each kind's current click.
type ClicksByVisitor = HashMap<String, Vec<(&'static str, Click)>>;

/// What the database held for the run's events before it started.
#[derive(Default)]
struct Snapshot {
    /// Dedup keys with a stored row (any epoch).
    stored_keys: HashSet<String>,
    /// Remembered clicks by visitor key and kind.
    clicks: ClicksByVisitor,
    /// Visitor keys linked by identify: `anon:` key → `ext:` keys and back.
    links: HashMap<String, Vec<String>>,
    /// Latest revocation per person key.
    revocations: HashMap<String, i64>,
}

/// A new event decided by the run, waiting for its run's next write.
struct NewEvent<'a> {
    slot: usize,
    now: Timestamp,
    item: &'a IngestItem,
    candidate: &'a Candidate,
    body: std::borrow::Cow<'a, str>,
    deliveries: &'a [PlannedDelivery],
    revoked: Option<Timestamp>,
    remember_until: Option<Timestamp>,
}

async fn apply_run(
    tx: &Transaction<'_>,
    items: &[(Timestamp, &IngestItem)],
    outcomes: &mut [Option<IngestOutcome>],
) -> Result<(), TxError> {
    let candidates: Vec<&Candidate> = items
        .iter()
        .filter_map(|(_, item)| match item {
            IngestItem::Event { candidate, .. } => Some(candidate),
            _ => None,
        })
        .collect();
    let snapshot = look_up(tx, &candidates).await?;
    let mut run_keys: HashSet<String> = HashSet::new();
    // Clicks remembered by this run's earlier events, laid over the snapshot.
    let mut remembered = ClicksByVisitor::new();
    let mut pending: Vec<NewEvent<'_>> = Vec::new();

    for (slot, &(now, item)) in items.iter().enumerate() {
        let IngestItem::Event {
            candidate: c,
            encoded,
            deliveries,
            click_ids_until,
            ..
        } = item
        else {
            // A quarantine row: written where it stands, it touches nothing the run reads.
            outcomes[slot] = Some(writer::apply(tx, now, item).await?);
            continue;
        };
        let keys: Vec<String> = dedup_keys(c).collect();
        let known = keys
            .iter()
            .any(|k| snapshot.stored_keys.contains(k) || run_keys.contains(k));
        run_keys.extend(keys);
        if known {
            write_new(tx, std::mem::take(&mut pending), outcomes).await?;
            let outcome = writer::apply(tx, now, item).await?;
            if matches!(
                outcome,
                IngestOutcome::Accepted | IngestOutcome::Duplicate { .. }
            ) && let Some(until) = click_ids_until
            {
                remember(&mut remembered, &c.event, *until);
            }
            outcomes[slot] = Some(outcome);
            continue;
        }
        let attached =
            shared::with_remembered(&c.event, snapshot.remembered_for(&c.event, &remembered));
        let body = match &attached {
            Some(enriched) => std::borrow::Cow::Owned(serde_json::to_string(enriched)?),
            None => std::borrow::Cow::Borrowed(encoded.as_str()),
        };
        if let Some(until) = click_ids_until {
            remember(&mut remembered, &c.event, *until);
        }
        pending.push(NewEvent {
            slot,
            now,
            item,
            candidate: c,
            body,
            deliveries,
            revoked: snapshot.revoked_at(&c.event),
            remember_until: *click_ids_until,
        });
    }
    write_new(tx, pending, outcomes).await
}

/// Records `event`'s click IDs as remembered for its visitor keys, as the upsert would.
fn remember(remembered: &mut ClicksByVisitor, event: &Event, until: Timestamp) {
    for (visitor, kind, click) in clicks_to_remember(event, until) {
        let kinds = remembered.entry(visitor).or_default();
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, held)) if click.replaces(held) => *held = click,
            Some(_) => {}
            None => kinds.push((kind, click)),
        }
    }
}

/// The `visitor_click_ids` rows an event remembers: each click ID for each visitor key.
fn clicks_to_remember(
    event: &Event,
    until: Timestamp,
) -> impl Iterator<Item = (String, &'static str, Click)> + '_ {
    let visitors = shared::visitor_keys(event);
    let clicked = event
        .user
        .click_ids
        .clicked_at
        .unwrap_or(event.timestamp)
        .millis();
    event
        .user
        .click_ids
        .named()
        .filter_map(|(kind, value)| value.as_ref().map(|v| (kind, v)))
        .flat_map(move |(kind, value)| {
            visitors.clone().into_iter().map(move |visitor| {
                (
                    visitor,
                    kind,
                    Click {
                        value: value.clone(),
                        clicked_ms: clicked,
                        expires_ms: until.millis(),
                    },
                )
            })
        })
}

impl Snapshot {
    /// The visitor keys whose remembered clicks a new event receives: its own and those linked
    /// to them by identify (as [`super::people::REMEMBERED_CLICKS`] finds them).
    fn visitors_of(&self, event: &Event) -> Vec<String> {
        let own = shared::visitor_keys(event);
        let mut all = own.clone();
        for key in &own {
            for linked in self.links.get(key).into_iter().flatten() {
                if !all.contains(linked) {
                    all.push(linked.clone());
                }
            }
        }
        all
    }

    /// The unexpired clicks remembered for `event`'s visitors, newest click first: the
    /// snapshot's rows, each replaced by what the run remembered since where that wins.
    fn remembered_for(&self, event: &Event, run: &ClicksByVisitor) -> Vec<Remembered> {
        let at = event.timestamp.millis();
        let mut rows: Vec<Remembered> = Vec::new();
        for visitor in self.visitors_of(event) {
            let stored = self.clicks.get(&visitor).map(Vec::as_slice).unwrap_or(&[]);
            let since_run = run.get(&visitor).map(Vec::as_slice).unwrap_or(&[]);
            let mut kinds: Vec<&'static str> = stored.iter().map(|(k, _)| *k).collect();
            for (k, _) in since_run {
                if !kinds.contains(k) {
                    kinds.push(k);
                }
            }
            for kind in kinds {
                let before = stored.iter().find(|(k, _)| *k == kind).map(|(_, c)| c);
                let since = since_run.iter().find(|(k, _)| *k == kind).map(|(_, c)| c);
                let current = match (before, since) {
                    (Some(b), Some(s)) if s.replaces(b) => s,
                    (Some(b), _) => b,
                    (None, Some(s)) => s,
                    (None, None) => continue,
                };
                if current.expires_ms > at {
                    rows.push((kind.to_owned(), current.value.clone(), current.clicked_ms));
                }
            }
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.2));
        rows
    }

    /// When a person `event` is about revoked consent at or after the event's time.
    fn revoked_at(&self, event: &Event) -> Option<Timestamp> {
        person_keys(&event.user)
            .iter()
            .filter_map(|k| self.revocations.get(k).copied())
            .max()
            .filter(|at| *at >= event.timestamp.millis())
            .map(Timestamp::from_millis)
    }
}

/// Stored dedup keys among the run's (any epoch): by event ID, and by business key (name and
/// value pairs, joined so that both columns reach the index: with `name = ANY AND
/// dedup_value = ANY` PostgreSQL 15 looked up the name alone and filtered every stored
/// purchase).
pub(super) const STORED_KEYS: &str =
    "SELECT 'id' || chr(31) || name || chr(31) || event_id FROM events
  WHERE event_id = ANY ($1::text[])
 UNION ALL
 SELECT 'key' || chr(31) || e.name || chr(31) || e.dedup_value
   FROM unnest($2::text[], $3::text[]) AS u (name, value)
   JOIN events e ON e.name = u.name AND e.dedup_value = u.value";

/// Identify links of the run's anonymous and external IDs.
pub(super) const LINKS: &str = "SELECT anonymous_id, external_id FROM identity_links
  WHERE anonymous_id = ANY ($1::text[]) AND external_id IS NOT NULL
 UNION
 SELECT anonymous_id, external_id FROM identity_links
  WHERE external_id = ANY ($2::text[]) AND anonymous_id IS NOT NULL";

/// Remembered clicks of the run's visitors and of the visitors linked to them. `= ANY
/// (ARRAY(...))` keeps the primary-key lookup in the generic plan (see
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
async fn look_up(tx: &Transaction<'_>, candidates: &[&Candidate]) -> Result<Snapshot, TxError> {
    let mut snapshot = Snapshot::default();
    if candidates.is_empty() {
        return Ok(snapshot);
    }
    let event_ids: Vec<&str> = candidates
        .iter()
        .map(|c| c.event.event_id.as_str())
        .collect();
    let mut names: Vec<&str> = Vec::new();
    let mut values: Vec<&str> = Vec::new();
    let (mut anons, mut exts, mut visitors, mut people) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for c in candidates {
        if let Some(value) = &c.dedup_value {
            names.push(&c.event.name);
            values.push(value);
        }
        let user = &c.event.user;
        anons.extend(user.anonymous_id.as_deref());
        exts.extend(user.identity.external_id.as_deref());
        visitors.extend(shared::visitor_keys(&c.event));
        people.extend(person_keys(user));
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
        snapshot.stored_keys.insert(r.try_get(0)?);
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
    let mut rowids: HashMap<(String, String), i64> = HashMap::with_capacity(inserted.len());
    for r in &inserted {
        rowids.insert((r.try_get(1)?, r.try_get(2)?), r.try_get(0)?);
    }

    let mut people = PeopleColumns::default();
    let mut deliveries = DeliveryColumns::default();
    let mut clicks: Vec<(ClickKey, Click)> = Vec::new();
    let mut click_slots: HashMap<ClickKey, usize> = HashMap::new();
    let mut raced = Vec::new();
    for p in &pending {
        let e = &p.candidate.event;
        let Some(&rowid) = rowids.get(&(e.name.clone(), e.event_id.clone())) else {
            raced.push(p);
            continue;
        };
        for key in person_keys(&e.user) {
            people.rowids.push(rowid);
            people.keys.push(key);
        }
        deliveries.push(p, rowid);
        if let Some(until) = p.remember_until {
            for (visitor, kind, click) in clicks_to_remember(e, until) {
                // One upsert cannot touch a row twice: keep the winner of each pair.
                let key = (visitor, kind);
                match click_slots.get(&key) {
                    Some(&i) if click.replaces(&clicks[i].1) => clicks[i].1 = click,
                    Some(_) => {}
                    None => {
                        click_slots.insert(key.clone(), clicks.len());
                        clicks.push((key, click));
                    }
                }
            }
        }
        outcomes[p.slot] = Some(IngestOutcome::Accepted);
    }
    // In key order, so two groups upserting the same visitors' rows lock them in one order
    // instead of deadlocking.
    clicks.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    tokio::try_join!(
        people.write(tx),
        deliveries.write(tx),
        write_clicks(tx, &clicks)
    )?;
    for p in raced {
        outcomes[p.slot] = Some(writer::apply(tx, p.now, p.item).await?);
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
        let e = &p.candidate.event;
        self.names.push(&e.name);
        self.event_ids.push(&e.event_id);
        self.dedup_values.push(p.candidate.dedup_value.as_deref());
        self.first_seen.push(p.now.millis());
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
struct PeopleColumns {
    rowids: Vec<i64>,
    keys: Vec<String>,
}

impl PeopleColumns {
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
        for d in p.deliveries {
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
            self.updated.push(p.now.millis());
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
async fn write_clicks(tx: &Transaction<'_>, clicks: &[(ClickKey, Click)]) -> Result<(), TxError> {
    if clicks.is_empty() {
        return Ok(());
    }
    let visitors: Vec<&str> = clicks.iter().map(|((v, _), _)| v.as_str()).collect();
    let kinds: Vec<&str> = clicks.iter().map(|((_, k), _)| *k).collect();
    let values: Vec<&str> = clicks.iter().map(|(_, c)| c.value.as_str()).collect();
    let clicked: Vec<i64> = clicks.iter().map(|(_, c)| c.clicked_ms).collect();
    let expires: Vec<i64> = clicks.iter().map(|(_, c)| c.expires_ms).collect();
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
