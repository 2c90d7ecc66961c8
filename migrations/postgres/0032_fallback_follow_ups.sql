-- Fallback when not delivered in time (issue 17). A message sent on a channel and by a
-- provider that can confirm delivery, whose key has a deadline, gets `fallback_due_at` when
-- it is sent. Not confirmed by then, it is followed once on the patient's next usable
-- channel: `followed_up_at` says its deadline was handled (with or without a follow-up),
-- `follow_up_id` names the message that followed it, if one did.
ALTER TABLE messages ADD COLUMN fallback_due_at TIMESTAMPTZ;
ALTER TABLE messages ADD COLUMN followed_up_at TIMESTAMPTZ;
ALTER TABLE messages ADD COLUMN follow_up_id BIGINT;
-- The deadline scan: sent messages still awaiting confirmation, by deadline. A receipt
-- (`delivered`) or the follow-up takes a message out of it.
CREATE INDEX messages_awaiting_receipt ON messages (fallback_due_at)
    WHERE state = 'sent' AND followed_up_at IS NULL AND fallback_due_at IS NOT NULL;
