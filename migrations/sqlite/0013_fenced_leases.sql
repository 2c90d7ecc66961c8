-- Fenced leases (see the PostgreSQL migration of the same number). SQLite serves one
-- process, which always leads, so only the send fence's column is needed here.
--
-- When the lease holder began handing a claimed message to a provider (NULL: claimed but not
-- started). A lease that expires with this unset goes back to the queue without an attempt;
-- only a started one gets an `unknown` attempt.
ALTER TABLE messages ADD COLUMN send_started_at INTEGER;
