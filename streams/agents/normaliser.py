"""The normaliser agent: ``cityhub.raw`` → ``cityhub.observations`` (or ``cityhub.deadletter``).

Runs on ``stream_publish_on_commit``: what it writes for a record is published, and confirmed by
Kafka, before that record's offset is committed. A crash loses nothing; it may write a record's
observations twice, with the same event ids, which consumers recognise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import faust

from cityhub.schemas.deadletter import DeadLetter
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import MessageError, Reason
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.topics import Topics
from cityhub.streams import metrics
from cityhub.streams.dedup import check_duplicate
from cityhub.streams.normalise import (
    duplicate_key,
    identity,
    observations_from_uplink,
    parse_envelope,
    received_seconds,
    resolve_device,
)
from cityhub.streams.registry.store import RecordStore

log = logging.getLogger("cityhub.normaliser")

STAGE = "normalise"


def register_normaliser(app: faust.App, settings: Settings, registry: RecordStore) -> Any:
    """Declare the normaliser's topics, its duplicate table and the agent on ``app``. The agent
    looks devices up in ``registry``'s view, and waits until it has caught up before its first
    message, so that no registered device is taken for unknown after a restart."""
    topics = Topics.for_prefix(settings.kafka.topic_prefix)
    raw_codec: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    raw = app.topic(topics.raw, key_type=bytes, value_type=bytes, **raw_codec)
    observations = app.topic(topics.observations, key_type=bytes, value_type=bytes, **raw_codec)
    deadletter = app.topic(topics.deadletter, key_type=bytes, value_type=bytes, **raw_codec)
    frames = app.Table(
        "duplicate-frames",
        partitions=settings.kafka.partitions,
        # No key/value types: keys and values are plain JSON (faust's default table codec);
        # a value_type would make recovery look for a faust Record's from_data.
        help="Recent frames per device, to drop duplicate uplinks.",
    )
    window = settings.worker.duplicate_window_seconds
    allow_unknown = settings.worker.allow_unknown_devices
    max_payload = settings.bridge.max_payload_bytes

    async def dead_letter(
        value: bytes, key: bytes | None, message: Any, reason: Reason, detail: str
    ) -> None:
        metrics.DEADLETTERS.labels(STAGE, reason.value).inc()
        envelope: RawEnvelope | None = None
        with contextlib.suppress(MessageError):
            envelope = RawEnvelope.from_json(value)
        letter = DeadLetter.of(
            stage=STAGE,
            reason=reason,
            detail=detail,
            failed_at=rfc3339(time.time()),
            payload=envelope.payload if envelope else value,
            max_payload_bytes=max_payload,
            format=envelope.format if envelope else None,
            source_topic=envelope.topic if envelope else None,
            device=envelope.device if envelope else (key.decode(errors="replace") if key else None),
            received_at=envelope.received_at if envelope else None,
            kafka_topic=message.topic,
            kafka_partition=message.partition,
            kafka_offset=message.offset,
        )
        await deadletter.send(key=key, value=letter.to_json())

    @app.agent(raw, name="normaliser")
    async def normaliser(stream: Any) -> None:
        while not registry.ready:  # noqa: ASYNC110 - the store offers readiness as a flag
            await asyncio.sleep(0.05)
        directory = registry.view
        async for event in stream.events():
            value: bytes = event.value
            message = event.message
            started = time.perf_counter()
            fmt = "unknown"
            try:
                envelope = RawEnvelope.from_json(value)
                fmt = envelope.format
                metrics.MESSAGES_IN.labels(fmt).inc()
                received = received_seconds(envelope)
                uplink = parse_envelope(envelope, received)
                registration = resolve_device(uplink, directory, allow_unknown=allow_unknown)
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
                        continue
                produced = observations_from_uplink(uplink, envelope, registration)
                # Remember the frame only once it gave observations: if this copy cannot be
                # decoded (say, raw bytes for an unknown decoder), a copy through the other
                # network server with decoded fields must still get through.
                if state is not None:
                    frames[device] = state
            except MessageError as exc:
                await dead_letter(value, event.key, message, exc.reason, exc.detail)
                continue
            except Exception as exc:  # a bug must not stop the partition
                log.exception(
                    "normalising %s[%d]@%d failed", message.topic, message.partition, message.offset
                )
                await dead_letter(value, event.key, message, Reason.INTERNAL_ERROR, repr(exc))
                continue
            metrics.NORMALISE_LATENCY.observe(time.perf_counter() - started)
            for observation in produced:
                await observations.send(
                    key=observation.device_id.encode(), value=observation.to_json()
                )
            metrics.OBSERVATIONS_OUT.labels(fmt).inc(len(produced))
            metrics.PIPELINE_LATENCY.observe(max(0.0, time.time() - received))

    return normaliser
