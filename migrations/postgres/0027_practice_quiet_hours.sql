-- A practice's own quiet hours (issue 16): `HH:MM-HH:MM` in the practice's time, when bulk
-- SMS and push wait (equal times: none); NULL means the gateway's `[quiet_hours]`.
ALTER TABLE practices ADD COLUMN quiet_hours TEXT;
