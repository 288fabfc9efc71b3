-- Whether a sample's stored image went through face detection at enrolment (1), or was enrolled as a
-- pre-aligned chip with detect=false (0), so that re-embedding under a new model prepares it the same way.
ALTER TABLE samples ADD COLUMN detect BIGINT NOT NULL DEFAULT 1;
