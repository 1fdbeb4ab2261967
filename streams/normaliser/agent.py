"""The normaliser agent: ``cityhub.raw`` → ``cityhub.observations`` (or ``cityhub.deadletter``).

At least once, without waiting for commits: the agent reads with manual acks, writes a record's
outputs through a batching, idempotent (``acks=all``) producer, and acknowledges the record only
when Kafka confirmed every one of them and every earlier record of its partition was
acknowledged; faust commits only acknowledged offsets. Records are taken through an
``OrderedIntake`` (``intake.py``): each offset once, in order, even where faust's stream drops or
repeats a record at a worker's start. A crash loses
nothing; it may write a record's observations twice, with the same event ids, which consumers
recognise. (faust's own ``stream_publish_on_commit`` does the same but publishes record by record
at commit time: its commits grew to seconds and held the pipeline at 1 900 observations/s.)
If Kafka fails a write after the producer's retries, the worker stops: the record stays
unacknowledged and is processed again after the restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust

from cityhub.connectors.kafka import BatchingWriter, DeadLetterRoute, record_size
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import MessageError, Oversize, Reason
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.topics import Topics
from cityhub.streams import metrics
from cityhub.streams.normaliser.dedup import check_duplicate
from cityhub.streams.normaliser.normalise import (
    duplicate_key,
    identity,
    observations_from_uplink,
    parse_envelope,
    raw_dead_letter,
    received_seconds,
    resolve_device,
)
from cityhub.streams.registry.store import RecordStore
from cityhub.streams.runtime.intake import OrderedIntake
from cityhub.streams.subscriptions.routing import Routing

log = logging.getLogger("cityhub.normaliser")

STAGE = "normalise"
HEADER_ALLOWANCE_BYTES = 128
"""Room for the headers an observation gets downstream (the area repartition's watermark)."""


def register_normaliser(
    app: faust.App, settings: Settings, registry: RecordStore, routing: Routing | None = None
) -> Any:
    """Declare the normaliser's topics, its duplicate table and the agent on ``app``. The agent
    looks devices up in ``registry``'s view, and waits until it has caught up before its first
    message, so that no registered device is taken for unknown after a restart.

    With ``routing``, every observation is also written to the topic of each subscription that
    receives it (``SubscriptionRouter.route``), before its input is acknowledged; the agent
    then also waits until the routing reflects the existing subscriptions."""
    topics = Topics.for_prefix(settings.kafka.topic_prefix)
    raw = app.topic(
        topics.raw, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    frames = app.Table(
        "duplicate-frames",
        partitions=settings.kafka.partitions,
        # No key/value types: keys and values are plain JSON (faust's default table codec);
        # a value_type would make recovery look for a faust Record's from_data.
        help="Recent frames per device, to drop duplicate uplinks.",
    )
    # Started by the agent, in the worker's loop (aiokafka clients need a running loop).
    writer = BatchingWriter.for_kafka(
        settings.kafka,
        client_id=f"{settings.worker.app_id}-out",
        dead_letters=DeadLetterRoute(
            topics.deadletter,
            STAGE,
            settings.bridge.max_payload_bytes,
            count=lambda reason: metrics.DEADLETTERS.labels(STAGE, reason.value).inc(),
        ),
    )
    max_record = settings.kafka.max_message_bytes
    intake = OrderedIntake(
        app,
        topics.raw,
        group=settings.worker.app_id,
        bootstrap=settings.kafka.bootstrap_servers,
        client_id=f"{settings.worker.app_id}-normaliser-reader",
    )
    window = settings.worker.duplicate_window_seconds
    router = routing.router if routing is not None else None
    allow_unknown = settings.worker.allow_unknown_devices
    max_payload = settings.bridge.max_payload_bytes

    async def dead_letter(
        value: bytes, key: bytes | None, message: Any, error: MessageError
    ) -> asyncio.Future[Any]:
        metrics.DEADLETTERS.labels(STAGE, error.reason.value).inc()
        letter = raw_dead_letter(
            value,
            key,
            error,
            stage=STAGE,
            failed_at=rfc3339(time.time()),
            max_payload_bytes=max_payload,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
        key = (key or b"")[:1024]
        limit = max_record - record_size(key, b"")
        return await writer.send(topics.deadletter, letter.to_json(limit), key)

    async def normalise(message: Any) -> list[asyncio.Future[Any]]:
        """Everything for one raw record (a faust message or an aiokafka record); the
        deliveries of what it wrote."""
        value: bytes = message.value
        started = time.perf_counter()
        fmt = "unknown"
        try:
            envelope = RawEnvelope.from_json(value)
            fmt = envelope.format
            metrics.MESSAGES_IN.labels(fmt).inc()
            received = received_seconds(envelope)
            uplink = parse_envelope(envelope, received)
            registration = resolve_device(uplink, registry.view, allow_unknown=allow_unknown)
            frame = duplicate_key(uplink)
            device = identity(uplink)
            state = None
            if frame is not None:
                duplicate, state = check_duplicate(
                    frames.get(device),
                    frame,
                    now=received,
                    offset=message.offset,
                    window=window,
                )
                if duplicate:
                    metrics.DUPLICATES.labels(uplink.network).inc()
                    return []
            produced = observations_from_uplink(uplink, envelope, registration)
            encoded = [(o, o.to_json(), o.device_id.encode()) for o in produced]
            for o, doc, key in encoded:
                size = record_size(key, doc) + HEADER_ALLOWANCE_BYTES
                if size > max_record:
                    raise Oversize(
                        f"the observation of field {o.field[:200]!r} would take {size} bytes "
                        f"once encoded, more than Kafka's record limit of {max_record} bytes "
                        "(CITYHUB_KAFKA__MAX_MESSAGE_BYTES)"
                    )
            # Remember the frame only once it gave observations: if this copy cannot be
            # decoded (say, raw bytes for an unknown decoder), a copy through the other
            # network server with decoded fields must still get through.
            if state is not None:
                frames[device] = state
        except MessageError as exc:
            return [await dead_letter(value, message.key, message, exc)]
        except Exception as exc:  # a bug must not stop the partition
            log.exception(
                "normalising %s[%d]@%d failed", message.topic, message.partition, message.offset
            )
            bug = MessageError(repr(exc), reason=Reason.INTERNAL_ERROR)
            return [await dead_letter(value, message.key, message, bug)]
        metrics.NORMALISE_LATENCY.observe(time.perf_counter() - started)
        deliveries: list[asyncio.Future[Any]] = []
        for o, doc, key in encoded:
            deliveries.append(await writer.send(topics.observations, doc, key))
            if router is not None:
                for topic in router.route(o):
                    deliveries.append(await writer.send(topic, doc, key))
                    metrics.ROUTED.labels("observations").inc()
        metrics.OBSERVATIONS_OUT.labels(fmt).inc(len(produced))
        metrics.PIPELINE_LATENCY.observe(max(0.0, time.time() - received))
        return deliveries

    @app.agent(raw, name="normaliser")
    async def normaliser(stream: Any) -> None:
        while not (registry.ready and (routing is None or routing.ready)):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await writer.start()
        pending = asyncio.Semaphore(settings.worker.max_unconfirmed_records)
        try:
            async for event in stream.noack().events():
                # Bounded: with Kafka slow, the agent waits here and faust stops fetching.
                await pending.acquire()
                await intake.take(event, normalise, pending.release, crash)
        finally:
            await writer.stop()
            await intake.close()

    stopping: set[asyncio.Future[Any]] = set()

    def crash(exc: BaseException) -> None:
        if stopping:
            return
        log.error("Kafka did not confirm the normaliser's output: %r; stopping the worker", exc)
        stopping.add(asyncio.ensure_future(app.crash(exc)))

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        intake.reset()

    revoked_signal: Any = app.on_partitions_revoked  # mode's handler type takes no coroutine
    revoked_signal.connect(on_revoked)

    return normaliser
