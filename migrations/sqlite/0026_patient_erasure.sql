-- Erasure on request (issue 16): an erased patient's row stays, so that the counts and the
-- audit trail that refer to it stay right, but holds nothing of the person: its NHS number
-- becomes `erased-<id>`, its other details are cleared, and `erased_at` says when.
ALTER TABLE patients ADD COLUMN erased_at INTEGER;
