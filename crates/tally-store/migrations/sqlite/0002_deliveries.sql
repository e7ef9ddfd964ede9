-- The outbox: one delivery per (event, destination), a state machine with rescheduled rows.
-- A dispatcher leases due rows (lease_owner, leased_until_ms) in a short transaction and
-- settles them after its HTTP call; no transaction is held across the call.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    event_rowid     INTEGER NOT NULL,
    destination     TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    not_before_ms   INTEGER NOT NULL,
    deadline_ms     INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    leased_until_ms INTEGER,
    last_reason     TEXT,
    updated_ms      INTEGER NOT NULL
);
CREATE UNIQUE INDEX deliveries_one_per_destination ON deliveries (event_rowid, destination);
CREATE INDEX deliveries_due ON deliveries (destination, not_before_ms) WHERE state = 'pending';

CREATE TABLE delivery_attempts (
    delivery_id INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    status      INTEGER,
    summary     TEXT    NOT NULL,
    PRIMARY KEY (delivery_id, seq)
) WITHOUT ROWID;
