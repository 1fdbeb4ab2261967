"""The MQTT → Kafka bridge's rate against a bare aiokafka producer sending the same payloads.

Both write the same simulated city uplinks to fresh topics on the local Kafka with the same
producer settings (acks=all, idempotence, linger). The baseline sends them from memory as fast
as aiokafka takes them. The bridge takes them from Mosquitto, where they wait queued for its
persistent session, and wraps each in a raw envelope; it acknowledges each to Mosquitto only
after Kafka confirmed it. The time runs from the bridge's start to Kafka's last confirmation.
Target (issue 2): the bridge at 0.5 of the baseline or better.

Run: ``.venv/bin/python -m bench.bridge`` with the stack up (``make bench`` does both).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from typing import Any

import aiomqtt

from bench.stats import machine, median, today
from bench.workload import city_messages
from cityhub.connectors.batching_writer import BatchingWriter
from cityhub.connectors.kafka import create_producer
from cityhub.connectors.mqtt.bridge import MqttBridge
from cityhub.connectors.mqtt.session import MqttSession, end_session
from cityhub.schemas.settings import KafkaSettings, MqttSettings, Settings
from cityhub.streams.devtools.simulator import Outgoing
from cityhub.streams.topic_admin import ensure_topics


def fresh_settings(max_inflight: int) -> Settings:
    run = uuid.uuid4().hex[:8]
    base = Settings()
    return base.model_copy(
        update={
            "kafka": KafkaSettings(**{**base.kafka.model_dump(), "topic_prefix": f"bench{run}"}),
            "mqtt": MqttSettings(**{**base.mqtt.model_dump(), "client_id": f"bench-bridge-{run}"}),
            "bridge": base.bridge.model_copy(update={"max_inflight": max_inflight}),
        }
    )


async def baseline(messages: list[Outgoing], settings: Settings) -> float:
    """Messages per second of a bare aiokafka producer."""
    topic = f"{settings.kafka.topic_prefix}.baseline"
    await ensure_topics(settings)
    producer = create_producer(settings.kafka, client_id="bench-baseline")
    await producer.start()
    try:
        await (await producer.send(topic, b"warm-up", key=b"x"))
        started = time.perf_counter()
        deliveries = [
            await producer.send(topic, m.payload, key=m.device_id.encode()) for m in messages
        ]
        await asyncio.gather(*deliveries)
        return len(messages) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def queue_for_bridge(messages: list[Outgoing], settings: Settings) -> None:
    """Open the bridge's persistent session once, then publish everything while it is away."""
    session = MqttSession(settings.mqtt, receive_maximum=settings.bridge.max_inflight)
    async with session:
        for subscription in settings.bridge.subscriptions:
            await session.subscribe(subscription)
    async with aiomqtt.Client(
        settings.mqtt.host, settings.mqtt.port, identifier=f"bench-pub-{uuid.uuid4().hex[:6]}"
    ) as client:
        window = asyncio.Semaphore(64)

        async def one(m: Outgoing) -> None:
            async with window:
                await client.publish(m.topic, m.payload, qos=1)

        await asyncio.gather(*(one(m) for m in messages))


class CountingSink:
    """Passes records to the producer and notes when the last confirmation arrives."""

    def __init__(self, producer: Any, expected: int) -> None:
        self._producer = producer
        self._left = expected
        self.done = asyncio.Event()

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        delivery = await self._producer.send(topic, value, key, headers=headers)
        delivery.add_done_callback(self._confirmed)
        return delivery

    def _confirmed(self, _: Any) -> None:
        self._left -= 1
        if self._left == 0:
            self.done.set()


async def bridge(messages: list[Outgoing], settings: Settings) -> float:
    """Messages per second through the bridge, from its start to the last Kafka confirmation."""
    await ensure_topics(settings)
    producer = create_producer(settings.kafka, client_id="bench-bridge")
    task: asyncio.Task[None] | None = None
    try:
        # Inside the try: queueing makes the bridge's persistent session, which must be ended
        # however the run ends, or Mosquitto queues every later message for it.
        await queue_for_bridge(messages, settings)
        await producer.start()
        await (await producer.send(f"{settings.kafka.topic_prefix}.raw", b"warm-up"))
        writer = BatchingWriter(producer, linger=settings.kafka.linger_ms / 1000)
        sink = CountingSink(writer, len(messages))
        started = time.perf_counter()
        task = asyncio.create_task(MqttBridge(settings, sink).run())
        await asyncio.wait_for(sink.done.wait(), timeout=300)
        return len(messages) / (time.perf_counter() - started)
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await producer.stop()
        await end_session(settings.mqtt)


async def run(args: argparse.Namespace) -> dict[str, float]:
    messages = city_messages(args.messages)
    base_rates, bridge_rates, ratios = [], [], []
    for i in range(args.runs):
        b = await baseline(messages, fresh_settings(args.inflight))
        r = await bridge(messages, fresh_settings(args.inflight))
        base_rates.append(b)
        bridge_rates.append(r)
        ratios.append(r / b)
        print(
            f"  run {i + 1}: baseline {b:,.0f}/s, bridge {r:,.0f}/s, ratio {r / b:.2f}", flush=True
        )
    result = {
        "baseline_msgs_per_s": median(base_rates),
        "bridge_msgs_per_s": median(bridge_rates),
        "ratio": median(ratios),
    }
    size = sum(len(m.payload) for m in messages) / len(messages)
    print(f"bridge benchmark, {today()}, {machine()}")
    print(
        f"  {args.messages} uplinks (avg {size:.0f} B), max_inflight {args.inflight}, "
        f"median of {args.runs} runs"
    )
    print(f"  bare aiokafka producer    : {result['baseline_msgs_per_s']:>10,.0f} msg/s")
    print(f"  MQTT -> Kafka bridge      : {result['bridge_msgs_per_s']:>10,.0f} msg/s")
    print(f"  ratio bridge/producer     : {result['ratio']:.2f}   (target >= 0.5)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--inflight", type=int, default=Settings().bridge.max_inflight)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
