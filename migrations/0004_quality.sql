-- Enrolment quality control: what an upload does with a flagged sample (`flag`: store it and say so;
-- `refuse`: refuse it), and the verdict each sample was given at upload (JSON text; NULL before it existed
-- and for forgeries).
ALTER TABLE collections ADD COLUMN quality_policy TEXT NOT NULL DEFAULT 'flag';
ALTER TABLE samples ADD COLUMN quality TEXT;
