-- Appointments booked at a practice, imported from its clinical system and kept up to date
-- by the changes it reports; a status change may name the period whose appointments it
-- affects. Times are INTEGER milliseconds since the Unix epoch (UTC), as everywhere.

CREATE TABLE appointments (
    id           INTEGER PRIMARY KEY,
    practice_id  INTEGER NOT NULL REFERENCES practices (id),
    patient_id   INTEGER NOT NULL REFERENCES patients (id),
    external_ref TEXT    NOT NULL,
    starts_at    INTEGER NOT NULL,
    clinician    TEXT,
    location     TEXT,
    mode         TEXT    NOT NULL DEFAULT 'in_person' CHECK (mode IN ('in_person', 'phone', 'video')),
    state        TEXT    NOT NULL DEFAULT 'booked' CHECK (state IN ('booked', 'cancelled')),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (practice_id, external_ref)
);

CREATE INDEX appointments_by_start ON appointments (practice_id, starts_at);

-- Every change a practice made to an appointment: the details before and after, the message
-- that told the patient, and the Idempotency-Key it came with (so a retry sends nothing twice).
CREATE TABLE appointment_changes (
    id                 INTEGER PRIMARY KEY,
    appointment_id     INTEGER NOT NULL REFERENCES appointments (id),
    kind               TEXT    NOT NULL,
    old_starts_at      INTEGER NOT NULL,
    old_clinician      TEXT,
    old_location       TEXT,
    old_mode           TEXT    NOT NULL,
    new_starts_at      INTEGER NOT NULL,
    new_clinician      TEXT,
    new_location       TEXT,
    new_mode           TEXT    NOT NULL,
    reason             TEXT,
    message_id         INTEGER REFERENCES messages (id),
    idempotency_scope  TEXT,
    idempotency_key    TEXT,
    request_hash       TEXT,
    created_by         TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    UNIQUE (idempotency_scope, idempotency_key)
);

CREATE INDEX appointment_changes_by_appointment ON appointment_changes (appointment_id, id);

-- Who a status change is for: 'all' (the general notice), 'booked' (only patients with an
-- appointment in [affected_from, affected_until)) or 'both' (each told in their own words).
ALTER TABLE status_changes ADD COLUMN audience TEXT NOT NULL DEFAULT 'all';
ALTER TABLE status_changes ADD COLUMN affected_from INTEGER;
ALTER TABLE status_changes ADD COLUMN affected_until INTEGER;
