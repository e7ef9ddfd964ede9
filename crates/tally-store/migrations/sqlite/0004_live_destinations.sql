-- A new destination receives only test events until a test conversion through it passed
-- (or an operator declared it live); live deliveries wait, visible as pending.
ALTER TABLE deliveries ADD COLUMN test INTEGER NOT NULL DEFAULT 0;

CREATE TABLE live_destinations (
    destination TEXT    NOT NULL PRIMARY KEY,
    since_ms    INTEGER NOT NULL,
    note        TEXT    NOT NULL
) WITHOUT ROWID;
