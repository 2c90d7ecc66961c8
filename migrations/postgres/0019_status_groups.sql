-- One status change sent to many practices at once (a federation, a primary care network,
-- an integrated care board): each member practice gets its own status change and broadcast,
-- with its own wording and limits; the group ties them together under one id and one
-- Idempotency-Key. `request` is the status change as the API takes it (JSON); `selector`
-- says how the practices were chosen (a list, a tag, or all).
CREATE TABLE status_groups (
    id                BIGSERIAL   PRIMARY KEY,
    request           TEXT    NOT NULL,
    selector          TEXT    NOT NULL,
    created_by        TEXT    NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    idempotency_scope TEXT,
    idempotency_key   TEXT,
    request_hash      TEXT,
    UNIQUE (idempotency_scope, idempotency_key)
);

-- A practice in a group, with the broadcast its status change started once it has.
CREATE TABLE status_group_members (
    group_id     BIGINT  NOT NULL REFERENCES status_groups (id),
    practice_id  BIGINT  NOT NULL REFERENCES practices (id),
    broadcast_id BIGINT  REFERENCES broadcasts (id),
    error        TEXT,
    PRIMARY KEY (group_id, practice_id)
);
