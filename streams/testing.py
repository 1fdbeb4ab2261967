"""Test doubles for building a feature without a broker: everything in-memory, shipped with the
package so that a plugin's or an agent's tests use the same doubles as cityhub's own.

Each double has the interface of the real thing and the behaviour the contract suites check
(``tests/contracts/``): the in-memory compacted stores pass the same suite as the Kafka ones.

**Stores** (``InMemoryRegistryStore``, ``InMemorySubscriptionStore``; ``InMemoryCompactedStore``
for a view of your own). Instances that share an ``InMemoryTopic`` see each other's writes, as
instances of the API and a worker share the Kafka topic::

    topic = InMemoryTopic()
    api_side = InMemorySubscriptionStore(topic=topic)
    worker_side = InMemorySubscriptionStore(topic=topic)
    await api_side.put(subscription)               # or through the service that owns the store
    assert worker_side.view.get(subscription.tenant, subscription.id) is not None

**Aggregates** (``InMemoryAggregates``): the aggregates topic and its reader for the query side::

    aggregates = InMemoryAggregates(QueryLimits.from_settings(settings.aggregation))
    aggregates.add(aggregate)                      # as the window agent writes it
    result = await aggregates.read(AggregateQuery(group, from_ms, to_ms))  # as the Kafka reader

**Clock** (``FakeClock``): for every ``clock: Callable[[], float]`` parameter (services, the
webhook sink, the rate limiter)::

    clock = FakeClock(1_700_000_000.0)
    limiter = RateLimiter(rate=1.0, burst=5)       # any code that takes a clock or ``now``
    wait = limiter.take("key-1", now=clock())
    clock.advance(61)                              # a minute later, without sleeping

**Writer** (``RecordingWriter``): what a stage writes, in order, instead of Kafka; confirms each
record at once, or holds the confirmations to test what waits for them::

    writer = RecordingWriter()
    await writer.send("cityhub.observations", b"{...}", key=b"dev-1")
    assert writer.values("cityhub.observations") == [b"{...}"]

    held = RecordingWriter(confirm=False)          # nothing confirmed until...
    held.confirm_all()                             # ...or held.fail_all(KafkaError())

**Delivery** (``MemoryKind``, ``Mailbox``, ``registered``; from ``connectors/sinks/memory.py``):
a delivery kind whose sinks put each batch in a mailbox, with failures on demand::

    kind = MemoryKind()
    with registered(kind):
        box = kind.mailbox("orders")               # then a subscription with
        box.fail_next(kind=FailureKind.TIMEOUT)    # {"kind": "memory", "mailbox": "orders"}
        values = await box.wait_for(3)             # what the delivery task handed its sink

**Subscription topics** (``InMemoryTopicAdmin``): the topics the routing loop creates and
deletes (``streams/subscriptions/routing.py``), with failures on demand::

    topics = InMemoryTopicAdmin(failures=1)        # the first ensure() fails
    routing = Routing(store, router, topics)
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from cityhub.connectors.sinks.memory import Mailbox, MemoryKind, MemorySink, registered
from cityhub.schemas.errors import StackError
from cityhub.streams.aggregation.memory import InMemoryAggregates
from cityhub.streams.compacted import InMemoryCompactedStore, InMemoryTopic
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore

Headers = list[tuple[str, bytes]]


class FakeClock:
    """A clock that moves only when told: ``clock()`` is the time in seconds.

    ``step`` seconds are added after every reading (0: the clock stands still), for code that
    needs each reading to differ (timestamps of successive writes)."""

    def __init__(self, now: float = 1_700_000_000.0, *, step: float = 0.0) -> None:
        self.now = now
        self.step = step

    def __call__(self) -> float:
        now = self.now
        self.now += self.step
        return now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never back: time read from it must not run backwards)."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self.now += seconds


@dataclass(frozen=True, slots=True)
class Written:
    """One record a stage handed to the writer, as it handed it."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    """As given: None means where Kafka's default partitioner would put the key."""
    timestamp_ms: int | None
    headers: Headers | None


class RecordingWriter:
    """The writer's interface (``BatchingWriter``: ``send``, ``flush``, ``partitions``, ``start``,
    ``stop``) over a list: ``written`` holds every record in the order it was sent.

    With ``confirm`` (the default) each record's future resolves at once; without, the futures
    wait in ``pending`` until ``confirm_all`` or ``fail_all`` (confirm-before-ack tests)."""

    def __init__(self, *, confirm: bool = True, partitions: int = 1) -> None:
        self.written: list[Written] = []
        self.pending: list[asyncio.Future[None]] = []
        self.confirm = confirm
        self._partitions = partitions
        self.attached = True
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def stop(self, *, timeout: float = 10.0) -> None:
        self.started = False

    async def close(self) -> None:
        return None

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        timestamp_ms: int | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> asyncio.Future[None]:
        """Record the write; its future resolves now (``confirm``) or when settled."""
        self.written.append(Written(topic, key, value, partition, timestamp_ms, headers))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.confirm:
            future.set_result(None)
        else:
            self.pending.append(future)
        return future

    async def flush(self) -> None:
        """Return once every pending write is settled (as the real writer waits for Kafka)."""
        if self.pending:
            await asyncio.wait(list(self.pending))

    async def partitions(self, topic: str) -> list[int]:
        return list(range(self._partitions))

    def confirm_all(self) -> None:
        """Kafka confirmed every pending write."""
        for future in self.pending:
            if not future.done():
                future.set_result(None)
        self.pending.clear()

    def fail_all(self, error: BaseException) -> None:
        """Every pending write failed with ``error``."""
        for future in self.pending:
            if not future.done():
                future.set_exception(error)
        self.pending.clear()

    def on(self, topic: str) -> list[Written]:
        """The records written to ``topic``, in order."""
        return [w for w in self.written if w.topic == topic]

    def values(self, topic: str) -> list[bytes | None]:
        return [w.value for w in self.on(topic)]

    def json(self, topic: str) -> list[Any]:
        """The JSON values written to ``topic`` (tombstones left out)."""
        return [json.loads(w.value) for w in self.on(topic) if w.value is not None]

    def topics(self) -> set[str]:
        return {w.topic for w in self.written}


class InMemoryTopicAdmin:
    """The subscription topics' admin (``SubscriptionTopics``) as a set: ``ensure`` adds,
    ``delete`` removes and remembers. The first ``failures`` calls to ``ensure`` fail as Kafka
    being away does (``StackError``)."""

    def __init__(self, *, failures: int = 0) -> None:
        self.known: set[str] = set()
        self.deleted: list[str] = []
        self.failures = failures
        self.closed = False

    async def ensure(self, topic: str) -> None:
        if self.failures:
            self.failures -= 1
            raise StackError(f"cannot create {topic}: Kafka is away (a test's failure)")
        self.known.add(topic)

    async def delete(self, topic: str) -> None:
        self.deleted.append(topic)
        self.known.discard(topic)

    async def close(self) -> None:
        self.closed = True


__all__ = [
    "FakeClock",
    "InMemoryAggregates",
    "InMemoryCompactedStore",
    "InMemoryRegistryStore",
    "InMemorySubscriptionStore",
    "InMemoryTopic",
    "InMemoryTopicAdmin",
    "Mailbox",
    "MemoryKind",
    "MemorySink",
    "RecordingWriter",
    "Written",
    "registered",
]
