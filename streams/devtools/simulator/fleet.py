"""A deterministic fleet of simulated city devices and the readings they send. Pure: no I/O.

``build_fleet(n, seed)`` gives the same devices (ids, DevEUIs, networks, places, gateways) for
the same arguments on every machine; ``FleetSimulator`` then evolves each device's readings
(daily cycle, noise, bounded ranges) and frame counter, again deterministically for the same
sequence of calls.
"""

from __future__ import annotations

import functools
import math
import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, TypeVar

_T = TypeVar("_T")

Reading = float | int
"""One value as a device reports it (already rounded to the device's resolution)."""


class Kind(StrEnum):
    """What a device measures."""

    AIR_QUALITY = "air_quality"
    NOISE = "noise"
    PARKING = "parking"
    WATER_LEVEL = "water_level"
    WASTE_BIN = "waste_bin"
    FOOTFALL = "footfall"
    WEATHER = "weather"


class Format(StrEnum):
    """How a device's uplinks reach the hub: which network server, or which plain MQTT format."""

    TTS = "tts"
    """The Things Stack v3 MQTT integration, ``v3/{app}@{tenant}/devices/{id}/up``."""
    CHIRPSTACK = "chirpstack"
    """ChirpStack v4 MQTT integration (JSON), ``application/{appId}/device/{devEui}/event/up``."""
    SENML = "senml"
    """A plain MQTT sensor sending SenML JSON (RFC 8428) on ``cityhub/ingest/{id}``."""
    JSON = "json"
    """A plain MQTT sensor sending a flat JSON object on ``cityhub/ingest/{id}``."""

    @property
    def network(self) -> str:
        """``tts``, ``chirpstack`` or ``mqtt``: the network name the hub records."""
        return {"tts": "tts", "chirpstack": "chirpstack"}.get(self.value, "mqtt")

    @property
    def lorawan(self) -> bool:
        return self in (Format.TTS, Format.CHIRPSTACK)


ALL_FORMATS: Final[frozenset[str]] = frozenset(f.value for f in Format)


@dataclass(frozen=True, slots=True)
class Quantity:
    """How one field is reported: its SenML unit and its Cayenne LPP channel and type."""

    name: str
    """The field name a device decoder emits (``temperature``, ``pm2_5``, ``laeq``)."""
    unit: str | None
    """SenML / UCUM unit symbol; None for a dimensionless state such as occupancy."""
    lpp_channel: int
    lpp_type: str
    decimals: int
    """Resolution the device reports at (and that its LPP type can carry exactly)."""
    step: float = 0.0
    """When set, values are multiples of this (relative humidity: 0.5)."""


# One channel per quantity across the fleet, so that a registry needs one channel map.
# LPP v1 has no type for concentrations, distances or counts; the extended types
# (ElectronicCats CayenneLPP) that firmware commonly links cover them.
QUANTITIES: Final[Mapping[str, Quantity]] = {
    q.name: q
    for q in (
        Quantity("temperature", "Cel", 1, "temperature", 1),
        Quantity("humidity", "%RH", 2, "relative_humidity", 1, step=0.5),
        Quantity("pressure", "hPa", 3, "barometric_pressure", 1),
        Quantity("pm2_5", "ug/m3", 4, "analog_in", 1),
        Quantity("pm10", "ug/m3", 5, "analog_in", 1),
        Quantity("co2", "ppm", 6, "concentration", 0),
        Quantity("no2", "ug/m3", 7, "analog_in", 1),
        Quantity("laeq", "dB", 8, "analog_in", 1),
        Quantity("occupied", None, 9, "presence", 0),
        Quantity("distance", "m", 10, "distance", 3),
        Quantity("fill_level", "%", 11, "percentage", 0),
        Quantity("count", "count", 12, "generic_sensor", 0),
        Quantity("wind_speed", "m/s", 13, "analog_in", 1),
        Quantity("wind_direction", "deg", 14, "direction", 0),
        Quantity("battery", "V", 15, "voltage", 2),
    )
}

_KIND_QUANTITIES: Final[Mapping[Kind, tuple[str, ...]]] = {
    Kind.AIR_QUALITY: ("temperature", "humidity", "pm2_5", "pm10"),  # + co2 or no2
    Kind.NOISE: ("laeq",),
    Kind.PARKING: ("occupied",),
    Kind.WATER_LEVEL: ("distance",),
    Kind.WASTE_BIN: ("distance", "fill_level"),
    Kind.FOOTFALL: ("count",),
    Kind.WEATHER: ("temperature", "humidity", "pressure", "wind_speed", "wind_direction"),
}

_KIND_PREFIX: Final[Mapping[Kind, str]] = {
    Kind.AIR_QUALITY: "aq",
    Kind.NOISE: "noise",
    Kind.PARKING: "park",
    Kind.WATER_LEVEL: "water",
    Kind.WASTE_BIN: "waste",
    Kind.FOOTFALL: "foot",
    Kind.WEATHER: "wx",
}

# Rough shares of a city's sensor estate: many parking and bin sensors, few weather stations.
_KIND_WEIGHTS: Final[tuple[tuple[Kind, int], ...]] = (
    (Kind.AIR_QUALITY, 18),
    (Kind.NOISE, 12),
    (Kind.PARKING, 25),
    (Kind.WATER_LEVEL, 8),
    (Kind.WASTE_BIN, 20),
    (Kind.FOOTFALL, 12),
    (Kind.WEATHER, 5),
)

_FORMAT_WEIGHTS: Final[tuple[tuple[Format, int], ...]] = (
    (Format.TTS, 45),
    (Format.CHIRPSTACK, 35),
    (Format.SENML, 10),
    (Format.JSON, 10),
)

# Central Amsterdam, roughly: where the devices and gateways are placed.
CITY_BBOX: Final = (52.33, 4.84, 52.41, 4.96)
"""(south, west, north, east) in degrees."""

_DISTRICTS: Final = ("centrum", "west", "oost", "zuid", "noord", "nieuw-west", "zuidoost")
TTS_TENANT: Final = "gemeente-amsterdam"
CHIRPSTACK_TENANT: Final = "Gemeente Amsterdam"
DEV_EUI_PREFIX: Final = "70b3d57ed0"
_NAMESPACE: Final = uuid.UUID("0b8e3c52-31a4-4c1e-9a0f-2a7d1c6b5e90")
"""For the deterministic UUIDs that ChirpStack gives tenants, applications and profiles."""


@functools.lru_cache(maxsize=1024)
def _stable_uuid(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))


@dataclass(frozen=True, slots=True)
class Gateway:
    """A LoRaWAN gateway on a roof in the city."""

    gateway_id: str
    """The Things Stack gateway id (``gw-centrum-01``); ChirpStack identifies it by ``eui``."""
    eui: str
    """16 lower-case hex digits."""
    latitude: float
    longitude: float
    altitude: float


@dataclass(frozen=True, slots=True)
class Reception:
    """One gateway within reach of a device, and the mean signal it hears the device at."""

    gateway: Gateway
    rssi: float
    snr: float


@dataclass(frozen=True, slots=True)
class Device:
    """One simulated device. Everything here is fixed for the device's life."""

    index: int
    device_id: str
    """``{kind prefix}-{index:04d}``, e.g. ``aq-0007``: the TTS device id and ChirpStack name."""
    kind: Kind
    format: Format
    dev_eui: str
    """16 lower-case hex digits, ``70b3d57ed0`` followed by six seeded ones."""
    join_eui: str
    dev_addr: str
    """8 lower-case hex digits."""
    application: str
    """TTS application id / ChirpStack application name, one per kind (``cityhub-air-quality``)."""
    tenant: str
    """TTS tenant id or ChirpStack tenant name; empty for plain MQTT sensors."""
    district: str
    latitude: float
    longitude: float
    altitude: float
    decoded: bool
    """True: the network server decodes the payload (TTS ``decoded_payload``, ChirpStack
    ``object``); False: only the raw Cayenne LPP bytes arrive and the hub must decode them."""
    quantities: tuple[str, ...]
    f_port: int
    spreading_factor: int
    """7..12, as ADR would settle it for the device's best gateway."""
    receptions: tuple[Reception, ...]
    """Gateways within reach, best first; empty for plain MQTT sensors."""
    also_on: Format | None = None
    """The other network server a device is registered on too (roaming, or a migration half
    done): every frame it sends then reaches the hub twice, once from each."""

    @property
    def chirpstack_tenant_id(self) -> str:
        """The ChirpStack tenant's UUID (one tenant for the whole city)."""
        return _stable_uuid(f"tenant/{CHIRPSTACK_TENANT}")

    @property
    def chirpstack_application_id(self) -> str:
        """The ChirpStack application's UUID, fixed by the application's name."""
        return _stable_uuid(f"application/{self.application}")

    @property
    def chirpstack_device_profile_id(self) -> str:
        """The ChirpStack device profile's UUID: one per kind, with or without a codec."""
        return _stable_uuid(f"device-profile/{self.kind}/{self.decoded}")


@dataclass(frozen=True, slots=True)
class Fleet:
    """The devices and gateways of one seed."""

    seed: int
    devices: tuple[Device, ...]
    gateways: tuple[Gateway, ...]

    def by_id(self, device_id: str) -> Device:
        """The device with this id; raises KeyError if there is none."""
        for d in self.devices:
            if d.device_id == device_id:
                return d
        raise KeyError(device_id)


def seeded_random(key: str) -> random.Random:
    """A random stream fixed by ``key``: the same numbers on every run and machine."""
    # Reproducibility is the point here; nothing the simulator draws is a secret.
    return random.Random(key)  # noqa: S311


def _weighted(rng: random.Random, weights: Iterable[tuple[_T, int]]) -> _T:
    items = list(weights)
    return rng.choices([i for i, _ in items], weights=[w for _, w in items])[0]


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: plenty within one city."""
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    y = math.radians(lat2 - lat1)
    return 6_371_000.0 * math.hypot(x, y)


def _build_gateways(rng: random.Random, n_devices: int) -> tuple[Gateway, ...]:
    south, west, north, east = CITY_BBOX
    count = min(40, max(4, n_devices // 25))
    eui_suffixes = rng.sample(range(1 << 16), count)
    gateways = []
    for i in range(count):
        district = _DISTRICTS[i % len(_DISTRICTS)]
        gateways.append(
            Gateway(
                gateway_id=f"gw-{district}-{i // len(_DISTRICTS) + 1:02d}",
                eui=f"58a0cbfffe80{eui_suffixes[i]:04x}",
                latitude=round(rng.uniform(south, north), 6),
                longitude=round(rng.uniform(west, east), 6),
                altitude=round(rng.uniform(15, 60), 1),
            )
        )
    return tuple(gateways)


def _receptions(
    rng: random.Random, lat: float, lon: float, gateways: tuple[Gateway, ...]
) -> tuple[Reception, ...]:
    """Up to four nearest gateways, best signal first, with a log-distance path loss (urban
    exponent ~3.5) and shadowing."""
    ranked = sorted(gateways, key=lambda g: _distance_m(lat, lon, g.latitude, g.longitude))
    out = []
    for g in ranked[: rng.randint(1, 4)]:
        d = max(50.0, _distance_m(lat, lon, g.latitude, g.longitude))
        rssi = -45.0 - 35.0 * math.log10(d / 50.0) + rng.gauss(0, 4)
        rssi = min(-35.0, max(-122.0, rssi))
        snr = min(12.0, max(-15.0, (rssi + 115.0) / 3.0 + rng.gauss(0, 1.5)))
        out.append(Reception(g, round(rssi, 1), round(snr, 1)))
    return tuple(sorted(out, key=lambda r: -r.rssi))


def _spreading_factor(best_rssi: float) -> int:
    """What ADR settles at: fast data rates for strong links, SF12 at the edge."""
    for threshold, sf in ((-90, 7), (-100, 8), (-106, 9), (-111, 10), (-116, 11)):
        if best_rssi >= threshold:
            return sf
    return 12


def build_fleet(n: int, seed: int = 1, formats: Iterable[str] | None = None) -> Fleet:
    """Build ``n`` devices of mixed kinds and formats, the same for the same arguments.

    ``formats`` restricts the formats devices use (names from ``Format``: ``tts``,
    ``chirpstack``, ``senml``, ``json``); None allows all. About one LoRaWAN device in ten is
    registered on both network servers (``Device.also_on``), when both are allowed.
    Raises ValueError for ``n < 1`` or an unknown or empty set of formats.
    """
    if n < 1:
        raise ValueError(f"a fleet needs at least one device, got {n}")
    allowed = ALL_FORMATS if formats is None else frozenset(formats)
    unknown = allowed - ALL_FORMATS
    if unknown or not allowed:
        raise ValueError(
            f"unknown or no formats {sorted(unknown)}; choose from {sorted(ALL_FORMATS)}"
        )
    rng = seeded_random(f"cityhub-fleet:{seed}")
    gateways = _build_gateways(rng, n)
    eui_suffixes = rng.sample(range(1 << 24), n)
    addr_suffixes = rng.sample(range(1 << 20), n)
    format_weights = [(f, w) for f, w in _FORMAT_WEIGHTS if f.value in allowed]
    both_lorawan = {"tts", "chirpstack"} <= allowed
    south, west, north, east = CITY_BBOX
    devices = []
    for i in range(n):
        kind = _weighted(rng, _KIND_WEIGHTS)
        fmt = _weighted(rng, format_weights)
        quantities = _KIND_QUANTITIES[kind]
        if kind is Kind.AIR_QUALITY:
            quantities = (*quantities, rng.choice(("co2", "no2")))
        lat = round(rng.uniform(south, north), 6)
        lon = round(rng.uniform(west, east), 6)
        receptions = _receptions(rng, lat, lon, gateways) if fmt.lorawan else ()
        if fmt.lorawan and kind is not Kind.WEATHER:
            quantities = (*quantities, "battery")  # mains-powered weather stations have none
        also_on: Format | None = None
        if fmt.lorawan and both_lorawan and rng.random() < 0.1:
            also_on = Format.CHIRPSTACK if fmt is Format.TTS else Format.TTS
        # TTN's NetID 000013 gives DevAddrs 260Bxxxx; a private ChirpStack uses NetID 000000.
        addr_prefix = 0x260B0000 if fmt is Format.TTS else 0x00400000
        devices.append(
            Device(
                index=i,
                device_id=f"{_KIND_PREFIX[kind]}-{i:04d}",
                kind=kind,
                format=fmt,
                dev_eui=f"{DEV_EUI_PREFIX}{eui_suffixes[i]:06x}",
                join_eui="70b3d57ed0000000",
                dev_addr=f"{addr_prefix | (addr_suffixes[i] & 0xFFFF):08x}",
                application=f"cityhub-{kind.value.replace('_', '-')}",
                tenant=(
                    TTS_TENANT
                    if fmt is Format.TTS
                    else CHIRPSTACK_TENANT
                    if fmt is Format.CHIRPSTACK
                    else ""
                ),
                district=rng.choice(_DISTRICTS),
                latitude=lat,
                longitude=lon,
                altitude=round(rng.uniform(0.5, 4.0), 1),
                decoded=fmt.lorawan and rng.random() < 0.6,
                quantities=quantities,
                f_port=1 if fmt.lorawan else 0,
                spreading_factor=_spreading_factor(receptions[0].rssi) if receptions else 7,
                receptions=receptions,
                also_on=also_on,
            )
        )
    return Fleet(seed=seed, devices=tuple(devices), gateways=gateways)


# ---------------------------------------------------------------------------------------------
# Readings


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


class FleetSimulator:
    """Evolves the readings and frame counters of a fleet's devices.

    Deterministic: the same fleet and the same sequence of ``next_frame`` calls (device and
    time) give the same frames. Each device has its own random stream, so one device's
    readings do not depend on how often the others were asked.
    """

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
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
        frame = Frame(device=d, f_cnt=st.f_cnt, readings=readings, time=now)
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
