-- Anonymous push followers: browsers that asked a practice for its practice-wide notices
-- without being linked to a patient. Their messages have no patient, so `patient_id`
-- becomes nullable with a `follower_id` beside it; push messages also keep the link their
-- template gave (`link`), which the notification opens.
CREATE TABLE push_followers (
    id          BIGSERIAL PRIMARY KEY,
    practice_id BIGINT      NOT NULL REFERENCES practices (id),
    endpoint    TEXT        NOT NULL,
    p256dh      TEXT        NOT NULL,
    auth        TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (practice_id, endpoint)
);

ALTER TABLE messages ALTER COLUMN patient_id DROP NOT NULL;
ALTER TABLE messages ADD COLUMN follower_id BIGINT REFERENCES push_followers (id) ON DELETE SET NULL;
ALTER TABLE messages ADD COLUMN link TEXT;
