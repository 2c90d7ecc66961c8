-- Keys and people (issue 16): a key may expire, and records when it was last used (written
-- at most once a minute per key); a console user may be disabled, which also ends their
-- sessions. `api_keys.revoked_at` already exists; revoking and rotating now set it.
ALTER TABLE api_keys ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE api_keys ADD COLUMN last_used_at TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMPTZ;
