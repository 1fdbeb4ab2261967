"""The MQTT → Kafka bridge: every message on the configured filters becomes one raw envelope on
``cityhub.raw``, keyed by device, and is acknowledged to the broker only after Kafka confirmed it.

Every raw record starts a trace: it carries a W3C ``traceparent`` header (a new trace, sampled)
that the later stages continue, so that a processing-log record can name the trace of the
message it is about. The header is counted in the record's size.

Nothing is lost: QoS 1 on a persistent session, and an unacknowledged message is redelivered by
the broker after a crash or reconnect. Nothing grows without bound: at most ``max_inflight``
messages are unconfirmed; at the limit the bridge stops taking messages, the broker stops sending
(MQTT 5 Receive Maximum), and ``cityhub_bridge_backpressure_seconds_total`` grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from cityhub.connectors.batching_writer import BatchingWriter
from cityhub.connectors.dead_letter_route import DeadLetterRoute
from cityhub.connectors.formats import get_format
from cityhub.connectors.formats.base import IngestFormat
from cityhub.connectors.mqtt import metrics
from cityhub.connectors.mqtt.ack_order import AckSequencer, Pending
from cityhub.connectors.mqtt.codec import Publish
from cityhub.connectors.mqtt.failures import session_failure, session_lost, taken_over_hint
from cityhub.connectors.mqtt.reconnect import ReconnectBackoff
from cityhub.connectors.mqtt.routing import TopicRouter
from cityhub.connectors.mqtt.session import MqttSession
from cityhub.connectors.record_size import Headers, record_size
from cityhub.schemas.deadletter import DeadLetter
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import CityhubError, Reason
from cityhub.schemas.log_context import about_message
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.topics import Topics
from cityhub.schemas.trace_context import TRACEPARENT, TraceparentPool, traceparent_in

log = logging.getLogger("cityhub.bridge")

SOURCE = metrics.CONNECTOR
STAGE = "bridge"
PRODUCER_BLOCKED_SECONDS = 0.001
DEADLETTER_KEY_BYTES = 1024
UNROUTED_WARNING_INTERVAL_S = 10.0
STALLED_AFTER_S = 10.0
"""Seconds with messages in flight and no Kafka confirmation after which the bridge is not
healthy (a write confirms in milliseconds; the producer retries for longer than this)."""
"""At most one warning this often about messages on topics no format reads."""
"""A dead letter's key (the device, or the topic) is cut to this."""
"""A hand-over to the producer that takes longer than this waited for buffer space."""


class RecordSink(Protocol):
    """Where the bridge writes: aiokafka's producer fits; so does an in-memory test double."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: Headers | None = None,
    ) -> asyncio.Future[Any]: ...


def bridge_writer(settings: Settings) -> BatchingWriter:
    """The bridge's writer (start it in the bridge's loop): records sized against Kafka's limit,
    whatever it cannot write dead-lettered (stage ``bridge``) and counted."""
    return BatchingWriter.for_kafka(
        settings.kafka,
        client_id="cityhub-bridge",
        dead_letters=DeadLetterRoute(
            Topics.for_prefix(settings.kafka.topic_prefix).deadletter,
            STAGE,
            settings.bridge.max_payload_bytes,
            count=lambda reason: metrics.DEADLETTERS.labels(SOURCE, reason.value).inc(),
        ),
    )


class KafkaWriteFailed(CityhubError):
    """Kafka did not confirm a write after the producer's retries; the session is restarted so
    that the broker redelivers everything unacknowledged."""

    retriable = True


class MqttBridge:
    """Bridges the configured MQTT subscriptions into Kafka; run it with :meth:`run`."""

    def __init__(
        self,
        settings: Settings,
        sink: RecordSink,
        *,
        session_factory: Callable[[], MqttSession] | None = None,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._topics = Topics.for_prefix(settings.kafka.topic_prefix)
        self._router = TopicRouter(settings.bridge.subscriptions)
        self._formats: dict[str, IngestFormat | None] = {}
        self._session_factory = session_factory or (
            lambda: MqttSession(settings.mqtt, receive_maximum=settings.bridge.max_inflight)
        )
        self._max_inflight = settings.bridge.max_inflight
        self._max_payload = settings.bridge.max_payload_bytes
        self._max_record = settings.kafka.max_message_bytes
        self._unrouted = 0
        self._unrouted_warned = -UNROUTED_WARNING_INTERVAL_S
        self._current: MqttSession | None = None
        self._stalled_since: float | None = None
        """Since when writes have waited without one confirmed by Kafka (None: none waits).
        Kept across sessions: the writes of a session that Kafka failed come again in the
        next, as the broker redelivers them."""
        self._clock: tuple[int, str] = (0, "")
        self._traces = TraceparentPool()
        self._m_written: dict[tuple[str, str], Any] = {}
        self._m_received: dict[str, Any] = {}
        self._subscribed = False
        self._subscribed_at: float | None = None
        self._broker_holds_session = False
        """Whether the broker has had a session of ours since this process subscribed once."""
        m = metrics
        self._m_inflight = m.INFLIGHT.labels(SOURCE)
        self._m_queued = m.QUEUED.labels(SOURCE)
        self._m_latency = m.PRODUCE_LATENCY.labels(SOURCE)
        self._m_bp_seconds = m.BACKPRESSURE_SECONDS.labels(SOURCE)
        self._m_bp_events = m.BACKPRESSURE_EVENTS.labels(SOURCE)
        m.INFLIGHT_LIMIT.labels(SOURCE).set(self._max_inflight)

    @property
    def healthy(self) -> bool:
        """What /healthz reports: subscribed, and Kafka confirming writes. Not while messages
        have waited ``STALLED_AFTER_S`` without a single confirmation (Kafka away or refusing):
        the bridge holds them unacknowledged, so nothing is lost, but nothing moves either."""
        stalled = self._stalled_since
        return self._subscribed and (
            stalled is None or time.perf_counter() - stalled <= STALLED_AFTER_S
        )

    async def run(self) -> None:
        """Bridge until cancelled, reconnecting with capped exponential backoff and jitter."""
        backoff = ReconnectBackoff()
        while True:
            self._subscribed_at = None
            failure: tuple[str, str] = ("other", "the session ended")
            try:
                await self._run_session()
            except (KafkaWriteFailed, OSError) as exc:
                # Said once per attempt, with what to check: the backoff below keeps a broker
                # that refuses us (untrusted certificate, wrong password) from a tight loop.
                failure = (
                    ("kafka", str(exc))
                    if isinstance(exc, KafkaWriteFailed)
                    else session_failure(exc, self._settings.mqtt)
                )
            finally:
                self._subscribed = False
                metrics.CONNECTED.labels(SOURCE).set(0)
            metrics.RECONNECTS.labels(SOURCE).inc()
            metrics.SESSION_FAILURES.labels(SOURCE, failure[0]).inc()
            subscribed_at = self._subscribed_at
            held = None if subscribed_at is None else time.monotonic() - subscribed_at
            wait = backoff.after_session(held)
            why = failure[1] + taken_over_hint(failure[0], held, self._settings.mqtt)
            log.warning(
                "bridge session ended (%s): %s; next attempt in %.1f s", failure[0], why, wait
            )
            await asyncio.sleep(wait)

    async def _run_session(self) -> None:
        async with self._session_factory() as session:
            self._current = session
            self._check_session_kept(session)
            state = _SessionState(session, self._max_inflight)
            # Taken from the start: a resumed session's broker sends what it queued for us
            # before its SUBACKs (Mosquitto 2.0.11 more than our Receive Maximum); waiting for
            # them without taking those stopped reading at the high water mark, the SUBACK
            # behind it, and the session timed out and resumed the same way, for ever.
            consume = asyncio.create_task(self._consume(state))
            subscribing = asyncio.create_task(self._subscribe(session))
            try:
                await asyncio.wait(
                    {subscribing, consume, state.failed}, return_when=asyncio.FIRST_COMPLETED
                )
                if subscribing.done():
                    subscribing.result()  # a refused or unanswered SUBSCRIBE ends the session
                    await asyncio.wait({consume, state.failed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (subscribing, consume):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await state.drain(timeout=10.0)
            if state.failed.done():
                state.failed.result()
            consume.result()

    def _check_session_kept(self, session: MqttSession) -> None:
        """Say so when a reconnection found no session of ours at the broker."""
        connack = getattr(session, "connack", None)
        if connack is not None and not connack.session_present and self._broker_holds_session:
            metrics.SESSIONS_LOST.labels(SOURCE).inc()
            log.warning("%s", session_lost(self._settings.mqtt))

    async def _subscribe(self, session: MqttSession) -> None:
        for subscription in self._settings.bridge.subscriptions:
            await session.subscribe(subscription)
        self._broker_holds_session = self._settings.mqtt.session_expiry_seconds > 0
        metrics.CONNECTED.labels(SOURCE).set(1)
        self._subscribed = True
        self._subscribed_at = time.monotonic()
        log.info(
            "bridging %s from mqtt://%s:%d",
            ", ".join(f"{s.filter} ({s.format})" for s in self._settings.bridge.subscriptions),
            self._settings.mqtt.host,
            self._settings.mqtt.port,
        )

    async def _consume(self, state: _SessionState) -> None:
        slots = state.slots
        async for message in state.session.messages():
            # With every slot taken the bridge stops here. The broker should send no more than
            # our Receive Maximum (= the slots) unacked, but Mosquitto 2.0.11 overshoots after
            # acks (fixed in 2.0.13) and QoS 0 has no limit: the session's pause_reading bounds
            # what waits in its queue either way.
            await slots.acquire()
            self._m_queued.set(state.session.queued)
            pending = state.acks.received(message.mid, message.qos)
            if self._stalled_since is None:
                self._stalled_since = time.perf_counter()  # waiting for Kafka from now
            state.inflight += 1
            self._m_inflight.set(state.inflight)
            if state.inflight == self._max_inflight:
                # At the limit the bridge takes nothing more until Kafka confirms a write.
                state.saturated_since = time.perf_counter()
                self._m_bp_events.inc()
            try:
                fmt_name, topic, value, key, headers = self._to_record(message)
            except Exception as exc:
                # A bug in a format's partition_key must not turn one message into a poison
                # pill that is redelivered for ever: dead-letter it instead.
                log.exception("building the record for %s failed", message.topic)
                fmt_name, topic, value, key, headers = self._internal_error(message, exc)
            try:
                handed_over = time.perf_counter()
                delivery = await self._sink.send(topic, value, key, headers=headers)
                blocked = time.perf_counter() - handed_over
                if blocked > PRODUCER_BLOCKED_SECONDS:
                    # The producer's own buffer is full (a partition's batches wait for Kafka):
                    # that is backpressure too, before our in-flight limit is reached.
                    self._m_bp_events.inc()
                    self._m_bp_seconds.inc(blocked)
            except Exception as exc:
                # The producer refused the record outright (closed, too large after all):
                # leave the message unacked and restart the session.
                self._release(state)
                state.fail(KafkaWriteFailed(f"Kafka refused a record: {exc!r}"))
                return
            delivery.add_done_callback(
                self._on_delivery(state, pending, fmt_name, topic, time.perf_counter(), headers)
            )

    def _to_record(self, message: Publish) -> tuple[str, str, bytes, bytes, Headers | None]:
        """(format, Kafka topic, value, key, headers) for one MQTT message: a raw envelope with
        a new trace's ``traceparent`` header, or a dead letter (no headers) when the bridge
        already knows the message cannot be processed. Every record is sized exactly, headers
        included: one Kafka would refuse never leaves the bridge."""
        topic = message.topic
        payload = message.payload
        now = self._now()
        subscription = self._router.route(topic)
        fmt = self._format(subscription.format) if subscription else None
        fmt_name = subscription.format if subscription else "unknown"
        received = self._m_received.get(fmt_name)
        if received is None:
            received = self._m_received[fmt_name] = metrics.RECEIVED.labels(SOURCE, fmt_name)
        received.inc()
        key = fmt.partition_key(topic, payload) if fmt else topic
        key_bytes = key.encode()
        if fmt is None:
            self._warn_unrouted(topic, fmt_name)
            return fmt_name, *self._dead_letter(
                message,
                Reason.UNKNOWN_FORMAT,
                f"no ingest format is registered for topic {topic!r} (format {fmt_name!r}); "
                "check the bridge subscriptions",
                now,
                key_bytes,
                fmt_name,
                keyed_by_device=False,
            )
        if len(payload) > self._max_payload:
            return fmt_name, *self._dead_letter(
                message,
                Reason.OVERSIZE,
                f"payload of {len(payload)} bytes exceeds the limit of {self._max_payload} bytes "
                "(CITYHUB_BRIDGE__MAX_PAYLOAD_BYTES)",
                now,
                key_bytes,
                fmt_name,
            )
        envelope = RawEnvelope(
            source=SOURCE,
            format=fmt_name,
            topic=topic,
            device=key,
            received_at=now,
            payload=payload,
        )
        headers = [(TRACEPARENT, self._traces.next())]
        room = self._max_record - record_size(key_bytes, b"", headers)
        value = envelope.to_json(max_bytes=room)
        if len(value) > room:
            # JSON escapes some characters as six bytes each: a payload under the limit can
            # still make an envelope Kafka would refuse (and the broker redeliver for ever).
            return fmt_name, *self._dead_letter(
                message,
                Reason.OVERSIZE,
                f"payload of {len(payload)} bytes makes a raw envelope of {len(value)} bytes "
                f"once encoded, more than Kafka's record limit of {room} bytes for it "
                "(CITYHUB_KAFKA__MAX_MESSAGE_BYTES)",
                now,
                key_bytes,
                fmt_name,
            )
        return fmt_name, self._topics.raw, value, key_bytes, headers

    def _dead_letter(
        self,
        message: Publish,
        reason: Reason,
        detail: str,
        now: str,
        key: bytes,
        fmt_name: str | None,
        *,
        keyed_by_device: bool = True,
    ) -> tuple[str, bytes, bytes, None]:
        """(Kafka topic, value, key, no headers) of the dead letter of ``message``, counted,
        sized to fit; ``keyed_by_device``: the key is the device (else the device is not
        known). A dead letter starts no trace: nothing is processed from it."""
        metrics.DEADLETTERS.labels(SOURCE, reason.value).inc()
        letter = DeadLetter.of(
            stage=STAGE,
            reason=reason,
            detail=detail,
            failed_at=now,
            payload=message.payload,
            max_payload_bytes=self._max_payload,
            format=fmt_name,
            source_topic=message.topic,
            device=key.decode(errors="replace") if keyed_by_device else None,
            received_at=now,
        )
        key = key[:DEADLETTER_KEY_BYTES]
        value = letter.to_json(self._max_record - record_size(key, b""))
        return self._topics.deadletter, value, key, None

    def _warn_unrouted(self, topic: str, fmt_name: str) -> None:
        """Say that messages arrive on a topic no format reads, at most once per
        ``UNROUTED_WARNING_INTERVAL_S`` (a publisher could otherwise flood the log); the topic
        comes from outside, and the log's formatter escapes it."""
        now = time.monotonic()
        self._unrouted += 1
        if now - self._unrouted_warned < UNROUTED_WARNING_INTERVAL_S:
            return
        log.warning(
            "%d message(s) on topics no ingest format reads went to the dead letters "
            "(unknown_format), the last on %s (format %s); check the bridge subscriptions",
            self._unrouted,
            topic,
            fmt_name,
        )
        self._unrouted, self._unrouted_warned = 0, now

    def _internal_error(
        self, message: Publish, exc: Exception
    ) -> tuple[str, str, bytes, bytes, None]:
        return "unknown", *self._dead_letter(
            message,
            Reason.INTERNAL_ERROR,
            f"the bridge failed on this message: {exc!r}",
            self._now(),
            message.topic.encode(),
            None,
            keyed_by_device=False,
        )

    def _now(self) -> str:
        """The receive time, RFC 3339; formatted once per millisecond, not once per message."""
        ms = int(time.time() * 1000)
        if ms != self._clock[0]:
            self._clock = (ms, rfc3339(ms / 1000))
        return self._clock[1]

    def _format(self, name: str) -> IngestFormat | None:
        try:
            return self._formats[name]
        except KeyError:
            pass
        try:
            fmt: IngestFormat | None = get_format(name)
        except CityhubError:
            log.error("ingest format %r is not registered; its messages go to dead letters", name)
            fmt = None
        self._formats[name] = fmt
        return fmt

    def _release(self, state: _SessionState) -> None:
        if state.saturated_since is not None:
            self._m_bp_seconds.inc(time.perf_counter() - state.saturated_since)
            state.saturated_since = None
        state.inflight -= 1
        state.slots.release()
        if state.inflight == 0:
            state.idle.set()
        if state.session is self._current:
            self._m_inflight.set(state.inflight)

    def _on_delivery(
        self,
        state: _SessionState,
        pending: Pending,
        fmt_name: str,
        topic: str,
        sent_at: float,
        headers: Headers | None = None,
    ) -> Callable[[asyncio.Future[Any]], None]:
        destination = "deadletter" if topic == self._topics.deadletter else "raw"

        def done(delivery: asyncio.Future[Any]) -> None:
            self._release(state)
            if delivery.cancelled() or delivery.exception() is not None:
                if not state.failed.done():  # the first failure of a session, with its trace
                    with about_message(traceparent_in(headers)):
                        log.warning("Kafka did not confirm the record for %s", topic)
                state.fail(KafkaWriteFailed(f"Kafka did not confirm a write: {delivery!r}"))
                return
            now = time.perf_counter()
            self._stalled_since = now if state.inflight else None
            self._m_latency.observe(now - sent_at)
            self._written(fmt_name, destination).inc()
            for ready in state.acks.confirm(pending):
                state.session.ack(ready.mid, ready.qos)

        return done

    def _written(self, fmt_name: str, destination: str) -> Any:
        try:
            return self._m_written[fmt_name, destination]
        except KeyError:
            child = metrics.WRITTEN.labels(SOURCE, fmt_name, destination)
            self._m_written[fmt_name, destination] = child
            return child


class _SessionState:
    """What belongs to one MQTT session: its in-flight slots, ack order and failure. A late
    Kafka confirmation of an old session touches only that session's state."""

    __slots__ = ("acks", "failed", "idle", "inflight", "saturated_since", "session", "slots")

    def __init__(self, session: MqttSession, max_inflight: int) -> None:
        self.session = session
        self.acks = AckSequencer()
        self.slots = asyncio.Semaphore(max_inflight)
        self.inflight = 0
        self.saturated_since: float | None = None
        self.idle = asyncio.Event()
        self.failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def fail(self, exc: KafkaWriteFailed) -> None:
        metrics.KAFKA_ERRORS.labels(SOURCE).inc()
        if not self.failed.done():
            self.failed.set_exception(exc)

    async def drain(self, timeout: float) -> None:
        """Give in-flight writes a moment to be confirmed (and acked) before disconnecting;
        whatever is still unconfirmed is redelivered by the broker."""
        if self.inflight:
            self.idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), timeout)
