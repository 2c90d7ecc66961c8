-- Bulk messages are claimed turn by turn across broadcasts: a broadcast's n-th message has
-- turn n, so when many practices broadcast at once each one's first messages go out before
-- any practice's hundredth, instead of first come, first served. Urgent messages keep their
-- own order (due time) and go before all bulk ones.
ALTER TABLE messages ADD COLUMN turn INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_bulk_turns ON messages (channel, turn, id) WHERE state = 'queued' AND priority = 1;
