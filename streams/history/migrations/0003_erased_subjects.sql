-- The data subjects erased (issue 10), and when: the writer skips a row of such a subject that
-- the bridge received before the erasure. A batch the writer had read before the erasure would
-- otherwise write it after the DELETE (a review found one row surviving so). A subject linked
-- again after its erasure is new data under a new key: its rows are received later and kept.
CREATE TABLE erased_subjects (
    tenant text NOT NULL,
    data_subject text NOT NULL,
    erased_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, data_subject)
);
