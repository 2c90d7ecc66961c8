-- Status changes planned ahead (issue 14): posted at `send_at`, or on every occurrence of a
-- weekly rule or a list of dates, in the practice's timezone. `request` is the status change
-- exactly as `POST /practices/{ods}/status` takes it (JSON); `timing` the plan (JSON).
-- `next_at` is the next occurrence to post (NULL once none is left); instances claim an
-- occurrence by moving it on with a check of `revision`, so only one does the work.
CREATE TABLE scheduled_notices (
    id           INTEGER PRIMARY KEY,
    practice_id  INTEGER NOT NULL REFERENCES practices (id),
    request      TEXT    NOT NULL,
    timing       TEXT    NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'active',
    next_at      INTEGER,
    revision     INTEGER NOT NULL DEFAULT 1,
    created_by   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_by   TEXT,
    updated_at   INTEGER,
    cancelled_by TEXT,
    cancelled_at INTEGER
);

CREATE INDEX scheduled_notices_due ON scheduled_notices (next_at) WHERE state = 'active';
CREATE INDEX scheduled_notices_by_practice ON scheduled_notices (practice_id, id);

-- Each occurrence once claimed: `claimed` until its status change is posted (`posted`, with
-- the broadcast), or `missed` (every instance was down for longer than the catch-up window),
-- or `failed` (the status change could not be posted; the reason in `error`).
CREATE TABLE scheduled_occurrences (
    notice_id    INTEGER NOT NULL REFERENCES scheduled_notices (id),
    due_at       INTEGER NOT NULL,
    state        TEXT    NOT NULL,
    broadcast_id INTEGER REFERENCES broadcasts (id),
    error        TEXT,
    claimed_at   INTEGER NOT NULL,
    done_at      INTEGER,
    PRIMARY KEY (notice_id, due_at)
);

CREATE INDEX scheduled_occurrences_claimed ON scheduled_occurrences (claimed_at)
    WHERE state = 'claimed';
