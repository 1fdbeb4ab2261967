"""The console's Kafka readers on the local stack, without a hub: the dead-letter reader starts
only when asked, reads back ``scan_back`` records of each partition and follows the topic, each
operator seeing only its own tenant's letters; the delivery statuses a publisher writes reach
the API's store, and a deleted subscription's status goes with a tombstone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from cityhub.schemas.deadletter import DeadLetter
from cityhub.schemas.errors import Reason
from cityhub.schemas.registry import Role, Tenant
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.deadletters.reader import DeadLetterReader
from cityhub.streams.delivery.status import Figures
from cityhub.streams.delivery.status_publisher import StatusPublisher, SubscriptionStatusStore
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.view import RegistryView
from cityhub.streams.topic_admin import ensure_topics

from .hub import BOOTSTRAP
from .subscribers import wait_for

pytestmark = pytest.mark.integration

TS = "2026-12-04T10:00:00.000Z"


@pytest.fixture
async def settings() -> AsyncIterator[Settings]:
    prefix = f"console-{uuid.uuid4().hex[:10]}"
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    await ensure_topics(settings, timeout=30.0)
    yield settings
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def _registry() -> RegistryView:
    view = RegistryView()
    offset = 0
    for tenant in ("north", "south"):
        record = Tenant(id=tenant, name=tenant, created_at=TS, updated_at=TS)
        view.apply(f"tenant/{tenant}", record.model_dump_json().encode(), offset)
        offset += 1
    for tenant, device_id in (("north", "n-1"), ("south", "s-1")):
        doc = {
            "kind": "device",
            "tenant": tenant,
            "id": device_id,
            "name": device_id,
            "type": "aq",
            "dev_eui": None,
            "location": None,
            "area": None,
            "tags": [],
            "active": True,
            "app_key_sha256": None,
            "created_at": TS,
            "updated_at": TS,
        }
        view.apply(f"device/{device_id}", json.dumps(doc).encode(), offset)
        offset += 1
    return view


def _letter(device: str, n: int) -> bytes:
    return DeadLetter.of(
        stage="normalise",
        reason=Reason.MALFORMED_JSON,
        detail=f"letter {n}",
        failed_at=f"2026-12-04T10:00:{n:02d}.000Z",
        payload=f"bad {n}".encode(),
        max_payload_bytes=1024,
        device=device,
    ).to_json()


async def test_the_dead_letter_reader_starts_when_asked_reads_back_and_follows(
    settings: Settings,
) -> None:
    topic = Topics.for_prefix(settings.kafka.topic_prefix).deadletter
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    north = Principal(key_id="k-n", tenant="north", role=Role.OPERATOR)
    south = Principal(key_id="k-s", tenant="south", role=Role.OPERATOR)
    reader = DeadLetterReader(settings, _registry(), scan_back=3)
    try:
        for n in range(5):  # two older ones, out of the reader's reach
            await producer.send_and_wait(topic, _letter("n-1", n), key=b"n-1", partition=0)
        await producer.send_and_wait(topic, _letter("s-1", 10), key=b"s-1", partition=1)
        assert not reader.started  # nothing read until a page asks
        reader.ensure_started()
        assert await wait_for(lambda: reader.ready, 30)
        assert [dl.detail for dl in reader.view.letters(north)] == [
            "letter 4",
            "letter 3",
            "letter 2",
        ]
        assert [dl.detail for dl in reader.view.letters(south)] == ["letter 10"]
        # It follows the topic: a new letter shows without a restart, to its tenant only.
        await producer.send_and_wait(topic, _letter("s-1", 11), key=b"s-1", partition=1)
        assert await wait_for(lambda: len(reader.view.letters(south)) == 2, 30)
        assert len(reader.view.letters(north)) == 3
        assert reader.failed is None
    finally:
        await reader.stop()
        await producer.stop()


class _Source:
    def __init__(self) -> None:
        self.keys = {("north", "hook")}

    def reporting(self) -> set[tuple[str, str]]:
        return self.keys

    def present(self) -> set[tuple[str, str]]:
        return self.keys


async def test_statuses_written_by_a_publisher_reach_the_apis_store(settings: Settings) -> None:
    store = SubscriptionStatusStore(settings, client_id="console-status-test")
    await store.start()
    source = _Source()
    publisher = StatusPublisher(source, interval=0.1, families=list)
    task = asyncio.create_task(publisher.run(settings))
    try:
        assert await wait_for(lambda: store.view.of("north", "hook") is not None, 30)
        status = store.view.of("north", "hook")
        assert status is not None
        assert status.state.value == "active"
        assert status.lag_messages == Figures().lag_messages
        source.keys = set()  # deleted
        assert await wait_for(lambda: store.view.of("north", "hook") is None, 30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.stop()
