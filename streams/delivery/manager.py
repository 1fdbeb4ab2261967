"""Runs one ``DeliveryTask`` per subscription whose delivery kind a task serves (webhook, MQTT,
a plugin's: ``Serving.TASK``), following the subscriptions view; the kind builds the sink.

Subscriptions take effect without restarts: the manager wakes whenever the view applied a
record (and at least every ``POLL_INTERVAL_S``), starts a task for a new or resumed
subscription, stops the task of a paused or deleted one (its Kafka position stays committed),
restarts a task whose sink or queue changed, and hands other changes (a replay request) to the
running task.

Several processes may run a manager: each subscription is one consumer group, so Kafka lets
one process deliver it and keeps the others as standbys.

A record of the subscriptions topic holds no secret; the manager joins it with its secrets from
the subscription-secrets store (``join_secrets``) before the kind builds the sink. A webhook
subscription whose secret is not there yet (or is not the one its record names) waits: no task,
nothing delivered unsigned, nothing dead-lettered; it is logged once and counted in
``cityhub_delivery_awaiting_secret``, and starts when the secret arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer, TopicPartition
from prometheus_client import Gauge

from cityhub.connectors.kafka import create_producer
from cityhub.connectors.kafka_clients import kafka_admin, kafka_consumer
from cityhub.connectors.sinks import Serving
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import (
    Subscription,
    SubscriptionState,
    record_key,
    subscription_topic,
)
from cityhub.schemas.subscription_secrets import join_secrets
from cityhub.schemas.topics import Topics
from cityhub.streams.delivery import metrics as m
from cityhub.streams.delivery.agreement_screen import DeliverySharing
from cityhub.streams.delivery.consumer_group import group_id
from cityhub.streams.delivery.outputs import Target
from cityhub.streams.delivery.targets import target_for
from cityhub.streams.delivery.task import DeliveryTask
from cityhub.streams.privacy.gate import PrivacyGate
from cityhub.streams.privacy.log_writer import ProcessingLogSink
from cityhub.streams.subscriptions.secret_store import SubscriptionSecretRecordStore
from cityhub.streams.subscriptions.store import SubscriptionRecordStore

log = logging.getLogger("cityhub.delivery")

AWAITING_SECRET = Gauge(
    "cityhub_delivery_awaiting_secret",
    "Subscriptions not delivered because their secret is not (yet) on the "
    "subscription-secrets topic.",
)

POLL_INTERVAL_S = 0.2
PAUSED_LAG_INTERVAL_S = 10.0

TargetFactory = Callable[[Subscription, Settings], Target | None]


def _restart_needed(old: Subscription, new: Subscription) -> bool:
    return (
        old.delivery != new.delivery
        or old.on_full != new.on_full
        or old.queue_size != new.queue_size
        or old.source != new.source
    )


class DeliveryManager:
    """The delivery tasks of one process."""

    def __init__(
        self,
        settings: Settings,
        store: SubscriptionRecordStore,
        *,
        target_factory: TargetFactory = target_for,
        gate: PrivacyGate | None = None,
        processing_log: ProcessingLogSink | None = None,
        secrets: SubscriptionSecretRecordStore | None = None,
        sharing: DeliverySharing | None = None,
    ) -> None:
        """Every task checks personal items against ``gate`` and logs their deliveries to
        ``processing_log``, and items under an agreement against ``sharing`` (see
        ``DeliveryTask``). ``secrets`` holds the records' secrets;
        without it only records that hold theirs inline (or need none) are delivered."""
        self._settings = settings
        self._secrets = secrets
        self._awaiting: set[tuple[str, str]] = set()
        self._gate = gate
        self._processing_log = processing_log
        self._sharing = sharing
        self._store = store
        self._target_factory = target_factory
        self.tasks: dict[tuple[str, str], DeliveryTask] = {}
        self._known: set[tuple[str, str]] = set()
        self._producer: AIOKafkaProducer | None = None
        self._seen_applied: tuple[int, int] = (-1, -1)
        self.ready = False

    def _inputs_ready(self) -> bool:
        return (
            self._store.ready
            and (self._secrets is None or self._secrets.ready)
            and (self._gate is None or self._gate.ready())
        )

    def _with_secrets(self, record: Subscription) -> Subscription | None:
        """``record`` with its secrets, as its sink needs it; None while it waits for them."""
        secrets = self._secrets.view.get(record_key(record)) if self._secrets is not None else None
        return join_secrets(record, secrets)

    def _note_awaiting(self, awaiting: set[tuple[str, str]]) -> None:
        """Log each subscription once when it starts waiting for its secret, and when it stops
        (never with a secret); the gauge counts those waiting."""
        for key in sorted(awaiting - self._awaiting):
            log.warning(
                "not delivering %s/%s yet: its secret is not on the subscription-secrets topic",
                *key,
            )
        for key in sorted(self._awaiting - awaiting):
            log.info("%s/%s no longer waits for its secret", *key)
        self._awaiting = awaiting
        AWAITING_SECRET.set(len(awaiting))

    async def _dead_letter(
        self, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        assert self._producer is not None
        topic = Topics.for_prefix(self._settings.kafka.topic_prefix).deadletter
        await (await self._producer.send(topic, value, key=key, headers=headers))

    async def run(self) -> None:
        """Deliver until cancelled."""
        self._producer = create_producer(self._settings.kafka, client_id="cityhub-delivery")
        await self._producer.start()
        try:
            # Not before the privacy views are read to the end either: a personal item refused
            # for a consent not yet seen would be settled for good.
            while not self._inputs_ready():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            loop = asyncio.get_running_loop()
            next_lag = loop.time() + PAUSED_LAG_INTERVAL_S
            while True:
                offset = self._store.view.offset
                # A secret arriving changes what may run as much as a record does; the poll
                # below notices it within POLL_INTERVAL_S.
                applied = (
                    self._store.view.applied,
                    self._secrets.view.applied if self._secrets is not None else 0,
                )
                if applied != self._seen_applied:
                    await self.reconcile()
                    self._seen_applied = applied
                    self.ready = True
                if loop.time() >= next_lag:
                    next_lag = loop.time() + PAUSED_LAG_INTERVAL_S
                    try:
                        await self.report_paused_lag()
                    except Exception as exc:  # metrics must not stop delivery
                        log.warning("cannot measure the lag of paused subscriptions: %r", exc)
                # Woken by the next record the view applies: a new subscription's task starts
                # at once, not at the next poll.
                await self._store.wait_beyond(offset, POLL_INTERVAL_S)
        finally:
            await asyncio.gather(*(t.stop() for t in self.tasks.values()))
            self.tasks.clear()
            await self._producer.stop()

    async def reconcile(self) -> None:
        """Bring the running tasks in line with the view."""
        wanted: dict[tuple[str, str], Subscription] = {}
        present: set[tuple[str, str]] = set()
        awaiting: set[tuple[str, str]] = set()
        for record in self._store.view.all():
            key = (record.tenant, record.id)
            present.add(key)
            if record.state is SubscriptionState.PAUSED:
                m.set_state(*key, SubscriptionState.PAUSED)
                continue
            joined = self._with_secrets(record)
            if joined is None:
                awaiting.add(key)
                continue
            wanted[key] = joined
        self._note_awaiting(awaiting)
        for key in [k for k in self.tasks if k not in wanted]:
            await self.tasks.pop(key).stop()
            log.info("stopped delivering %s/%s", *key)
        for key in self._known - present:
            m.forget(*key)
        self._known = present
        for key, record in wanted.items():
            task = self.tasks.get(key)
            if task is not None and _restart_needed(task.record, record):
                await self.tasks.pop(key).stop()
                task = None
            if task is not None:
                task.update(record)
                continue
            try:
                target = self._target_factory(record, self._settings)
            except Exception:
                log.exception("cannot build the sink of %s/%s", *key)
                m.set_state(*key, SubscriptionState.FAILING)
                continue
            if target is None:
                m.set_state(*key, SubscriptionState.ACTIVE)
                continue  # a Kafka topic or a live stream: nothing to run here
            task = DeliveryTask(
                record,
                target,
                self._settings,
                dead_letters=self._dead_letter,
                gate=self._gate,
                processing_log=self._processing_log,
                sharing=self._sharing,
            )
            m.set_state(*key, SubscriptionState.ACTIVE)
            task.start()
            self.tasks[key] = task
            log.info("delivering %s/%s (%s)", record.tenant, record.id, record.delivery.kind)

    def reporting(self) -> set[tuple[str, str]]:
        """The subscriptions whose status this process knows: those it delivers (a task that
        holds the subscription's partition: a standby's figures would be stale) and the paused
        ones it measures (``report_paused_lag``). Read by the status publisher."""
        keys = {key for key, task in self.tasks.items() if task.assigned}
        if self._target_factory is target_for:
            keys.update(
                (r.tenant, r.id)
                for r in self._store.view.all()
                if r.state is SubscriptionState.PAUSED and r.delivery.serving is Serving.TASK
            )
        return keys

    def present(self) -> set[tuple[str, str]]:
        """Every subscription in the view."""
        return {(r.tenant, r.id) for r in self._store.view.all()}

    async def report_paused_lag(self) -> None:
        """Lag gauges of paused subscriptions, which no task reports: their committed position
        against the end of their topic, and the age of the first record not delivered."""
        paused = [
            r
            for r in self._store.view.all()
            if r.state is SubscriptionState.PAUSED
            and self._target_factory is target_for
            and r.delivery.serving is Serving.TASK
        ]
        if not paused:
            return
        kafka = self._settings.kafka
        admin = kafka_admin(kafka)
        consumer = kafka_consumer(kafka, group_id=None)
        await admin.start()
        await consumer.start()
        try:
            for record in paused:
                tp = TopicPartition(
                    subscription_topic(kafka.topic_prefix, record.tenant, record.id), 0
                )
                committed = await admin.list_consumer_group_offsets(
                    group_id(self._settings, record), partitions=[tp]
                )
                done = committed.get(tp)
                end = (await consumer.end_offsets([tp]))[tp]
                position = done.offset if done is not None and done.offset >= 0 else 0
                lag = max(0, end - position)
                labels = (record.tenant, record.id)
                m.LAG_MESSAGES.labels(*labels).set(lag)
                age = 0.0
                if lag:
                    consumer.assign([tp])
                    consumer.seek(tp, position)
                    fetched = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
                    first = fetched.get(tp)
                    if first:
                        age = max(0.0, time.time() - first[0].timestamp / 1000)
                m.LAG_SECONDS.labels(*labels).set(age)
        finally:
            await consumer.stop()
            await admin.close()

    async def stop(self) -> None:
        for task in list(self.tasks.values()):
            with contextlib.suppress(Exception):
                await task.stop()
        self.tasks.clear()
