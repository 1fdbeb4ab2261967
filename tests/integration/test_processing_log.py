"""The processing log on the real stack: records written through the writer (confirmed by
Kafka) are read back from the topic by a fresh follower into the index and answered by subject
and by activity, records written while it follows arrive live, a malformed record on the topic
is skipped and counted; and the bridge's raw records each carry a valid W3C ``traceparent`` of
a trace of their own. Each test has its own topic prefix."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from click.testing import CliRunner

from cityhub.connectors.kafka import create_producer
from cityhub.schemas.processing_log import ProcessingLogRecord, processing_record
from cityhub.schemas.registry import TenantSpec
from cityhub.schemas.settings import KafkaSettings, PrivacySettings, Settings
from cityhub.schemas.topics import Topics
from cityhub.schemas.trace_context import TRACEPARENT, new_trace, parse_traceparent
from cityhub.streams.privacy.log_cli import processing_log
from cityhub.streams.privacy.log_follower import ProcessingLogFollower
from cityhub.streams.privacy.log_service import SYSTEM
from cityhub.streams.privacy.log_writer import ProcessingLogUnavailable, ProcessingLogWriter
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.topic_admin import ensure_topics

from .hub import BOOTSTRAP, Hub, publish
from .uplinks import tts, unique_eui

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CARE = "urn:cityhub:processing-activity:acme:care"
AIR = "urn:cityhub:processing-activity:acme:air"


def _settings(prefix: str, max_records: int = 200_000) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix, partitions=4),
        privacy=PrivacySettings(processing_log_index_max_records=max_records),
    )


def _record(n: int, *, tenant: str = "acme", activity: str = CARE) -> ProcessingLogRecord:
    now = time.time()
    return processing_record(
        name="cityhub.delivery",
        trace=new_trace(),
        parent_span_id=None,
        started=now,
        ended=now + 0.001,
        ok=True,
        activity_id=activity,
        tenant=tenant,
        subject=f"res-subject-{n % 5:02d}",
        recipient="webhook:sub-1",
        items=n % 3 + 1,
        action="deliver",
    )


async def _until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not within the time")
        await asyncio.sleep(0.05)


async def test_written_records_are_read_back_by_subject_and_activity() -> None:
    settings = _settings(f"t{uuid.uuid4().hex[:10]}")
    topic = Topics.for_prefix(settings.kafka.topic_prefix).processing_log
    await ensure_topics(settings, only={topic})
    producer = create_producer(settings.kafka, client_id="test-processing-log")
    await producer.start()
    follower = ProcessingLogFollower(settings, client_id=f"test-log-{uuid.uuid4().hex[:6]}")
    try:
        writer = ProcessingLogWriter(producer, topic)
        first = [_record(n, activity=CARE if n % 2 else AIR) for n in range(40)]
        await writer.write(first)  # returns once Kafka confirmed all 40
        await writer.write([])
        # a record cityhub did not write: skipped and counted, never held
        await (await producer.send(topic, b'{"not": "a record"}', key=b"acme/res-subject-00"))

        await follower.start(timeout=60)
        index = follower.index
        assert follower.ready
        assert index.count() == 40
        assert index.malformed == 1
        for n in range(5):
            subject = f"res-subject-{n:02d}"
            expected = {r.span_id for r in first if r.subject == subject}
            got = index.of_subject("acme", subject, limit=1000).records
            assert {r.span_id for r in got} == expected
            starts = [r.start_time for r in got]
            assert starts == sorted(starts, reverse=True)
        care = index.of_activity("acme", CARE, limit=1000).records
        assert {r.span_id for r in care} == {r.span_id for r in first if r.activity_id == CARE}
        assert index.of_tenant("other").records == []

        # live: what is written while the follower runs arrives within a few seconds
        later = [_record(n, tenant="beta", activity=CARE.replace("acme", "beta")) for n in range(7)]
        await writer.write(later)
        await _until(lambda: index.count() == 47)
        assert len(index.of_tenant("beta").records) == 7
        assert index.of_activity("acme", CARE.replace("acme", "beta")).records == []
    finally:
        await follower.stop()
        await producer.stop()


async def test_the_index_stays_within_its_bound_reading_a_longer_topic() -> None:
    settings = _settings(f"t{uuid.uuid4().hex[:10]}", max_records=25)
    topic = Topics.for_prefix(settings.kafka.topic_prefix).processing_log
    await ensure_topics(settings, only={topic})
    producer = create_producer(settings.kafka, client_id="test-processing-log")
    await producer.start()
    follower = ProcessingLogFollower(settings, client_id=f"test-log-{uuid.uuid4().hex[:6]}")
    try:
        await ProcessingLogWriter(producer, topic).write([_record(n) for n in range(60)])
        await follower.start(timeout=60)
        assert follower.index.count() == 25
        assert follower.index.dropped == 35
        page = follower.index.of_tenant("acme", limit=1000)
        assert len(page.records) == 25
        assert not page.complete
    finally:
        await follower.stop()
        await producer.stop()


async def test_a_write_to_a_stopped_producer_raises_and_logs_nothing() -> None:
    settings = _settings(f"t{uuid.uuid4().hex[:10]}")
    topic = Topics.for_prefix(settings.kafka.topic_prefix).processing_log
    await ensure_topics(settings, only={topic})
    producer = create_producer(settings.kafka, client_id="test-processing-log")
    await producer.start()
    await producer.stop()
    with pytest.raises(ProcessingLogUnavailable):
        await ProcessingLogWriter(producer, topic, timeout=5).write([_record(1)])


async def test_every_raw_record_of_the_bridge_carries_a_trace_of_its_own(tmp_path: Path) -> None:
    hub = Hub(tmp_path, command="bridge")
    hub.start()
    try:
        eui = unique_eui()
        count = 30
        await publish([tts(f"tp-{eui[:6]}", eui, i, decoded={"n": i}) for i in range(count)])
        consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
        await consumer.start()
        headers: list[list[tuple[str, bytes]]] = []
        try:
            deadline = time.monotonic() + 60
            cluster = await consumer._client.fetch_all_metadata()
            while not cluster.partitions_for_topic(hub.topics["raw"]):
                assert time.monotonic() < deadline, "the raw topic never appeared"
                await asyncio.sleep(0.5)
                cluster = await consumer._client.fetch_all_metadata()
            tps = [
                TopicPartition(hub.topics["raw"], p)
                for p in cluster.partitions_for_topic(hub.topics["raw"])
            ]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while len(headers) < count and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    headers += [list(record.headers) for record in batch]
        finally:
            await consumer.stop()
        assert len(headers) == count
        traces = set()
        for record_headers in headers:
            assert [name for name, _ in record_headers] == [TRACEPARENT]
            ctx = parse_traceparent(record_headers[0][1])
            assert ctx is not None
            assert ctx.sampled
            traces.add(ctx.trace_id)
        assert len(traces) == count
    finally:
        hub.stop()


def test_the_cli_answers_by_subject_and_activity(monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = _settings(prefix)
    topic = Topics.for_prefix(prefix).processing_log
    written = [_record(n, activity=CARE if n % 2 else AIR) for n in range(10)]

    async def seed() -> None:
        store = RegistryStore(settings, client_id=f"test-{uuid.uuid4().hex[:6]}")
        await store.start()
        try:
            await Registry(store).create_tenant(SYSTEM, TenantSpec(id="acme", name="Acme"))
        finally:
            await store.stop()
        await ensure_topics(settings, only={topic})
        producer = create_producer(settings.kafka, client_id="test-processing-log")
        await producer.start()
        try:
            await ProcessingLogWriter(producer, topic).write(written)
        finally:
            await producer.stop()

    asyncio.run(seed())
    monkeypatch.setenv("CITYHUB_KAFKA__TOPIC_PREFIX", prefix)
    monkeypatch.setenv("CITYHUB_KAFKA__BOOTSTRAP_SERVERS", BOOTSTRAP)
    runner = CliRunner()
    subject = "res-subject-01"
    result = runner.invoke(
        processing_log, ["--tenant", "acme", "--subject", subject, "--activity", CARE, "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    expected = {r.span_id for r in written if r.subject == subject and r.activity_id == CARE}
    assert {item["span_id"] for item in doc["items"]} == expected
    assert doc["complete"] is True
    table = runner.invoke(processing_log, ["--tenant", "acme", "--activity", AIR])
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0].split() == [
        "START",
        "ACTION",
        "ACTIVITY",
        "SUBJECT",
        "RECIPIENT",
        "ITEMS",
        "STATUS",
        "TRACE",
    ]
    assert len(table.stdout.splitlines()) == 1 + sum(r.activity_id == AIR for r in written)
    other = runner.invoke(processing_log, ["--tenant", "nobody"])
    assert other.exit_code == 1
    assert "not found" in other.output
    bad = runner.invoke(processing_log, ["--tenant", "acme", "--subject", "123456789"])
    assert bad.exit_code == 1
    assert "123456789" not in bad.output
