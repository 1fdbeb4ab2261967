"""The readings a simulated fleet sends: each device's values over time. Pure: no I/O.

``FleetSimulator`` evolves each device's readings (daily cycle, noise, bounded ranges) and frame
counter, deterministically for the same fleet and the same sequence of calls; each device has
its own random stream. A simulator is one session of the fleet, as after a join (OTAA): every
device's frame counter starts at 0 and its DevAddr is the session's (``session_dev_addr``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from cityhub.streams.devtools.simulator.fleet import (
    QUANTITIES,
    Device,
    Fleet,
    Kind,
    seeded_random,
    session_dev_addr,
)

Reading = float | int
"""One value as a device reports it (already rounded to the device's resolution)."""

FAULT_TEMPERATURE = 127.0
"""What a faulty temperature sensor reports (a stuck bus reads the sensor's top code): outside
the catalogue's plausible range, so the hub flags it ``out_of_range`` (docs/quality.md)."""


def local_hour(now: float) -> float:
    """Hour of day in Amsterdam (winter time, UTC+1: the simulator needs no tz database)."""
    return ((now / 3600.0) + 1.0) % 24.0


def activity(hour: float) -> float:
    """City activity 0..1 over the day: quiet at night, peaks at the 8:30 and 17:30 rush."""
    day = 0.5 * (1 + math.cos(2 * math.pi * (hour - 14.0) / 24.0))  # smooth, max at 14:00
    rush = math.exp(-(((hour - 8.5) / 1.2) ** 2)) + math.exp(-(((hour - 17.5) / 1.5) ** 2))
    return min(1.0, 0.05 + 0.45 * day + 0.5 * rush)


def _bound(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def quantise(name: str, value: float) -> Reading:
    """Round a value to the resolution its quantity is reported at (int for whole units)."""
    q = QUANTITIES[name]
    if q.step:
        return round(round(value / q.step) * q.step, q.decimals)
    if q.decimals == 0:
        return round(value)
    return round(value, q.decimals)


@dataclass(slots=True)
class _State:
    """What a device remembers between uplinks."""

    rng: random.Random
    f_cnt: int = 0
    noise: dict[str, float] = field(default_factory=dict)
    occupied: int = 0
    fill: float = 0.0
    pressure: float = 1013.0
    wind_direction: float = 240.0
    battery: float = 3.6
    bin_depth: float = 1.2
    water_base: float = 1.6
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class Frame:
    """One uplink a device sends: its frame counter, its readings and when it measured them."""

    device: Device
    f_cnt: int
    readings: Mapping[str, Reading]
    time: float
    """Seconds since the epoch."""
    dev_addr: str
    """The device's DevAddr in the simulator's session (LoRaWAN devices; MQTT ones ignore it)."""


class FleetSimulator:
    """Evolves the readings and frame counters of a fleet's devices.

    Deterministic: the same fleet, session and sequence of ``next_frame`` calls (device and
    time) give the same frames. Each device has its own random stream, so one device's
    readings do not depend on how often the others were asked.

    ``session`` numbers the devices' session (``session_dev_addr``): 0 keeps each device's
    ``Device.dev_addr``; another number gives every device another DevAddr, as a rejoin does,
    so that a hub which still remembers the frames of an earlier run does not take this run's
    frames 0, 1, 2... for copies of them. The readings do not depend on it.

    ``fault_ratio``: the share (0..1) of a temperature sensor's uplinks whose temperature is a
    sensor fault (``FAULT_TEMPERATURE``), so that a demo shows the hub's quality flags. Drawn
    from a random stream of its own per device: with 0 the readings are those of a fleet
    without faults.
    """

    def __init__(self, fleet: Fleet, *, session: int = 0, fault_ratio: float = 0.0) -> None:
        if not 0.0 <= fault_ratio <= 1.0:
            raise ValueError(f"fault_ratio must be within 0..1, got {fault_ratio}")
        self.fleet = fleet
        self.session = session
        self.fault_ratio = fault_ratio
        # Only when asked: a fleet without faults needs no random stream for them.
        self._faults = [
            seeded_random(f"cityhub-faults:{fleet.seed}:{d.index}")
            for d in (fleet.devices if fault_ratio else ())
        ]
        self._dev_addrs = [session_dev_addr(d, session) for d in fleet.devices]
        self._states: list[_State] = []
        for d in fleet.devices:
            rng = seeded_random(f"cityhub-readings:{fleet.seed}:{d.index}")
            self._states.append(
                _State(
                    rng=rng,
                    occupied=int(rng.random() < 0.5),
                    fill=rng.uniform(0, 80),
                    pressure=rng.uniform(1000, 1025),
                    wind_direction=rng.uniform(180, 300),
                    battery=rng.uniform(3.3, 3.65),
                    bin_depth=rng.choice((1.0, 1.2, 1.5)),
                    water_base=rng.uniform(1.2, 2.4),
                    offset=rng.gauss(0, 0.8),
                )
            )

    def next_frame(self, device: Device | int, now: float) -> Frame:
        """The device's next uplink at ``now``: frame counter 0 first, then 1, 2, ..."""
        d = self.fleet.devices[device] if isinstance(device, int) else device
        st = self._states[d.index]
        readings = {q: quantise(q, v) for q, v in self._measure(d, st, now).items()}
        faulty = self.fault_ratio and self._faults[d.index].random() < self.fault_ratio
        if faulty and "temperature" in readings:
            readings["temperature"] = FAULT_TEMPERATURE
        frame = Frame(
            device=d, f_cnt=st.f_cnt, readings=readings, time=now, dev_addr=self._dev_addrs[d.index]
        )
        st.f_cnt = (st.f_cnt + 1) & 0xFFFFFFFF
        return frame

    @staticmethod
    def _ar1(st: _State, key: str, sigma: float, keep: float = 0.85) -> float:
        """Correlated noise: readings wander rather than jump."""
        v = keep * st.noise.get(key, 0.0) + st.rng.gauss(0.0, sigma)
        st.noise[key] = v
        return v

    def _measure(self, d: Device, st: _State, now: float) -> dict[str, float]:
        rng = st.rng
        hour = local_hour(now)
        act = activity(hour)
        # Coldest at 5:00, warmest at 15:00.
        temperature = 10.0 + 5.0 * math.sin(2 * math.pi * (hour - 9.0) / 24.0) + st.offset
        temperature += self._ar1(st, "temperature", 0.3)
        humidity = 78.0 - 2.2 * (temperature - 10.0) + self._ar1(st, "humidity", 1.5)
        out: dict[str, float] = {}
        for q in d.quantities:
            match q:
                case "temperature":
                    out[q] = _bound(temperature, -20.0, 40.0)
                case "humidity":
                    out[q] = _bound(humidity, 15.0, 100.0)
                case "pm2_5":
                    pm = 6.0 + 14.0 * act + self._ar1(st, "pm", 1.5)
                    out[q] = _bound(pm, 0.5, 300.0)
                case "pm10":
                    pm25 = out.get("pm2_5", 10.0)
                    out[q] = _bound(pm25 * 1.7 + abs(self._ar1(st, "pm10", 1.0)), 1.0, 320.0)
                case "co2":
                    out[q] = _bound(415.0 + 120.0 * act + self._ar1(st, "co2", 12.0), 380.0, 2000.0)
                case "no2":
                    out[q] = _bound(12.0 + 38.0 * act + self._ar1(st, "no2", 3.0), 0.0, 200.0)
                case "laeq":
                    out[q] = _bound(42.0 + 26.0 * act + self._ar1(st, "laeq", 2.5), 30.0, 110.0)
                case "occupied":
                    # Cars come and go more in the day; a spot stays in its state most uplinks.
                    p_change = 0.03 + 0.25 * act
                    if rng.random() < p_change:
                        st.occupied = 1 - st.occupied
                    out[q] = st.occupied
                case "distance" if d.kind is Kind.WASTE_BIN:
                    out[q] = _bound(st.bin_depth * (1.0 - st.fill / 100.0), 0.05, st.bin_depth)
                case "distance":
                    # Sensor over a canal: the level follows the sluices slowly (12.4 h cycle).
                    level = 0.15 * math.sin(2 * math.pi * now / 44_640.0 + d.index)
                    out[q] = _bound(st.water_base - level + self._ar1(st, "water", 0.01), 0.2, 4.0)
                case "fill_level":
                    st.fill += max(0.0, rng.gauss(0.6 * act, 0.3))
                    if st.fill > 85.0 and rng.random() < 0.3:  # collected
                        st.fill = rng.uniform(0, 5)
                    st.fill = _bound(st.fill, 0.0, 100.0)
                    out[q] = st.fill
                    out["distance"] = _bound(
                        st.bin_depth * (1.0 - st.fill / 100.0), 0.05, st.bin_depth
                    )
                case "count":
                    # Poisson by inversion: people passing since the last uplink.
                    lam = 1.0 + 60.0 * act
                    out[q] = float(_poisson(rng, lam))
                case "pressure":
                    st.pressure = _bound(st.pressure + rng.gauss(0, 0.15), 960.0, 1050.0)
                    out[q] = st.pressure
                case "wind_speed":
                    gust = abs(self._ar1(st, "wind", 0.8, keep=0.7))
                    out[q] = _bound(2.5 + 2.0 * act + gust, 0.0, 40.0)
                case "wind_direction":
                    st.wind_direction = (st.wind_direction + rng.gauss(0, 8)) % 360.0
                    out[q] = st.wind_direction
                case "battery":
                    st.battery = _bound(st.battery - abs(rng.gauss(0, 0.0004)), 3.0, 3.65)
                    out[q] = st.battery
                case _:
                    raise AssertionError(f"no model for {q}")
        if "fill_level" in out:  # keep the field order of the quantities
            out = {q: out[q] for q in d.quantities}
        return out


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method in log space; fine for the small rates a footfall counter sees."""
    limit = math.exp(-lam) if lam < 30 else 0.0
    if not limit:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    k, p = 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
