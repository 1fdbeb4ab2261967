"""The history writer on the real stack: Kafka topics of the test's own prefix, a PostgreSQL
schema of the module's own (``history_settings``), the writer in this process."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from cityhub.schemas.aggregate import Aggregate, aggregate_id
from cityhub.schemas.observation import Location, NetworkMeta, Observation
from cityhub.schemas.settings import KafkaSettings, Settings, WorkerSettings
from cityhub.schemas.timefmt import rfc3339_from_datetime
from cityhub.schemas.topics import Topics
from cityhub.streams.history.connection import Connection
from cityhub.streams.history.writer import HistoryWriter, group_id
from cityhub.streams.privacy.purpose import PersonalMark
from cityhub.streams.topic_admin import ensure_topics

from .hub import BOOTSTRAP

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def observation(
    device: str, n: int, *, at: datetime | None = None, value: object = 20.5, **fields: object
) -> Observation:
    when = at or datetime.now(UTC) - timedelta(minutes=10) + timedelta(seconds=n)
    stamp = rfc3339_from_datetime(when)
    base = Observation(
        event_id=str(uuid.uuid4()),
        device_id=device,
        dev_eui=None,
        quantity="temperature",
        field="temperature",
        value=value,  # type: ignore[arg-type]
        unit="Cel",
        observed_at=stamp,
        received_at=stamp,
        format="cityhub-json",
        network=NetworkMeta(name="mqtt"),
        tenant="north",
        device_type="climate",
        location=Location(latitude=52.37, longitude=4.89, altitude=2.0),
        area="centrum",
        classification="public",
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def aggregate(device: str, *, revision: int, count: int, start: datetime) -> Aggregate:
    start_text = rfc3339_from_datetime(start)
    return Aggregate(
        aggregate_id=aggregate_id(
            "device", "north", device, "temperature", "Cel", 3600, int(start.timestamp() * 1e6)
        ),
        grouping="device",
        key=device,
        tenant="north",
        classification="public",
        device_id=device,
        area="centrum",
        quantity="temperature",
        unit="Cel",
        window_size=3600,
        window_start=start_text,
        window_end=rfc3339_from_datetime(start + timedelta(hours=1)),
        count=count,
        min=1.0,
        max=float(count),
        sum=float(count * (count + 1) // 2),
        mean=(count + 1) / 2,
        last=float(count),
        last_observed_at=start_text,
        last_event_id=str(uuid.uuid4()),
        revision=revision,
    )


@pytest.fixture
async def hub_settings(history_settings: Settings) -> Settings:
    """The module's history schema, with Kafka topics and a consumer group of the test's own."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = history_settings.model_copy(
        update={
            "kafka": KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix, partitions=2),
            "worker": WorkerSettings(app_id=f"{prefix}-app"),
        }
    )
    topics = Topics.for_prefix(prefix)
    await ensure_topics(settings, only=[topics.observations, topics.aggregates, topics.deadletter])
    return settings


@contextlib.asynccontextmanager
async def running(writer: HistoryWriter) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(writer.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def produce(
    settings: Settings, topic: str, items: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        for key, value, headers in items:
            await producer.send(topic, value, key=key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("not within time")
        await asyncio.sleep(0.2)


async def count(conn: Connection, query: str, *params: object) -> int:
    cursor = await conn.execute(query, params)  # type: ignore[arg-type]
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def test_observations_and_aggregates_are_stored_once_and_offsets_committed(
    hub_settings: Settings, history_conn: Connection
) -> None:
    topics = Topics.for_prefix(hub_settings.kafka.topic_prefix)
    device = f"dev-{uuid.uuid4().hex[:8]}"
    items = [observation(device, n) for n in range(300)]
    records = [(device.encode(), o.to_json(), []) for o in items]
    records += records[:50]  # replayed: the same event ids again
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    # Revisions out of order, and the older one again last: the stored row is revision 2.
    revisions = [aggregate(device, revision=r, count=10 + r, start=start) for r in (0, 2, 1, 0)]
    await produce(hub_settings, topics.observations, records)
    await produce(
        hub_settings,
        topics.aggregates,
        [(a.kafka_key(), a.to_json(), []) for a in revisions],
    )

    async with running(HistoryWriter(hub_settings)):

        async def stored() -> bool:
            return (
                await count(
                    history_conn, "SELECT count(*) FROM observations WHERE device_id = %s", device
                )
                == 300
                and await count(
                    history_conn, "SELECT count(*) FROM aggregates WHERE group_key = %s", device
                )
                == 1
            )

        await eventually(stored)
        await eventually(lambda: committed_everything(hub_settings))

    cursor = await history_conn.execute(
        "SELECT revision, count, doc->>'revision' FROM aggregates WHERE group_key = %s", [device]
    )
    assert await cursor.fetchall() == [(2, 12, "2")]
    first = items[0]
    cursor = await history_conn.execute(
        "SELECT tenant, device_type, quantity, unit, value_number, area, classification,"
        " ST_X(location), ST_Y(location), altitude, doc->>'event_id', observed_at"
        " FROM observations WHERE event_id = %s",
        [first.event_id],
    )
    row = await cursor.fetchone()
    assert row is not None
    assert row[:10] == (
        "north",
        "climate",
        "temperature",
        "Cel",
        20.5,
        "centrum",
        "public",
        4.89,
        52.37,
        2.0,
    )
    assert row[10] == first.event_id
    assert row[11] == datetime.fromisoformat(first.observed_at)
    cursor = await history_conn.execute(
        "SELECT DISTINCT tableoid::regclass::text FROM observations WHERE device_id = %s",
        [device],
    )
    days = {o.observed_at[:10].replace("-", "") for o in items}
    assert {row[0] for row in await cursor.fetchall()} == {f"observations_p{d}" for d in days}


async def committed_everything(settings: Settings) -> bool:
    topics = Topics.for_prefix(settings.kafka.topic_prefix)
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group_id(settings))
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in (topics.observations, topics.aggregates)
            for p in range(settings.kafka.partitions)
        ]
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            if (await consumer.committed(tp) or 0) != ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()


async def test_bad_records_are_dead_lettered_and_the_partition_goes_on(
    hub_settings: Settings, history_conn: Connection
) -> None:
    topics = Topics.for_prefix(hub_settings.kafka.topic_prefix)
    device = f"dev-{uuid.uuid4().hex[:8]}"
    good = [observation(device, n) for n in range(5)]
    nul = observation(device, 99, value="bad\x00text")
    bad: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = [
        (device.encode(), b"{not json", []),
        (device.encode(), orjson.dumps({**good[0].to_dict(), "event_id": "nope"}), []),
        (
            device.encode(),
            orjson.dumps({**good[0].to_dict(), "observed_at": "1969-12-31T00:00:00Z"}),
            [],
        ),
        (device.encode(), nul.to_json(), [PersonalMark("north", None, "health").header()]),
    ]
    records = [(device.encode(), good[0].to_json(), []), *bad]
    records += [(device.encode(), o.to_json(), []) for o in good[1:]]
    # One partition for all of them (the same key), the bad ones between good ones.
    await produce(hub_settings, topics.observations, records)

    async with running(HistoryWriter(hub_settings)):
        await eventually(
            lambda: _equals(
                count(
                    history_conn, "SELECT count(*) FROM observations WHERE device_id = %s", device
                ),
                5,
            )
        )
        await eventually(lambda: committed_everything(hub_settings))
    letters = await read_all(topics.deadletter, expected=4)
    assert [letter["stage"] for letter in letters] == ["history"] * 4
    assert [letter["reason"] for letter in letters] == [
        "malformed_json",
        "schema_mismatch",
        "schema_mismatch",
        "schema_mismatch",
    ]
    assert "U+0000" in letters[3]["detail"]
    assert letters[3]["payload"] == ""  # a personal item's dead letter keeps no payload
    assert letters[0]["payload"] != ""


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def read_all(topic: str, expected: int, within: float = 30.0) -> list[dict[str, object]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=BOOTSTRAP, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        out: list[dict[str, object]] = []
        deadline = time.monotonic() + within
        while len(out) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out += [orjson.loads(r.value) for r in records if r.value]
        return out
    finally:
        await consumer.stop()


async def test_a_sealed_personal_observation_keeps_only_its_sealed_document(
    hub_settings: Settings, history_conn: Connection
) -> None:
    topics = Topics.for_prefix(hub_settings.kafka.topic_prefix)
    device = f"dev-{uuid.uuid4().hex[:8]}"
    doc = observation(device, 1, classification="personal").to_dict()
    sealed = {
        **doc,
        "value": None,
        "location": None,
        "extra": {},
        "sealed": "v1.k1.CIPHERTEXT",
        "data_subject": "resident-7",
    }
    # Even a sealed document that (wrongly) still carries a value stores NULL values.
    leaky = {**sealed, "event_id": str(uuid.uuid4()), "value": 37.2, "location": doc["location"]}
    await produce(
        hub_settings,
        topics.observations,
        [(device.encode(), orjson.dumps(d), []) for d in (sealed, leaky)],
    )
    async with running(HistoryWriter(hub_settings)):
        await eventually(
            lambda: _equals(
                count(
                    history_conn, "SELECT count(*) FROM observations WHERE device_id = %s", device
                ),
                2,
            )
        )
    cursor = await history_conn.execute(
        "SELECT value_number, value_text, value_boolean, location, altitude, data_subject,"
        " doc->>'sealed' FROM observations WHERE device_id = %s",
        [device],
    )
    assert (
        await cursor.fetchall()
        == [(None, None, None, None, None, "resident-7", "v1.k1.CIPHERTEXT")] * 2
    )
