-- A broadcast stopped by a person (POST /broadcasts/{id}/cancel, or the console): when, by
-- whom (the audit actor) and why. Its unsent messages are cancelled in the same
-- transaction; workers holding some in memory drop them (see dispatch).
ALTER TABLE broadcasts ADD COLUMN cancelled_at INTEGER;
ALTER TABLE broadcasts ADD COLUMN cancelled_by TEXT;
ALTER TABLE broadcasts ADD COLUMN cancel_reason TEXT;
