-- Coverage of window aggregates (issue 14): readings arrived, flagged ones, readings expected
-- and their ratio (null in rows written before; the documents then have no such fields). With
-- aggregation.exclude_flagged a window whose every reading was flagged has count 0 and no
-- statistics, hence min, max, sum and mean may be null. ALTER on the partitioned table reaches
-- every partition.
ALTER TABLE aggregates
    ALTER COLUMN min DROP NOT NULL,
    ALTER COLUMN max DROP NOT NULL,
    ALTER COLUMN sum DROP NOT NULL,
    ALTER COLUMN mean DROP NOT NULL,
    ADD COLUMN readings bigint,
    ADD COLUMN flagged bigint,
    ADD COLUMN expected double precision,
    ADD COLUMN coverage double precision;
