-- Contact-list imports (CSV). A run records how far it has committed, so a killed import of
-- the same file resumes there; `import_seen` is the run's list of NHS numbers met so far (with
-- the row each was first met at), which finds repeats in a file of any size without holding
-- it in memory, and tells a `replace` import whom the file named.

ALTER TABLE patients ADD COLUMN landline TEXT;
-- ISO 8601 date, YYYY-MM-DD.
ALTER TABLE patients ADD COLUMN date_of_birth TEXT;

CREATE TABLE import_runs (
    id          INTEGER PRIMARY KEY,
    practice_id INTEGER NOT NULL REFERENCES practices (id),
    -- SHA-256 of the import settings and the file's bytes; NULL for a streamed upload, which
    -- is never resumed (sending it again gives the same result, being idempotent).
    fingerprint TEXT,
    mode        TEXT    NOT NULL CHECK (mode IN ('merge', 'replace')),
    state       TEXT    NOT NULL CHECK (state IN ('running', 'completed', 'rejected', 'abandoned')),
    -- The last file row (header = 1) whose batch is committed.
    through_row INTEGER NOT NULL DEFAULT 1,
    created     INTEGER NOT NULL DEFAULT 0,
    updated     INTEGER NOT NULL DEFAULT 0,
    unchanged   INTEGER NOT NULL DEFAULT 0,
    deactivated INTEGER NOT NULL DEFAULT 0,
    started_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    finished_at INTEGER
);

CREATE INDEX import_runs_running ON import_runs (practice_id, fingerprint) WHERE state = 'running';

CREATE TABLE import_seen (
    run_id     INTEGER NOT NULL REFERENCES import_runs (id),
    nhs_number TEXT    NOT NULL,
    first_row  INTEGER NOT NULL,
    PRIMARY KEY (run_id, nhs_number)
) WITHOUT ROWID;
