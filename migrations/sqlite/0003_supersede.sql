-- A newer status change of the same practice supersedes the broadcasts before it: their
-- unsent messages are cancelled, naming the newer change.
ALTER TABLE broadcasts ADD COLUMN superseded_by INTEGER REFERENCES status_changes (id);
