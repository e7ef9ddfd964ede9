-- Who an event is about, by every key it can be found by (anon:<anonymous id>, ext:<external id>,
-- em:<email sha256>, ph:<phone sha256>), for consent revocation and erasure.
CREATE TABLE event_people (
    person      TEXT    NOT NULL,
    event_rowid INTEGER NOT NULL,
    PRIMARY KEY (person, event_rowid)
) WITHOUT ROWID;

-- Click IDs and ad cookies remembered per visitor (anon:/ext: keys) with their click time, so a
-- later server or CRM event for the same visitor carries them too.
CREATE TABLE visitor_click_ids (
    visitor    TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    clicked_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (visitor, kind)
) WITHOUT ROWID;

-- A person's consent revocation: events about them from before it are not delivered.
CREATE TABLE revocations (
    person TEXT    NOT NULL PRIMARY KEY,
    at_ms  INTEGER NOT NULL
) WITHOUT ROWID;

-- The consent each attempt was made (or withheld) under, for the audit trail.
ALTER TABLE delivery_attempts ADD COLUMN consent TEXT;

CREATE INDEX deliveries_by_state ON deliveries (state, destination);
