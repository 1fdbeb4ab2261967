"""The worker's runtime: agents on one Kafka consumer group, batch by batch, at least once.

One consumer (group ``worker.app_id``) reads the input topics of every agent of the process;
one ``BatchingWriter`` writes everything they return. For each batch that ``getmany`` fetched,
each partition's records go to its agent's ``step`` in offset order, and what the step returns
is written at once (outputs, dead letters, the changelog entries of the state it changed). The
next batch is fetched while Kafka confirms the writes: offsets are committed in the order the
batches were taken, each once every write of it and of every batch before it was confirmed, so
a crash replays only records whose outputs may be missing, and never skips one. At most
``worker.max_unconfirmed_records`` input records wait for their confirmations; then the loop
waits too (backpressure, and the consumer fetches nothing more).

Rebalances (aiokafka's eager protocol). On revocation everything taken is confirmed and
committed first, so the next owner of a partition starts exactly after it; the agents then
forget the revoked partitions, except those assigned back in the same rebalance (no other
worker can have owned them in between, so their state is still the changelog's). A partition
newly assigned has its state read back from its changelog partition before its first record:
paused, restored by a task of its own, resumed. Not inside aiokafka's assignment callback:
aiokafka sends no heartbeat while that runs, so a restore longer than the session timeout (a
changelog of a few hundred thousand records) had the worker dropped from the group, the group
rebalanced, and the worker restored again, for minutes, the whole pipeline stalled.

Failures. A write Kafka did not confirm (after the producer's own retries: a lost broker, a
timeout) stops the runtime with ``WorkerFailed``: the process exits and its supervisor starts it
again, which resumes at the committed offsets. A record refused for what it is never gets here:
the writer dead-letters it (``cityhub.connectors.batching_writer``).

Why not faust's streams: faust hands an agent one event at a time through its stream machinery,
about 74 µs per event on the project's machine with no work at all (13 500 events/s, against
500 000 records/s for aiokafka's ``getmany`` in the same run), and a worker's recovery can drop a
record buffered in an agent (``git log`` of ``streams/runtime/intake.py``, the workaround this
runtime replaced).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata

from cityhub.connectors.batching_writer import BatchingWriter
from cityhub.connectors.kafka_clients import kafka_consumer
from cityhub.schemas.errors import CityhubError
from cityhub.schemas.settings import Settings
from cityhub.streams import metrics
from cityhub.streams.runtime.agent import Agent, Write
from cityhub.streams.runtime.changelog import ChangelogReader

log = logging.getLogger("cityhub.runtime")

MAX_BATCH_RECORDS = 2000
"""Records one ``getmany`` returns at most (over all partitions)."""
POLL_TIMEOUT_MS = 100
LAG_INTERVAL_S = 5.0
REVOKE_TIMEOUT_S = 60.0
"""How long a revocation waits for Kafka to confirm what was taken before it gives up."""
REBALANCE_TIMEOUT_S = REVOKE_TIMEOUT_S + 10.0
"""How long the group waits for a member to rejoin a rebalance: as long as its revocation may
take (aiokafka's default, the session timeout, dropped a worker whose revocation waited for
Kafka's confirmations longer than 10 s). A dead worker is still noticed after the session
timeout: it stops heartbeating."""


class WorkerFailed(CityhubError):
    """Kafka did not confirm a write of the worker; the process must start again."""

    retriable = True


@dataclass(slots=True)
class _Taken:
    """One batch's writes and the input offsets they complete."""

    offsets: dict[TopicPartition, int]
    """Next offset to read per input partition, once this batch is confirmed."""
    deliveries: list[asyncio.Future[Any]]
    records: int
    pending: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Worker:
    """Runs ``agents`` on one consumer group until cancelled (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        agents: Sequence[Agent],
        writer: BatchingWriter,
        *,
        ready: Callable[[], bool] = lambda: True,
        client_id: str | None = None,
        fetch: Mapping[str, int] | None = None,
    ) -> None:
        """``ready``: polled before the first fetch (the registry and the routing caught up);
        ``writer`` is started and stopped by the caller; ``fetch``: options of the consumer's
        fetches (``background_fetch`` for a stage that may lag), else answered at once."""
        self._settings = settings
        self._agents = {agent.topic: agent for agent in agents}
        if len(self._agents) != len(agents):
            raise ValueError("two agents read the same topic")
        self._writer = writer
        self._ready = ready
        self._group = settings.worker.app_id
        self._client_id = client_id or f"{self._group}-worker"
        self._fetch = dict(fetch or {})
        self._consumer: AIOKafkaConsumer | None = None
        self._reader = ChangelogReader(
            settings.kafka,
            client_id=f"{self._client_id}-restore",
            max_fetch_bytes=settings.kafka.max_message_bytes + 64 * 1024,
        )
        self._taken: deque[_Taken] = deque()
        self._unconfirmed = 0
        self._confirmed: dict[TopicPartition, int] = {}
        """Next offset per partition whose batches are all confirmed and not yet committed."""
        self._position: dict[TopicPartition, int] = {}
        """Next offset to take per assigned partition (for the agents' ``caught_up``)."""
        self._last_taken_ms: dict[TopicPartition, int] = {}
        """Kafka timestamp of the last record taken per partition (for the lag in seconds)."""
        self._suspended: dict[TopicPartition, Agent] = {}
        """Partitions revoked by the rebalance in progress, state kept in case they come back."""
        self._restoring: asyncio.Task[None] | None = None
        """The restore of the partitions newly assigned (``_restore``), while it runs."""
        self._failure: str | None = None
        """Why the worker cannot go on (the loop raises it as WorkerFailed); the first one wins."""
        self._committing = asyncio.Lock()
        self._last_commit = 0.0
        self._next_tick: dict[str, float] = {}
        self.running = False
        """True while the worker's loop runs (it fetches once it holds partitions)."""
        self._rebalancing = True
        """From the start until the first assignment, and from a revocation until the next
        assignment: the partitions are between owners and nothing of theirs is processed."""

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume and process until cancelled; raises WorkerFailed when Kafka fails a write."""
        while not self._ready():  # noqa: ASYNC110 - the stores offer readiness as a flag
            await asyncio.sleep(0.05)
        kafka, worker = self._settings.kafka, self._settings.worker
        consumer = kafka_consumer(
            kafka,
            group_id=self._group,
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(worker.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(worker.session_timeout_seconds * 250),
            rebalance_timeout_ms=int(REBALANCE_TIMEOUT_S * 1000),
            max_partition_fetch_bytes=max(1024 * 1024, kafka.max_message_bytes + 64 * 1024),
            fetch_max_bytes=64 * 1024 * 1024,
            **self._fetch,
        )
        self._consumer = consumer
        await consumer.start()
        consumer.subscribe(topics=list(self._agents), listener=_Listener(self))
        self.running = True
        try:
            await self._loop(consumer)
        finally:
            self.running = False
            await self._stop_restore()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._settle(), 10.0)
                await self._commit(force=True)
            with contextlib.suppress(Exception):
                await consumer.stop()
            await self._reader.close()
            self._consumer = None

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        next_lag = 0.0
        interval = self._settings.worker.commit_interval_seconds
        limit = self._settings.worker.max_unconfirmed_records
        while True:
            self._raise_failure()
            fetched = await consumer.getmany(
                timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_BATCH_RECORDS
            )
            now = time.time()
            for tp, records in fetched.items():
                agent = self._agents[tp.topic]
                if not records:
                    continue
                if tp.partition not in agent.partitions:
                    # Fetched while the partition's state is being restored (aiokafka fetches
                    # as soon as it is assigned): read them again once it is there; revoked
                    # since the fetch, the next owner reads them.
                    if tp in consumer.assignment():
                        consumer.seek(tp, records[0].offset)
                    continue
                writes = agent.step(tp.partition, records, now)
                self._position[tp] = records[-1].offset + 1
                self._last_taken_ms[tp] = records[-1].timestamp
                await self._take(writes, {tp: records[-1].offset + 1}, len(records))
            await self._ticks(now)
            while self._unconfirmed > limit:
                await self._taken[0].done.wait()
                await self._commit(force=False)  # takes the confirmed batches off the front
            await self._commit(force=time.monotonic() - self._last_commit >= interval)
            if now >= next_lag:
                await self._report_lag(consumer)
                next_lag = now + LAG_INTERVAL_S

    async def _take(
        self, writes: Sequence[Write], offsets: dict[TopicPartition, int], records: int
    ) -> None:
        """Write ``writes``; ``offsets`` may be committed once Kafka confirmed them (and every
        batch taken before)."""
        send = self._writer.send
        deliveries = [
            await send(
                w.topic,
                w.value,
                w.key,
                partition=w.partition,
                timestamp_ms=w.timestamp_ms,
                headers=w.headers,
            )
            for w in writes
        ]
        unique = list({id(d): d for d in deliveries}.values())
        taken = _Taken(offsets, unique, records, pending=len(unique))
        self._taken.append(taken)
        self._unconfirmed += records
        if not unique:
            taken.done.set()
            return
        confirmed = functools.partial(self._confirmed_one, taken)
        for delivery in unique:
            delivery.add_done_callback(confirmed)

    def _confirmed_one(self, taken: _Taken, delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled() or delivery.exception() is not None:
            self._fail("Kafka did not confirm a write", delivery.exception())
            taken.done.set()  # let waiters see the failure
            return
        taken.pending -= 1
        if taken.pending == 0:
            taken.done.set()

    def _fail(self, what: str, exc: BaseException | None) -> None:
        if self._failure is None:
            self._failure = f"{what}: {exc!r}"
            log.error("%s", self._failure)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise WorkerFailed(self._failure)

    async def _commit(self, *, force: bool) -> None:
        """Commit the offsets of the confirmed batches at the front (in the order taken), of the
        partitions still assigned (one commit at a time: offsets only ever move forward)."""
        async with self._committing:
            taken = self._taken
            while taken and taken[0].done.is_set():
                self._raise_failure()
                batch = taken.popleft()
                self._unconfirmed -= batch.records
                self._confirmed.update(batch.offsets)
            consumer = self._consumer
            if not self._confirmed or not force or consumer is None:
                return
            assignment = consumer.assignment()
            offsets = {
                tp: OffsetAndMetadata(offset, "")
                for tp, offset in self._confirmed.items()
                if tp in assignment
            }
            self._confirmed = {}
            self._last_commit = time.monotonic()
            if not offsets:
                return
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # A rebalance moved a partition away: its next owner replays from the last
                # committed offset (outputs written twice carry the same ids).
                log.warning("commit refused (%r); a rebalance moved partitions", exc)

    async def _settle(self) -> None:
        """Wait until every batch taken is confirmed (or one failed)."""
        await self._writer.flush()
        for batch in list(self._taken):
            await batch.done.wait()
        self._raise_failure()

    async def _ticks(self, now: float) -> None:
        for agent in self._agents.values():
            interval = agent.tick_interval
            if interval is None or not agent.partitions:
                continue
            due = self._next_tick.get(agent.name, 0.0)
            if now < due:
                continue
            self._next_tick[agent.name] = now + interval
            caught_up = await self._caught_up(agent.topic, agent.partitions)
            writes = agent.tick(now, caught_up.__contains__)
            if writes:
                await self._take(writes, {}, 0)

    async def _caught_up(self, topic: str, partitions: Collection[int]) -> set[int]:
        """The partitions of ``topic`` with nothing left to read: position at the high
        watermark (unknown until the partition's first fetch: not caught up)."""
        consumer = self._consumer
        done: set[int] = set()
        if consumer is None:
            return done
        assigned = consumer.assignment()
        for partition in partitions:
            tp = TopicPartition(topic, partition)
            if tp not in assigned:  # revoked, its agent not told yet: highwater() would assert
                continue
            high = consumer.highwater(tp)
            position = self._position.get(tp)
            if position is None and high is not None:
                with contextlib.suppress(Exception):  # moving away in a rebalance
                    position = await consumer.position(tp)
            if high is not None and position is not None and position >= high:
                done.add(partition)
        return done

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        """The lag gauges of every assigned partition (records not taken yet, 0 before the
        first fetch tells the high watermark; and that lag in seconds)."""
        now = time.time()
        for tp in consumer.assignment():
            position = self._position.get(tp)
            if position is None:
                with contextlib.suppress(Exception):  # moving away in a rebalance
                    position = await consumer.position(tp)
            if position is None:
                continue
            high = consumer.highwater(tp)
            lag = max(0, (high if high is not None else position) - position)
            metrics.CONSUMER_LAG.labels(self._group, tp.topic, str(tp.partition)).set(lag)
            metrics.CONSUMER_LAG_SECONDS.labels(self._group, tp.topic, str(tp.partition)).set(
                metrics.lag_seconds(lag, self._last_taken_ms.get(tp), now)
            )

    @property
    def healthy(self) -> bool:
        """What /healthz reports: the loop runs and the worker holds its share of the group's
        partitions (possibly none, when the group has more workers than partitions). Not while
        a rebalance moves partitions: a worker started again after a crash is not healthy until
        the group gave it its partitions (up to ``worker.session_timeout_seconds`` after the
        crash, while the crashed member's partitions wait), nor is one whose partitions are
        being moved."""
        return self.running and not self._rebalancing and self._failure is None

    # --- rebalances -----------------------------------------------------------------------------

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        """Confirm and commit what was taken, then suspend the revoked partitions' states (a
        restore still running stops: the partitions it did not finish go to their next owner
        unrestored here)."""
        self._rebalancing = True
        await self._stop_restore()
        try:
            await asyncio.wait_for(self._settle(), REVOKE_TIMEOUT_S)
            await self._commit(force=True)
        except Exception as exc:  # the loop raises it; the next owner replays
            self._fail("could not confirm the worker's writes before a rebalance", exc)
        for tp in revoked:
            agent = self._agents.get(tp.topic)
            if agent is not None and tp.partition in agent.partitions:
                self._suspended[tp] = agent
            self._position.pop(tp, None)
            self._last_taken_ms.pop(tp, None)
            for gauge in (metrics.CONSUMER_LAG, metrics.CONSUMER_LAG_SECONDS):
                with contextlib.suppress(KeyError):  # a partition no longer held has no lag here
                    gauge.remove(self._group, tp.topic, str(tp.partition))

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """Forget suspended partitions not assigned back; pause the new ones and restore their
        states in the background (``_restore``), so that this callback returns at once."""
        await self._stop_restore()
        for tp, held in list(self._suspended.items()):
            if tp not in assigned:
                held.revoke(tp.partition)
        kept = {tp for tp in self._suspended if tp in assigned}
        self._suspended.clear()
        new = [tp for tp in sorted(assigned - kept) if tp.topic in self._agents]
        log.info(
            "worker holds %d partition(s) (%d kept across the rebalance, %d to restore)",
            len(assigned),
            len(kept),
            len(new),
        )
        if not new:
            self._rebalancing = False
            return
        consumer = self._consumer
        if consumer is not None:
            consumer.pause(*new)  # nothing of theirs is taken before their state is back
        self._restoring = asyncio.create_task(self._restore(new))

    async def _restore(self, new: list[TopicPartition]) -> None:
        """Read the changelogs of ``new``, hand each agent its state, resume the partitions. A
        restore that fails (Kafka away, the restore's time out, an agent refusing its state)
        fails the worker: the partitions would otherwise stay paused for good, lag growing
        behind a worker that looks alive; a worker started again restores them anew."""
        try:
            changelogs = {
                tp: TopicPartition(changelog, tp.partition)
                for tp in new
                if (changelog := self._agents[tp.topic].changelog) is not None
            }
            stored = await self._reader.read(list(changelogs.values()))
            for tp in new:
                source = changelogs.get(tp)
                writes = self._agents[tp.topic].assign(
                    tp.partition, stored.get(source, []) if source is not None else []
                )
                if writes:
                    await self._take(writes, {}, 0)
            consumer = self._consumer
            if consumer is not None:
                held = consumer.assignment()
                consumer.resume(*[tp for tp in new if tp in held])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(f"could not restore the state of {sorted(new)}", exc)
        else:
            self._rebalancing = False

    async def _stop_restore(self) -> None:
        task, self._restoring = self._restoring, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._worker.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._worker.assigned(set(assigned))
