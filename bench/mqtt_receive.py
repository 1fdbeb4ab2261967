"""Messages per second received from Mosquitto and acknowledged: the bridge's MqttSession (our
codec) against ManualAckSession (aiomqtt and paho, the first version, kept in
bench/aiomqtt_session.py as the baseline), with nothing else in the loop.

For each session type: open a persistent session and subscribe, disconnect, publish N 1.5 KB QoS 1
messages while it is away, then time reconnecting and draining them all, acking each as it is
taken. Receive Maximum is 1000, as the bridge's default max_inflight.

Run: ``.venv/bin/python -m bench.mqtt_receive`` with the stack up.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import aiomqtt

from bench.aiomqtt_session import ManualAckSession
from bench.stats import machine, median, today
from cityhub.connectors.mqtt.session import MqttSession, end_session
from cityhub.schemas.settings import MqttSettings, MqttSubscription

RECEIVE_MAXIMUM = 1000
SESSIONS: dict[str, Any] = {"ManualAckSession": ManualAckSession, "MqttSession": MqttSession}


async def queue_messages(settings: MqttSettings, root: str, count: int, size: int) -> None:
    async with ManualAckSession(settings, receive_maximum=RECEIVE_MAXIMUM) as session:
        await session.subscribe(MqttSubscription(filter=f"{root}/#", format="cityhub-json"))
    payload = b"x" * size
    async with aiomqtt.Client(
        settings.host, settings.port, identifier=f"bench-pub-{uuid.uuid4().hex[:6]}"
    ) as client:
        window = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with window:
                await client.publish(f"{root}/dev-{i % 100}/up", payload, qos=1)

        await asyncio.gather(*(one(i) for i in range(count)))


async def drain(kind: str, count: int, size: int) -> float:
    run = uuid.uuid4().hex[:8]
    settings = MqttSettings(client_id=f"bench-recv-{run}")
    root = f"benchrecv/{run}"
    try:
        await queue_messages(settings, root, count, size)
        started = time.perf_counter()
        async with SESSIONS[kind](settings, receive_maximum=RECEIVE_MAXIMUM) as session:
            taken = 0
            async for message in session.messages():
                session.ack(message.mid, message.qos)
                taken += 1
                if taken == count:
                    break
        return count / (time.perf_counter() - started)
    finally:
        await end_session(settings)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{today()}, {machine()}: {args.messages} queued QoS 1 messages of {args.size} bytes")
    for kind in SESSIONS:
        rates = [await drain(kind, args.messages, args.size) for _ in range(args.runs)]
        print(f"{kind:>17}: median {median(rates):,.0f} msg/s  (runs: {[round(r) for r in rates]})")


if __name__ == "__main__":
    asyncio.run(main())
