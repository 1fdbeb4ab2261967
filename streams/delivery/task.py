"""One subscription's delivery: its topic → a bounded queue → its sink.

Each delivery task has its own Kafka consumer in its own consumer group
(``<group_prefix>.<prefix>.sub.<tenant>.<id>``) on the subscription's own topic, so its
position, its lag and its pace are its own: a slow or dead sink grows only its own lag and never
delays another subscription. Because it is a consumer *group*, several delivery processes can
run the same subscription's task and Kafka lets one of them deliver (the others stand by).

Guarantees:

- **At least once.** An offset is committed only after the items before it were delivered
  (the sink confirmed: a 2xx, a PUBACK), dropped by ``drop_oldest`` (counted), or written to
  the dead-letter topic after the last attempt (counted). A crash delivers the uncommitted
  items again; receivers recognise them by ``webhook-id`` and by the items' ids.
- **Backpressure.** The queue holds at most ``queue_size`` items. ``pause`` stops fetching
  (``consumer.pause``) until there is room; ``drop_oldest`` drops and counts.
- **Retries.** A failed batch is attempted again after an exponential backoff with full
  jitter (``RetryPolicy``; a ``Retry-After`` is honoured up to the cap), up to
  ``webhook_max_attempts`` attempts and for at least ``webhook_min_retry_seconds`` since its
  first failure; a refusal that cannot succeed (a 4xx, a URL that fails the SSRF checks) goes
  to the dead letters at once. While a batch keeps failing the subscription reports
  ``failing``.
- **Replay.** A new ``replay`` generation on the record makes the task seek its topic to the
  requested time or offset, drop what it had queued, and commit the new position with
  ``replay=<generation>`` as the commit's metadata, which a restarted task reads back so it
  never applies one generation twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from cityhub.connectors.kafka_clients import kafka_admin, kafka_consumer
from cityhub.connectors.sinks.backoff import RetryPolicy
from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind, without_excerpt
from cityhub.connectors.sinks.tracing import delivering
from cityhub.schemas.errors import InvalidTimestamp, Reason
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import (
    OnFull,
    Replay,
    Subscription,
    SubscriptionState,
    subscription_topic,
)
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.delivery import metrics as m
from cityhub.streams.delivery.agreement_screen import DeliverySharing
from cityhub.streams.delivery.batch import message_id
from cityhub.streams.delivery.consumer_group import REPLAY_METADATA, applied_generation, group_id
from cityhub.streams.delivery.dead_letters import STAGE, delivery_dead_letters
from cityhub.streams.delivery.outputs import DeadLetterWriter, Target
from cityhub.streams.delivery.privacy_screen import screen_when_current
from cityhub.streams.delivery.queue import DeliveryQueue, Item
from cityhub.streams.metrics import DEADLETTERS
from cityhub.streams.privacy.gate import PrivacyGate, Screened
from cityhub.streams.privacy.log_writer import ProcessingLogSink, ProcessingLogUnavailable

log = logging.getLogger("cityhub.delivery")

FETCH_MAX_RECORDS = 500
POLL_TIMEOUT_MS = 200
LAG_INTERVAL_S = 1.0


class DeliveryTask:
    """Delivers one subscription until ``stop``; restart it to change its sink or queue."""

    def __init__(
        self,
        record: Subscription,
        target: Target,
        settings: Settings,
        *,
        dead_letters: DeadLetterWriter,
        rng: random.Random | None = None,
        gate: PrivacyGate | None = None,
        processing_log: ProcessingLogSink | None = None,
        sharing: DeliverySharing | None = None,
    ) -> None:
        """Personal items pass only where ``gate`` admits them at the moment of sending (none
        without a gate), and each delivery of them is written to ``processing_log`` before the
        batch counts as delivered. Items under an agreement pass only while ``sharing`` says it
        is in force at the moment of sending (none without it), and are counted there."""
        self.record = record
        self._target = target
        self._settings = settings
        self._dead_letters = dead_letters
        self._gate = gate
        self._processing_log = processing_log
        self._sharing = sharing
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        d = settings.delivery
        self._policy = RetryPolicy(
            max_attempts=d.webhook_max_attempts,
            base_s=d.webhook_backoff_base_seconds,
            cap_s=d.webhook_backoff_cap_seconds,
            min_retry_s=d.webhook_min_retry_seconds,
        )
        self.topic = subscription_topic(settings.kafka.topic_prefix, record.tenant, record.id)
        self.queue = DeliveryQueue(
            record.queue_size, drop_oldest=record.on_full is OnFull.DROP_OLDEST
        )
        self._labels = (record.tenant, record.id)
        for counter in (m.DELIVERED, m.FAILED, m.RETRIED, m.DROPPED, m.DEADLETTERED):
            # Each series from 0: an alert on its increase (CityhubDeliveryDeadLetters) sees the
            # first batch given up, which a series born at its count would hide.
            counter.labels(*self._labels)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._epoch = 0
        """Bumped when queued items become void (replay, lost partition): a batch in flight
        from before must not commit."""
        self._generation = 0
        self._delivered_to: dict[TopicPartition, int] = {}
        """Next offset to deliver per partition (everything before it is settled)."""
        self._in_flight: Item | None = None
        self._started_at = time.monotonic()
        """When the current consumer started (the assignment's log line says how long ago)."""
        self._failures = 0
        self.state = SubscriptionState.ACTIVE
        self.delivered = 0

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"deliver-{self.topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def assigned(self) -> bool:
        """Whether this process holds the subscription's partition (another delivery process
        may, this one standing by)."""
        return bool(self._delivered_to)

    def update(self, record: Subscription) -> None:
        """A new version of the record that needs no restart (a replay request, a name)."""
        self.record = record

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            try:
                await self._deliver_until_cancelled()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery of %s failed; restarting in %.0f s", self.topic, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _deliver_until_cancelled(self) -> None:
        kafka = self._settings.kafka
        consumer = kafka_consumer(
            kafka,
            group_id=group_id(self._settings, self.record),
            client_id=f"cityhub-deliver-{self.record.tenant}.{self.record.id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=kafka.max_message_bytes + 64 * 1024,
            session_timeout_ms=int(self._settings.worker.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(self._settings.worker.session_timeout_seconds * 250),
        )
        self._consumer = consumer
        try:
            # Inside: a subscription paused or deleted while its consumer starts cancels the
            # start, and the consumer must still be closed (asyncio logged it unclosed).
            await consumer.start()
            self._started_at = time.monotonic()
            # The group join runs in the background from here, while the sink connects and the
            # applied replay generation is read: a new subscription's first delivery waits for
            # the slowest of the three, not for their sum. Nothing is taken from the consumer
            # before the generation is known (_maybe_replay runs first in the fetch loop).
            consumer.subscribe([self.topic], listener=_Rebalance(self))
            _, self._generation = await asyncio.gather(
                self._target.start(), self._committed_generation()
            )
            sender = asyncio.create_task(self._send_loop(consumer))
            try:
                await self._fetch_loop(consumer, sender)
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
        finally:
            self._consumer = None
            with contextlib.suppress(Exception):
                await self._target.stop()
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _committed_generation(self) -> int:
        admin = kafka_admin(self._settings.kafka)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group_id(self._settings, self.record))
        finally:
            await admin.close()
        return max(
            (applied_generation(o.metadata) for tp, o in offsets.items() if tp.topic == self.topic),
            default=0,
        )

    # --- fetching ------------------------------------------------------------------------------
    async def _fetch_loop(self, consumer: AIOKafkaConsumer, sender: asyncio.Task[None]) -> None:
        queue = self.queue
        paused = False
        next_lag = 0.0
        while not sender.done():
            await self._maybe_replay(consumer)
            loop_time = asyncio.get_running_loop().time()
            if loop_time >= next_lag:
                self._report_lag(consumer)
                next_lag = loop_time + LAG_INTERVAL_S
            if queue.fetch_limit(FETCH_MAX_RECORDS) == 0:
                if not paused:
                    consumer.pause(*consumer.assignment())
                    paused = True
                await queue.wait_for_space(0.5)
                # Still poll while paused: the group expects it (max.poll.interval.ms).
                await consumer.getmany(timeout_ms=0)
                continue
            if paused:
                consumer.resume(*consumer.assignment())
                paused = False
            fetched = await consumer.getmany(
                timeout_ms=POLL_TIMEOUT_MS, max_records=queue.fetch_limit(FETCH_MAX_RECORDS)
            )
            for records in fetched.values():
                for r in records:
                    dropped = queue.put(Item.of(r))
                    if dropped is not None:
                        m.DROPPED.labels(*self._labels).inc()
                        self._settle(TopicPartition(self.topic, dropped.partition), dropped.offset)
            m.QUEUE_DEPTH.labels(*self._labels).set(len(queue))
        sender.result()  # the sender failed: raise its error

    def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        lag = 0
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            done = self._delivered_to.get(tp)
            if high is not None and done is not None:
                lag += max(0, high - done)
        m.LAG_MESSAGES.labels(*self._labels).set(lag)
        oldest = self._in_flight or self.queue.oldest()
        age = max(0.0, time.time() - oldest.timestamp_ms / 1000) if oldest is not None else 0.0
        m.LAG_SECONDS.labels(*self._labels).set(age if lag or oldest else 0.0)
        m.QUEUE_DEPTH.labels(*self._labels).set(len(self.queue))

    def _settle(self, tp: TopicPartition, offset: int) -> None:
        if offset + 1 > self._delivered_to.get(tp, -1):
            self._delivered_to[tp] = offset + 1

    # --- replay --------------------------------------------------------------------------------
    async def _maybe_replay(self, consumer: AIOKafkaConsumer) -> None:
        replay = self.record.replay
        if replay is None or replay.generation <= self._generation:
            return
        assigned = consumer.assignment()
        if not assigned:
            return  # applied once this task holds the partition
        await self._replay(consumer, replay, assigned)

    async def _replay(
        self, consumer: AIOKafkaConsumer, replay: Replay, assigned: set[TopicPartition]
    ) -> None:
        beginning = await consumer.beginning_offsets(list(assigned))
        end = await consumer.end_offsets(list(assigned))
        targets: dict[TopicPartition, int] = {}
        if replay.from_offset is not None:
            for tp in assigned:
                targets[tp] = min(max(replay.from_offset, beginning[tp]), end[tp])
        else:
            assert replay.from_time is not None  # the model requires one of them
            try:
                ms = int(parse_rfc3339(replay.from_time).timestamp() * 1000)
            except InvalidTimestamp as exc:
                # Stored before the API checked the range (years 0001 to 9999 passed): replay
                # everything kept rather than fail the task on every start.
                log.warning("replay of %s: %s; replaying from the beginning", self.topic, exc)
                targets = dict(beginning)
            else:
                found = await consumer.offsets_for_times(dict.fromkeys(assigned, ms))
                for tp in assigned:
                    hit = found.get(tp)
                    targets[tp] = hit.offset if hit is not None else end[tp]
        self._epoch += 1
        self.queue.clear()
        meta = f"{REPLAY_METADATA}{replay.generation}"
        for tp, offset in targets.items():
            consumer.seek(tp, offset)
            self._delivered_to[tp] = offset
        await consumer.commit({tp: OffsetAndMetadata(o, meta) for tp, o in targets.items()})
        self._generation = replay.generation
        log.info(
            "subscription %s/%s replays from %s (generation %d)",
            self.record.tenant,
            self.record.id,
            replay.from_time or f"offset {replay.from_offset}",
            replay.generation,
        )

    def _revoked(self, revoked: set[TopicPartition]) -> None:
        """Another delivery process takes these partitions: what is queued is theirs now."""
        if revoked:
            self._epoch += 1
            self.queue.clear()
            for tp in revoked:
                self._delivered_to.pop(tp, None)

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        for tp in assigned:
            with contextlib.suppress(KafkaError, AssertionError):
                self._delivered_to[tp] = await consumer.position(tp)
        if assigned:
            # How long the group took to hand this process the subscription: a broker's
            # group.initial.rebalance.delay.ms (3 s by default) shows here.
            log.info(
                "delivering %s from %d partition(s), %.0f ms after its consumer started",
                self.topic,
                len(assigned),
                (time.monotonic() - self._started_at) * 1000,
            )

    # --- sending -------------------------------------------------------------------------------
    async def _send_loop(self, consumer: AIOKafkaConsumer) -> None:
        limits = self._target.batch_limits
        while True:
            batch = await self.queue.take(
                limits.max_items,
                max_bytes=limits.max_bytes,
                item_overhead=limits.item_overhead,
                linger=limits.linger_s,
                item_size=limits.item_size,
            )
            epoch = self._epoch
            self._in_flight = batch[0]
            try:  # one span per batch, a child of its first item's trace (sinks send it on)
                with delivering(batch, self.record.source.value):
                    await self._deliver(batch)
            finally:
                self._in_flight = None
            if epoch != self._epoch:
                continue  # replayed or revoked meanwhile: this position is no longer ours
            done: dict[TopicPartition, int] = {}
            for item in batch:  # a batch may span partitions: each one's highest offset
                tp = TopicPartition(self.topic, item.partition)
                done[tp] = max(done.get(tp, -1), item.offset)
            for tp, offset in done.items():
                self._settle(tp, offset)
            meta = f"{REPLAY_METADATA}{self._generation}"
            try:
                await consumer.commit(
                    {tp: OffsetAndMetadata(self._delivered_to[tp], meta) for tp in done}
                )
            except CommitFailedError as exc:  # a rebalance took the partition
                log.warning("commit of %s failed (%s); a rebalance moved it", self.topic, exc)
            m.QUEUE_DEPTH.labels(*self._labels).set(len(self.queue))

    async def _deliver(self, batch: list[Item]) -> None:
        """Deliver ``batch`` with retries; on the last failure write it to the dead letters.
        Returns when the batch is settled either way."""
        msg_id = message_id(self.record.tenant, self.record.id, batch)
        attempts = 0
        first_failure: float | None = None
        while True:
            # Checked again before every attempt: a withdrawal during the retries stops it.
            screened = await screen_when_current(self._gate, self.record, batch, self._sharing)
            if not screened.send:
                return  # nothing of it may go: settled (each refusal counted)
            started = time.time()
            if screened.personal:
                # Logged before it goes: an attempt whose log cannot be written does not happen.
                await self._log_delivery(screened, started)
            try:
                await self._target.send(screened.send, msg_id)
            except DeliveryFailed as failure:
                exc = failure
                if screened.personal:
                    # The attempt failed: say so in the log too, and quote nothing the receiver
                    # answered (a receiver may echo the opened values back).
                    await self._log_delivery(screened, started, ok=False)
                    exc = without_excerpt(failure)
                attempts += 1
                if first_failure is None:
                    first_failure = time.monotonic()
                self._failures += 1
                m.FAILED.labels(*self._labels).inc()
                if exc.kind is FailureKind.GONE:
                    # Not this batch's fault: held, never dead-lettered (the lag shows it).
                    delay: float | None = self._rng.uniform(0.5, 1.0) * self._policy.cap_s
                    self._set_state(SubscriptionState.FAILING)
                else:
                    delay = (
                        self._policy.next_delay(
                            attempts,
                            self._rng,
                            retry_after=exc.retry_after,
                            failing_for=time.monotonic() - first_failure,
                        )
                        if exc.retriable
                        else None
                    )
                if self._failures >= self._settings.delivery.failing_after_attempts:
                    self._set_state(SubscriptionState.FAILING)
                if delay is None:
                    await self._dead_letter(screened.passed, exc, attempts)
                    return
                log.info(
                    "delivery of %s failed (attempt %d): %s; again in %.2f s",
                    self.topic,
                    attempts,
                    exc,
                    delay,
                )
                m.RETRIED.labels(*self._labels).inc()
                await asyncio.sleep(delay)
                continue
            now = time.time()
            latency = m.LATENCY.labels(*self._labels)
            for item in batch:
                latency.observe(max(0.0, now - item.timestamp_ms / 1000))
            m.DELIVERED.labels(*self._labels).inc(len(screened.send))
            if self._sharing is not None:
                self._sharing.delivered(screened.send)
            self.delivered += len(screened.send)
            self._failures = 0
            self._set_state(SubscriptionState.ACTIVE)
            return

    async def _log_delivery(self, screened: Screened, started: float, *, ok: bool = True) -> None:
        """The processing-log records of an attempt to deliver personal items (before it, and
        once more with an error status when it failed); raises when the log cannot be written,
        so the attempt is not made (the batch stays uncommitted and is tried again): never
        delivered unlogged."""
        assert self._gate is not None  # only a gate lets personal items through
        records = self._gate.log_records(
            self.record, screened.personal, started=started, ended=time.time(), ok=ok
        )
        if self._processing_log is None:
            raise ProcessingLogUnavailable("no processing log to write the delivery to")
        await self._processing_log.write(records)

    async def _dead_letter(self, batch: list[Item], exc: DeliveryFailed, attempts: int) -> None:
        detail = (
            f"subscription {self.record.tenant}/{self.record.id}: gave up after {attempts} "
            f"attempt(s): {exc}"
        )
        letters = delivery_dead_letters(
            batch, detail=detail, topic=self.topic, settings=self._settings
        )
        # Sent together: one round trip, not one per item.
        await asyncio.gather(*(self._dead_letters(*letter) for letter in letters))
        m.DEADLETTERED.labels(*self._labels).inc(len(batch))
        # Also where every other stage's dead letters are counted: one series to alert on.
        DEADLETTERS.labels(STAGE, Reason.DELIVERY_FAILED.value).inc(len(batch))
        log.warning("%s; %d item(s) written to the dead letters", detail, len(batch))

    def _set_state(self, state: SubscriptionState) -> None:
        if state is not self.state:
            self.state = state
            m.set_state(*self._labels, state)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, task: DeliveryTask) -> None:
        self._task = task

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._task._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._task._assigned(set(assigned))
