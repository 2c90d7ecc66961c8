-- Channel choice by cost and speed (issue 17). Broadcasts keep `channel_order` (new
-- practices get cheapest first from `[practice_defaults]`); one-patient urgent messages
-- take `urgent_channel_order` (fastest first). With `order_overrides_preference` the
-- practice's order wins over a patient's own preferred channel.
ALTER TABLE practices ADD COLUMN urgent_channel_order TEXT NOT NULL DEFAULT 'push,sms,email';
ALTER TABLE practices ADD COLUMN order_overrides_preference BOOLEAN NOT NULL DEFAULT FALSE;
-- What a message costs is priced by its SMS segments (1 for other channels), counted when
-- it is planned, times the price of the provider that took it.
ALTER TABLE messages ADD COLUMN segments INTEGER NOT NULL DEFAULT 1;
-- A practice's messages by month, for its monthly cost.
CREATE INDEX messages_by_practice_month ON messages (practice_id, created_at);
