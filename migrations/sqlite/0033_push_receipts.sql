-- Push with proof (issue 17): the service worker reports each push message it showed
-- (`shown`) and each one tapped (`read`), kept in `receipts` with provider `push`. Each
-- event counts once per message, whichever instance takes it: a second report of the same
-- event is refused as a replay by this index, not by memory.
CREATE UNIQUE INDEX receipts_push_once ON receipts (message_id, status) WHERE provider = 'push';
