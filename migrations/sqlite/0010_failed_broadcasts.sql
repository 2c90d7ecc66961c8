-- A broadcast whose wording cannot be rendered (a template that fails or goes over the
-- render budget) fails alone: its fan-out stops, and when and why are kept here. A failed
-- broadcast is not resumed at start.
ALTER TABLE broadcasts ADD COLUMN failed_at INTEGER;
ALTER TABLE broadcasts ADD COLUMN failure TEXT;
