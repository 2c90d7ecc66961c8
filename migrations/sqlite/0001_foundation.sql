-- The foundation schema on SQLite. Times are INTEGER milliseconds since the Unix epoch (UTC):
-- SQLite has no timestamp type, and integers compare and index cheaply.

CREATE TABLE practices (
    id            INTEGER PRIMARY KEY,
    ods_code      TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    phone         TEXT,
    website       TEXT,
    timezone      TEXT    NOT NULL DEFAULT 'Europe/London',
    channel_order TEXT    NOT NULL DEFAULT 'sms,email,push',
    created_at    INTEGER NOT NULL
);

CREATE TABLE patients (
    id                INTEGER PRIMARY KEY,
    practice_id       INTEGER NOT NULL REFERENCES practices (id),
    nhs_number        TEXT    NOT NULL,
    given_name        TEXT,
    family_name       TEXT,
    preferred_channel TEXT,
    language          TEXT    NOT NULL DEFAULT 'en',
    active            INTEGER NOT NULL DEFAULT 1,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (practice_id, nhs_number)
);

-- One row per way of reaching a patient. Opt-outs live here: they belong to the address.
CREATE INDEX patients_by_practice ON patients (practice_id, id);

CREATE TABLE contacts (
    id               INTEGER PRIMARY KEY,
    patient_id       INTEGER NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    channel          TEXT    NOT NULL,
    address          TEXT    NOT NULL,
    push_p256dh      TEXT,
    push_auth        TEXT,
    opted_out_at     INTEGER,
    bad_recipient_at INTEGER,
    created_at       INTEGER NOT NULL,
    UNIQUE (patient_id, channel, address)
);

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    key_hash    TEXT    NOT NULL UNIQUE,
    prefix      TEXT    NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'practice')),
    practice_id INTEGER REFERENCES practices (id),
    label       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE status_changes (
    id           INTEGER PRIMARY KEY,
    practice_id  INTEGER NOT NULL REFERENCES practices (id),
    kind         TEXT    NOT NULL,
    headline     TEXT    NOT NULL,
    details      TEXT,
    starts_at    INTEGER,
    ends_at      INTEGER,
    created_by   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);

-- A broadcast is the fan-out of one trigger. `fanout_done_at` is NULL until every
-- eligible patient has a message; an unfinished fan-out is resumed at start.
CREATE TABLE broadcasts (
    id               INTEGER PRIMARY KEY,
    practice_id      INTEGER NOT NULL REFERENCES practices (id),
    status_change_id INTEGER REFERENCES status_changes (id),
    created_at       INTEGER NOT NULL,
    fanout_done_at   INTEGER,
    skipped_no_contact INTEGER NOT NULL DEFAULT 0
);

-- The outbox: everything a patient will receive is written here before it is sent.
CREATE TABLE messages (
    id               INTEGER PRIMARY KEY,
    idempotency_key  TEXT    NOT NULL UNIQUE,
    broadcast_id     INTEGER REFERENCES broadcasts (id),
    practice_id      INTEGER NOT NULL REFERENCES practices (id),
    patient_id       INTEGER NOT NULL REFERENCES patients (id),
    contact_id       INTEGER REFERENCES contacts (id) ON DELETE SET NULL,
    channel          TEXT    NOT NULL,
    address          TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    template_key     TEXT    NOT NULL,
    template_version INTEGER NOT NULL,
    subject          TEXT,
    body             TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    provider         TEXT,
    provider_ref     TEXT,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE INDEX messages_due ON messages (priority, next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX messages_leased ON messages (lease_expires_at) WHERE state = 'sending';
CREATE INDEX messages_by_broadcast ON messages (broadcast_id, id);

-- Every try at handing a message to a provider.
CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    message_id  INTEGER NOT NULL REFERENCES messages (id),
    attempt_no  INTEGER NOT NULL,
    provider    TEXT,
    outcome     TEXT    NOT NULL,
    error       TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL
);

CREATE INDEX attempts_by_message ON attempts (message_id, attempt_no);

-- Requests that carried an Idempotency-Key: a retry gets the first answer.
CREATE TABLE idempotency_keys (
    scope         TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    request_hash  TEXT    NOT NULL,
    broadcast_id  INTEGER NOT NULL REFERENCES broadcasts (id),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    practice_id INTEGER REFERENCES practices (id),
    subject     TEXT,
    details     TEXT
);
