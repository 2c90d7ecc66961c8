-- The NHS App channel (issue 17). Every patient has an NHS number, so with an `nhs_notify`
-- provider configured each patient counts as reachable in the NHS App until NHS Notify says
-- otherwise (no app, notifications off, not found in PDS): then this is set and fan-out
-- moves the patient to their next channel. Clearing it makes them reachable again.
ALTER TABLE patients ADD COLUMN nhsapp_unreachable_at INTEGER;
