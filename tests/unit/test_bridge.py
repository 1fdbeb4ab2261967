"""The bridge's logic with test doubles: a scripted MQTT session and a sink whose writes the
test confirms by hand. The same behaviour on the real brokers: tests/integration."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cityhub.connectors.mqtt import metrics
from cityhub.connectors.mqtt.bridge import MqttBridge
from cityhub.connectors.mqtt.codec import Publish
from cityhub.connectors.mqtt.packets import ConnAck
from cityhub.connectors.mqtt.reconnect import ReconnectBackoff
from cityhub.connectors.record_size import Headers, record_size
from cityhub.schemas.settings import BridgeSettings, KafkaSettings, MqttSubscription, Settings
from cityhub.schemas.trace_context import TRACEPARENT, parse_traceparent


class ScriptedSession:
    """Hands the bridge a fixed list of messages, then waits; records acks."""

    def __init__(self, messages: list[Publish]) -> None:
        self._messages = messages
        self.acked: list[int] = []
        self.subscribed: list[str] = []
        self.queued = 0

    async def __aenter__(self) -> ScriptedSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def subscribe(self, subscription: MqttSubscription) -> None:
        self.subscribed.append(subscription.filter)

    async def messages(self) -> AsyncIterator[Publish]:
        for message in self._messages:
            yield message
        await asyncio.Event().wait()

    def ack(self, mid: int, qos: int) -> bool:
        self.acked.append(mid)
        return True


class HeldSink:
    """Accepts records and confirms them only when the test says so."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []
        self.headers: list[Headers | None] = []
        self.deliveries: list[asyncio.Future[Any]] = []

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: Headers | None = None,
    ) -> Any:
        assert value is not None
        assert key is not None
        self.records.append((topic, value, key))
        self.headers.append(headers)
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        return delivery


def message(mid: int, topic: str, payload: bytes) -> Publish:
    return Publish(topic=topic, payload=payload, qos=1, mid=mid, retain=False, dup=False)


def uplink(device: str) -> bytes:
    return json.dumps({"time": "2026-11-29T01:00:00Z", "temperature": 1.5}).encode()


async def run_bridge(
    messages: list[Publish], settings: Settings | None = None
) -> tuple[MqttBridge, ScriptedSession, HeldSink, asyncio.Task[None]]:
    session = ScriptedSession(messages)
    sink = HeldSink()
    bridge = MqttBridge(settings or Settings(), sink, session_factory=lambda: session)  # type: ignore[arg-type,return-value]
    task = asyncio.create_task(bridge.run())
    for _ in range(100):
        if len(sink.records) == len(messages):
            break
        await asyncio.sleep(0.01)
    return bridge, session, sink, task


async def stop(task: asyncio.Task[None], sink: HeldSink) -> None:
    for delivery in sink.deliveries:  # else shutdown waits for them (10 s) before it gives up
        if not delivery.done():
            delivery.set_result(None)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_acks_follow_kafka_confirmations_in_arrival_order() -> None:
    msgs = [message(i, f"cityhub/ingest/dev-{i}", uplink(f"dev-{i}")) for i in (1, 2, 3)]
    _, session, sink, task = await run_bridge(msgs)
    assert [r[0] for r in sink.records] == ["cityhub.raw"] * 3
    assert session.acked == []  # nothing acknowledged before Kafka confirmed
    sink.deliveries[2].set_result(None)
    sink.deliveries[1].set_result(None)
    await asyncio.sleep(0)
    assert session.acked == []  # the first is still unconfirmed, so no later ack may go out
    sink.deliveries[0].set_result(None)
    await asyncio.sleep(0)
    assert session.acked == [1, 2, 3]
    await stop(task, sink)


async def test_records_are_envelopes_keyed_by_device() -> None:
    _, _, sink, task = await run_bridge([message(7, "cityhub/ingest/noise-3", uplink("noise-3"))])
    topic, value, key = sink.records[0]
    assert topic == "cityhub.raw"
    envelope = json.loads(value)
    assert key == b"noise-3"
    assert envelope["format"] == "cityhub-json"
    assert envelope["topic"] == "cityhub/ingest/noise-3"
    assert json.loads(envelope["payload"])["temperature"] == 1.5
    await stop(task, sink)


async def test_oversize_and_unroutable_messages_become_dead_letters_and_are_acked() -> None:
    settings = Settings().model_copy(
        update={
            "bridge": BridgeSettings(
                max_payload_bytes=100,
                subscriptions=(
                    MqttSubscription(filter="cityhub/ingest/+", format="cityhub-json"),
                    MqttSubscription(filter="odd/+", format="not-registered"),
                ),
            )
        }
    )
    msgs = [message(1, "cityhub/ingest/big", b"x" * 500), message(2, "odd/one", b"{}")]
    _, session, sink, task = await run_bridge(msgs, settings)
    letters = [json.loads(value) for topic, value, _ in sink.records]
    assert [r[0] for r in sink.records] == ["cityhub.deadletter"] * 2
    assert [(x["reason"], x["stage"]) for x in letters] == [
        ("oversize", "bridge"),
        ("unknown_format", "bridge"),
    ]
    assert letters[0]["size"] == 500
    assert letters[0]["truncated"] is True
    for delivery in sink.deliveries:
        delivery.set_result(None)
    await asyncio.sleep(0)
    assert session.acked == [1, 2]
    await stop(task, sink)


async def test_a_failed_kafka_write_leaves_the_message_unacked_and_restarts_the_session() -> None:
    msgs = [
        message(1, "cityhub/ingest/a", uplink("a")),
        message(2, "cityhub/ingest/b", uplink("b")),
    ]
    bridge, session, sink, task = await run_bridge(msgs)
    sink.deliveries[1].set_result(None)
    sink.deliveries[0].set_exception(RuntimeError("not enough replicas"))
    for _ in range(100):
        if not bridge.healthy:
            break
        await asyncio.sleep(0.01)
    assert not bridge.healthy
    assert session.acked == []  # the broker will redeliver both
    await stop(task, sink)


async def test_every_raw_record_starts_a_sampled_trace_of_its_own() -> None:
    msgs = [message(i, f"cityhub/ingest/dev-{i}", uplink(f"dev-{i}")) for i in range(1, 301)]
    _, _, sink, task = await run_bridge(msgs)
    assert len(sink.records) == 300
    traces = set()
    for headers in sink.headers:
        assert headers is not None
        assert [name for name, _ in headers] == [TRACEPARENT]
        value = headers[0][1]
        assert len(value) == 55
        ctx = parse_traceparent(value)
        assert ctx is not None
        assert ctx.sampled
        traces.add(ctx.trace_id)
    assert len(traces) == 300  # a new trace per raw record, across the pool's refills
    await stop(task, sink)


async def test_dead_letters_carry_no_trace() -> None:
    settings = Settings().model_copy(
        update={"bridge": BridgeSettings(max_payload_bytes=100)}  # default subscriptions
    )
    _, _, sink, task = await run_bridge([message(1, "cityhub/ingest/big", b"x" * 500)], settings)
    assert sink.records[0][0] == "cityhub.deadletter"
    assert sink.headers == [None]
    await stop(task, sink)


async def test_the_header_counts_in_the_record_size() -> None:
    """Payloads around Kafka's record limit: every raw record the bridge writes fits the limit
    with its traceparent header (a record that only fits without it would be refused by Kafka,
    and its message redelivered by the broker for ever); the others become dead letters."""
    limit = 70_000
    base = Settings()
    settings = base.model_copy(
        update={
            "kafka": KafkaSettings(**{**base.kafka.model_dump(), "max_message_bytes": limit}),
            "bridge": BridgeSettings(max_payload_bytes=limit),
        }
    )
    sizes = range(limit - 400, limit - 100)
    msgs = [message(n, "cityhub/ingest/dev-edge", b"a" * size) for n, size in enumerate(sizes)]
    _, _, sink, task = await run_bridge(msgs, settings)
    assert len(sink.records) == len(msgs)
    kinds = set()
    for (topic, value, key), headers in zip(sink.records, sink.headers, strict=True):
        kinds.add(topic)
        assert record_size(key, value, headers) <= limit
        if topic == "cityhub.raw":
            assert headers is not None
    assert kinds == {"cityhub.raw", "cityhub.deadletter"}  # the sweep crosses the limit
    await stop(task, sink)


class ResumedSession(ScriptedSession):
    """A resumed session as Mosquitto 2.0.11 plays it: the messages it queued for the client
    come first, and the SUBACK only once the client has taken them (the real connection stops
    reading at its high water mark, and the SUBACK waits behind what it did not read)."""

    def __init__(self, messages: list[Publish]) -> None:
        super().__init__(messages)
        self.taken = 0
        self._all_taken = asyncio.Event()

    async def subscribe(self, subscription: MqttSubscription) -> None:
        async with asyncio.timeout(2):  # MqttSession gives up on a silent broker, too
            await self._all_taken.wait()
        self.subscribed.append(subscription.filter)

    async def messages(self) -> AsyncIterator[Publish]:
        for message in self._messages:
            self.taken += 1
            yield message
        self._all_taken.set()
        await asyncio.Event().wait()


async def test_a_resumed_session_s_backlog_is_taken_before_its_suback_comes() -> None:
    """Before, the bridge waited for every SUBACK before it took any message: a broker that
    resumed the session with a backlog ahead of the SUBACK left it waiting, the subscribe timed
    out, and the next session resumed the same way, for ever (a Kafka outage under load was
    enough; only restarting Mosquitto ended it)."""
    msgs = [message(i, f"cityhub/ingest/dev-{i}", uplink(f"dev-{i}")) for i in range(1, 51)]
    session = ResumedSession(msgs)
    sink = HeldSink()
    bridge = MqttBridge(Settings(), sink, session_factory=lambda: session)  # type: ignore[arg-type,return-value]
    task = asyncio.create_task(bridge.run())
    try:
        async with asyncio.timeout(5):
            while not (bridge.healthy and len(session.acked) == len(msgs)):
                for delivery in sink.deliveries:
                    if not delivery.done():
                        delivery.set_result(None)
                await asyncio.sleep(0.01)
        assert session.subscribed  # the SUBACK came, once the backlog was taken
        assert session.acked == list(range(1, 51))
    finally:
        await stop(task, sink)


async def test_the_bridge_is_not_healthy_while_kafka_confirms_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, /healthz said ok through a whole Kafka outage: the bridge was subscribed, and
    only its backpressure counter showed that nothing moved."""
    monkeypatch.setattr("cityhub.connectors.mqtt.bridge.STALLED_AFTER_S", 0.2)
    msgs = [message(i, f"cityhub/ingest/d-{i}", uplink(f"d-{i}")) for i in (1, 2)]
    bridge, session, sink, task = await run_bridge(msgs)
    assert bridge.healthy  # writes in flight, not for long
    await asyncio.sleep(0.3)
    assert not bridge.healthy  # in flight and unconfirmed for longer than STALLED_AFTER_S
    sink.deliveries[0].set_result(None)
    await asyncio.sleep(0)
    assert bridge.healthy  # a confirmation is progress
    sink.deliveries[1].set_result(None)
    await asyncio.sleep(0.3)
    assert bridge.healthy  # nothing in flight: nothing to wait for
    assert session.acked == [1, 2]
    await stop(task, sink)


async def test_a_failed_write_is_no_progress_and_the_stall_outlives_the_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Kafka timeout ends the session and the broker sends the messages again: the bridge
    stays unhealthy until Kafka confirms one (a failed confirmation used to count as one)."""
    monkeypatch.setattr("cityhub.connectors.mqtt.bridge.STALLED_AFTER_S", 0.2)
    msgs = [message(1, "cityhub/ingest/d-1", uplink("d-1"))]
    bridge, session, sink, task = await run_bridge(msgs)
    await asyncio.sleep(0.3)
    assert not bridge.healthy
    sink.deliveries[0].set_exception(RuntimeError("KafkaTimeoutError"))
    async with asyncio.timeout(5):  # the next session (backoff 0.25 to 0.75 s) writes it again
        while len(sink.records) < 2:
            await asyncio.sleep(0.01)
    assert not bridge.healthy  # subscribed again, but Kafka has confirmed nothing since
    sink.deliveries[1].set_result(None)
    await asyncio.sleep(0)
    assert bridge.healthy
    assert session.acked == [1]
    await stop(task, sink)


async def test_the_backoff_hears_how_long_the_ended_session_was_subscribed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reconnect wait starts over only after a session that held its subscriptions
    (connectors/mqtt/reconnect.py): the bridge passes it the subscribed time, or None."""
    heard: list[float | None] = []

    def after_session(self: object, subscribed_for_s: float | None) -> float:
        heard.append(subscribed_for_s)
        return 0.0

    monkeypatch.setattr(ReconnectBackoff, "after_session", after_session)

    class RefusedSession(ScriptedSession):
        async def subscribe(self, subscription: MqttSubscription) -> None:
            raise OSError("not authorised")

    sessions = [ScriptedSession([message(1, "cityhub/ingest/a", uplink("a"))]), RefusedSession([])]
    sink = HeldSink()
    bridge = MqttBridge(Settings(), sink, session_factory=lambda: sessions.pop(0))  # type: ignore[arg-type,return-value]
    task = asyncio.create_task(bridge.run())
    async with asyncio.timeout(5):
        while not sink.deliveries:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    sink.deliveries[0].set_exception(RuntimeError("not enough replicas"))  # ends session one
    async with asyncio.timeout(5):
        while len(heard) < 2:  # session two is refused its SUBSCRIBE
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises((asyncio.CancelledError, IndexError)):
        await task
    assert heard[0] is not None
    assert 0.2 <= heard[0] < 5
    assert heard[1] is None


async def test_a_reconnection_that_finds_no_session_is_counted_and_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another client took the client id with a clean start, or the broker restarted without
    persistence: what was published meanwhile was queued for no one. The bridge cannot get it
    back, but says so (the first session of a process finds none, and is no loss)."""

    class Resumed(ScriptedSession):
        def __init__(self, session_present: bool) -> None:
            super().__init__([message(1, "cityhub/ingest/a", uplink("a"))])
            self.connack = ConnAck(session_present=session_present, reason_code=0)

    sessions = [Resumed(False), Resumed(True), Resumed(False)]
    sink = HeldSink()
    bridge = MqttBridge(Settings(), sink, session_factory=lambda: sessions.pop(0))  # type: ignore[arg-type,return-value]
    lost = metrics.SESSIONS_LOST.labels(metrics.CONNECTOR)
    before = lost._value.get()
    seen: list[float] = []
    task = asyncio.create_task(bridge.run())
    async with asyncio.timeout(10):
        for n in (1, 2, 3):
            while len(sink.deliveries) < n:
                await asyncio.sleep(0.01)
            seen.append(lost._value.get() - before)
            if n < 3:
                sink.deliveries[-1].set_exception(RuntimeError("not enough replicas"))
    await stop(task, sink)
    assert seen == [0, 0, 1]
    assert "had no session for client id 'cityhub-bridge'" in caplog.text
