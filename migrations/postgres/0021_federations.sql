-- Federations: named sets of practices (a GP federation, a primary care network, an
-- integrated care board). An API key or a console user may be scoped to one: it then acts
-- on the member practices as an administrator would, and on no other.
CREATE TABLE federations (
    id          BIGSERIAL   PRIMARY KEY,
    name        TEXT        NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE federation_practices (
    federation_id BIGINT NOT NULL REFERENCES federations (id),
    practice_id   BIGINT NOT NULL REFERENCES practices (id),
    PRIMARY KEY (federation_id, practice_id)
);

-- Keys and users gain the `federation` role with its federation.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check
    CHECK (role IN ('admin', 'practice', 'federation'));
ALTER TABLE api_keys ADD COLUMN federation_id BIGINT REFERENCES federations (id);

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('admin', 'practice', 'federation'));
ALTER TABLE users ADD COLUMN federation_id BIGINT REFERENCES federations (id);

-- A group member stopped with its group (who, why): if its status change was not posted
-- yet it never is, and one posted while the stop was made is cancelled at once.
ALTER TABLE status_group_members ADD COLUMN stopped_at TIMESTAMPTZ;
ALTER TABLE status_group_members ADD COLUMN stopped_by TEXT;
ALTER TABLE status_group_members ADD COLUMN stop_reason TEXT;
