"""`cityhub tail`'s limit over a fake consumer (no Kafka); the real topic is read in
tests/integration/test_tail.py."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from cityhub.schemas.settings import Settings
from cityhub.streams.devtools import tail as tail_module


class FakeConsumer:
    """Three partitions of three records each, all handed out by the first ``getmany``."""

    def __init__(self, topic: str, partitions: int = 3, per_partition: int = 3) -> None:
        self.topic = topic
        self.partitions = partitions
        self.records = {
            TopicPartition(topic, p): [
                SimpleNamespace(key=f"p{p}".encode(), value=f"{p}-{i}".encode())
                for i in range(per_partition)
            ]
            for p in range(partitions)
        }
        self._client = SimpleNamespace(fetch_all_metadata=self._metadata)

    async def _metadata(self) -> Any:
        topic, partitions = self.topic, set(range(self.partitions))
        return SimpleNamespace(
            partitions_for_topic=lambda name: partitions if name == topic else None
        )

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        pass

    async def seek_to_end(self, *tps: TopicPartition) -> None:
        pass

    async def getmany(self, timeout_ms: int = 0, **_: Any) -> dict[TopicPartition, list[Any]]:
        batch, self.records = self.records, {}
        return batch


@pytest.mark.parametrize(("limit", "expected"), [(1, 1), (2, 2), (4, 4), (9, 9), (20, 9)])
async def test_tail_prints_at_most_limit_records_over_partitions(
    monkeypatch: pytest.MonkeyPatch, limit: int, expected: int
) -> None:
    # One getmany hands out records of several partitions: the limit holds across all of them.
    monkeypatch.setattr(tail_module, "kafka_consumer", lambda *a, **k: FakeConsumer("t"))
    out = io.StringIO()
    seen = await tail_module.tail(
        Settings(), "t", from_beginning=True, limit=limit, timeout=0.2, out=out
    )
    assert seen == expected
    assert len(out.getvalue().splitlines()) == expected


def test_short_names_are_the_hubs_topics_and_full_names_stay() -> None:
    from cityhub.streams.devtools.tail import full_topic_name

    assert full_topic_name("city", "aggregates") == "city.aggregates"
    assert full_topic_name("city", "device-health") == "city.device-health"
    assert full_topic_name("city", "other.observations") == "other.observations"
    assert full_topic_name("city", "__consumer_offsets") == "__consumer_offsets"
