//! Inside the write transaction: who an event is about (for revocation and erasure), the
//! visitor click-ID memory, revocations and dead-letter replay.

use std::collections::HashMap;

use fastbloom::BloomFilter;
use rusqlite::{Connection, params};
use tally_core::event::Event;
use tally_core::timestamp::Timestamp;

use super::writer::TxError;
use crate::model::{ReplayFilter, Revocation};
use crate::shared::{Remembered, with_remembered};

/// What the writer knows of the person tables without asking them, so that a new event of a
/// visitor with nothing remembered, from a person who never revoked consent, costs no lookup
/// (those lookups cost ingest a third of its rate). Owned by the writer thread.
pub(super) struct PeopleMemory {
    /// Visitors with remembered click IDs or an identity link (a superset: a key left over from
    /// a rolled-back group or a false positive only costs the lookup it would have cost anyway).
    visitors: VisitorFilter,
    /// Person key → latest revocation, exact. Reloaded after a failed commit, which may have
    /// added revocations that never reached the disk.
    revocations: HashMap<String, i64>,
    revocations_stale: bool,
}

impl PeopleMemory {
    /// Reads what the tables hold: click memories (expired ones too, harmlessly), identity
    /// links, revocations.
    pub(super) fn load(conn: &Connection) -> Result<Self, TxError> {
        let mut keys: Vec<(String, String)> = Vec::new();
        let mut clicked = conn.prepare("SELECT DISTINCT visitor FROM visitor_click_ids")?;
        for visitor in clicked.query_map([], |r| r.get::<_, String>(0))? {
            let visitor = visitor?;
            if let Some((kind, id)) = visitor.split_once(':') {
                keys.push((kind.to_owned(), id.to_owned()));
            }
        }
        let mut linked = conn.prepare(
            "SELECT anonymous_id, external_id FROM identity_links
              WHERE anonymous_id IS NOT NULL AND external_id IS NOT NULL",
        )?;
        for link in
            linked.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        {
            let (anon, ext) = link?;
            keys.push(("anon".to_owned(), anon));
            keys.push(("ext".to_owned(), ext));
        }
        let mut visitors = VisitorFilter::with_capacity(keys.len().saturating_mul(2));
        for (kind, id) in &keys {
            visitors.insert(kind, id);
        }
        let mut memory = PeopleMemory {
            visitors,
            revocations: HashMap::new(),
            revocations_stale: true,
        };
        memory.refresh(conn)?;
        Ok(memory)
    }

    /// Called after a failed commit.
    pub(super) fn rolled_back(&mut self) {
        self.revocations_stale = true;
    }

    /// Re-reads revocations if a failed commit may have left the map ahead of the disk.
    pub(super) fn refresh(&mut self, conn: &Connection) -> Result<(), TxError> {
        if !self.revocations_stale {
            return Ok(());
        }
        let mut query = conn.prepare("SELECT person, at_ms FROM revocations")?;
        self.revocations = query
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<Result<_, _>>()?;
        self.revocations_stale = false;
        Ok(())
    }

    /// An identify call linked these two visitor keys: lookups for either must follow it.
    pub(super) fn linked(&mut self, anonymous_id: Option<&str>, external_id: Option<&str>) {
        if let (Some(anon), Some(ext)) = (anonymous_id, external_id) {
            self.visitors.insert("anon", anon);
            self.visitors.insert("ext", ext);
        }
    }

    fn may_have_clicks(&self, event: &Event) -> bool {
        event
            .user
            .anonymous_id
            .as_deref()
            .is_some_and(|a| self.visitors.may_contain("anon", a))
            || event
                .user
                .identity
                .external_id
                .as_deref()
                .is_some_and(|x| self.visitors.may_contain("ext", x))
    }

    /// When a person the event is about (by any of `keys`) revoked consent at or after the
    /// event's time.
    pub(super) fn revoked_at(&self, keys: &[String], event: &Event) -> Option<Timestamp> {
        if self.revocations.is_empty() {
            return None;
        }
        keys.iter()
            .filter_map(|k| self.revocations.get(k).copied())
            .max()
            .filter(|at| *at >= event.timestamp.millis())
            .map(Timestamp::from_millis)
    }
}

/// A Bloom filter that grows: when a layer is full a twice larger one is added, so the false
/// positive rate stays near its target however many visitors arrive (about 1.2 bytes each).
struct VisitorFilter {
    layers: Vec<BloomFilter>,
    room: usize,
    next_capacity: usize,
}

impl VisitorFilter {
    const FALSE_POSITIVES: f64 = 0.01;
    const MIN_CAPACITY: usize = 1 << 16;

    fn with_capacity(capacity: usize) -> Self {
        VisitorFilter {
            layers: Vec::new(),
            room: 0,
            next_capacity: capacity.max(Self::MIN_CAPACITY),
        }
    }

    fn may_contain(&self, kind: &str, id: &str) -> bool {
        self.layers.iter().any(|l| l.contains(&(kind, id)))
    }

    fn insert(&mut self, kind: &str, id: &str) {
        if self.may_contain(kind, id) {
            return;
        }
        if self.room == 0 {
            self.layers.push(
                BloomFilter::with_false_pos(Self::FALSE_POSITIVES)
                    .expected_items(self.next_capacity),
            );
            self.room = self.next_capacity;
            self.next_capacity = self.next_capacity.saturating_mul(2);
        }
        if let Some(layer) = self.layers.last_mut() {
            layer.insert(&(kind, id));
            self.room -= 1;
        }
    }
}

/// Records every key (`keys`, from [`crate::model::person_keys`]) event `rowid` can be found by.
pub(super) fn index_people(tx: &Connection, rowid: i64, keys: &[String]) -> Result<(), TxError> {
    // One statement per event rather than one per key (person_keys gives at most four).
    const BY_COUNT: [&str; 4] = [
        "INSERT INTO event_people (event_rowid, person) VALUES (?1, ?)",
        "INSERT INTO event_people (event_rowid, person) VALUES (?1, ?), (?1, ?)",
        "INSERT INTO event_people (event_rowid, person) VALUES (?1, ?), (?1, ?), (?1, ?)",
        "INSERT INTO event_people (event_rowid, person) VALUES (?1, ?), (?1, ?), (?1, ?), (?1, ?)",
    ];
    for chunk in keys.chunks(BY_COUNT.len()) {
        let mut statement = tx.prepare_cached(BY_COUNT[chunk.len() - 1])?;
        statement.raw_bind_parameter(1, rowid)?;
        for (i, key) in chunk.iter().enumerate() {
            statement.raw_bind_parameter(i + 2, key)?;
        }
        statement.raw_execute()?;
    }
    Ok(())
}

/// Remembers `event`'s click IDs and ad cookies for its visitor (anonymous ID and external ID)
/// until `until`; a newer click replaces an older one of the same kind.
pub(super) fn remember_click_ids(
    tx: &Connection,
    memory: &mut PeopleMemory,
    event: &Event,
    until: Timestamp,
) -> Result<(), TxError> {
    let visitors = [
        ("anon", event.user.anonymous_id.as_deref()),
        ("ext", event.user.identity.external_id.as_deref()),
    ];
    let clicked = event.user.click_ids.clicked_at.unwrap_or(event.timestamp);
    let mut remembered = false;
    for (kind, value) in event.user.click_ids.named() {
        let Some(value) = value else { continue };
        for (prefix, id) in visitors {
            let Some(id) = id else { continue };
            tx.prepare_cached(
                "INSERT INTO visitor_click_ids (visitor, kind, value, clicked_ms, expires_ms)
                 VALUES (?1 || ':' || ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (visitor, kind) DO UPDATE
                    SET value = excluded.value, clicked_ms = excluded.clicked_ms,
                        expires_ms = excluded.expires_ms
                  WHERE excluded.clicked_ms >= visitor_click_ids.clicked_ms",
            )?
            .execute(params![
                prefix,
                id,
                kind,
                value,
                clicked.millis(),
                until.millis()
            ])?;
            remembered = true;
        }
    }
    if remembered {
        for (prefix, id) in visitors {
            if let Some(id) = id {
                memory.visitors.insert(prefix, id);
            }
        }
    }
    Ok(())
}

/// The event with the visitor's remembered, unexpired click IDs attached where it has none of a
/// group, following identify links between anonymous and external IDs; `None` when nothing
/// would be attached.
pub(super) fn with_remembered_clicks(
    tx: &Connection,
    memory: &PeopleMemory,
    event: &Event,
) -> Result<Option<Event>, TxError> {
    if !memory.may_have_clicks(event) {
        return Ok(None);
    }
    let anon = event.user.anonymous_id.as_deref();
    let ext = event.user.identity.external_id.as_deref();
    // The visitor's keys and those linked to them by identify, in one statement; newest click
    // first, so the first row of a kind wins.
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
    let remembered = query
        .query_map(params![event.timestamp.millis(), anon, ext], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<Vec<Remembered>, _>>()?;
    Ok(with_remembered(event, remembered))
}

/// Records the revocation and withholds the person's pending deliveries; returns how many.
pub(super) fn revoke(
    tx: &Connection,
    memory: &mut PeopleMemory,
    now: Timestamp,
    r: &Revocation,
) -> Result<u64, TxError> {
    let mut cancelled = 0;
    let reason = format!("consent revoked at {}", r.at);
    for person in &r.people {
        tx.prepare_cached(
            "INSERT INTO revocations (person, at_ms) VALUES (?1, ?2)
             ON CONFLICT (person) DO UPDATE SET at_ms = MAX(at_ms, excluded.at_ms)",
        )?
        .execute(params![person, r.at.millis()])?;
        let latest = memory.revocations.entry(person.clone()).or_insert(i64::MIN);
        *latest = (*latest).max(r.at.millis());
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
