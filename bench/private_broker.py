"""A Mosquitto of the benchmark's own: fresh state, its own port, gone afterwards.

The shared stack's Mosquitto keeps persistent sessions across runs; a session that a crashed
run left behind has every later message queued for it, and Mosquitto rewrites its whole store
on every autosave (once a second here). Measured on 2026-12-03: an 81 MB store stalled the
bridge for 100 to 250 ms every other second and doubled the pipeline's p99. A benchmark that
measures MQTT therefore starts from a clean broker state of its own (issue 9); Kafka stays
shared (topic prefixes of their own keep runs apart).
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from cityhub.schemas.settings import MqttSettings, Settings, StackSettings
from cityhub.streams.devtools.stack import stack_down, stack_up
from cityhub.streams.supervisor import free_ports


@asynccontextmanager
async def private_mosquitto() -> AsyncIterator[MqttSettings]:
    """Starts a Mosquitto with the stack's configuration on a free loopback port and an empty
    state dir; yields the MQTT settings that reach it; stops it and deletes its state."""
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as state:
        (port,) = free_ports(1, avoid=set())
        # The Kafka ports are never used: only Mosquitto starts.
        settings = Settings(stack=StackSettings(state_dir=Path(state), mqtt_port=port))
        try:
            status = await stack_up(settings, only=["mosquitto"])
            if not status.all_serving:
                raise SystemExit(f"the benchmark's Mosquitto did not start:\n{status.render()}")
            yield MqttSettings(host="127.0.0.1", port=port)
        finally:
            await stack_down(settings, purge=True, only=["mosquitto"])
