"""The writer against the real Kafka: a record the topic refuses (its own max.message.bytes is
below cityhub's limit, as for a topic made elsewhere) is dead-lettered with Kafka's reason, the
idempotent producer it broke is replaced, and every other record of the partition is written."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cityhub.connectors.batching_writer import BatchingWriter
from cityhub.connectors.dead_letter_route import DeadLetterRoute
from cityhub.schemas.errors import Reason
from cityhub.schemas.settings import KafkaSettings

from .hub import BOOTSTRAP, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_a_record_the_topic_refuses_is_dead_lettered_and_the_partition_moves_on() -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topic, dead = f"{prefix}.small", f"{prefix}.deadletter"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "20000"}),
                NewTopic(dead, 1, 1),
            ]
        )
    finally:
        await admin.close()
    counted: list[Reason] = []
    writer = BatchingWriter.for_kafka(
        KafkaSettings(bootstrap_servers=BOOTSTRAP),
        client_id=f"{prefix}-writer",
        dead_letters=DeadLetterRoute(dead, "test", 65_536, count=counted.append),
    )
    await writer.start()
    first = writer.producer
    try:
        futures = []
        big = {7, 8, 40, 99}
        for i in range(120):
            value = (b"\x01" * 50_000) if i in big else orjson.dumps({"n": i})
            futures.append(await writer.send(topic, value, b"one-key"))
            if i % 10 == 0:
                await asyncio.sleep(0.01)  # several batches in flight around the refusals
        await writer.flush()
        await asyncio.wait_for(asyncio.gather(*futures), 60)
        # and the partition takes records at once afterwards
        after = await writer.send(topic, orjson.dumps({"n": 120}), b"one-key")
        await writer.flush()
        await asyncio.wait_for(after, 10)
    finally:
        await writer.stop()
    assert writer.producer is not first
    written = await read_topic(topic, until=lambda r: any(x.get("n") == 120 for x in r))
    numbers = {r["n"] for r in written}
    assert numbers == {i for i in range(121) if i not in big}
    letters = await read_topic(dead, until=lambda r: len(r) >= len(big), timeout=20)
    assert len(letters) == len(big)
    assert {x["reason"] for x in letters} == {"kafka_refused"}
    assert {x["size"] for x in letters} == {50_000}
    assert all(x["target_topic"] == topic for x in letters)
    assert counted == [Reason.KAFKA_REFUSED] * len(big)
