-- Fan-out reads a practice's anonymous followers a page at a time (keyset on id), and a
-- follow counts the practice's followers against its cap: both by practice, then id.
CREATE INDEX push_followers_by_practice ON push_followers (practice_id, id);
