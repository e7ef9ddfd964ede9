-- The tag container: one mutable draft per container and its published versions, numbered
-- 1, 2, ... per container and never changed once written (the trigger refuses it). The live
-- version is the newest one; a rollback publishes an earlier version's document again.
CREATE TABLE container_drafts (
    container  TEXT PRIMARY KEY,
    document   TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE container_versions (
    container    TEXT NOT NULL,
    version      BIGINT NOT NULL,
    document     TEXT NOT NULL,
    note         TEXT NOT NULL,
    published_ms BIGINT NOT NULL,
    copied_from  BIGINT,
    PRIMARY KEY (container, version)
);

CREATE FUNCTION container_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'container versions are immutable';
END
$$;

CREATE TRIGGER container_versions_immutable BEFORE UPDATE OR DELETE ON container_versions
FOR EACH ROW EXECUTE FUNCTION container_versions_immutable();
