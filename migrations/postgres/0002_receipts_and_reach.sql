-- Providers' delivery receipts, reply-to addresses, HTML email, and the lookups that
-- receipts and inbound replies need.

ALTER TABLE practices ADD COLUMN email TEXT;
ALTER TABLE messages ADD COLUMN body_html TEXT;

CREATE INDEX messages_by_provider_ref ON messages (provider_ref) WHERE provider_ref IS NOT NULL;
CREATE INDEX contacts_by_address ON contacts (channel, address);

-- Every receipt a provider sent, kept as it came (status words), with the state it led to.
CREATE TABLE receipts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  BIGINT NOT NULL REFERENCES messages (id),
    provider    TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    new_state   TEXT,
    detail      TEXT,
    received_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX receipts_by_message ON receipts (message_id);
