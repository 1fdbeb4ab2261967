-- The history store's tables (docs/history.md). Runs in the schema first on the search path
-- (Settings.history.db_schema); PostGIS lives in public.

CREATE TABLE observations (
    event_id       uuid        NOT NULL,
    observed_at    timestamptz NOT NULL,
    received_at    timestamptz NOT NULL,
    tenant         text,
    device_id      text        NOT NULL,
    device_type    text,
    quantity       text        NOT NULL,
    unit           text,
    value_number   double precision,
    value_text     text,
    value_boolean  boolean,
    area           text,
    location       geometry(Point, 4326),
    altitude       double precision,
    classification text,
    data_subject   text,
    doc            jsonb       NOT NULL,
    PRIMARY KEY (event_id, observed_at)
) PARTITION BY RANGE (observed_at);

-- Rows outside [now - retention, now + partitions_ahead_days] land here (a device's wrong
-- clock must not create a partition per day it claims); moved out when their day's
-- partition is made (cityhub.streams.history.partitions).
CREATE TABLE observations_default PARTITION OF observations DEFAULT;

CREATE INDEX observations_device_time ON observations (device_id, quantity, observed_at DESC);
CREATE INDEX observations_area_time ON observations (tenant, area, observed_at DESC);
CREATE INDEX observations_location ON observations USING gist (location);
CREATE INDEX observations_subject ON observations (tenant, data_subject)
    WHERE data_subject IS NOT NULL;

CREATE TABLE aggregates (
    aggregate_id     uuid        NOT NULL,
    window_start     timestamptz NOT NULL,
    window_end       timestamptz NOT NULL,
    window_size      integer     NOT NULL,
    group_kind       text        NOT NULL,
    group_key        text        NOT NULL,
    tenant           text,
    device_id        text,
    area             text,
    quantity         text        NOT NULL,
    unit             text,
    classification   text,
    count            bigint      NOT NULL,
    min              double precision NOT NULL,
    max              double precision NOT NULL,
    sum              double precision NOT NULL,
    mean             double precision NOT NULL,
    last             double precision NOT NULL,
    last_observed_at timestamptz NOT NULL,
    revision         integer     NOT NULL,
    doc              jsonb       NOT NULL,
    PRIMARY KEY (aggregate_id, window_start)
) PARTITION BY RANGE (window_start);

CREATE TABLE aggregates_default PARTITION OF aggregates DEFAULT;

CREATE INDEX aggregates_group_time
    ON aggregates (group_kind, group_key, quantity, window_size, window_start);
CREATE INDEX aggregates_area_time ON aggregates (tenant, area, window_start);
