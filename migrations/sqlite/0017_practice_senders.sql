-- Each practice sends as itself: the sender its patients' phones show texts from, and the
-- display name its emails come from. NULL keeps the provider's own: the provider's
-- configured sender for SMS, the practice's name for email. Replies to email already go to
-- the practice's `email`.
-- `sms_sender`: an alphanumeric sender ID (3 to 11 letters, digits and spaces) or an E.164
-- number, checked by the API (see domain/sms_sender.rs).
ALTER TABLE practices ADD COLUMN sms_sender TEXT;
ALTER TABLE practices ADD COLUMN email_display_name TEXT;
