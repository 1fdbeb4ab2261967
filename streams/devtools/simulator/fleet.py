"""A deterministic fleet of simulated city devices. Pure: no I/O.

``build_fleet(n, seed)`` gives the same devices (ids, DevEUIs, networks, places, gateways) for
the same arguments on every machine, with the quantities each kind of device reports
(``QUANTITIES``). What the devices read over time is ``readings.py``'s; which DevAddr a device
has in a session of the simulator is ``session_dev_addr``'s.
"""

from __future__ import annotations

import functools
import math
import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeVar

_T = TypeVar("_T")


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
    """8 lower-case hex digits: the DevAddr of the device's session 0 (``session_dev_addr``
    gives another session's). Its upper 16 bits are its network's block of addresses."""
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


DEV_ADDR_BLOCK_SIZE: Final = 1 << 16
"""A simulated device's DevAddrs stay in its network's block, the upper 16 bits of
``Device.dev_addr``: ``260b`` of TTN's NetID 000013 (The Things Stack), ``0040`` of NetID
000000 (the private ChirpStack)."""


def session_dev_addr(device: Device, session: int) -> str:
    """The DevAddr a device joins with (OTAA) in the simulator's session number ``session``:
    ``device.dev_addr`` in session 0, else another address of the same block, every device's
    moved by the same step. Two sessions give a device the same address only when their numbers
    are equal modulo ``DEV_ADDR_BLOCK_SIZE``."""
    first = int(device.dev_addr, 16)
    block = first - first % DEV_ADDR_BLOCK_SIZE
    return f"{block + (first + session) % DEV_ADDR_BLOCK_SIZE:08x}"


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
