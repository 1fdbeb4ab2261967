"""The history writer: copies ``<prefix>.observations`` and ``<prefix>.aggregates`` into the
history store (PostgreSQL), in batches, committing Kafka offsets only after the database has
committed the batch.

One consumer group of its own (``<worker.app_id>-history``), so it reads at its own pace and a
replay never disturbs the workers. A batch is up to ``history.batch_max_records`` records or
what ``history.batch_linger_ms`` brought. Rows are idempotent (``batch_store``): a batch written
again after a crash or a rebalance changes nothing.

A database outage pauses the writer: the same batch is retried with a growing pause (up to
``MAX_BACKOFF_S``), the health check says not ready, ``cityhub_history_paused`` is 1, nothing
is committed to Kafka, so nothing is lost, and it goes on where it stopped once PostgreSQL
answers. An outage is a lost or refused connection, a batch not committed within
``history.write_timeout_seconds``, and any refusal that is not about a row (``row_fault``: a
missing table, a revoked privilege, a read-only or full database). A record that can never be a
row (not JSON, a missing field, a value PostgreSQL cannot hold) goes to the dead-letter topic
with its reason and is counted; the partition goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from cityhub.connectors.dead_letter_route import DeadLetterRoute, traceparent_of
from cityhub.connectors.kafka_clients import kafka_consumer, kafka_producer
from cityhub.schemas.errors import MessageError, Reason
from cityhub.schemas.kafka_settings import background_fetch
from cityhub.schemas.log_context import about_message
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.schemas.trace_context import traceparent_in
from cityhub.streams import metrics as stream_metrics
from cityhub.streams.history import metrics
from cityhub.streams.history.batch_store import Written, prepare_staging, write_batch
from cityhub.streams.history.connection import Connection, connect
from cityhub.streams.history.migrate import migrate
from cityhub.streams.history.partitions import PartitionKeeper, apply_retention
from cityhub.streams.history.rows import (
    Row,
    aggregate_row,
    current_revisions,
    observation_row,
    unique_events,
)
from cityhub.streams.privacy.purpose import PRIVACY_HEADER

log = logging.getLogger("cityhub.history")

STAGE = "history"
"""The ``stage`` of the history writer's dead letters."""
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 15.0
LAG_INTERVAL_S = 5.0


def group_id(settings: Settings) -> str:
    """The writer's consumer group: its own, beside the workers'."""
    return f"{settings.worker.app_id}-history"


@dataclass
class Batch:
    """Records taken from Kafka and not yet stored."""

    observations: list[Row] = field(default_factory=list)
    aggregates: list[Row] = field(default_factory=list)
    dead: list[tuple[ConsumerRecord[bytes, bytes], MessageError]] = field(default_factory=list)
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    records: int = 0
    origins: dict[int, ConsumerRecord[bytes, bytes]] = field(default_factory=dict)
    """The record each row came from, by the row's ``id`` (for a dead letter of a row the
    database refuses)."""


def backoff(attempt: int) -> float:
    """The pause before retry ``attempt`` (1, 2, ...): doubling from FIRST_BACKOFF_S, capped."""
    return float(min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (attempt - 1)))


class HistoryWriter:
    """Consumes the observations and aggregates topics into the history store until cancelled."""

    def __init__(self, settings: Settings, *, client_id: str | None = None) -> None:
        self._settings = settings
        self._topics = Topics.for_prefix(settings.kafka.topic_prefix)
        self._client_id = client_id or f"{group_id(settings)}-writer"
        self._conn: Connection | None = None
        self._keeper = PartitionKeeper({})
        self._next_retention = 0.0
        self._next_lag = 0.0
        self._last_read_ms: dict[TopicPartition, int] = {}
        """Kafka timestamp of the last record read per partition (for the lag in seconds)."""
        self._dead_letters = DeadLetterRoute(
            self._topics.deadletter,
            STAGE,
            settings.bridge.max_payload_bytes,
            count=lambda reason: stream_metrics.DEADLETTERS.labels(STAGE, reason.value).inc(),
        )
        self.running = False
        """True once it consumes (for the health check)."""
        self.paused = False
        """True while the database does not answer and a batch waits to be retried."""

    @property
    def ready(self) -> bool:
        return self.running and not self.paused

    async def run(self) -> None:
        """Migrate the schema, then consume and store until cancelled."""
        await self._connection()  # migrates; waits (paused) while the database is down
        self._resume()
        kafka = self._settings.kafka
        consumer = kafka_consumer(
            kafka,
            self._topics.observations,
            self._topics.aggregates,
            group_id=group_id(self._settings),
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=max(1024 * 1024, kafka.max_message_bytes + 64 * 1024),
            fetch_max_bytes=64 * 1024 * 1024,
            # A database outage stops the polls while heartbeats go on; leaving the group after
            # Kafka's default 5 minutes would only move the partitions to a writer as stuck.
            max_poll_interval_ms=3_600_000,
            # History may lag a little: fewer, larger fetches leave the broker's CPU to the
            # pipeline (and make larger COPY batches).
            **background_fetch(kafka),
        )
        producer = kafka_producer(
            kafka,
            client_id=f"{self._client_id}-deadletters",
            acks="all",
            enable_idempotence=True,
        )
        await consumer.start()
        # One batch read ahead: the next batch is fetched and decoded while PostgreSQL works on
        # this one (the decoding is half of the writer's own time). Batches are still stored
        # and committed one after the other, in order.
        ahead: asyncio.Queue[Batch] = asyncio.Queue(maxsize=1)
        reader = asyncio.create_task(self._read(consumer, ahead), name="history reader")
        try:
            await producer.start()
            self.running = True
            while True:
                batch = await _next_batch(ahead, reader)
                if batch.records:
                    await self._store(batch)
                    await self._dead_letter(producer, batch)
                    await self._commit(consumer, batch)
                await self._housekeeping(consumer)
        finally:
            self.running = False
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            with contextlib.suppress(Exception):
                await producer.stop()
            with contextlib.suppress(Exception):
                await consumer.stop()
            await self._close()

    # --- reading -----------------------------------------------------------------------------

    async def _read(self, consumer: AIOKafkaConsumer, ahead: asyncio.Queue[Batch]) -> None:
        while True:
            await ahead.put(await self._collect(consumer))

    async def _collect(self, consumer: AIOKafkaConsumer) -> Batch:
        """Up to batch_max_records records, or what came within batch_linger_ms of the first."""
        history = self._settings.history
        batch = Batch()
        deadline: float | None = None
        while batch.records < history.batch_max_records:
            wait_ms = 1000 if deadline is None else int((deadline - time.monotonic()) * 1000)
            if deadline is not None and wait_ms <= 0:
                break
            fetched = await consumer.getmany(
                timeout_ms=max(wait_ms, 0), max_records=history.batch_max_records - batch.records
            )
            if not fetched:
                if deadline is None:
                    break  # nothing for a second: let housekeeping run
                continue
            if deadline is None:
                deadline = time.monotonic() + history.batch_linger_ms / 1000
            for tp, records in fetched.items():
                self._decode(tp.topic, records, batch)
                batch.next_offsets[tp] = records[-1].offset + 1
                self._last_read_ms[tp] = records[-1].timestamp
                batch.records += len(records)
        return batch

    def _decode(
        self, topic: str, records: Sequence[ConsumerRecord[bytes, bytes]], batch: Batch
    ) -> None:
        is_observation = topic == self._topics.observations
        make = observation_row if is_observation else aggregate_row
        rows = batch.observations if is_observation else batch.aggregates
        for record in records:
            try:
                if record.value is None:
                    raise MessageError("a record without a value", reason=Reason.SCHEMA_MISMATCH)
                row = make(record.value)
            except MessageError as exc:
                batch.dead.append((record, exc))
                continue
            rows.append(row)
            batch.origins[id(row)] = record

    # --- writing -----------------------------------------------------------------------------

    async def _connection(self) -> Connection:
        """The open connection, or a new one (migrated, staging tables made), retrying with
        backoff while the database does not answer."""
        attempt = 0
        while self._conn is None or self._conn.closed or self._conn.broken:
            conn: Connection | None = None
            try:
                conn = await connect(self._settings, application_name=self._client_id)
                await conn.set_autocommit(True)
                await migrate(conn, self._settings.history.db_schema)
                await prepare_staging(conn)
                self._keeper = await PartitionKeeper.load(conn)
                self._conn = conn
            except psycopg.Error as exc:  # unreachable, or refusing us (login, privileges)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                attempt += 1
                await self._pause(attempt, exc)
        # Not resumed here: a database that takes the connection may still refuse the writes
        # (a revoked privilege); the writer resumes once a batch or the housekeeping went in.
        return self._conn

    async def _pause(self, attempt: int, exc: BaseException) -> None:
        if not self.paused:
            log.warning("history: %s, pausing: %s", outage_kind(exc), _first_line(exc))
        self.paused = True
        metrics.PAUSED.set(1)
        metrics.RETRIES.inc()
        await self._close()
        await asyncio.sleep(backoff(attempt))

    def _resume(self) -> None:
        if self.paused:
            log.info("history: the database answers again, resuming")
        self.paused = False
        metrics.PAUSED.set(0)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _store(self, batch: Batch) -> None:
        """Write the batch's rows; retried until the database commits it. A row the database
        refuses for what it is (not for an outage) is found by halving and dead-lettered."""
        observations = unique_events(batch.observations)
        aggregates = current_revisions(batch.aggregates)
        began = time.monotonic()
        await self._write_halving(observations, aggregates, batch)
        metrics.BATCH_SECONDS.observe(time.monotonic() - began)
        metrics.BATCH_RECORDS.observe(batch.records)
        metrics.BATCHES.inc()

    async def _write_halving(
        self, observations: list[Row], aggregates: list[Row], batch: Batch
    ) -> None:
        try:
            await self._write(observations, aggregates)
        except psycopg.Error as exc:
            rows = len(observations) + len(aggregates)
            if rows == 1:
                row = (observations or aggregates)[0]
                origin = batch.origins[id(row)]
                with about_message(traceparent_in(origin.headers)):
                    log.warning(
                        "history: the database refused row %s: %s", row.key, _first_line(exc)
                    )
                batch.dead.append((origin, _refused(exc)))
                return
            half_obs, half_agg = len(observations) // 2, len(aggregates) // 2
            await self._write_halving(observations[:half_obs], aggregates[:half_agg], batch)
            await self._write_halving(observations[half_obs:], aggregates[half_agg:], batch)

    async def _write(self, observations: list[Row], aggregates: list[Row]) -> Written:
        """One attempt per connection; an outage (the connection lost) waits and tries again,
        any other database error is raised for ``_write_halving``."""
        attempt = 0
        while True:
            conn = await self._connection()
            try:
                async with asyncio.timeout(self._settings.history.write_timeout_seconds):
                    written = await write_batch(
                        conn,
                        self._keeper,
                        self._settings.history,
                        observations,
                        aggregates,
                        datetime.now(UTC),
                    )
                self._resume()
                return written
            except (psycopg.Error, TimeoutError) as exc:
                self._keeper.forget()
                if row_fault(exc) and not (conn.broken or conn.closed):
                    self._resume()  # it answered, about a row: the store itself works
                    with contextlib.suppress(psycopg.Error):  # else reloaded on reconnecting
                        self._keeper = await PartitionKeeper.load(conn)
                    raise
                attempt += 1
                await self._pause(attempt, exc)

    async def _dead_letter(self, producer: AIOKafkaProducer, batch: Batch) -> None:
        """Write the batch's dead letters and wait for Kafka to confirm them (before the
        offsets are committed: a dead letter is never lost either). Each continues its record's
        trace, and its log line (``DeadLetterRoute.letter``) names it."""
        for record, error in batch.dead:
            personal = any(name == PRIVACY_HEADER for name, _ in record.headers or ())
            value, key = self._dead_letters.letter(
                error.reason,
                f"history: {record.topic}[{record.partition}]@{record.offset}: {error.detail}",
                record.topic,
                record.key or b"",
                # A personal item's dead letter goes without its payload, as the normaliser's.
                None if personal else record.value,
                max_record_bytes=self._settings.kafka.max_message_bytes,
                headers=record.headers,
            )
            await producer.send_and_wait(
                self._topics.deadletter, value, key=key, headers=traceparent_of(record.headers)
            )

    async def _commit(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        try:
            await consumer.commit(batch.next_offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # IllegalStateError: a partition of the batch was revoked before its commit.
            # A rebalance took the partitions: the new owner reads the batch again, and the
            # rows, already stored, are recognised as stored. Nothing is lost.
            log.info("history: offsets not committed (%s); the batch will be read again", exc)

    # --- housekeeping ------------------------------------------------------------------------

    async def _housekeeping(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if now >= self._next_retention:
            self._next_retention = now + self._settings.history.retention_interval_seconds
            attempt = 0
            while True:
                conn = await self._connection()
                try:
                    await apply_retention(conn, self._settings.history, datetime.now(UTC))
                    self._keeper = await PartitionKeeper.load(conn)
                    self._resume()
                    break
                except psycopg.Error as exc:  # no row in it: any refusal is the store's
                    attempt += 1
                    await self._pause(attempt, exc)
        if now >= self._next_lag:
            self._next_lag = now + LAG_INTERVAL_S
            await report_lag(consumer, self._last_read_ms)


async def _next_batch(ahead: asyncio.Queue[Batch], reader: asyncio.Task[None]) -> Batch:
    """The next batch the reader made; the reader's failure (Kafka) raised if it failed."""
    taking = asyncio.ensure_future(ahead.get())
    try:
        await asyncio.wait({taking, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not taking.done():
            taking.cancel()
    if taking.done() and not taking.cancelled():
        return taking.result()
    reader.result()  # raises what ended the reader
    raise RuntimeError("the history reader stopped")


async def report_lag(
    consumer: AIOKafkaConsumer, last_read_ms: dict[TopicPartition, int] | None = None
) -> None:
    """Set ``cityhub_history_lag_records`` and ``_lag_seconds`` for each assigned partition
    (``last_read_ms``: the Kafka timestamp of the last record read from each)."""
    now = time.time()
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        with contextlib.suppress(Exception):
            position = await consumer.position(tp)
            lag = max(highwater - position, 0)
            metrics.LAG.labels(tp.topic, str(tp.partition)).set(lag)
            last_ms = (last_read_ms or {}).get(tp)
            seconds = stream_metrics.lag_seconds(lag, last_ms, now)
            metrics.LAG_SECONDS.labels(tp.topic, str(tp.partition)).set(seconds)


_ROW_FAULT_CLASSES = ("22", "23", "54")
"""SQLSTATE classes that are about the row written: data exception (a value out of range, a
character the database cannot hold), integrity constraint violation, program limit exceeded (a
value too long to index)."""


def row_fault(exc: BaseException) -> bool:
    """Whether the database refused a write for what a row holds (dead-letter the row) rather
    than for the state of the store (pause, as for an outage: nothing a row can change)."""
    if not isinstance(exc, psycopg.Error):  # a timeout
        return False
    return (exc.sqlstate or "")[:2] in _ROW_FAULT_CLASSES  # none: the connection failed


def outage_kind(exc: BaseException) -> str:
    """What the pause is about, in words for the log line."""
    state = (exc.sqlstate or "") if isinstance(exc, psycopg.Error) else ""
    if state.startswith("28"):
        return "the database refused the login (history.user and its password file)"
    if isinstance(exc, TimeoutError):
        return "the database did not commit a batch within history.write_timeout_seconds"
    if isinstance(exc, psycopg.OperationalError) and not state.startswith("53"):
        return "the database does not answer"  # 53: insufficient resources (a full disk)
    return "the database refuses the writes"


def _refused(exc: psycopg.Error) -> MessageError:
    return MessageError(
        f"PostgreSQL refused the row: {_first_line(exc)}", reason=Reason.SCHEMA_MISMATCH
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
