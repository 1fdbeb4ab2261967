"""Dead letters keep the trace of what they refused, on the real Kafka and PostgreSQL: the history
writer's dead letter of a bad observation record carries a child span of the record's
``traceparent`` (exactly one letter per bad record), and its log line names the trace."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from aiokafka import AIOKafkaConsumer

from cityhub.schemas import log_context
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.schemas.trace_context import TRACEPARENT, TraceContext, new_trace, parse_traceparent
from cityhub.streams.history.writer import HistoryWriter

from .hub import BOOTSTRAP
from .test_history_writer import (
    committed_everything,
    eventually,
    hub_settings,
    observation,
    produce,
    running,
)

__all__ = ["hub_settings"]  # the fixture, used by name


class ContextOfLines(logging.Handler):
    """Keeps each record's message with the message context it was written in."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[str, log_context.MessageContext | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), log_context.current()))


async def dead_letter_traces(topic: str, settle_s: float = 3.0) -> list[TraceContext | None]:
    """The parsed ``traceparent`` of every record of ``topic``, read until nothing new came for
    ``settle_s`` (so that a duplicate would be seen too)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=BOOTSTRAP, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    traces: list[TraceContext | None] = []
    try:
        quiet_since = time.monotonic()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            fresh = [r for records in batch.values() for r in records]
            for r in fresh:
                value = next((v for k, v in r.headers if k == TRACEPARENT), None)
                traces.append(parse_traceparent(value))
            if fresh:
                quiet_since = time.monotonic()
            elif traces and time.monotonic() - quiet_since > settle_s:
                break
    finally:
        await consumer.stop()
    return traces


async def test_a_history_dead_letter_continues_the_refused_records_trace(
    hub_settings: Settings,
) -> None:
    topics = Topics.for_prefix(hub_settings.kafka.topic_prefix)
    device = f"dev-{uuid.uuid4().hex[:8]}"
    refused, stored = new_trace(), new_trace()
    await produce(
        hub_settings,
        topics.observations,
        [
            (device.encode(), b"{not json", [(TRACEPARENT, refused.header())]),
            (device.encode(), observation(device, 1).to_json(), [(TRACEPARENT, stored.header())]),
        ],
    )
    lines = ContextOfLines()
    logger = logging.getLogger("cityhub.kafka")
    logger.addHandler(lines)
    try:
        async with running(HistoryWriter(hub_settings)):
            await eventually(lambda: committed_everything(hub_settings))
            await asyncio.sleep(0)
    finally:
        logger.removeHandler(lines)
    (letter,) = await dead_letter_traces(topics.deadletter)
    assert letter is not None
    assert letter.trace_id == refused.trace_id
    assert letter.span_id != refused.span_id
    about = [context for message, context in lines.lines if "dead-lettered" in message]
    assert len(about) == 1
    assert about[0] is not None
    assert about[0].trace_id == refused.trace_id
