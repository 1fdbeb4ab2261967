"""A device's month of hourly aggregates read back from the history store: through the API and
the SQL alone. Target: under 1 second through the API.

The table is filled as a city's would be after a month: ``--devices`` devices (2 000) x
``--quantities`` quantities (3) x ``--days`` x 24 hourly windows (720), the current revision
of each, written with COPY into a PostgreSQL schema of the bench's own (migrated, with the
monthly partitions the writer makes, then ANALYZEd) in the local stack's history database.
Every row is a real ``Aggregate`` document with its columns, as the writer keeps it.

Then, ``--runs`` times (default 7), each run on another device that no earlier run read:

- ``api``: ``GET /api/v1/tenants/{tenant}/aggregates?deviceId=…&quantity=…&windowSize=3600``
  over the month, through the operator API (``build_api``, in this process, on loopback, with
  its history source), timed at the client from the request to the parsed JSON (720 windows);
- ``api, 3 quantities``: the same without ``quantity`` (2 160 windows);
- ``sql``: ``cityhub.streams.history.reads.aggregates`` for the same device and quantity on one
  connection, timed to the decoded documents.

Prints each run and the medians, the table's size and the 1-minute load average before and after
(house style: ``bench/stats.py``). The schema is dropped at the end unless ``--keep``.

Run: ``.venv/bin/python -m bench.history_read`` with the stack up (``cityhub stack up``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from psycopg import sql

from bench.stats import machine, median, today
from cityhub.schemas.aggregate import AGGREGATE_VERSION, Aggregate, aggregate_id
from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec, Role, TenantSpec
from cityhub.schemas.settings import HistorySettings, Settings
from cityhub.streams.aggregation.query import format_ms, to_ms
from cityhub.streams.api.aggregates import AGGREGATES_KEY
from cityhub.streams.api.app import build_api
from cityhub.streams.history.aggregates_source import HistoryAggregateReader
from cityhub.streams.history.connection import connect
from cityhub.streams.history.migrate import migrate
from cityhub.streams.history.partition_plan import AGGREGATES, partition_for, period_start
from cityhub.streams.history.partitions import create_partition
from cityhub.streams.history.reads import AggregateFilter, Group, Viewer, aggregates
from cityhub.streams.history.rows import AGGREGATE_COLUMNS
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore

TENANT = "bench"
QUANTITIES = ("no2", "pm10", "pm2_5", "temperature", "relative_humidity")
HOUR = timedelta(hours=1)


def device(i: int) -> str:
    return f"aq-{i:05d}"


def month_start(days: int) -> datetime:
    """The first hour of the month read: ``days`` days ending a week ago (on the hour)."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(days=days + 7)


def rows(devices: int, quantities: int, start: datetime, hours: int) -> Iterator[tuple[Any, ...]]:
    """The COPY rows of every window, window by window as a worker closes them. Each doc is an
    ``Aggregate``'s JSON (the first of each hour is built as one and checked against it); the
    times of an hour are formatted once."""
    for hour in range(hours):
        begin = start + hour * HOUR
        begin_ms = to_ms(begin)
        window_start, window_end = format_ms(begin_ms), format_ms(begin_ms + 3_600_000)
        last_at = begin + timedelta(seconds=3599)
        last_observed_at = format_ms(begin_ms + 3_599_000)
        for i in range(devices):
            key = device(i)
            area = f"area-{i % 40}"
            value = 20.0 + (i % 17) + hour % 24 / 4
            for quantity in QUANTITIES[:quantities]:
                doc = {
                    "aggregate_id": aggregate_id(
                        "device", TENANT, key, quantity, "ug/m3", 3600, begin_ms * 1000
                    ),
                    "grouping": "device",
                    "key": key,
                    "tenant": TENANT,
                    "classification": "internal",
                    "device_id": key,
                    "area": area,
                    "quantity": quantity,
                    "unit": "ug/m3",
                    "window_size": 3600,
                    "window_start": window_start,
                    "window_end": window_end,
                    "count": 60,
                    "min": value - 3,
                    "max": value + 4,
                    "sum": value * 60,
                    "mean": value,
                    "last": value + 1,
                    "last_observed_at": last_observed_at,
                    "last_event_id": str(uuid.UUID(int=begin_ms * 100_000 + i)),
                    "revision": 0,
                    "version": AGGREGATE_VERSION,
                }
                if i == 0 and quantity == QUANTITIES[0]:
                    assert Aggregate(**doc).to_dict() == doc  # the real document's shape
                yield (
                    doc["aggregate_id"],
                    begin,
                    begin + HOUR,
                    3600,
                    "device",
                    key,
                    TENANT,
                    key,
                    area,
                    quantity,
                    "ug/m3",
                    "internal",
                    60,
                    doc["min"],
                    doc["max"],
                    doc["sum"],
                    value,
                    doc["last"],
                    last_at,
                    0,
                    orjson.dumps(doc).decode(),
                )


async def fill(settings: Settings, args: argparse.Namespace, start: datetime) -> int:
    """Migrate the bench's schema, make the month's partitions, COPY every window; the rows."""
    hours = args.days * 24
    async with await connect(settings, autocommit=True) as conn:
        await migrate(conn, settings.history.db_schema)
        month = period_start(AGGREGATES, start)
        end = start + hours * HOUR
        while datetime(month.year, month.month, 1, tzinfo=UTC) < end:
            partition = partition_for(AGGREGATES, month)
            await create_partition(conn, AGGREGATES, partition)
            month = partition.upper.date()
        written = 0
        names = sql.SQL(", ").join(sql.Identifier(c) for c in AGGREGATE_COLUMNS)
        async with conn.cursor() as cur:
            async with cur.copy(sql.SQL("COPY aggregates ({}) FROM STDIN").format(names)) as copy:
                for row in rows(args.devices, args.quantities, start, hours):
                    await copy.write_row(row)
                    written += 1
                    if written % 500_000 == 0:
                        print(f"  {written:,} rows", flush=True)
            await cur.execute("ANALYZE aggregates")
            await cur.execute(
                "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'aggregates'::regclass"
            )
            size = await cur.fetchone()
        print(f"  table: {written:,} windows, {size[0] if size else '?'} with indexes")
        return written


async def serve(settings: Settings) -> tuple[web.AppRunner, int, str]:
    """The operator API on loopback over an in-memory registry and the bench's history."""
    store = InMemoryRegistryStore()
    await store.start()
    registry, system = Registry(store), Principal.system()
    await registry.create_tenant(system, TenantSpec(id=TENANT, name="Bench"))
    await registry.create_type(system, TENANT, DeviceTypeSpec(id="aq", name="Air quality"))
    for i in range(200):  # the devices the runs read (the registry is consulted per request)
        spec = DeviceSpec(id=device(i * 7), name=device(i * 7), type="aq")
        await registry.create_device(system, TENANT, spec)
    key = (await registry.create_key(system, TENANT, Role.SUBSCRIBER, "bench"))[1]
    app = build_api(registry)
    app[AGGREGATES_KEY] = HistoryAggregateReader(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port, key


async def measure(settings: Settings, args: argparse.Namespace, start: datetime) -> None:
    runner, port, key = await serve(settings)
    month = {"from": format_ms(to_ms(start)), "to": format_ms(to_ms(start + args.days * 24 * HOUR))}
    url = f"http://127.0.0.1:{port}/api/v1/tenants/{TENANT}/aggregates"
    headers = {"Authorization": f"Bearer {key}"}
    api, api_all, alone = [], [], []
    load_before = os.getloadavg()[0]
    try:
        async with (
            aiohttp.ClientSession() as http,
            await connect(settings, autocommit=True) as conn,
        ):
            for run in range(args.runs):
                target = device((run * 7 * 13) % min(args.devices, 1400) // 7 * 7)
                query = {**month, "deviceId": target, "quantity": "no2", "windowSize": "3600"}
                started = time.perf_counter()
                async with http.get(url, params=query, headers=headers) as response:
                    doc = orjson.loads(await response.read())
                took = time.perf_counter() - started
                assert response.status == 200, doc
                assert len(doc["items"]) == args.days * 24, len(doc["items"])
                assert doc["items"][0]["window_start"] == month["from"]
                del query["quantity"]
                started = time.perf_counter()
                async with http.get(url, params=query, headers=headers) as response:
                    doc = orjson.loads(await response.read())
                took_all = time.perf_counter() - started
                assert len(doc["items"]) == args.days * 24 * args.quantities
                filt = AggregateFilter(
                    Group.device(target),
                    start,
                    start + args.days * 24 * HOUR,
                    quantity="no2",
                    window_size=3600,
                )
                started = time.perf_counter()
                docs = await aggregates(conn, Viewer.of_tenant(TENANT), filt)
                took_sql = time.perf_counter() - started
                assert len(docs) == args.days * 24
                api.append(took)
                api_all.append(took_all)
                alone.append(took_sql)
                print(
                    f"  run {run + 1} ({target}): api {took * 1000:.1f} ms, api 3 quantities "
                    f"{took_all * 1000:.1f} ms, sql {took_sql * 1000:.1f} ms"
                )
    finally:
        await runner.cleanup()
    load_after = os.getloadavg()[0]
    print(
        f"\n{today()}, {machine()}\n"
        f"a device's month of hourly aggregates ({args.days * 24} windows) among "
        f"{args.devices:,} devices x {args.quantities} quantities, median of {args.runs} runs:\n"
        f"  through the API:                {median(api) * 1000:7.1f} ms (max "
        f"{max(api) * 1000:.1f})\n"
        f"  through the API, all quantities: {median(api_all) * 1000:6.1f} ms (max "
        f"{max(api_all) * 1000:.1f}; {args.days * 24 * args.quantities} windows)\n"
        f"  the SQL alone:                  {median(alone) * 1000:7.1f} ms (max "
        f"{max(alone) * 1000:.1f})\n"
        f"  load average (1 min) before/after: {load_before:.2f} / {load_after:.2f}\n"
        f"  target < 1 s through the API: {'met' if median(api) < 1.0 else 'NOT met'}"
    )


async def first_window(settings: Settings) -> datetime:
    """The first window of a kept schema (the month it holds starts there)."""
    async with await connect(settings, autocommit=True) as conn:
        cursor = await conn.execute("SELECT min(window_start) FROM aggregates")
        row = await cursor.fetchone()
    if row is None or row[0] is None:
        raise SystemExit("the schema holds no aggregates: fill it first (--keep)")
    return row[0]  # type: ignore[no-any-return]


async def drop(settings: Settings) -> None:
    async with await connect(settings, autocommit=True) as conn:
        schema = sql.Identifier(settings.history.db_schema)
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))


async def main(args: argparse.Namespace) -> None:
    base = Settings()
    schema = args.schema or f"bench_read_{uuid.uuid4().hex[:8]}"
    history = HistorySettings(**{**base.history.model_dump(), "db_schema": schema})
    settings = base.model_copy(update={"history": history})
    start = month_start(args.days)
    print(
        f"history read bench: schema {schema}, {args.devices} devices x {args.quantities} "
        f"quantities x {args.days * 24} hours from {format_ms(to_ms(start))}"
    )
    try:
        began = time.perf_counter()
        if args.reuse:
            start = await first_window(settings)
        else:
            written = await fill(settings, args, start)
            took = time.perf_counter() - began
            print(f"  filled in {took:.0f} s ({written / took:,.0f} rows/s)")
        await measure(settings, args, start)
    finally:
        if not args.keep:
            await drop(settings)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.history_read", description=__doc__)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--quantities", type=int, default=3, choices=range(1, 6))
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--schema", help="the schema to fill (default: a new one)")
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    parser.add_argument(
        "--reuse", action="store_true", help="measure a schema kept by an earlier --keep run"
    )
    args = parser.parse_args(argv)
    if args.reuse and not args.schema:
        parser.error("--reuse needs --schema")
    if args.devices < 1 or args.days < 1 or args.runs < 1:
        parser.error("--devices, --days and --runs must be positive")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
