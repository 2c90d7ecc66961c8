-- A status change's headline and details in Welsh, beside the English, so a bilingual
-- practice's Welsh message (and a Welsh-speaking patient's) is not half English. Both are
-- optional: without a Welsh headline, Welsh wording uses the kind's Welsh default when the
-- English headline is the default, else the English as typed.
ALTER TABLE status_changes ADD COLUMN headline_cy TEXT;
ALTER TABLE status_changes ADD COLUMN details_cy TEXT;
