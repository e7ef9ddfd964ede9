-- Events: one row per distinct action, holding the merged canonical event as JSON.
-- Dedup windows are implemented with epochs: a key seen again after its window gets the next
-- epoch, so the unique indexes stay absolute while the windows stay configurable.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    id_epoch      INTEGER NOT NULL DEFAULT 0,
    dedup_value   TEXT,
    key_epoch     INTEGER NOT NULL DEFAULT 0,
    first_seen_ms INTEGER NOT NULL,
    event_time_ms INTEGER NOT NULL,
    has_browser   INTEGER NOT NULL,
    -- The first copy, which is not repeated in `copies`.
    source        TEXT    NOT NULL,
    source_kind   TEXT    NOT NULL,
    first_consent TEXT    NOT NULL,
    body          TEXT    NOT NULL
);
CREATE UNIQUE INDEX events_by_event_id ON events (event_id, name, id_epoch);
CREATE UNIQUE INDEX events_by_dedup_key ON events (name, dedup_value, key_epoch)
    WHERE dedup_value IS NOT NULL;

-- Every later copy of an event (seq from 1; the first copy is described by its events row).
CREATE TABLE copies (
    event_rowid INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    event_id    TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    source_kind TEXT    NOT NULL,
    received_ms INTEGER NOT NULL,
    matched_by  TEXT    NOT NULL,
    contributed TEXT    NOT NULL,
    ghost       INTEGER NOT NULL,
    consent     TEXT    NOT NULL,
    PRIMARY KEY (event_rowid, seq)
) WITHOUT ROWID;

-- Event IDs of duplicates matched by business key, so the ledger finds them too.
CREATE TABLE event_aliases (
    event_id    TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    event_rowid INTEGER NOT NULL,
    PRIMARY KEY (event_id, name, event_rowid)
) WITHOUT ROWID;

CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    source_kind TEXT    NOT NULL,
    event_name  TEXT,
    event_id    TEXT,
    code        TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    replayed_ms INTEGER,
    body        TEXT    NOT NULL
);
CREATE INDEX quarantine_by_status ON quarantine (status, id);

CREATE TABLE identity_links (
    id           INTEGER PRIMARY KEY,
    at_ms        INTEGER NOT NULL,
    source       TEXT    NOT NULL,
    anonymous_id TEXT,
    external_id  TEXT,
    identity     TEXT    NOT NULL
);
CREATE INDEX identity_links_by_anonymous_id ON identity_links (anonymous_id) WHERE anonymous_id IS NOT NULL;
CREATE INDEX identity_links_by_external_id ON identity_links (external_id) WHERE external_id IS NOT NULL;
