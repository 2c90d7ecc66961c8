-- Message templates that administrators edit. Every save is a new version; the newest
-- version of a (practice, key, channel, language) is the one used. A NULL practice is the
-- global default, loaded from templates/messages/ on first start.
CREATE TABLE message_templates (
    id          INTEGER PRIMARY KEY,
    practice_id INTEGER REFERENCES practices (id),
    key         TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    language    TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    subject     TEXT,
    body        TEXT    NOT NULL,
    html        TEXT,
    link        TEXT,
    author      TEXT    NOT NULL,
    note        TEXT,
    created_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX message_templates_version
    ON message_templates (COALESCE(practice_id, 0), key, channel, language, version);

-- A practice in Wales may send every message in Welsh and English (Welsh first).
ALTER TABLE practices ADD COLUMN bilingual INTEGER NOT NULL DEFAULT 0;
