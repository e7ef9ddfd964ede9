-- The tag container: one mutable draft per container and its published versions, numbered
-- 1, 2, ... per container and never changed once written (the triggers refuse it). The live
-- version is the newest one; a rollback publishes an earlier version's document again.
CREATE TABLE container_drafts (
    container  TEXT PRIMARY KEY,
    document   TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);

CREATE TABLE container_versions (
    container    TEXT NOT NULL,
    version      INTEGER NOT NULL,
    document     TEXT NOT NULL,
    note         TEXT NOT NULL,
    published_ms INTEGER NOT NULL,
    copied_from  INTEGER,
    PRIMARY KEY (container, version)
) WITHOUT ROWID;

CREATE TRIGGER container_versions_no_update BEFORE UPDATE ON container_versions
BEGIN SELECT RAISE(ABORT, 'container versions are immutable'); END;

CREATE TRIGGER container_versions_no_delete BEFORE DELETE ON container_versions
BEGIN SELECT RAISE(ABORT, 'container versions are immutable'); END;
