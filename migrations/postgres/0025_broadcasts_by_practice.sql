-- A status change marks its practice's earlier broadcasts superseded while the request
-- waits, and the console and API list a practice's broadcasts newest first: both look
-- broadcasts up by practice, which scanned the whole table (every practice's history).
CREATE INDEX broadcasts_by_practice ON broadcasts (practice_id, id);
