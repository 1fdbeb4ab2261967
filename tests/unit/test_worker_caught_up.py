"""A tick between a rebalance and its revocation reaching the agent: the agent still names a
partition the consumer no longer holds, whose high watermark aiokafka refuses with an
AssertionError. A review saw a worker of a second `cityhub run` die of it when it joined."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition

from cityhub.schemas.settings import Settings
from cityhub.streams.runtime.worker import Worker


class Consumer:
    """aiokafka's answers for partition 0 held (at its end) and partition 1 gone."""

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("t.observations", 0)}

    def highwater(self, tp: TopicPartition) -> int:
        assert tp in self.assignment(), "Partition is not assigned"
        return 10

    async def position(self, tp: TopicPartition) -> int:
        assert tp in self.assignment(), "Partition is not assigned"
        return 10


async def test_a_partition_revoked_but_not_yet_told_is_not_caught_up_and_no_crash() -> None:
    worker = Worker(Settings(), [], writer=None)  # type: ignore[arg-type]
    consumer: Any = Consumer()
    worker._consumer = consumer
    assert await worker._caught_up("t.observations", [0, 1]) == {0}
