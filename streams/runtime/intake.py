"""Taking an agent's input records exactly in offset order, each once, whatever faust does.

faust's stream, read with manual acknowledgements (``stream.noack()``), has two gaps that lose
records at a worker's (re)start, found in the aggregator's SIGKILL test (and the normaliser reads
its input the same way):

- when a worker's recovery completes, faust resumes its flow control, which empties the agents'
  input buffers; a record fetched into them just before is gone (its offset already read, so it
  is not fetched again), and a seek back to the committed offsets at the same time delivers some
  records twice;
- faust commits the offset after the first run of consecutive acknowledged offsets, but lets
  that run start one past its committed offset (or anywhere before its first commit), so a
  record dropped as above, or acknowledged out of order (its writes confirmed before an earlier
  one's), can be committed over.

So an ``OrderedIntake`` knows, per input partition and assignment, the offset due next (from the
group's committed offset at the partition's first record): a record below it is a copy, only
acknowledged (in order); a record above it comes after a hole, whose records it reads straight
from Kafka and processes first (acknowledging them to faust itself, so that the commit may pass
them). And every record is acknowledged only once it and every earlier record of its partition
were (``InputOrder``), so no commit passes a record whose outputs Kafka has not confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import Message

log = logging.getLogger("cityhub.intake")

Process = Callable[[Any], Awaitable[list[asyncio.Future[Any]]]]
"""Everything for one input record (a faust message or an aiokafka record: topic, partition,
offset, key, value, headers); returns the deliveries of what it wrote."""


class InputOrder:
    """One input partition as the agent takes it, within one assignment: the offset due next,
    and the acknowledgement of the last record taken (see the module docstring, "Input order").
    """

    __slots__ = ("due", "last_ack")

    def __init__(self, due: int) -> None:
        self.due = due
        self.last_ack: asyncio.Future[None] | None = None
        """Resolved once the last record taken (and so every earlier one) is acknowledged."""

    def admit(self, offset: int) -> range | None:
        """Take the record at ``offset``: None when it was taken already (faust delivered it
        again), else the offsets due before it that never came (usually none), which the caller
        must process first; either way ``offset + 1`` is due next."""
        if offset < self.due:
            return None
        missing = range(self.due, offset)
        self.due = offset + 1
        return missing

    def acknowledge(
        self,
        deliveries: Iterable[asyncio.Future[Any]],
        ack: Callable[[], None],
        on_failure: Callable[[BaseException], None],
    ) -> None:
        """Call ``ack`` once every delivery succeeded and every record taken before this one
        was acknowledged: records are acknowledged in offset order. On a failed delivery,
        ``on_failure`` instead, and nothing taken after it is ever acknowledged."""
        previous = self.last_ack
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_ack = done
        waiting = {id(d): d for d in deliveries}  # one future may carry several records
        if previous is not None and not previous.done():
            waiting[id(previous)] = previous
        if not waiting:
            ack()
            done.set_result(None)
            return
        left = len(waiting)
        failed = False

        def settled(delivery: asyncio.Future[Any]) -> None:
            nonlocal left, failed
            if failed:
                return
            if delivery.cancelled() or delivery.exception() is not None:
                failed = True
                on_failure(delivery.exception() or asyncio.CancelledError())
                return
            left -= 1
            if left == 0:
                ack()
                done.set_result(None)

        for delivery in waiting.values():
            delivery.add_done_callback(settled)


class OrderedIntake:
    """One agent's input topic, taken in offset order (see the module docstring)."""

    def __init__(
        self, app: faust.App, topic: str, *, group: str, bootstrap: str, client_id: str
    ) -> None:
        self.app = app
        self.topic = topic
        self.group = group
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.inputs: dict[int, InputOrder] = {}
        """By input partition, in this assignment: the offset due next and the acknowledgements."""
        self.assignment = 0
        self._reader: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    def reset(self) -> None:
        """A rebalance: every partition starts again from its committed offset."""
        self.inputs.clear()
        self.assignment += 1

    async def take(
        self,
        event: Any,
        process: Process,
        release: Callable[[], None],
        on_failure: Callable[[BaseException], None],
    ) -> None:
        """Process one event of the agent's stream and acknowledge it in offset order once Kafka
        confirmed what it wrote (``release`` then, or on failure); first the records of its
        partition that faust skipped before it, a copy of a record already taken only
        acknowledged (see the module docstring, "Input order")."""
        message = event.message
        partition: int = message.partition

        def ack() -> None:
            event.ack()
            release()

        def failed(exc: BaseException) -> None:
            release()
            on_failure(exc)

        order = self.inputs.get(partition)
        if order is None:
            order = await self._input_order(partition, message.offset)
        missing = order.admit(message.offset)
        if missing is None:
            log.debug("%s[%d]@%d delivered again", message.topic, partition, message.offset)
            order.acknowledge((), ack, failed)
            return
        if missing:
            records = await self.read_missing(partition, missing)
            log.warning(
                "%s[%d]: offsets %d-%d not delivered by the stream; read %d record(s) directly",
                message.topic,
                partition,
                missing.start,
                missing.stop - 1,
                len(records),
            )
            for record in records:
                deliveries = await process(record)
                order.acknowledge(deliveries, self._acker(record), on_failure)
        order.acknowledge(await process(message), ack, failed)

    async def _input_order(self, partition: int, offset: int) -> InputOrder:
        """The order of a partition's first record in this assignment: due from the group's
        committed offset (where the stream starts), or from ``offset`` if Kafka cannot say."""
        assignment = self.assignment
        try:
            due = await self.start_offset(partition)
        except Exception as exc:
            log.warning("no committed offset for %s[%d]: %r", self.topic, partition, exc)
            due = None
        order = InputOrder(offset if due is None else due)
        if self.assignment == assignment:  # not a stale lookup across a rebalance
            order = self.inputs.setdefault(partition, order)
        return order

    async def start_offset(self, partition: int) -> int | None:
        """Where the stream of ``partition`` starts: the group's committed offset, or the
        earliest one when there is none or it is gone (``auto_offset_reset`` earliest)."""
        tp = TopicPartition(self.topic, partition)
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap, client_id=self.client_id
            )
            await self._admin.start()
        committed = await self._admin.list_consumer_group_offsets(self.group, partitions=[tp])
        held = committed.get(tp)
        earliest = (await (await self._reader_client()).beginning_offsets([tp]))[tp]
        if held is None or held.offset < 0:
            return int(earliest)
        return max(int(held.offset), int(earliest))

    async def read_missing(self, partition: int, offsets: range) -> list[Any]:
        """The records of ``offsets`` in the input partition, read straight from Kafka (no
        record for offsets that hold none: transaction markers, deleted by retention)."""
        reader = await self._reader_client()
        tp = TopicPartition(self.topic, partition)
        reader.assign([tp])
        reader.seek(tp, offsets.start)
        out: list[Any] = []
        deadline = time.monotonic() + 60
        while await reader.position(tp) < offsets.stop:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {tp} {offsets}")
            batch = await reader.getmany(tp, timeout_ms=500)
            out += [r for r in batch.get(tp, ()) if offsets.start <= r.offset < offsets.stop]
        return out

    async def _reader_client(self) -> AIOKafkaConsumer:
        if self._reader is None:
            self._reader = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await self._reader.start()
        return self._reader

    def _acker(self, record: Any) -> Callable[[], None]:
        """Acknowledges a record read by ``read_missing`` (faust never delivered it), so that
        the commit may pass it."""
        consumer = self.app.consumer
        message = Message(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp / 1000,
            record.timestamp_type,
            record.headers,
            record.key,
            record.value,
            None,
        )

        def ack() -> None:
            consumer.ack(message)

        return ack

    async def close(self) -> None:
        """Stop the Kafka clients of ``read_missing`` and ``start_offset``."""
        reader, admin = self._reader, self._admin
        self._reader = self._admin = None
        with contextlib.suppress(Exception):
            if reader is not None:
                await reader.stop()
        with contextlib.suppress(Exception):
            if admin is not None:
                await admin.close()
