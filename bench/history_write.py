"""Observations written to the history store per second, against a bare COPY of the same rows.

The observations are the simulated city's (``bench.workload``), normalised as the worker does
and re-timed to the last hours (so they fall in the daily partitions the writer makes), as JSON
on ``cityhub.observations``. Each run writes into a fresh PostgreSQL schema of its own, migrated
(partitioned tables with their indexes), dropped afterwards:

- baseline: a bare ``COPY`` of the same rows (already tuples) into one unindexed, unpartitioned
  table: what PostgreSQL itself takes at least;
- copy path: what the writer does per batch without Kafka: decode each record into a row
  (``rows.observation_row``), COPY the batch into the staging table and ``INSERT ... SELECT ...
  ON CONFLICT`` into the partitioned table with its four indexes, one transaction per batch of
  ``history.batch_max_records``;
- writer (``--kafka``, on by default): the records put on a fresh topic first, then the real
  ``HistoryWriter`` (consumer group, batches, offsets committed after the database) from the
  first record to the last row counted.

Run: ``.venv/bin/python -m bench.history_write`` (the stack must be up: Kafka and PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from psycopg import sql

from bench.normaliser import envelopes, registered_fleet
from bench.stats import machine, median, today
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import MessageError
from cityhub.schemas.settings import HistorySettings, KafkaSettings, Settings, WorkerSettings
from cityhub.schemas.timefmt import rfc3339_from_datetime
from cityhub.schemas.topics import Topics
from cityhub.streams.history.batch_store import prepare_staging, write_batch
from cityhub.streams.history.connection import connect
from cityhub.streams.history.migrate import migrate
from cityhub.streams.history.partitions import PartitionKeeper
from cityhub.streams.history.rows import OBSERVATION_COLUMNS, observation_row
from cityhub.streams.history.writer import HistoryWriter
from cityhub.streams.normaliser.dedup import DeviceFrames
from cityhub.streams.normaliser.normalise import normalise_envelope
from cityhub.streams.topic_admin import ensure_topics

BOOTSTRAP = os.environ.get("CITYHUB_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
TARGET = 20_000


def city_observations(count: int) -> list[bytes]:
    """``count`` canonical observations of the simulated city, re-timed to the last 3 hours."""
    directory = registered_fleet()
    frames: dict[str, DeviceFrames] = {}
    docs: list[bytes] = []
    for offset, value in enumerate(envelopes(count)):  # about 2 observations per uplink
        try:
            result = normalise_envelope(
                RawEnvelope.from_json(value),
                offset=offset,
                directory=directory,
                frames=frames,
                window=300,
                allow_unknown=False,
            )
        except MessageError:
            continue
        docs += [doc for _observation, doc, _key in result.observations]
        if len(docs) >= count:
            break
    start = datetime.now(UTC) - timedelta(hours=3)
    step = timedelta(hours=3) / max(len(docs), 1)
    out = []
    for n, raw in enumerate(docs[:count]):
        doc = orjson.loads(raw)
        at = rfc3339_from_datetime(start + n * step)
        doc.update(observed_at=at, received_at=at)
        out.append(orjson.dumps(doc))
    return out


def settings_for(schema: str, prefix: str = "bench") -> Settings:
    base = Settings()
    return base.model_copy(
        update={
            "history": HistorySettings(**{**base.history.model_dump(), "db_schema": schema}),
            "kafka": KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix, partitions=4),
            "worker": WorkerSettings(app_id=f"{prefix}-app"),
        }
    )


@contextlib.asynccontextmanager
async def fresh_schema(prefix: str = "bench") -> AsyncIterator[Settings]:
    """A new, migrated history schema for one run, dropped after it."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    settings = settings_for(schema, prefix)
    async with await connect(settings, autocommit=True) as conn:
        await migrate(conn, schema)
    try:
        yield settings
    finally:
        async with await connect(settings, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


async def bare_copy(docs: list[bytes]) -> float:
    """Rows a second of a bare COPY of the rows (tuples made beforehand) into a plain table."""
    rows = [observation_row(d).values for d in docs]
    async with fresh_schema() as settings, await connect(settings, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE bare (event_id uuid, observed_at timestamptz,"
            " received_at timestamptz, tenant text, device_id text, device_type text,"
            " quantity text, unit text, value_number double precision, value_text text,"
            " value_boolean boolean, area text, longitude double precision,"
            " latitude double precision, altitude double precision, classification text,"
            " data_subject text, doc jsonb)"
        )
        columns = sql.SQL(", ").join(map(sql.Identifier, OBSERVATION_COLUMNS))
        began = time.perf_counter()
        statement = sql.SQL("COPY bare ({}) FROM STDIN").format(columns)
        async with conn.transaction(), conn.cursor() as cursor, cursor.copy(statement) as copy:
            for values in rows:
                await copy.write_row(values)
        return len(rows) / (time.perf_counter() - began)


async def copy_path(docs: list[bytes], batch: int) -> float:
    """Observations a second through the writer's decode + staging COPY + INSERT, no Kafka."""
    async with fresh_schema() as settings, await connect(settings, autocommit=True) as conn:
        await prepare_staging(conn)
        keeper = await PartitionKeeper.load(conn)
        now = datetime.now(UTC)
        began = time.perf_counter()
        for i in range(0, len(docs), batch):
            rows = [observation_row(d) for d in docs[i : i + batch]]
            await write_batch(conn, keeper, settings.history, rows, [], now)
        return len(docs) / (time.perf_counter() - began)


def rows_written() -> float:
    return (
        REGISTRY.get_sample_value("cityhub_history_rows_written_total", {"table": "observations"})
        or 0.0
    )


async def writer_path(docs: list[bytes]) -> float:
    """Observations a second through the real writer, Kafka to PostgreSQL (a backlog)."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    async with fresh_schema(prefix) as settings:
        topics = Topics.for_prefix(prefix)
        await ensure_topics(
            settings, only=[topics.observations, topics.aggregates, topics.deadletter]
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=20, max_batch_size=512 * 1024
        )
        await producer.start()
        try:
            for n, doc in enumerate(docs):
                await producer.send(topics.observations, doc, key=str(n % 997).encode())
            await producer.flush()
        finally:
            await producer.stop()
        before = rows_written()
        writer = HistoryWriter(settings)
        task = asyncio.create_task(writer.run())
        try:
            while rows_written() == before:  # noqa: ASYNC110 - a metric, polled
                await asyncio.sleep(0.001)
            began = time.perf_counter()
            first = rows_written()
            deadline = time.monotonic() + 600
            while rows_written() - before < len(docs) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - began
            return (rows_written() - first) / elapsed
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def run(args: argparse.Namespace, docs: list[bytes]) -> dict[str, float]:
    batch = Settings().history.batch_max_records
    bare_rates, copy_rates, writer_rates, ratios = [], [], [], []
    for _ in range(args.runs):
        b = await bare_copy(docs)
        c = await copy_path(docs, batch)
        bare_rates.append(b)
        copy_rates.append(c)
        ratios.append(c / b)
        if args.kafka:
            writer_rates.append(await writer_path(docs))
    result = {
        "bare_copy_per_s": median(bare_rates),
        "copy_path_per_s": median(copy_rates),
        "copy_ratio": median(ratios),
    }
    if writer_rates:
        result["writer_per_s"] = median(writer_rates)
        result["writer_ratio"] = result["writer_per_s"] / result["bare_copy_per_s"]
    one, five, _ = os.getloadavg()
    print(f"history write benchmark, {today()}, {machine()}, load {one:.2f} / {five:.2f}")
    print(
        f"  {len(docs)} canonical observations (simulated city), batches of {batch}, "
        f"median of {args.runs} runs, PostgreSQL 15 on this machine"
    )
    print(f"  bare COPY, unindexed table   : {result['bare_copy_per_s']:>10,.0f} rows/s")
    print(
        f"  writer's COPY path (no Kafka): {result['copy_path_per_s']:>10,.0f} observations/s"
        f"  (ratio {result['copy_ratio']:.2f})"
    )
    if writer_rates:
        print(
            f"  Kafka -> writer -> PostgreSQL: {result['writer_per_s']:>10,.0f} observations/s"
            f"  (ratio {result['writer_ratio']:.2f})"
        )
    slowest = min(result["copy_path_per_s"], result.get("writer_per_s", float("inf")))
    print(f"  target {TARGET:,} observations/s: {'met' if slowest >= TARGET else 'NOT met'}")
    return result


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--observations", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--no-kafka", dest="kafka", action="store_false", help="skip the Kafka -> writer run"
    )
    args = parser.parse_args()
    docs = city_observations(args.observations)  # before the loop: the fleet registers in one
    return asyncio.run(run(args, docs))


if __name__ == "__main__":
    main()
