-- The PostgreSQL schema, mirroring SQLite's (migrations/sqlite/0001-0005) table for table, so
-- the two backends answer the same queries the same way. Times are Unix milliseconds.

-- Events: one row per distinct action, holding the merged canonical event as JSON text (text,
-- not jsonb: money keeps its exact decimal digits). Dedup windows are implemented with epochs:
-- a key seen again after its window gets the next epoch, so the unique indexes stay absolute
-- while the windows stay configurable. The unique indexes are what make dedup correct across
-- nodes: a second concurrent insert of one key waits for the first and then conflicts.
CREATE TABLE events (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    id_epoch      INTEGER NOT NULL DEFAULT 0,
    dedup_value   TEXT,
    key_epoch     INTEGER NOT NULL DEFAULT 0,
    first_seen_ms BIGINT  NOT NULL,
    event_time_ms BIGINT  NOT NULL,
    has_browser   BOOLEAN NOT NULL,
    -- The first copy, which is not repeated in `copies`.
    source        TEXT    NOT NULL,
    source_kind   TEXT    NOT NULL,
    first_consent TEXT    NOT NULL,
    body          TEXT    NOT NULL
);
CREATE UNIQUE INDEX events_by_event_id ON events (event_id, name, id_epoch);
CREATE UNIQUE INDEX events_by_dedup_key ON events (name, dedup_value, key_epoch)
    WHERE dedup_value IS NOT NULL;
-- Rows arrive roughly in time order, so a block-range index finds "since" cheaply and costs
-- next to nothing per insert (dedup statistics).
CREATE INDEX events_by_first_seen ON events USING brin (first_seen_ms);

-- Every later copy of an event (seq from 1; the first copy is described by its events row).
CREATE TABLE copies (
    event_rowid BIGINT   NOT NULL,
    seq         INTEGER  NOT NULL,
    event_id    TEXT     NOT NULL,
    source      TEXT     NOT NULL,
    source_kind TEXT     NOT NULL,
    received_ms BIGINT   NOT NULL,
    matched_by  TEXT     NOT NULL,
    contributed TEXT     NOT NULL,
    ghost       BOOLEAN  NOT NULL,
    consent     TEXT     NOT NULL,
    PRIMARY KEY (event_rowid, seq)
);
CREATE INDEX copies_by_received ON copies USING brin (received_ms);

-- Event IDs of duplicates matched by business key, so the ledger finds them too.
CREATE TABLE event_aliases (
    event_id    TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    event_rowid BIGINT NOT NULL,
    PRIMARY KEY (event_id, name, event_rowid)
);

CREATE TABLE quarantine (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_ms BIGINT NOT NULL,
    source      TEXT   NOT NULL,
    source_kind TEXT   NOT NULL,
    event_name  TEXT,
    event_id    TEXT,
    code        TEXT   NOT NULL,
    message     TEXT   NOT NULL,
    status      TEXT   NOT NULL,
    replayed_ms BIGINT,
    body        TEXT   NOT NULL
);
CREATE INDEX quarantine_by_status ON quarantine (status, id);

CREATE TABLE identity_links (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms        BIGINT NOT NULL,
    source       TEXT   NOT NULL,
    anonymous_id TEXT,
    external_id  TEXT,
    identity     TEXT   NOT NULL
);
CREATE INDEX identity_links_by_anonymous_id ON identity_links (anonymous_id) WHERE anonymous_id IS NOT NULL;
CREATE INDEX identity_links_by_external_id ON identity_links (external_id) WHERE external_id IS NOT NULL;

-- The outbox: one delivery per (event, destination), a state machine with rescheduled rows.
-- A dispatcher leases due rows (lease_owner, leased_until_ms) in a short transaction that
-- skips rows another node is leasing right now (FOR UPDATE SKIP LOCKED) and settles them
-- after its HTTP call; no transaction is held across the call.
CREATE TABLE deliveries (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_rowid     BIGINT  NOT NULL,
    destination     TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    not_before_ms   BIGINT  NOT NULL,
    deadline_ms     BIGINT  NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    leased_until_ms BIGINT,
    last_reason     TEXT,
    updated_ms      BIGINT  NOT NULL,
    -- A new destination receives only test events until a test conversion through it passed
    -- (or an operator declared it live); live deliveries wait, visible as pending.
    test            BOOLEAN NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX deliveries_one_per_destination ON deliveries (event_rowid, destination);
CREATE INDEX deliveries_due ON deliveries (destination, not_before_ms) WHERE state = 'pending';
CREATE INDEX deliveries_by_state ON deliveries (state, destination);

CREATE TABLE delivery_attempts (
    delivery_id BIGINT  NOT NULL,
    seq         INTEGER NOT NULL,
    at_ms       BIGINT  NOT NULL,
    outcome     TEXT    NOT NULL,
    status      INTEGER,
    summary     TEXT    NOT NULL,
    -- The consent the attempt was made (or withheld) under, for the audit trail.
    consent     TEXT,
    PRIMARY KEY (delivery_id, seq)
);

CREATE TABLE live_destinations (
    destination TEXT   NOT NULL PRIMARY KEY,
    since_ms    BIGINT NOT NULL,
    note        TEXT   NOT NULL
);

-- Who an event is about, by every key it can be found by (anon:<anonymous id>, ext:<external
-- id>, em:<email sha256>, ph:<phone sha256>), for consent revocation and erasure. An
-- append-only log without an index, as in SQLite: the lookups are rare admin actions that can
-- afford a scan, while an index would cost four random-key entries per new event.
CREATE TABLE event_people (
    event_rowid BIGINT NOT NULL,
    person      TEXT   NOT NULL
);

-- Click IDs and ad cookies remembered per visitor (anon:/ext: keys) with their click time, so a
-- later server or CRM event for the same visitor carries them too.
CREATE TABLE visitor_click_ids (
    visitor    TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    value      TEXT   NOT NULL,
    clicked_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (visitor, kind)
);

-- A person's consent revocation: events about them from before it are not delivered.
CREATE TABLE revocations (
    person TEXT   NOT NULL PRIMARY KEY,
    at_ms  BIGINT NOT NULL
);
