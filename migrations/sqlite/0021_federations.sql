-- Federations: named sets of practices (a GP federation, a primary care network, an
-- integrated care board). An API key or a console user may be scoped to one: it then acts
-- on the member practices as an administrator would, and on no other.
CREATE TABLE federations (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE federation_practices (
    federation_id INTEGER NOT NULL REFERENCES federations (id),
    practice_id   INTEGER NOT NULL REFERENCES practices (id),
    PRIMARY KEY (federation_id, practice_id)
);

-- Keys and users gain the `federation` role with its federation. SQLite cannot change a
-- CHECK in place: both tables get its documented rebuild (foreign keys are off while
-- migrating, see `SqliteStore::migrate`; ids are kept, so sessions still name their users).
CREATE TABLE api_keys_rebuilt (
    id            INTEGER PRIMARY KEY,
    key_hash      TEXT    NOT NULL UNIQUE,
    prefix        TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'practice', 'federation')),
    practice_id   INTEGER REFERENCES practices (id),
    federation_id INTEGER REFERENCES federations (id),
    label         TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
INSERT INTO api_keys_rebuilt (id, key_hash, prefix, role, practice_id, label, created_at, revoked_at)
    SELECT id, key_hash, prefix, role, practice_id, label, created_at, revoked_at FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_rebuilt RENAME TO api_keys;

CREATE TABLE users_rebuilt (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'practice', 'federation')),
    practice_id   INTEGER REFERENCES practices (id),
    federation_id INTEGER REFERENCES federations (id),
    created_at    INTEGER NOT NULL
);
INSERT INTO users_rebuilt (id, username, password_hash, role, practice_id, created_at)
    SELECT id, username, password_hash, role, practice_id, created_at FROM users;
DROP TABLE users;
ALTER TABLE users_rebuilt RENAME TO users;

-- A group member stopped with its group (who, why): if its status change was not posted
-- yet it never is, and one posted while the stop was made is cancelled at once.
ALTER TABLE status_group_members ADD COLUMN stopped_at INTEGER;
ALTER TABLE status_group_members ADD COLUMN stopped_by TEXT;
ALTER TABLE status_group_members ADD COLUMN stop_reason TEXT;
