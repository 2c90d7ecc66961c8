-- Instances registered with a heartbeat, the shared per-patient cap state, and retention
-- (see the PostgreSQL migration of the same number). SQLite serves one process, so here
-- the table only ever holds that process, which always leads.
CREATE TABLE instances (
    id           TEXT    PRIMARY KEY,
    role         TEXT    NOT NULL CHECK (role IN ('all', 'api', 'worker')),
    dispatches   INTEGER NOT NULL,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    is_leader    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE patient_quota (
    patient_id INTEGER PRIMARY KEY,
    tat        INTEGER NOT NULL
);

ALTER TABLE messages ADD COLUMN purged_at INTEGER;
CREATE INDEX messages_unpurged ON messages (created_at) WHERE purged_at IS NULL;
