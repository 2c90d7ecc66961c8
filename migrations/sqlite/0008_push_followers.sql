-- Anonymous push followers: browsers that asked a practice for its practice-wide notices
-- without being linked to a patient. Their messages have no patient, so `messages` is
-- rebuilt with `patient_id` nullable and a `follower_id` beside it; push messages also
-- keep the link their template gave (`link`), which the notification opens.
--
-- SQLite cannot drop NOT NULL in place: this is its documented table rebuild. It needs
-- foreign keys off, which cannot be switched inside a transaction, so the store runs
-- migrations on a connection that has them off (`SqliteStore::migrate`).

CREATE TABLE push_followers (
    id          INTEGER PRIMARY KEY,
    practice_id INTEGER NOT NULL REFERENCES practices (id),
    endpoint    TEXT    NOT NULL,
    p256dh      TEXT    NOT NULL,
    auth        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (practice_id, endpoint)
);

CREATE TABLE messages_rebuilt (
    id               INTEGER PRIMARY KEY,
    idempotency_key  TEXT    NOT NULL UNIQUE,
    broadcast_id     INTEGER REFERENCES broadcasts (id),
    practice_id      INTEGER NOT NULL REFERENCES practices (id),
    patient_id       INTEGER REFERENCES patients (id),
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
    updated_at       INTEGER NOT NULL,
    body_html        TEXT,
    follower_id      INTEGER REFERENCES push_followers (id) ON DELETE SET NULL,
    link             TEXT
);

INSERT INTO messages_rebuilt
    (id, idempotency_key, broadcast_id, practice_id, patient_id, contact_id, channel, address,
     priority, template_key, template_version, subject, body, state, attempts, next_attempt_at,
     lease_owner, lease_expires_at, provider, provider_ref, last_error, created_at, updated_at,
     body_html)
SELECT id, idempotency_key, broadcast_id, practice_id, patient_id, contact_id, channel, address,
       priority, template_key, template_version, subject, body, state, attempts, next_attempt_at,
       lease_owner, lease_expires_at, provider, provider_ref, last_error, created_at, updated_at,
       body_html
FROM messages;

DROP TABLE messages;
ALTER TABLE messages_rebuilt RENAME TO messages;

CREATE INDEX messages_due ON messages (priority, next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX messages_leased ON messages (lease_expires_at) WHERE state = 'sending';
CREATE INDEX messages_by_broadcast ON messages (broadcast_id, id);
CREATE INDEX messages_by_provider_ref ON messages (provider_ref) WHERE provider_ref IS NOT NULL;
