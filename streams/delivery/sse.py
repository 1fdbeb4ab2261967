"""Live streams: a subscription with ``sse`` delivery, served to each connected client as
Server-Sent Events from the subscription's own topic.

Every connection reads the topic with its own consumer (no consumer group: a live stream's
position belongs to its client), through a bounded ``DeliveryQueue`` with the subscription's
``on_full``: ``pause`` stops reading Kafka while the client is slow (the socket's own
backpressure does the rest), ``drop_oldest`` drops and counts. Each event's ``id`` is
``<partition>:<offset>``; a client that reconnects with ``Last-Event-ID`` (browsers'
``EventSource`` do it by themselves) resumes right after it, so a dropped connection loses
nothing that the topic still holds. Without it, ``from_time`` starts at a time, and otherwise
the stream starts at the end (live).

A stream is served only while its client may still read it
(``cityhub.streams.delivery.guarded_stream``): every second, and before each batch is sent, the
stream's guard (the API's: the key still valid, the subscription still there, still a live stream,
not paused) is asked again. When it says no, the stream sends a comment line ``: closed: <why>``
and ends; the client's reconnection then gets the API's answer (401, 404 or 409), which makes a
browser's ``EventSource`` stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from datetime import datetime

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from cityhub.connectors.kafka_clients import kafka_consumer
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import OnFull, Subscription, subscription_topic
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.delivery import metrics as m
from cityhub.streams.delivery.agreement_screen import DeliverySharing
from cityhub.streams.delivery.batch import parse_event_id, sse_event
from cityhub.streams.delivery.guarded_stream import StreamEnded, StreamGuard, guarded, write
from cityhub.streams.delivery.privacy_screen import screen_when_current
from cityhub.streams.delivery.queue import DeliveryQueue, Item
from cityhub.streams.privacy.gate import PrivacyGate, Screened
from cityhub.streams.privacy.log_writer import ProcessingLogSink, ProcessingLogUnavailable
from cityhub.streams.quotas import QuotaExceeded
from cityhub.streams.subscriptions.topics import SUBSCRIPTION_PARTITIONS

log = logging.getLogger("cityhub.delivery.sse")

RETRY_MS = 2000
FULL_RETRY_AFTER_S = 30
"""What a refused stream's ``Retry-After`` says: streams last long, so no exact time is known."""
PRIVACY_WAIT_STEPS = 300
"""Tenths of a second a new stream waits for the privacy views to be read (30 s)."""


class TooManyStreams(QuotaExceeded):
    """The subscription, or its tenant, already has its maximum of live connections (429)."""


class LiveStreams:
    """Serves SSE connections; counts them per subscription and per tenant to cap them
    (``quotas.live_streams_per_subscription``, ``quotas.live_streams_per_tenant``: in this
    process, since each process serves its own connections)."""

    def __init__(
        self,
        settings: Settings,
        *,
        gate: PrivacyGate | None = None,
        processing_log: ProcessingLogSink | None = None,
        sharing: DeliverySharing | None = None,
    ) -> None:
        """Personal items are sent only where ``gate`` admits them at that moment (none
        without one), and every send of them is written to ``processing_log``. Items under an
        agreement are sent only while ``sharing`` says it is in force (none without it), and
        counted there."""
        self._settings = settings
        self._gate = gate
        self._sharing = sharing
        self._processing_log = processing_log
        self._max_per_subscription = settings.quotas.live_streams_per_subscription
        self._max_per_tenant = settings.quotas.live_streams_per_tenant
        self._open: Counter[tuple[str, str]] = Counter()
        self._open_by_tenant: Counter[str] = Counter()

    def open_streams(self, tenant: str, subscription_id: str) -> int:
        return self._open[(tenant, subscription_id)]

    def open_streams_of_tenant(self, tenant: str) -> int:
        return self._open_by_tenant[tenant]

    def _admit(self, record: Subscription) -> None:
        """Count a new stream of ``record``, or raise TooManyStreams if a cap is reached."""
        key = (record.tenant, record.id)
        if self._open[key] >= self._max_per_subscription:
            raise TooManyStreams(
                f"Subscription {record.id!r} already has {self._open[key]} live streams open; "
                "close one first.",
                quota="live_streams_per_subscription",
                limit=self._max_per_subscription,
                status=429,
                retry_after=FULL_RETRY_AFTER_S,
                tenant=record.tenant,
            )
        if self._open_by_tenant[record.tenant] >= self._max_per_tenant:
            raise TooManyStreams(
                f"Tenant {record.tenant!r} already has {self._open_by_tenant[record.tenant]} "
                "live streams open; close one first.",
                quota="live_streams_per_tenant",
                limit=self._max_per_tenant,
                status=429,
                retry_after=FULL_RETRY_AFTER_S,
                tenant=record.tenant,
            )
        self._open[key] += 1
        self._open_by_tenant[record.tenant] += 1

    def _release(self, record: Subscription) -> None:
        key = (record.tenant, record.id)
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]
        self._open_by_tenant[record.tenant] -= 1
        if self._open_by_tenant[record.tenant] <= 0:
            del self._open_by_tenant[record.tenant]

    async def serve(
        self,
        request: web.Request,
        record: Subscription,
        *,
        last_event_id: str | None,
        from_time: datetime | None,
        guard: StreamGuard | None = None,
    ) -> web.StreamResponse:
        """Stream ``record``'s items to the client until it goes away, or until ``guard`` says
        it may no longer read them. Raises TooManyStreams before anything is sent when the
        subscription's or the tenant's cap is reached."""
        self._admit(record)
        try:
            return await self._serve(request, record, last_event_id, from_time, guard)
        finally:
            self._release(record)

    async def _serve(
        self,
        request: web.Request,
        record: Subscription,
        last_event_id: str | None,
        from_time: datetime | None,
        guard: StreamGuard | None,
    ) -> web.StreamResponse:
        kafka = self._settings.kafka
        topic = subscription_topic(kafka.topic_prefix, record.tenant, record.id)
        await self._privacy_views_read()
        consumer = kafka_consumer(
            kafka,
            group_id=None,
            enable_auto_commit=False,
            client_id=f"cityhub-live-{record.tenant}.{record.id}",
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(SUBSCRIPTION_PARTITIONS)]
            consumer.assign(tps)
            await self._position(consumer, tps, last_event_id, from_time)
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-store",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(request)
            await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
            queue = DeliveryQueue(
                record.queue_size, drop_oldest=record.on_full is OnFull.DROP_OLDEST
            )
            fetcher = asyncio.create_task(self._fetch(consumer, queue, record))
            try:
                await self._write(request, response, queue, record, fetcher, guard)
            except ConnectionError:
                pass  # the client went away (a cancellation, at shutdown, propagates)
            finally:
                fetcher.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fetcher
            return response
        finally:
            await consumer.stop()

    async def _privacy_views_read(self) -> None:
        """Wait (a little) for the privacy views: nothing personal is checked against views
        that have not read their topics yet; 503 if they do not catch up."""
        gate = self._gate
        for _ in range(PRIVACY_WAIT_STEPS):
            if gate is None or gate.ready():
                return
            await asyncio.sleep(0.1)
        raise ApiProblem(
            503,
            "This API process is still reading the privacy register; try again shortly.",
            headers={"Retry-After": "5"},
        )

    async def _position(
        self,
        consumer: AIOKafkaConsumer,
        tps: list[TopicPartition],
        last_event_id: str | None,
        from_time: datetime | None,
    ) -> None:
        resume = parse_event_id(last_event_id) if last_event_id else None
        if resume is not None and resume[0] < len(tps):
            partition, offset = resume
            beginning = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
            for tp in tps:
                if tp.partition == partition:
                    consumer.seek(tp, min(max(offset + 1, beginning[tp]), end[tp]))
                else:
                    await consumer.seek_to_end(tp)
            return
        if from_time is not None:
            found = await consumer.offsets_for_times(
                dict.fromkeys(tps, int(from_time.timestamp() * 1000))
            )
            end = await consumer.end_offsets(tps)
            for tp in tps:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else end[tp])
            return
        await consumer.seek_to_end(*tps)

    async def _fetch(
        self, consumer: AIOKafkaConsumer, queue: DeliveryQueue, record: Subscription
    ) -> None:
        labels = (record.tenant, record.id)
        while True:
            limit = queue.fetch_limit(500)
            if limit == 0:
                await queue.wait_for_space(1.0)
                continue
            fetched = await consumer.getmany(timeout_ms=500, max_records=limit)
            for records in fetched.values():
                for r in records:
                    if queue.put(Item.of(r)):
                        m.DROPPED.labels(*labels).inc()

    async def _log(self, record: Subscription, screened: Screened, started: float) -> None:
        """Log what is about to be sent; raises (and so ends the stream before it is sent)
        when the log cannot be written: nothing goes out unlogged."""
        if self._gate is None or self._processing_log is None:
            raise ProcessingLogUnavailable("no processing log to write the delivery to")
        records = self._gate.log_records(
            record, screened.personal, started=started, ended=time.time()
        )
        await self._processing_log.write(records)

    async def _write(
        self,
        request: web.Request,
        response: web.StreamResponse,
        queue: DeliveryQueue,
        record: Subscription,
        fetcher: asyncio.Task[None],
        guard: StreamGuard | None,
    ) -> None:
        """Send the queue's items until the client goes away (noticed within a guard interval,
        also on a quiet stream, so that its quota slot comes back) or ``guard`` says no."""
        labels = (record.tenant, record.id)
        source = record.source.value
        batch_max = self._settings.delivery.batch_max_items
        batches = guarded(
            request,
            response,
            functools.partial(queue.take, batch_max),
            guard or (lambda: None),
            keepalive=b": keepalive\n\n",
            stopped=fetcher.done,
        )
        async for batch in batches:
            if isinstance(batch, StreamEnded):
                if batch.why is not None:
                    log.info(
                        "live stream of subscription %r of tenant %r ended: %s",
                        record.id,
                        record.tenant,
                        batch.why,
                    )
                    m.LIVE_ENDED.labels(*labels).inc()
                    text = batch.why.replace("\r", " ").replace("\n", " ")
                    await write(request, response, f": closed: {text}\n\n".encode())
                return
            screened = await screen_when_current(self._gate, record, batch, self._sharing)
            if screened.personal:
                # Logged before it is written: if the log cannot be, the stream ends first.
                await self._log(record, screened, time.time())
            await write(request, response, b"".join(sse_event(source, i) for i in screened.send))
            now = time.time()
            latency = m.LATENCY.labels(*labels)
            for item in batch:
                latency.observe(max(0.0, now - item.timestamp_ms / 1000))
            m.DELIVERED.labels(*labels).inc(len(screened.send))
            if self._sharing is not None:
                self._sharing.delivered(screened.send)
        fetcher.result()
