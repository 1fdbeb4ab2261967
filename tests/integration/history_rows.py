"""Rows written straight into the history store's tables (the contract's columns), for tests of
what the reads select: no writer, no Kafka, exactly the rows a test names."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson

from cityhub.schemas.aggregate import Aggregate
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.history.connection import Connection

OBSERVATION_INSERT = (
    "INSERT INTO observations (event_id, observed_at, received_at, tenant, device_id, "
    "device_type, quantity, unit, value_number, value_text, value_boolean, area, location, "
    "altitude, classification, data_subject, doc) VALUES (%(event_id)s, %(observed_at)s, "
    "%(observed_at)s, %(tenant)s, %(device_id)s, %(device_type)s, %(quantity)s, %(unit)s, "
    "%(value_number)s, %(value_text)s, %(value_boolean)s, %(area)s, "
    "CASE WHEN %(lon)s::float8 IS NULL THEN NULL "
    "ELSE ST_SetSRID(ST_MakePoint(%(lon)s::float8, %(lat)s::float8), 4326) END, "
    "NULL, %(classification)s, %(data_subject)s, %(doc)s)"
)

AGGREGATE_INSERT = (
    "INSERT INTO aggregates (aggregate_id, window_start, window_end, window_size, group_kind, "
    "group_key, tenant, device_id, area, quantity, unit, classification, count, min, max, sum, "
    "mean, last, last_observed_at, revision, doc) VALUES (%(aggregate_id)s, %(window_start)s, "
    "%(window_end)s, %(window_size)s, %(grouping)s, %(key)s, %(tenant)s, %(device_id)s, "
    "%(area)s, %(quantity)s, %(unit)s, %(classification)s, %(count)s, %(min)s, %(max)s, "
    "%(sum)s, %(mean)s, %(last)s, %(last_observed_at)s, %(revision)s, %(doc)s) "
    "ON CONFLICT (aggregate_id, window_start) DO UPDATE SET doc = excluded.doc, "
    "revision = excluded.revision, count = excluded.count WHERE "
    "aggregates.revision < excluded.revision"
)


def observation_row(
    *,
    device_id: str,
    observed_at: datetime,
    tenant: str | None = "t1",
    quantity: str = "temperature",
    value: float | str | bool = 20.0,
    classification: str | None = "internal",
    data_subject: str | None = None,
    area: str | None = "north",
    lon: float | None = 5.12,
    lat: float | None = 52.09,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The parameters of ``OBSERVATION_INSERT`` for one observation (its doc as on Kafka)."""
    event = event_id or str(uuid.uuid4())
    doc = {
        "event_id": event,
        "device_id": device_id,
        "quantity": quantity,
        "value": value,
        "unit": "Cel",
        "observed_at": observed_at.isoformat().replace("+00:00", "Z"),
        "tenant": tenant,
        "classification": classification,
        "area": area,
    }
    return {
        "event_id": event,
        "observed_at": observed_at,
        "tenant": tenant,
        "device_id": device_id,
        "device_type": "aq",
        "quantity": quantity,
        "unit": "Cel",
        "value_number": value if isinstance(value, float) else None,
        "value_text": value if isinstance(value, str) else None,
        "value_boolean": value if isinstance(value, bool) else None,
        "area": area,
        "lon": lon,
        "lat": lat,
        "classification": classification,
        "data_subject": data_subject,
        "doc": orjson.dumps(doc).decode(),
    }


def aggregate_row(aggregate: Aggregate) -> dict[str, Any]:
    """The parameters of ``AGGREGATE_INSERT`` for one aggregate (its doc as on Kafka)."""
    doc = aggregate.to_dict()
    start = parse_rfc3339(aggregate.window_start)
    return {
        **doc,
        "window_start": start,
        "window_end": start + timedelta(seconds=aggregate.window_size),
        "last_observed_at": parse_rfc3339(aggregate.last_observed_at),
        "doc": orjson.dumps(doc).decode(),
    }


async def insert_observations(conn: Connection, rows: list[dict[str, Any]]) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(OBSERVATION_INSERT, rows)


async def insert_aggregates(conn: Connection, aggregates: list[Aggregate]) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(AGGREGATE_INSERT, [aggregate_row(a) for a in aggregates])
