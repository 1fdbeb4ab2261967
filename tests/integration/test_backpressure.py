"""When Kafka stops answering, the bridge stops taking messages at its in-flight limit, holds no
more than that, says so in its metrics, and delivers everything once Kafka is back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from cityhub.schemas.settings import Settings
from cityhub.streams.devtools.stack.layout import StackLayout

from .hub import Hub, publish, read_topic
from .uplinks import tts, unique_eui

pytestmark = pytest.mark.integration

LIMIT = 20  # below what aiokafka buffers per partition, so that our limit is what binds
MESSAGES = 600
PAUSE_SECONDS = 4.0


def kafka_pid() -> int:
    layout = StackLayout.under(Settings().stack.state_dir)
    return int(layout.kafka_pid.read_text().split()[0])


async def test_bridge_stops_taking_messages_while_kafka_is_stalled(tmp_path: Path) -> None:
    hub = Hub(tmp_path, command="bridge", extra_env={"CITYHUB_BRIDGE__MAX_INFLIGHT": str(LIMIT)})
    hub.start()
    eui = unique_eui()
    messages = [tts(f"bp-{eui[:6]}", eui, i, decoded={"count": i}) for i in range(1, MESSAGES + 1)]
    pid = kafka_pid()
    # Kafka stalls mid-stream: the producer already knows the topic's partitions and leaders.
    await publish([tts(f"bp-{eui[:6]}", eui, 0, decoded={"count": 0})])
    await read_topic(hub.topics["raw"], until=lambda r: len(r) >= 1, timeout=30)
    try:
        os.kill(pid, signal.SIGSTOP)  # Kafka freezes: no responses, no errors
        try:
            await publish(messages, rate=2000)
            deadline = time.monotonic() + 10
            while (
                time.monotonic() < deadline
                and hub.metric("cityhub_bridge_inflight_messages") < LIMIT
            ):
                await asyncio.sleep(0.2)
            await asyncio.sleep(PAUSE_SECONDS)
            assert hub.metric("cityhub_bridge_inflight_messages") == LIMIT
            # The broker honours the Receive Maximum: nothing piles up inside the bridge.
            assert hub.metric("cityhub_bridge_queued_messages") <= LIMIT
            assert hub.metric("cityhub_bridge_backpressure_events_total") >= 1
            received = hub.metric("cityhub_bridge_messages_received_total")
            assert LIMIT <= received <= LIMIT + 1, received
        finally:
            os.kill(pid, signal.SIGCONT)

        raw = await read_topic(
            hub.topics["raw"],
            until=lambda r: len({x["payload"] for x in r}) >= MESSAGES + 1,
            timeout=90,
        )
        assert len({x["payload"] for x in raw}) == MESSAGES + 1, hub.log_tail()
        assert hub.metric("cityhub_bridge_backpressure_seconds_total") >= PAUSE_SECONDS / 2
        await asyncio.sleep(1.0)
        assert hub.metric("cityhub_bridge_inflight_messages") == 0
    finally:
        hub.stop()
