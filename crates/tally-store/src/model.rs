//! What goes into the store and what comes back out: ingest items and outcomes, ledger entries,
//! quarantine records and dedup statistics. Plain data shared by every backend.

use serde::{Deserialize, Serialize};
use tally_core::dedup::{Candidate, MatchedBy};
use tally_core::event::{Consent, Event, SourceKind};
use tally_core::identity::HashedIdentity;
use tally_core::rejection::Rejection;
use tally_core::retry::Next;
use tally_core::timestamp::Timestamp;

/// One unit of work in an [`crate::Store::ingest`] call. Items of one call commit together.
#[derive(Clone, Debug)]
// Events are nearly every item; boxing them would cost an allocation each to shrink rare variants.
#[allow(clippy::large_enum_variant)]
pub enum IngestItem {
    /// A planned event: deduplicate, merge or insert.
    Event {
        /// The event and its dedup keys.
        candidate: Candidate,
        /// The quarantine row this is a replay of; resolved in the same transaction on success.
        replay_of: Option<i64>,
        /// The event's storage encoding, made by the caller so the single writer does not.
        encoded: String,
        /// Deliveries to create if this copy is stored as a new event (a duplicate creates
        /// none: the existing deliveries send the merged event).
        deliveries: Vec<PlannedDelivery>,
        /// Remember this copy's click IDs for its visitor until then (`None`: do not).
        click_ids_until: Option<Timestamp>,
    },
    /// A person revoked consent: cancel their pending deliveries and withhold deliveries of
    /// their events from before `at` that arrive later.
    Revoke(Revocation),
    /// Right to erasure: remove a person's events, identifiers and deliveries.
    Erase(Erasure),
    /// Put stopped deliveries back in the queue after a fix.
    Replay(ReplayFilter),
    /// Lease up to `limit` due deliveries of one destination to `owner` until `lease_until`.
    Claim {
        /// Destination name.
        destination: String,
        /// Who claims (a dispatcher instance).
        owner: String,
        /// When the lease ends if not settled; then anyone may claim the delivery again.
        lease_until: Timestamp,
        /// Most deliveries to lease.
        limit: u32,
        /// Lease live (non-test) deliveries only once the destination is live.
        gated: bool,
    },
    /// Declare a destination live: its live deliveries may go out (a test conversion passed).
    GoLive {
        /// Destination name.
        destination: String,
        /// Why (which test conversion, or who).
        note: String,
    },
    /// Record an attempt's result for a delivery leased by `owner`.
    Settle(Settlement),
    /// A refused event to keep in quarantine.
    Quarantine(NewQuarantine),
    /// A replayed quarantine row that still fails: its reason is updated, it stays open.
    Requarantine {
        /// Quarantine row ID.
        id: i64,
        /// The new reason.
        rejection: Rejection,
    },
    /// An `identify` call linking an anonymous visitor to a user.
    Identify(IdentityLink),
}

impl IngestItem {
    /// An event item, encoded for storage.
    pub fn event(candidate: Candidate, replay_of: Option<i64>) -> IngestItem {
        let encoded = serde_json::to_string(&candidate.event)
            .expect("an Event has only string map keys, so it always serialises");
        IngestItem::Event {
            candidate,
            replay_of,
            encoded,
            deliveries: Vec::new(),
            click_ids_until: None,
        }
    }

    /// Remembers the event's click IDs for its visitor (anonymous ID and external ID) until
    /// `until`, so later events of that visitor get them attached.
    pub fn remember_click_ids_until(mut self, until: Timestamp) -> IngestItem {
        if let IngestItem::Event {
            click_ids_until, ..
        } = &mut self
        {
            *click_ids_until = Some(until);
        }
        self
    }

    /// Adds the deliveries an event item creates when it is stored as new.
    pub fn with_deliveries(mut self, planned: Vec<PlannedDelivery>) -> IngestItem {
        if let IngestItem::Event { deliveries, .. } = &mut self {
            *deliveries = planned;
        }
        self
    }
}

/// A delivery to create with a new event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedDelivery {
    /// Destination name.
    pub destination: String,
    /// First attempt no earlier than this (the merge join window).
    pub not_before: Timestamp,
    /// The platform's last accepted moment for this event; later, the delivery dead-letters.
    pub deadline: Timestamp,
    /// Goes out in the platform's test mode (a test event, or a destination in test mode).
    pub test: bool,
}

/// A delivery leased to a dispatcher, with the merged event to send.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedDelivery {
    /// Delivery ID.
    pub delivery_id: i64,
    /// Destination name.
    pub destination: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// The platform's deadline for this event.
    pub deadline: Timestamp,
    /// The event as merged so far.
    pub event: Event,
}

/// The result of one attempt, to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// Delivery ID.
    pub delivery_id: i64,
    /// The lease holder; a settlement from anyone else (an expired lease) is ignored.
    pub owner: String,
    /// What happens next.
    pub next: Next,
    /// The attempt.
    pub attempt: AttemptRecord,
}

/// One attempt, as the ledger shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// When.
    pub at: Timestamp,
    /// `succeeded`, `retry`, `dead` or `needs_fix`.
    pub outcome: String,
    /// HTTP status, when there was a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// A short summary of the request and response.
    pub summary: String,
    /// The consent the attempt was made (or withheld) under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<String>,
}

/// A consent revocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// Every key the person may be found by (see [`person_keys`]).
    pub people: Vec<String>,
    /// When consent was revoked.
    pub at: Timestamp,
}

/// A right-to-erasure request (see [`crate::Store::erase`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erasure {
    /// The keys the person is named by (see [`person_keys`]); the search starts here.
    pub people: Vec<String>,
    /// At most this many search rounds (each one scan of `event_people` and one identity-link
    /// lookup) when following keys from event to event; [`ERASE_MAX_ROUNDS`] by default.
    pub max_rounds: u32,
    /// Find and count, but remove nothing.
    pub dry_run: bool,
}

/// Default bound on an erasure's search rounds: enough for a person seen on several devices
/// and identified on each, short of walking a shared device's whole household.
pub const ERASE_MAX_ROUNDS: u32 = 8;

/// Deliveries by state, as an erasure found them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryCounts {
    /// Waiting for their first attempt.
    pub pending: u64,
    /// Pending after at least one failed attempt.
    pub retrying: u64,
    /// Accepted by the platform (the platform keeps its copy; tally's goes).
    pub delivered: u64,
    /// Given up.
    pub dead: u64,
    /// Waiting for a fix.
    pub needs_fix: u64,
    /// Withheld for consent.
    pub withheld: u64,
    /// Leased by a dispatcher at the moment of erasure: the attempt in flight may still reach
    /// the platform, but its result is discarded and nothing is tried again.
    pub in_flight: u64,
}

/// What an erasure removed (or, for a dry run, would remove). Holds no raw identifier: the
/// keys are shown as [`erasure_key_digest`]s.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReport {
    /// Nothing was removed: the counts say what an erasure would remove.
    pub dry_run: bool,
    /// Every key the person was found by, as digests, sorted.
    pub keys_searched: Vec<String>,
    /// Search rounds run.
    pub rounds: u32,
    /// False when the last round still found new keys or events: the search stopped at its
    /// bound, and events reachable only through further links were left.
    pub complete: bool,
    /// Events removed (with their merged bodies).
    pub events: u64,
    /// Later copies of those events removed.
    pub copies: u64,
    /// Event ID aliases of those events removed.
    pub aliases: u64,
    /// `event_people` rows removed.
    pub person_keys: u64,
    /// Deliveries of those events removed, by state.
    pub deliveries: DeliveryCounts,
    /// Delivery attempts removed.
    pub attempts: u64,
    /// Quarantine rows about the person removed.
    pub quarantine: u64,
    /// Remembered click IDs of the person's visitor keys removed.
    pub click_memories: u64,
    /// Identity links (identify calls) removed.
    pub identity_links: u64,
    /// Revocations of the person's keys kept (a record of their wish: later events about them
    /// from before the revocation stay withheld).
    pub revocations_kept: u64,
}

/// How an erasure report shows a person key without the identifier in it: `anon:` and `ext:`
/// keys with their ID replaced by its SHA-256; `em:` and `ph:` keys, already hashes, as they are.
pub fn erasure_key_digest(key: &str) -> String {
    match key.split_once(':') {
        Some((kind @ ("em" | "ph"), hash)) => format!("{kind}:{hash}"),
        Some((kind, id)) => format!("{kind}:{}", tally_core::identity::sha256_hex(id)),
        None => tally_core::identity::sha256_hex(key),
    }
}

/// Which stopped deliveries to put back in the queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    /// Only this destination.
    pub destination: Option<String>,
    /// Only deliveries of this event (by event ID).
    pub event_id: Option<String>,
    /// Only events that happened at or after this time.
    pub since: Option<Timestamp>,
    /// Only events that happened before this time.
    pub until: Option<Timestamp>,
    /// Also deliveries withheld for consent (normally a withheld delivery stays withheld).
    pub include_withheld: bool,
}

/// Keys a person's events are found by: `anon:<anonymous id>`, `ext:<external id>`,
/// `em:<email sha256>`, `ph:<phone sha256, digits form>`.
pub fn person_keys(user: &tally_core::event::User) -> Vec<String> {
    let id = &user.identity;
    let mut keys = Vec::new();
    if let Some(a) = &user.anonymous_id {
        keys.push(format!("anon:{a}"));
    }
    if let Some(x) = &id.external_id {
        keys.push(format!("ext:{x}"));
    }
    if let Some(e) = &id.email_sha256 {
        keys.push(format!("em:{e}"));
    }
    if let Some(p) = &id.phone_digits_sha256 {
        keys.push(format!("ph:{p}"));
    }
    keys
}

/// Deliveries of one destination by state (the destinations overview; `withheld` is the
/// consent gap).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationStats {
    /// Destination name.
    pub destination: String,
    /// Waiting for an attempt.
    pub pending: u64,
    /// Accepted by the platform.
    pub delivered: u64,
    /// Given up.
    pub dead: u64,
    /// Waiting for a fix and a replay.
    pub needs_fix: u64,
    /// Not sent for lack of consent.
    pub withheld: u64,
    /// Since when live events go out (`None`: only test events until a test conversion passes,
    /// unless the destination does not require one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_since: Option<Timestamp>,
}

/// One delivery in a listing (dead letters, needs-fix).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverySummary {
    /// The event's ID.
    pub event_id: String,
    /// The event's name.
    pub event_name: String,
    /// When the event happened.
    pub event_time: Timestamp,
    /// Destination name.
    pub destination: String,
    /// State.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// Why it stopped (or the last retry reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<String>,
    /// Last change.
    pub updated: Timestamp,
}

/// Delivery state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// Accepted by the platform.
    Delivered,
    /// Given up: refused for good, or past the platform's deadline.
    Dead,
    /// Waiting for a configuration fix and a replay.
    NeedsFix,
    /// Not sent: the consent it needs was not given, or was revoked.
    Withheld,
}

impl DeliveryState {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
            DeliveryState::NeedsFix => "needs_fix",
            DeliveryState::Withheld => "withheld",
        }
    }

    /// Reads a storage name.
    pub fn parse(s: &str) -> Option<DeliveryState> {
        Some(match s {
            "pending" => DeliveryState::Pending,
            "delivered" => DeliveryState::Delivered,
            "dead" => DeliveryState::Dead,
            "needs_fix" => DeliveryState::NeedsFix,
            "withheld" => DeliveryState::Withheld,
            _ => return None,
        })
    }
}

/// One delivery in the ledger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Destination name.
    pub destination: String,
    /// State.
    pub state: DeliveryState,
    /// Next attempt no earlier than this (while pending).
    pub not_before: Timestamp,
    /// The platform's deadline.
    pub deadline: Timestamp,
    /// Why it is dead or needs a fix, or the last retry reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<String>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// The answer for one [`IngestItem`], in the same position.
#[derive(Clone, Debug, PartialEq)]
pub enum IngestOutcome {
    /// Stored as a new event.
    Accepted,
    /// A copy of an already stored event; merged into it.
    Duplicate {
        /// How it was matched.
        matched_by: MatchedBy,
        /// The stored event's ID (differs from the copy's when matched by business key).
        stored_event_id: String,
    },
    /// The event ID is in use for a different business action: quarantined.
    Collision {
        /// Quarantine row ID.
        quarantine_id: i64,
        /// Why, for the client.
        rejection: Rejection,
    },
    /// Kept in quarantine (for `Quarantine` and `Requarantine` items).
    Quarantined {
        /// Quarantine row ID.
        quarantine_id: i64,
    },
    /// Identity link recorded.
    Linked,
    /// Deliveries leased (for a `Claim` item).
    Claimed(Vec<ClaimedDelivery>),
    /// A destination was declared live.
    Live,
    /// A revocation's effect.
    Revoked {
        /// Pending deliveries cancelled.
        cancelled: u64,
    },
    /// An erasure's effect.
    Erased(ErasureReport),
    /// A replay's effect.
    Replayed {
        /// Deliveries put back in the queue.
        requeued: u64,
        /// Deliveries left alone because the platform's deadline has passed.
        expired: u64,
    },
    /// Whether a settlement was applied (false: the lease was no longer the settler's).
    Settled {
        /// Applied.
        applied: bool,
    },
}

/// A refused event, without raw contact data.
#[derive(Clone, Debug, PartialEq)]
pub struct NewQuarantine {
    /// When it arrived.
    pub received_at: Timestamp,
    /// Source name.
    pub source: String,
    /// Source kind.
    pub source_kind: SourceKind,
    /// Event name, when it had one.
    pub event_name: Option<String>,
    /// Event ID, when it had one.
    pub event_id: Option<String>,
    /// Why it was refused.
    pub rejection: Rejection,
    /// What to replay.
    pub body: QuarantineBody,
}

/// What a quarantine row keeps for replay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // quarantine is a cold path
pub enum QuarantineBody {
    /// The event parsed but failed the plan or dedup: the canonical event.
    Event {
        /// The parsed event.
        event: Box<Event>,
    },
    /// The event did not parse: the input with contact data removed, and that data hashed.
    Input {
        /// Scrubbed input object (tally's event format).
        input: serde_json::Value,
        /// Hashed identity taken out of it.
        identity: HashedIdentity,
    },
}

/// An `identify` call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityLink {
    /// When.
    pub at: Timestamp,
    /// Source name.
    pub source: String,
    /// The visitor.
    pub anonymous_id: Option<String>,
    /// The user (advertiser's ID).
    pub external_id: Option<String>,
    /// Hashed traits.
    pub identity: HashedIdentity,
}

/// Quarantine row state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineStatus {
    /// Waiting for a plan fix and a replay.
    Open,
    /// Replayed and accepted (or found to be a duplicate).
    Replayed,
}

impl QuarantineStatus {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineStatus::Open => "open",
            QuarantineStatus::Replayed => "replayed",
        }
    }
}

/// A quarantine row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    /// Row ID.
    pub id: i64,
    /// When it arrived.
    pub received_at: Timestamp,
    /// Source name.
    pub source: String,
    /// Source kind.
    pub source_kind: SourceKind,
    /// Event name, when known.
    pub event_name: Option<String>,
    /// Event ID, when known.
    pub event_id: Option<String>,
    /// Reason code.
    pub code: String,
    /// Reason message.
    pub message: String,
    /// Open or replayed.
    pub status: QuarantineStatus,
    /// When it was replayed successfully.
    pub replayed_at: Option<Timestamp>,
    /// What to replay.
    pub body: QuarantineBody,
}

/// Which quarantine rows to list.
#[derive(Clone, Debug, Default)]
pub struct QuarantineFilter {
    /// Only rows in this state.
    pub status: Option<QuarantineStatus>,
    /// Only rows with this reason code.
    pub code: Option<String>,
    /// Only rows for this event name.
    pub event_name: Option<String>,
    /// Only rows with an ID greater than this (paging).
    pub after_id: Option<i64>,
    /// At most this many rows (default 100).
    pub limit: Option<u32>,
}

/// One copy of an event as received, for the ledger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CopyRecord {
    /// The copy's own event ID.
    pub event_id: String,
    /// Source name.
    pub source: String,
    /// Source kind.
    pub source_kind: SourceKind,
    /// When it arrived.
    pub received_at: Timestamp,
    /// `accepted` for the first copy, `duplicate` for the others.
    pub outcome: String,
    /// How a duplicate was matched.
    pub matched_by: Option<MatchedBy>,
    /// Fields this copy added to or changed in the merged event.
    pub contributed: Vec<String>,
    /// A browser copy of the same action under another event ID (tag installed twice).
    pub ghost: bool,
    /// The consent state this copy carried.
    pub consent: Consent,
}

/// Everything known about one stored event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The merged event.
    pub event: Event,
    /// Its business dedup key value.
    pub dedup_value: Option<String>,
    /// When the first copy arrived.
    pub first_seen: Timestamp,
    /// Every copy, in arrival order.
    pub copies: Vec<CopyRecord>,
    /// One delivery per destination, with its attempts.
    pub deliveries: Vec<DeliveryRecord>,
}

/// Dedup figures for one event name since a point in time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDedupStats {
    /// Event name.
    pub event: String,
    /// Distinct events stored.
    pub events: u64,
    /// Copies received (first copies included).
    pub copies: u64,
    /// Duplicates recognised by `(event, event_id)`.
    pub duplicates_by_event_id: u64,
    /// Duplicates recognised by the business key.
    pub duplicates_by_dedup_key: u64,
    /// Browser copies of one action with different event IDs.
    pub ghost_duplicates: u64,
    /// Event IDs reused for a different business action (quarantined).
    pub key_collisions: u64,
    /// Duplicates per (first copy's source, duplicate's source).
    pub by_source_pair: Vec<SourcePairStats>,
}

/// Duplicates between two sources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePairStats {
    /// Source of the first copy.
    pub first: String,
    /// Source of the duplicate.
    pub duplicate: String,
    /// How many.
    pub count: u64,
}
