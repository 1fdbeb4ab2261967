"""`cityhub tail` prints a topic's records without joining a consumer group."""

from __future__ import annotations

import io
import uuid

import pytest

from cityhub.connectors.kafka import create_producer
from cityhub.schemas.errors import ConfigurationError
from cityhub.schemas.settings import Settings
from cityhub.streams.devtools.tail import tail

pytestmark = pytest.mark.integration


async def test_tail_prints_records_from_the_beginning() -> None:
    settings = Settings()
    topic = f"tailtest.{uuid.uuid4().hex[:8]}"
    producer = create_producer(settings.kafka, client_id="tail-test")
    await producer.start()
    try:
        for i in range(3):
            await (await producer.send(topic, f'{{"n": {i}}}'.encode(), key=b"dev-1"))
    finally:
        await producer.stop()
    out = io.StringIO()
    seen = await tail(settings, topic, from_beginning=True, limit=3, timeout=30, out=out)
    assert seen == 3
    assert out.getvalue().splitlines() == [f'dev-1\t{{"n": {i}}}' for i in range(3)]


async def test_tail_of_a_missing_topic_says_so() -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        await tail(Settings(), f"no.such.{uuid.uuid4().hex[:8]}", limit=1, timeout=1)
