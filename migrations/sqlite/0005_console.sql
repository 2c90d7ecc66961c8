-- People who sign in to the admin console: administrators see every practice, practice
-- users only their own. Passwords are Argon2id hashes.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'practice')),
    practice_id   INTEGER REFERENCES practices (id),
    created_at    INTEGER NOT NULL
);

-- Signed-in sessions, by the SHA-256 of the cookie's token; each carries its CSRF token.
CREATE TABLE sessions (
    token_hash  TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
