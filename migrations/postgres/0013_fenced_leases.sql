-- Fenced leases (issue 11, cases 11 and 12).
--
-- The leader's lease: one row naming the instance that runs the periodic jobs until
-- `expires_at` (by the database's clock). The leader renews it at every heartbeat; a leader
-- that stops beating (killed, frozen, cut off) loses it when it expires and another instance
-- takes it over, bumping `generation`. It replaces the advisory lock, which a frozen process
-- kept for as long as its connection stayed open.
CREATE TABLE leader_lease (
    id         SMALLINT    PRIMARY KEY CHECK (id = 1),
    holder     TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    generation BIGINT      NOT NULL DEFAULT 1
);

-- When the lease holder began handing a claimed message to a provider (NULL: claimed but not
-- started). A lease that expires with this unset goes back to the queue without an attempt;
-- only a started one gets an `unknown` attempt.
ALTER TABLE messages ADD COLUMN send_started_at TIMESTAMPTZ;
