-- Several gateway instances on one database: each registers here and beats every
-- `[cluster] heartbeat_seconds`; one without a recent beat is dead, left out of the count
-- the dispatching instances divide each provider's rate by, and removed by the leader.
-- `is_leader` marks the instance holding the leader's advisory lock (for operators: the lock
-- itself is what decides).
CREATE TABLE instances (
    id           TEXT        PRIMARY KEY,
    role         TEXT        NOT NULL CHECK (role IN ('all', 'api', 'worker')),
    dispatches   BOOLEAN     NOT NULL,
    host         TEXT        NOT NULL,
    pid          INTEGER     NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    is_leader    BOOLEAN     NOT NULL DEFAULT FALSE
);

-- Each patient's daily cap on non-urgent messages as a GCRA state (the theoretical arrival
-- time of their next message), shared by every instance. A row whose time has passed says
-- nothing a missing row would not; the leader deletes those.
CREATE TABLE patient_quota (
    patient_id BIGINT      PRIMARY KEY,
    tat        TIMESTAMPTZ NOT NULL
);

-- Retention: after `[retention] days` a final message's wording and address are blanked and
-- `purged_at` set; its state, attempts, receipts and the audit trail stay.
ALTER TABLE messages ADD COLUMN purged_at TIMESTAMPTZ;
CREATE INDEX messages_unpurged ON messages (created_at) WHERE purged_at IS NULL;
