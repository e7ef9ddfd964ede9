//! From raw event JSON to durable store: Segment mapping, browser enrichment, parsing and
//! identity hashing, the tracking plan, quarantine, and one store commit per request.
//!
//! Every door and `tally replay --quarantine` go through here, so an event is judged the same
//! way however it arrived.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tally_core::dedup::{Candidate, MatchedBy};

use crate::body::RawEvent;
use crate::delivery::DeliveryPlanner;
use tally_core::event::SourceKind;
use tally_core::parse::{
    IDENTIFY_EVENT, ParseContext, ParseLimits, parse_event, parse_event_owned, scrub_for_quarantine,
};
use tally_core::plan::TrackingPlan;
use tally_core::segment::{self, CallType};
use tally_core::timestamp::Timestamp;
use tally_core::{Rejection, Warning};
use tally_store::{
    IdentityLink, IngestItem, IngestOutcome, NewQuarantine, QuarantineBody, QuarantineFilter,
    QuarantineRecord, QuarantineStatus, Store, StoreError,
};

/// How the events in a request are shaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// tally's own event format.
    Native,
    /// Segment messages of one call type (`/v1/track`, `/v1/page`, `/v1/identify`).
    Segment(CallType),
    /// Segment `/v1/batch`: each message names its type.
    SegmentBatch,
}

/// Who sent a request, and what the connection tells us about the browser behind it.
#[derive(Clone, Debug)]
pub struct Sender {
    /// Source name.
    pub source: String,
    /// Source kind.
    pub kind: SourceKind,
    /// The browser's IP (browser door only; a backend's own IP is not the customer's).
    pub client_ip: Option<String>,
    /// The browser's user agent (browser door only).
    pub user_agent: Option<String>,
}

/// The answer for one event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventResult {
    /// `accepted`, `duplicate` or `rejected`.
    pub status: &'static str,
    /// The event's ID (generated when the client sent none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Rejection code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Rejection message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For a duplicate matched by business key: the stored event's ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    /// Whether a rejected event was kept in quarantine for replay.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub quarantined: bool,
    /// Non-fatal problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

impl EventResult {
    fn rejected(event_id: Option<String>, r: Rejection, quarantined: bool) -> Self {
        EventResult {
            status: "rejected",
            event_id,
            code: Some(r.code),
            message: Some(r.message),
            duplicate_of: None,
            quarantined,
            warnings: Vec::new(),
        }
    }
}

/// Settings the pipeline needs.
#[derive(Clone)]
pub struct Pipeline {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The tracking plan.
    pub plan: Arc<TrackingPlan>,
    /// Parse bounds.
    pub limits: ParseLimits,
    /// Largest single event, in bytes.
    pub max_event_bytes: usize,
    /// Which destinations new events go to.
    pub delivery: Arc<DeliveryPlanner>,
}

enum Slot {
    Done(EventResult),
    Stored {
        item: usize,
        event_id: String,
        warnings: Vec<Warning>,
    },
}

impl Pipeline {
    /// Judges and stores the events of one request; one result per event, in order. Returns
    /// only after everything accepted is durably committed.
    ///
    /// # Errors
    /// The store's error when nothing could be committed.
    pub async fn ingest(
        &self,
        sender: &Sender,
        events: Vec<RawEvent>,
        format: Format,
        received_at: Timestamp,
    ) -> Result<Vec<EventResult>, StoreError> {
        let mut slots = Vec::with_capacity(events.len());
        let mut items = Vec::with_capacity(events.len());
        for raw in events {
            slots.push(self.judge(sender, raw, format, received_at, &mut items));
        }
        let outcomes = self.store.ingest(received_at, items).await?;
        Ok(slots
            .into_iter()
            .map(|slot| finish(slot, &outcomes))
            .collect())
    }

    fn judge(
        &self,
        sender: &Sender,
        raw: RawEvent,
        format: Format,
        received_at: Timestamp,
        items: &mut Vec<IngestItem>,
    ) -> Slot {
        let RawEvent { len, value } = raw;
        let input_id = value
            .get("event_id")
            .or_else(|| value.get("messageId"))
            .and_then(id_text);
        if len > self.max_event_bytes {
            let r = Rejection::new(
                "event_too_large",
                format!(
                    "the event is {len} bytes; at most {} are accepted",
                    self.max_event_bytes
                ),
            );
            return Slot::Done(EventResult::rejected(input_id, r, false));
        }
        let mut value = match to_native(value, format) {
            Ok(v) => v,
            Err(r) => return Slot::Done(EventResult::rejected(input_id, r, false)),
        };
        if sender.kind == SourceKind::Browser {
            enrich_from_connection(&mut value, sender);
        }
        let ctx = ParseContext {
            source: &sender.source,
            source_kind: sender.kind,
            received_at,
            limits: &self.limits,
        };
        let (parsed, warnings) = match parse_event_owned(value, &ctx) {
            Ok(p) => (p.event, p.warnings),
            Err((rejection, value)) => {
                let (input, identity) = scrub_for_quarantine(&value);
                let name = value
                    .get("event")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                items.push(IngestItem::Quarantine(NewQuarantine {
                    received_at,
                    source: sender.source.clone(),
                    source_kind: sender.kind,
                    event_name: name,
                    event_id: input_id.clone(),
                    rejection: rejection.clone(),
                    body: QuarantineBody::Input { input, identity },
                }));
                return Slot::Done(EventResult::rejected(input_id, rejection, true));
            }
        };
        let event_id = parsed.event_id.clone();
        if parsed.name == IDENTIFY_EVENT {
            items.push(IngestItem::Identify(IdentityLink {
                at: parsed.timestamp,
                source: sender.source.clone(),
                anonymous_id: parsed.user.anonymous_id.clone(),
                external_id: parsed.user.identity.external_id.clone(),
                identity: parsed.user.identity.clone(),
            }));
            return Slot::Stored {
                item: items.len() - 1,
                event_id,
                warnings,
            };
        }
        match self.plan_candidate(parsed) {
            Ok(candidate) => {
                items.push(self.delivery.item(candidate, None, received_at));
                Slot::Stored {
                    item: items.len() - 1,
                    event_id,
                    warnings,
                }
            }
            Err(refused) => {
                let (event, rejection) = *refused;
                items.push(IngestItem::Quarantine(NewQuarantine {
                    received_at,
                    source: sender.source.clone(),
                    source_kind: sender.kind,
                    event_name: Some(event.name.clone()),
                    event_id: Some(event.event_id.clone()),
                    rejection: rejection.clone(),
                    body: QuarantineBody::Event {
                        event: Box::new(event),
                    },
                }));
                Slot::Done(EventResult::rejected(Some(event_id), rejection, true))
            }
        }
    }

    fn plan_candidate(
        &self,
        mut event: tally_core::event::Event,
    ) -> Result<Candidate, Box<(tally_core::event::Event, Rejection)>> {
        match self.plan.check(&mut event) {
            Ok(d) => Ok(Candidate {
                event,
                dedup_value: d.dedup_value,
                event_id_window_ms: d.event_id_window_ms,
                dedup_key_window_ms: d.dedup_key_window_ms,
            }),
            Err(r) => Err(Box::new((event, r))),
        }
    }

    /// Re-runs open quarantine rows matching `filter` through the current plan. Rows that pass
    /// are stored (deduplicated as usual) and marked replayed; the rest stay open with their
    /// current reason.
    ///
    /// # Errors
    /// When the store cannot be read or written.
    pub async fn replay_quarantine(
        &self,
        filter: QuarantineFilter,
        now: Timestamp,
    ) -> Result<ReplaySummary, StoreError> {
        let mut summary = ReplaySummary::default();
        let mut after = filter.after_id;
        loop {
            let page = self
                .store
                .quarantine(QuarantineFilter {
                    status: Some(QuarantineStatus::Open),
                    after_id: after,
                    limit: Some(500),
                    ..filter.clone()
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let items: Vec<IngestItem> =
                page.iter().map(|row| self.replay_item(row, now)).collect();
            let outcomes = self.store.ingest(now, items).await?;
            for (row, outcome) in page.iter().zip(outcomes) {
                summary.examined += 1;
                match outcome {
                    IngestOutcome::Accepted | IngestOutcome::Linked => summary.accepted += 1,
                    IngestOutcome::Duplicate { .. } => summary.duplicates += 1,
                    IngestOutcome::Quarantined { .. } | IngestOutcome::Collision { .. } => {
                        summary.still_quarantined += 1;
                        summary.still_failing_ids.push(row.id);
                    }
                    IngestOutcome::Claimed(_)
                    | IngestOutcome::Settled { .. }
                    | IngestOutcome::Revoked { .. }
                    | IngestOutcome::Erased(_)
                    | IngestOutcome::Live
                    | IngestOutcome::Replayed { .. } => {
                        unreachable!("replay sends no outbox items")
                    }
                }
            }
        }
        Ok(summary)
    }

    fn replay_item(&self, row: &QuarantineRecord, now: Timestamp) -> IngestItem {
        let event = match &row.body {
            QuarantineBody::Event { event } => Ok((**event).clone()),
            QuarantineBody::Input { input, identity } => {
                let ctx = ParseContext {
                    source: &row.source,
                    source_kind: row.source_kind,
                    received_at: row.received_at,
                    limits: &self.limits,
                };
                parse_event(input, &ctx).map(|p| {
                    let mut e = p.event;
                    e.user.identity.fill_from(identity);
                    e
                })
            }
        };
        let candidate = event.and_then(|e| {
            if e.name == IDENTIFY_EVENT {
                return Err(Rejection::new(
                    "identify_not_replayable",
                    "identify calls are not replayed",
                ));
            }
            self.plan_candidate(e).map_err(|refused| refused.1)
        });
        match candidate {
            Ok(candidate) => self.delivery.item(candidate, Some(row.id), now),
            Err(rejection) => IngestItem::Requarantine {
                id: row.id,
                rejection,
            },
        }
    }
}

/// What a quarantine replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// Open rows looked at.
    pub examined: u64,
    /// Stored as new events.
    pub accepted: u64,
    /// Found to be copies of stored events (and merged).
    pub duplicates: u64,
    /// Still failing; kept open.
    pub still_quarantined: u64,
    /// IDs of the rows still failing.
    pub still_failing_ids: Vec<i64>,
}

fn finish(slot: Slot, outcomes: &[IngestOutcome]) -> EventResult {
    let (item, event_id, warnings) = match slot {
        Slot::Done(r) => return r,
        Slot::Stored {
            item,
            event_id,
            warnings,
        } => (item, event_id, warnings),
    };
    let base = EventResult {
        status: "accepted",
        event_id: Some(event_id),
        code: None,
        message: None,
        duplicate_of: None,
        quarantined: false,
        warnings,
    };
    match &outcomes[item] {
        IngestOutcome::Accepted | IngestOutcome::Linked => base,
        IngestOutcome::Duplicate {
            matched_by,
            stored_event_id,
        } => EventResult {
            status: "duplicate",
            duplicate_of: (*matched_by == MatchedBy::DedupKey).then(|| stored_event_id.clone()),
            ..base
        },
        IngestOutcome::Collision { rejection, .. } => EventResult {
            status: "rejected",
            code: Some(rejection.code.clone()),
            message: Some(rejection.message.clone()),
            quarantined: true,
            ..base
        },
        IngestOutcome::Quarantined { .. } => EventResult {
            status: "rejected",
            quarantined: true,
            ..base
        },
        IngestOutcome::Claimed(_)
        | IngestOutcome::Settled { .. }
        | IngestOutcome::Revoked { .. }
        | IngestOutcome::Erased(_)
        | IngestOutcome::Live
        | IngestOutcome::Replayed { .. } => {
            unreachable!("the pipeline sends no outbox items")
        }
    }
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn to_native(value: Value, format: Format) -> Result<Value, Rejection> {
    match format {
        Format::Native => Ok(value),
        Format::Segment(call) => segment::to_event(&value, call),
        Format::SegmentBatch => segment::to_event(&value, CallType::from_message(&value)?),
    }
}

/// Fills the browser's IP and user agent from the request when the event does not carry them.
fn enrich_from_connection(value: &mut Value, sender: &Sender) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    let user = obj
        .entry("user")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(user) = user.as_object_mut() else {
        return;
    };
    for (field, from) in [
        ("ip", &sender.client_ip),
        ("user_agent", &sender.user_agent),
    ] {
        if let Some(v) = from
            && user.get(field).is_none_or(Value::is_null)
        {
            user.insert(field.to_owned(), Value::String(v.clone()));
        }
    }
}
