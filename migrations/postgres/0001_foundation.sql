-- The foundation schema on PostgreSQL: the same tables and version as SQLite, with real
-- timestamps (timestamptz) and booleans.

CREATE TABLE practices (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ods_code      TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    phone         TEXT,
    website       TEXT,
    timezone      TEXT    NOT NULL DEFAULT 'Europe/London',
    channel_order TEXT    NOT NULL DEFAULT 'sms,email,push',
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE patients (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    practice_id       BIGINT NOT NULL REFERENCES practices (id),
    nhs_number        TEXT    NOT NULL,
    given_name        TEXT,
    family_name       TEXT,
    preferred_channel TEXT,
    language          TEXT    NOT NULL DEFAULT 'en',
    active            BOOLEAN NOT NULL DEFAULT TRUE,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    UNIQUE (practice_id, nhs_number)
);

-- One row per way of reaching a patient. Opt-outs live here: they belong to the address.
CREATE INDEX patients_by_practice ON patients (practice_id, id);

CREATE TABLE contacts (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id       BIGINT NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    channel          TEXT    NOT NULL,
    address          TEXT    NOT NULL,
    push_p256dh      TEXT,
    push_auth        TEXT,
    opted_out_at     TIMESTAMPTZ,
    bad_recipient_at TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    UNIQUE (patient_id, channel, address)
);

CREATE TABLE api_keys (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_hash    TEXT    NOT NULL UNIQUE,
    prefix      TEXT    NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'practice')),
    practice_id BIGINT REFERENCES practices (id),
    label       TEXT    NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);

CREATE TABLE status_changes (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    practice_id  BIGINT NOT NULL REFERENCES practices (id),
    kind         TEXT    NOT NULL,
    headline     TEXT    NOT NULL,
    details      TEXT,
    starts_at    TIMESTAMPTZ,
    ends_at      TIMESTAMPTZ,
    created_by   TEXT    NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);

-- A broadcast is the fan-out of one trigger. `fanout_done_at` is NULL until every
-- eligible patient has a message; an unfinished fan-out is resumed at start.
CREATE TABLE broadcasts (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    practice_id      BIGINT NOT NULL REFERENCES practices (id),
    status_change_id BIGINT REFERENCES status_changes (id),
    created_at       TIMESTAMPTZ NOT NULL,
    fanout_done_at   TIMESTAMPTZ,
    skipped_no_contact BIGINT NOT NULL DEFAULT 0
);

-- The outbox: everything a patient will receive is written here before it is sent.
CREATE TABLE messages (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key  TEXT    NOT NULL UNIQUE,
    broadcast_id     BIGINT REFERENCES broadcasts (id),
    practice_id      BIGINT NOT NULL REFERENCES practices (id),
    patient_id       BIGINT NOT NULL REFERENCES patients (id),
    contact_id       BIGINT REFERENCES contacts (id) ON DELETE SET NULL,
    channel          TEXT    NOT NULL,
    address          TEXT    NOT NULL,
    priority         SMALLINT NOT NULL,
    template_key     TEXT    NOT NULL,
    template_version INTEGER NOT NULL,
    subject          TEXT,
    body             TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    provider         TEXT,
    provider_ref     TEXT,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);

CREATE INDEX messages_due ON messages (priority, next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX messages_leased ON messages (lease_expires_at) WHERE state = 'sending';
CREATE INDEX messages_by_broadcast ON messages (broadcast_id, id);

-- Every try at handing a message to a provider.
CREATE TABLE attempts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  BIGINT NOT NULL REFERENCES messages (id),
    attempt_no  INTEGER NOT NULL,
    provider    TEXT,
    outcome     TEXT    NOT NULL,
    error       TEXT,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX attempts_by_message ON attempts (message_id, attempt_no);

-- Requests that carried an Idempotency-Key: a retry gets the first answer.
CREATE TABLE idempotency_keys (
    scope         TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    request_hash  TEXT    NOT NULL,
    broadcast_id  BIGINT NOT NULL REFERENCES broadcasts (id),
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    practice_id BIGINT REFERENCES practices (id),
    subject     TEXT,
    details     TEXT
);
