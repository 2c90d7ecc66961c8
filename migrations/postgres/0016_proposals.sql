-- Status changes proposed rather than posted (from a staff member's text, or a supplier's
-- status feed), the one-time codes that approve them by text message, and each practice's
-- approval rules and the systems it depends on.

-- A practice's approval rules. No row means the defaults: no PIN, one approval is always
-- enough, nothing posts without approval.
CREATE TABLE approval_settings (
    practice_id           BIGINT PRIMARY KEY REFERENCES practices (id),
    -- The PIN staff start every text command with, or NULL for none (4 to 8 digits).
    staff_pin             TEXT,
    -- Above this many recipients a broadcast needs a second person's approval; NULL: never.
    second_approval_above BIGINT,
    -- Status sources whose proposals post without approval, one name per line ('' for none).
    auto_post_sources     TEXT    NOT NULL DEFAULT '',
    updated_at            TIMESTAMPTZ NOT NULL,
    updated_by            TEXT    NOT NULL
);

-- The systems a practice depends on (`emis-web`, `systmone`, `spine`, its telephony supplier),
-- which supplier status sources map their incidents to.
CREATE TABLE practice_tags (
    practice_id BIGINT NOT NULL REFERENCES practices (id),
    tag         TEXT    NOT NULL,
    PRIMARY KEY (practice_id, tag)
);

CREATE INDEX practice_tags_by_tag ON practice_tags (tag);

-- A proposed status change. `request` is the status change as the API takes it (JSON), so
-- approving it posts exactly what was previewed. `revision` grows with every change, so
-- two approvals racing cannot both win. A proposal from a feed names its source, incident
-- and phase (`down` or `restored`), unique per practice, so an incident's update changes
-- its proposal rather than making a second one.
CREATE TABLE status_proposals (
    id                BIGSERIAL PRIMARY KEY,
    practice_id       BIGINT NOT NULL REFERENCES practices (id),
    state             TEXT    NOT NULL CHECK (state IN ('proposed', 'approved', 'dismissed', 'expired')),
    origin            TEXT    NOT NULL CHECK (origin IN ('staff_text', 'source', 'api')),
    source            TEXT,
    incident_id       TEXT,
    phase             TEXT,
    kind              TEXT    NOT NULL,
    request           TEXT    NOT NULL,
    link              TEXT,
    proposed_by       TEXT    NOT NULL,
    proposer          TEXT    NOT NULL,
    first_approved_by TEXT,
    first_approver    TEXT,
    first_approved_at TIMESTAMPTZ,
    decided_by        TEXT,
    decided_at        TIMESTAMPTZ,
    note              TEXT,
    broadcast_id      BIGINT REFERENCES broadcasts (id),
    expires_at        TIMESTAMPTZ NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    revision          BIGINT  NOT NULL DEFAULT 1,
    UNIQUE (practice_id, source, incident_id, phase)
);

CREATE INDEX status_proposals_by_practice ON status_proposals (practice_id, state, id);
CREATE INDEX status_proposals_open ON status_proposals (state, expires_at);

-- A one-time code texted to a staff number: `YES <code>` from that number approves the
-- proposal until `expires_at`. Only a hash is kept; a used code is marked, never reused.
CREATE TABLE approval_codes (
    id              BIGSERIAL PRIMARY KEY,
    proposal_id     BIGINT NOT NULL REFERENCES status_proposals (id),
    staff_number_id BIGINT NOT NULL REFERENCES staff_numbers (id) ON DELETE CASCADE,
    phone           TEXT    NOT NULL,
    code_hash       TEXT    NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    used_at         TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL
);

CREATE INDEX approval_codes_by_phone ON approval_codes (phone, expires_at);

-- The incidents each status source has shown open, so that one gone from a Statuspage
-- summary (which lists only unresolved incidents) is known to be resolved.
CREATE TABLE source_incidents (
    source       TEXT    NOT NULL,
    incident_id  TEXT    NOT NULL,
    resolved     INTEGER NOT NULL DEFAULT 0,
    last_seen_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, incident_id)
);
