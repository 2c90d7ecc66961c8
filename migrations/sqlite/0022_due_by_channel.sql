-- Claims read each channel's due messages through an index range of their own, so a channel
-- whose lanes are full (its provider's rate reached) is never scanned for another channel's
-- messages. This index replaces messages_due, which led with priority.
DROP INDEX IF EXISTS messages_due;
CREATE INDEX messages_due_by_channel ON messages (channel, priority, next_attempt_at, id) WHERE state = 'queued';
