"""The messages every benchmark sends: realistic uplinks of a simulated city fleet, the same for
every run (seeded), in the mix the simulator produces (TTS, ChirpStack, SenML, JSON)."""

from __future__ import annotations

from cityhub.streams.devtools.simulator import Outgoing, Traffic, build_fleet

START = 1_795_914_000.0  # a fixed night in November 2026, so readings are the same every run
SEED = 7
"""The fleet's and the traffic's seed: a benchmark that registers the fleet uses it too."""


def city_messages(count: int, *, devices: int = 1000, seed: int = SEED) -> list[Outgoing]:
    """``count`` uplinks of ``devices`` devices, one every 10 ms of simulated time."""
    traffic = Traffic(build_fleet(devices, seed=seed), seed=seed)
    return [traffic.next_message(START + i * 0.01) for i in range(count)]
