-- Person keys become an append-only log without an index: writing four random-key index
-- entries per new event halved ingest throughput, while the lookups (a revocation, an erasure)
-- are rare admin actions that can afford a scan.
CREATE TABLE event_people_log (
    event_rowid INTEGER NOT NULL,
    person      TEXT    NOT NULL
);
INSERT INTO event_people_log (event_rowid, person) SELECT event_rowid, person FROM event_people;
DROP TABLE event_people;
ALTER TABLE event_people_log RENAME TO event_people;
