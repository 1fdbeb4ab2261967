"""What an agent is to the worker's runtime: pure steps over batches of one input partition.

An agent owns the logic of one input topic and its state, and does no I/O. The runtime
(``cityhub.streams.runtime.worker``) consumes, restores the agent's state from its changelog
when it is given a partition, hands it the records of each partition in batches, writes
whatever the agent returns (``Write``s: outputs, dead letters and the changelog entries of the
state it changed), and commits the input offsets once Kafka confirmed all of it.

So an agent is tested by calling ``assign``, ``step`` and ``tick`` with records and reading the
writes, without a broker; the runtime is tested once, for every agent.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

Headers = list[tuple[str, bytes]]


class Record(Protocol):
    """An input record as aiokafka's ``ConsumerRecord`` carries it."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def timestamp(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class Write(NamedTuple):
    """One record an agent wants written (a tuple: made for every output record, so as cheap
    to build as Python allows; a frozen dataclass cost a microsecond more each)."""

    topic: str
    key: bytes
    value: bytes | None
    """None: a tombstone (a changelog entry deleted)."""
    partition: int | None = None
    """None: where the key's hash puts it (Kafka's default partitioner)."""
    timestamp_ms: int | None = None
    """None: the time of the write."""
    headers: Headers | None = None


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One key of a changelog partition, as the last record of that key left it."""

    key: bytes
    value: bytes


CaughtUp = Callable[[int], bool]
"""Whether an input partition has no records left to read (its position is its high watermark)."""


class Agent(Protocol):
    """An agent as the runtime drives it. Every method runs in the runtime's one task, one at a
    time, so an agent's state needs no locks; none may block (they are CPU only)."""

    name: str
    """For logs and metrics: ``normaliser``, ``aggregator-device``..."""
    topic: str
    """The input topic."""
    changelog: str | None
    """The compacted topic that keeps the agent's state, one partition per input partition;
    None when the agent keeps none."""

    def assign(self, partition: int, stored: Sequence[StoredEntry]) -> list[Write]:
        """Take ``partition`` over, its state rebuilt from its changelog partition's entries;
        returns what must be written again now (an emission a crash may have lost)."""
        ...

    def revoke(self, partition: int) -> None:
        """Forget ``partition`` (another worker takes it; everything it wrote was confirmed)."""
        ...

    def step(self, partition: int, records: Sequence[Record], now: float) -> list[Write]:
        """Process consecutive records of one partition (``now``: the wall clock, seconds);
        returns everything to write, the changelog entries of the state it changed included.
        Never raises for a record: a bad one becomes a dead letter or a count."""
        ...

    def tick(self, now: float, caught_up: CaughtUp) -> list[Write]:
        """Called every ``tick_interval`` seconds (when it is not None) between batches: work
        driven by the clock (closing windows of quiet partitions)."""
        ...

    @property
    def tick_interval(self) -> float | None:
        """Seconds between ticks; None: the agent does nothing by the clock."""
        ...

    @property
    def partitions(self) -> Collection[int]:
        """The input partitions the agent holds now."""
        ...
