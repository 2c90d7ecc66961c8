-- Staff mobile numbers a practice registers, so that staff can send status commands by
-- text message when the practice's computers are down. `post` may post a status change;
-- `approve` may also approve one. `created_by` is the audit trail's actor who added it.
--
-- One number may be registered at several practices (a locum, a partner of two surgeries),
-- so the phone is unique per practice only, and looked up across practices by the index.
CREATE TABLE staff_numbers (
    id          INTEGER PRIMARY KEY,
    practice_id INTEGER NOT NULL REFERENCES practices (id),
    name        TEXT    NOT NULL,
    phone       TEXT    NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('post', 'approve')),
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    UNIQUE (practice_id, phone)
);

CREATE INDEX staff_numbers_by_phone ON staff_numbers (phone);
