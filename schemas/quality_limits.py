"""Plausible limits of the catalogued quantities (``schemas/quantities.py``), for the quality
checks (``docs/quality.md``), each with the reason it is what it is.

They describe a sensor in a Dutch city street, not the whole planet: a setting
(``CITYHUB_QUALITY__LIMITS``) and a device type (``quality.limits``) lay their own over them. A
check without a meaningful limit has None: a rate limit for quantities that really do jump (light
when a cloud passes, particulates when a bus passes, sound), a flat-line time for quantities
that really do stay put (darkness all night, a regulated canal level, an empty bin). Quantities
not listed here, and uncatalogued ones, are not checked unless a setting or a type gives limits.

Pure: data only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cityhub.schemas.quality import QuantityLimits

_HOUR: Final = 3600


@dataclass(frozen=True, slots=True)
class CatalogueLimits:
    """One quantity's limits and why (the reason goes into docs/quality.md's table)."""

    limits: QuantityLimits
    reason: str


def _limits(
    low: float | None,
    high: float | None,
    rate: float | None = None,
    flat: int | None = None,
    *,
    why: str,
) -> CatalogueLimits:
    return CatalogueLimits(
        QuantityLimits(min=low, max=high, max_rate_per_second=rate, flat_line_seconds=flat),
        why,
    )


_PM = (
    "cannot be negative; 1000 ug/m3 is the top of the measuring range of the common low-cost "
    "sensors (Plantower PMS, Sensirion SPS30); no rate limit: a passing bus or a fire really "
    "makes it jump; a day unchanged is a stuck or clogged sensor (clean air still varies)"
)
_GAS = (
    "cannot be negative; {high} ug/m3 is several times the worst hour ever measured in a Dutch "
    "street"
)

CATALOGUE_LIMITS: Final[dict[str, CatalogueLimits]] = {
    # climate
    "temperature": _limits(
        -40,
        60,
        0.05,
        6 * _HOUR,
        why="Dutch records are -27.4 and 40.7 degC; a sensor in the sun reads higher, hence 60; "
        "no street warms or cools by 3 degC a minute; air temperature at 0.1 degC resolution "
        "does not stay the same for six hours",
    ),
    "relative_humidity": _limits(
        0,
        100,
        0.5,
        24 * _HOUR,
        why="a share, 0 to 100; 30 %RH a minute is beyond a rain shower's onset; fog can hold "
        "100 %RH for many hours, not a whole day",
    ),
    "barometric_pressure": _limits(
        870,
        1085,
        0.01,
        6 * _HOUR,
        why="the world's lowest and highest sea-level pressures; 0.6 hPa a minute is beyond a "
        "squall line's jump; at 0.1 hPa resolution pressure never stays put for six hours",
    ),
    "dew_point": _limits(
        -60,
        40,
        0.05,
        24 * _HOUR,
        why="below air temperature's range and above the highest dew points ever measured; "
        "rate as air temperature",
    ),
    "illuminance": _limits(
        0,
        200_000,
        why="direct sunlight is about 120 000 lx; clouds change light in a moment, and it is "
        "dark (0 lx) all night",
    ),
    "uv_index": _limits(0, 20, why="the highest UV index ever measured is about 20"),
    "solar_radiation": _limits(
        0, 1500, why="above the solar constant (1361 W/m2); clouds change it in a moment"
    ),
    "wind_speed": _limits(
        0,
        75,
        None,
        24 * _HOUR,
        why="the strongest gusts measured in the Netherlands are about 50 m/s; gusts jump; "
        "a calm lasts a night, an anemometer frozen at one value longer",
    ),
    "wind_direction": _limits(0, 360, why="an angle in degrees"),
    "precipitation": _limits(
        0, 300, why="a cloudburst's rate stays below 300 mm/h; it rains or stops at once"
    ),
    "rainfall": _limits(0, None, why="an amount cannot be negative"),
    "soil_moisture": _limits(0, 100, why="a share, 0 to 100"),
    "soil_temperature": _limits(
        -20, 50, 0.01, why="soil changes slowly (0.6 degC a minute is far beyond it)"
    ),
    "water_temperature": _limits(
        -2, 40, 0.01, why="open water freezes near 0 degC and stays below 40; it changes slowly"
    ),
    # air quality
    "pm1": _limits(0, 1000, None, 24 * _HOUR, why=_PM),
    "pm2_5": _limits(0, 1000, None, 24 * _HOUR, why=_PM),
    "pm4": _limits(0, 1000, None, 24 * _HOUR, why=_PM),
    "pm10": _limits(0, 1000, None, 24 * _HOUR, why=_PM),
    "co2": _limits(
        250,
        10_000,
        None,
        24 * _HOUR,
        why="outdoor air holds about 420 ppm and never much less (250 allows for drift); "
        "10 000 ppm is the top of the common NDIR sensors' range; a day unchanged at 1 ppm "
        "resolution is a stuck sensor",
    ),
    "co": _limits(0, 1000, why="cannot be negative; 1000 ppm is the top of common CO cells"),
    "no2": _limits(0, 2000, why=_GAS.format(high=2000)),
    "o3": _limits(0, 800, why=_GAS.format(high=800)),
    "so2": _limits(0, 2000, why=_GAS.format(high=2000)),
    "tvoc": _limits(0, None, why="cannot be negative"),
    # noise
    "sound_level": _limits(
        20,
        140,
        None,
        6 * _HOUR,
        why="no street is quieter than 20 dB(A), 140 dB is the threshold of pain; sound jumps; "
        "a live microphone's LAeq never stays the same for six hours",
    ),
    "sound_level_max": _limits(20, 140, why="as sound_level"),
    "sound_level_min": _limits(20, 140, why="as sound_level"),
    # levels and counts
    "distance": _limits(0, None, why="a distance cannot be negative"),
    "water_level": _limits(
        None,
        None,
        0.02,
        why="the datum differs per sensor (NAP or its own), so no range; no canal, river or "
        "sewer outside a lock rises 1.2 m a minute; a regulated canal level may stay put",
    ),
    "fill_level": _limits(0, 100, why="a share, 0 to 100; a bin may stay as it is for days"),
    "count": _limits(0, None, why="a count cannot be negative"),
    "percentage": _limits(0, 100, why="a share, 0 to 100"),
    # power
    "battery": _limits(0, 100, why="a state of charge, 0 to 100 %"),
    "battery_voltage": _limits(
        0, 30, why="cannot be negative; city sensors run on cells or packs well below 30 V"
    ),
    "energy": _limits(0, None, why="a meter's energy cannot be negative"),
    "frequency": _limits(0, None, why="a frequency cannot be negative"),
    # position and motion
    "latitude": _limits(-90, 90, why="a latitude"),
    "longitude": _limits(-180, 180, why="a longitude"),
    "altitude": _limits(-500, 10_000, why="as the registry's device locations"),
    "direction": _limits(0, 360, why="an angle in degrees"),
    "speed": _limits(0, None, why="a speed cannot be negative"),
}
"""Catalogued quantity -> its plausible limits and why."""

NO_LIMITS: Final = QuantityLimits()
"""What a quantity without limits has: every check off."""


def catalogue_limits(quantity: str) -> QuantityLimits:
    """The catalogue's limits of ``quantity`` (every check off when it has none)."""
    entry = CATALOGUE_LIMITS.get(quantity)
    return NO_LIMITS if entry is None else entry.limits
