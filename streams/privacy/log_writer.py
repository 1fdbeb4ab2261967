"""Writes processing-log records to the append-only ``processing_log`` topic.

Logboek Dataverwerkingen asks the log to confirm every record it writes; here the confirmation is
Kafka's acknowledgement of every record, and ``write`` returns only once it has them all. The
caller acts on the personal data (delivers, answers a read, exports) only after that, or commits
its input only after that: a record that could not be written raises, so nothing is processed
unlogged. Use a producer with ``acks="all"`` (and idempotence) so that an acknowledged record
survives a broker failure; the stores' and workers' producers are configured so.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from cityhub.schemas.processing_log import ProcessingLogRecord
from cityhub.streams.service_errors import Unavailable

RECORDS_WRITTEN = Counter(
    "cityhub_processing_log_records_total",
    "Processing-log records Kafka confirmed, by action (deliver, read, export, erase, consent).",
    ["action"],
)
WRITE_FAILURES = Counter(
    "cityhub_processing_log_write_failures_total",
    "Writes of processing-log records that failed or timed out (the records in them), so the "
    "action they log was not done.",
)

DEFAULT_TIMEOUT = 15.0
"""Seconds to wait for Kafka to confirm a write (longer than the producer's own retries take
on a healthy cluster; a dead one should fail the caller rather than hang it)."""


class ProcessingLogUnavailable(Unavailable):
    """The processing log could not be written; the action it would log must not happen."""

    title = "Processing log unavailable"


class ProcessingLogSink(Protocol):
    """Where processing-log records go: ``ProcessingLogWriter``, or a test's double."""

    async def write(self, records: Sequence[ProcessingLogRecord]) -> None: ...


class ProcessingLogWriter:
    """Writes records to ``topic`` with ``producer`` (which the caller starts and stops)."""

    def __init__(
        self, producer: AIOKafkaProducer, topic: str, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout = timeout

    @property
    def topic(self) -> str:
        return self._topic

    async def write(self, records: Sequence[ProcessingLogRecord]) -> None:
        """Write ``records``; return once Kafka confirmed every one of them. Raises
        ``ProcessingLogUnavailable`` when any was not confirmed within the timeout, so that the
        caller does not commit or act (records confirmed before the failure stay in the log: a
        retry may log an action twice, never not at all)."""
        if not records:
            return
        try:
            # The hand-over too may wait (metadata, a full buffer, a stopped producer): the
            # timeout covers it as well as the confirmations.
            await asyncio.wait_for(self._send_all(records), self._timeout)
        except TimeoutError:
            WRITE_FAILURES.inc(len(records))
            raise ProcessingLogUnavailable(
                f"Kafka did not confirm {len(records)} processing-log record(s) on {self._topic} "
                f"within {self._timeout:.0f} s"
            ) from None
        except Exception as error:
            # aiokafka's errors (and a stopped producer's) alike: the records are not logged.
            WRITE_FAILURES.inc(len(records))
            raise ProcessingLogUnavailable(
                f"the processing log ({self._topic}) could not be written: {type(error).__name__}"
            ) from error
        for action, count in Tally(r.action for r in records).items():
            RECORDS_WRITTEN.labels(action).inc(count)

    async def _send_all(self, records: Sequence[ProcessingLogRecord]) -> None:
        futures = [
            await self._producer.send(self._topic, value=r.to_json(), key=r.key()) for r in records
        ]
        await asyncio.gather(*futures)
