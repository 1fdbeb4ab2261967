"""The sequence of messages a simulated fleet publishes, duplicates included. Pure: no I/O.

Devices take turns in a seeded order that repeats, so at a total rate R each of N devices
sends every N/R seconds, as devices with a fixed reporting interval do. A share of uplinks
(``duplicate_ratio``) reaches the hub twice, as real network servers deliver them: a device
registered on both network servers arrives from the other one too; any other device's uplink
is published again as a second gateway path would report it (same frame counter).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from cityhub.streams.devtools.simulator.fleet import Fleet, Format, seeded_random
from cityhub.streams.devtools.simulator.messages import render
from cityhub.streams.devtools.simulator.readings import FleetSimulator, Frame


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT message to publish."""

    topic: str
    payload: bytes
    format: Format
    device_id: str
    f_cnt: int | None
    """The LoRaWAN frame counter; None for plain MQTT sensors."""
    duplicate: bool
    """True: a repeat of an uplink already published, which the hub must drop."""


class Traffic:
    """Yields the fleet's messages one at a time; deterministic for a fleet, seed, session and
    clock."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        seed: int = 1,
        duplicate_ratio: float = 0.0,
        session: int = 0,
        fault_ratio: float = 0.0,
    ) -> None:
        """``session``: the devices' session (``FleetSimulator``), which fixes their DevAddrs;
        ``fault_ratio``: the share of temperature readings that are sensor faults
        (``FleetSimulator``). Raises ValueError unless both ratios are within 0..1."""
        if not 0.0 <= duplicate_ratio <= 1.0:
            raise ValueError(f"duplicate_ratio must be within 0..1, got {duplicate_ratio}")
        self.fleet = fleet
        self.duplicate_ratio = duplicate_ratio
        self._simulator = FleetSimulator(fleet, session=session, fault_ratio=fault_ratio)
        self._rng = seeded_random(f"cityhub-traffic:{seed}")
        self._order = list(range(len(fleet.devices)))
        self._rng.shuffle(self._order)
        self._next = 0
        self._pending: deque[Outgoing] = deque()

    def next_message(self, now: float) -> Outgoing:
        """The next message to publish at ``now`` (seconds since the epoch).

        A pending duplicate goes first, so that it follows its original closely, as a second
        path or the other network server would deliver it.
        """
        if self._pending:
            return self._pending.popleft()
        device = self.fleet.devices[self._order[self._next]]
        self._next = (self._next + 1) % len(self._order)
        frame = self._simulator.next_frame(device, now)
        out = self._outgoing(frame, device.format, variant=0, duplicate=False)
        if self.duplicate_ratio and self._rng.random() < self.duplicate_ratio:
            if device.also_on is not None:
                self._pending.append(self._outgoing(frame, device.also_on, 0, duplicate=True))
            else:
                self._pending.append(self._outgoing(frame, device.format, 1, duplicate=True))
        return out

    @staticmethod
    def _outgoing(frame: Frame, fmt: Format, variant: int, *, duplicate: bool) -> Outgoing:
        topic, payload = render(frame, fmt, variant=variant)
        return Outgoing(
            topic=topic,
            payload=payload,
            format=fmt,
            device_id=frame.device.device_id,
            f_cnt=frame.f_cnt if fmt.lorawan else None,
            duplicate=duplicate,
        )
