"""The quantity catalogue: canonical quantity names and their SenML units, and the field names
that devices and decoders use for them.

A quantity name is snake case (``temperature``, ``relative_humidity``, ``pm2_5``); its unit is a
SenML unit symbol from the IANA registry that RFC 8428 created and RFC 8798 extended (``Cel``,
``%RH``, ``ug/m3``). A quantity whose values carry no unit (a switch, a presence flag, a raw
analog reading, an acceleration in g for which SenML has no symbol) has ``None``.

Choices worth knowing:

* ``barometric_pressure`` is in ``hPa`` (RFC 8798): what weather services and Cayenne LPP use.
* Gases that air-quality regulation states as mass concentration (NO2, O3, SO2, PM) are
  ``ug/m3``; CO2 and CO, which sensors report as a mixing ratio, are ``ppm``.
* ``sound_level`` is the A-weighted equivalent level LAeq in ``dB``.
* ``battery`` is a state of charge in ``%``; ``battery_voltage`` is in ``V``. The ambiguous
  short names ``bat``, ``batt`` and ``vbat`` mean the voltage: LoRaWAN decoders send volts
  under them far more often than percentages. A decoder that means percent should say
  ``battery`` or send the unit explicitly.
* Presence, occupancy, switches and digital inputs are 0/1 with no unit.

``lookup`` takes any field name a message uses: case, ``-``, ``.`` and spaces do not matter,
camelCase is matched through a separator-free index, a trailing ``_<channel>`` (Cayenne / TTS:
``temperature_1``) is ignored, and a dotted path from a nested object (``gps_8.latitude``,
``accelerometer_7.x``) is resolved through its parent and its leaf. The data are plain dicts:
lookups are a few dict probes, and results are memoised.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import AfterValidator, StringConstraints

QUANTITIES: Final[dict[str, str | None]] = {
    # climate
    "temperature": "Cel",
    "relative_humidity": "%RH",
    "barometric_pressure": "hPa",
    "dew_point": "Cel",
    "illuminance": "lx",
    "uv_index": None,
    "solar_radiation": "W/m2",
    "wind_speed": "m/s",
    "wind_direction": "deg",
    "precipitation": "mm/h",
    "rainfall": "mm",
    "soil_moisture": "%",
    "soil_temperature": "Cel",
    "water_temperature": "Cel",
    # air quality
    "pm1": "ug/m3",
    "pm2_5": "ug/m3",
    "pm4": "ug/m3",
    "pm10": "ug/m3",
    "co2": "ppm",
    "co": "ppm",
    "no2": "ug/m3",
    "o3": "ug/m3",
    "so2": "ug/m3",
    "tvoc": None,
    "concentration": "ppm",
    # noise
    "sound_level": "dB",
    "sound_level_max": "dB",
    "sound_level_min": "dB",
    # levels, distances, counts
    "distance": "m",
    "water_level": "m",
    "fill_level": "%",
    "count": "count",
    "occupancy": None,
    "presence": None,
    "percentage": "%",
    # power
    "battery": "%",
    "battery_voltage": "V",
    "voltage": "V",
    "current": "A",
    "power": "W",
    "energy": "kWh",
    "frequency": "Hz",
    # position and motion
    "latitude": "lat",
    "longitude": "lon",
    "altitude": "m",
    "direction": "deg",
    "speed": "m/s",
    "acceleration_x": None,
    "acceleration_y": None,
    "acceleration_z": None,
    "angular_velocity_x": None,
    "angular_velocity_y": None,
    "angular_velocity_z": None,
    # generic Cayenne LPP channels
    "digital_in": None,
    "digital_out": None,
    "analog_in": None,
    "analog_out": None,
    "generic_sensor": None,
    "switch": None,
    "unix_time": "s",
    "colour_r": None,
    "colour_g": None,
    "colour_b": None,
}
"""Canonical quantity name -> SenML unit symbol (None: no unit)."""

ALIASES: Final[dict[str, str]] = {
    # temperature
    "temp": "temperature",
    "tmp": "temperature",
    "air_temperature": "temperature",
    "air_temp": "temperature",
    "temperature_c": "temperature",
    "temp_c": "temperature",
    "tempc": "temperature",
    # humidity
    "humidity": "relative_humidity",
    "rh": "relative_humidity",
    "hum": "relative_humidity",
    "air_humidity": "relative_humidity",
    # pressure
    "pressure": "barometric_pressure",
    "air_pressure": "barometric_pressure",
    "barometer": "barometric_pressure",
    "baro": "barometric_pressure",
    # light
    "luminosity": "illuminance",
    "light": "illuminance",
    "lux": "illuminance",
    "light_level": "illuminance",
    # particulates (``pm2.5`` arrives here as ``pm2_5`` already)
    "pm1_0": "pm1",
    "pm25": "pm2_5",
    "pm_2_5": "pm2_5",
    "pm_25": "pm2_5",
    "pm10_0": "pm10",
    "pm_10": "pm10",
    "pm_1": "pm1",
    # gases
    "carbon_dioxide": "co2",
    "co2_ppm": "co2",
    "carbon_monoxide": "co",
    "nitrogen_dioxide": "no2",
    "ozone": "o3",
    "sulfur_dioxide": "so2",
    "voc": "tvoc",
    # noise
    "laeq": "sound_level",
    "la_eq": "sound_level",
    "noise": "sound_level",
    "noise_level": "sound_level",
    "sound": "sound_level",
    "sound_pressure_level": "sound_level",
    "spl": "sound_level",
    "lamax": "sound_level_max",
    "lamin": "sound_level_min",
    # levels and counts
    "fill": "fill_level",
    "fill_percentage": "fill_level",
    "people_count": "count",
    "counter": "count",
    "people": "count",
    "occupied": "occupancy",
    "parking_occupied": "occupancy",
    "motion": "presence",
    # battery
    "batt": "battery_voltage",
    "bat": "battery_voltage",
    "vbat": "battery_voltage",
    "bat_v": "battery_voltage",
    "batv": "battery_voltage",
    "batt_v": "battery_voltage",
    "batt_volt": "battery_voltage",
    "battery_volt": "battery_voltage",
    "battery_level": "battery",
    "battery_percent": "battery",
    "battery_percentage": "battery",
    "bat_pct": "battery",
    # power
    "volt": "voltage",
    "amps": "current",
    # position
    "lat": "latitude",
    "lon": "longitude",
    "lng": "longitude",
    "long": "longitude",
    "alt": "altitude",
    "gps_latitude": "latitude",
    "gps_longitude": "longitude",
    "gps_altitude": "altitude",
    "location_latitude": "latitude",
    "location_longitude": "longitude",
    "location_altitude": "altitude",
    "heading": "direction",
    # weather
    "windspeed": "wind_speed",
    "wind_dir": "wind_direction",
    "winddirection": "wind_direction",
    "rain": "precipitation",
    "rain_rate": "precipitation",
    "uv": "uv_index",
    # Cayenne LPP (TTS formatter names, without the channel) and their object members
    "accelerometer_x": "acceleration_x",
    "accelerometer_y": "acceleration_y",
    "accelerometer_z": "acceleration_z",
    "gyrometer_x": "angular_velocity_x",
    "gyrometer_y": "angular_velocity_y",
    "gyrometer_z": "angular_velocity_z",
    "time": "unix_time",
    "color_r": "colour_r",
    "color_g": "colour_g",
    "color_b": "colour_b",
}
"""Other names for catalogued quantities, in normalised form (lower case, ``_`` separators)."""

UNIT_QUANTITIES: Final[dict[str, str]] = {
    "Cel": "temperature",
    "%RH": "relative_humidity",
    "hPa": "barometric_pressure",
    "lx": "illuminance",
    "lat": "latitude",
    "lon": "longitude",
    "dB": "sound_level",
    "%EL": "battery",
    "V": "voltage",
    "A": "current",
    "W": "power",
    "kWh": "energy",
    "Hz": "frequency",
    "mm/h": "precipitation",
    "count": "count",
}
"""The quantity a unit most likely measures, for records that name only their device (a SenML
record with a base name and no name of its own). Only units that point at one quantity."""

_SEPARATORS: Final = str.maketrans({"-": "_", ".": "_", " ": "_", "/": "_"})


def _normalise(field: str) -> str:
    return field.lower().translate(_SEPARATORS).strip("_")


def _strip_channel(key: str) -> str | None:
    """``temperature_1`` -> ``temperature``; None if there is no ``_<digits>`` suffix."""
    head, sep, tail = key.rpartition("_")
    if sep and head and tail.isdigit():
        return head
    return None


def _build_index() -> dict[str, str]:
    index: dict[str, str] = {name: name for name in QUANTITIES}
    for alias, name in ALIASES.items():
        if name not in QUANTITIES:
            raise AssertionError(f"alias {alias!r} names uncatalogued quantity {name!r}")
        index[alias] = name
    return index


def _build_compact(index: dict[str, str]) -> dict[str, str]:
    """Separator-free index for camelCase and glued names; ambiguous keys are left out."""
    compact: dict[str, str] = {}
    ambiguous: set[str] = set()
    for key, name in index.items():
        squeezed = key.replace("_", "")
        other = compact.get(squeezed)
        if other is None or other == name:
            compact[squeezed] = name
        elif squeezed in index:  # the glued spelling is itself a name: it wins
            compact[squeezed] = index[squeezed]
        else:
            ambiguous.add(squeezed)
    for key in ambiguous:
        compact.pop(key, None)
    return compact


_INDEX: Final[dict[str, str]] = _build_index()
_COMPACT: Final[dict[str, str]] = _build_compact(_INDEX)
_CACHE_LIMIT: Final = 8192
_cache: dict[str, tuple[str, str | None] | None] = {}
_MISSING: Final = object()


def _resolve_key(key: str) -> str | None:
    name = _INDEX.get(key)
    if name is not None:
        return name
    base = _strip_channel(key)
    if base is not None:
        name = _INDEX.get(base)
        if name is not None:
            return name
        key = base
    return _COMPACT.get(key.replace("_", ""))


def _resolve(field: str) -> str | None:
    if "." in field:
        parent, _, leaf = field.rpartition(".")
        parent_key = _normalise(parent)
        parent_key = _strip_channel(parent_key) or parent_key
        leaf_key = _normalise(leaf)
        return _resolve_key(f"{parent_key}_{leaf_key}") or _resolve_key(leaf_key)
    return _resolve_key(_normalise(field))


def lookup(field: str) -> tuple[str, str | None] | None:
    """The canonical quantity and SenML unit (None: unitless) for a field name, or None when
    the field is not catalogued.

    ``temperature_1``, ``Temperature``, ``air-temp``, ``pm2.5``, ``batteryVoltage`` and
    ``gps_8.latitude`` all resolve; the unit is the catalogue's, for values in that unit.
    """
    cached = _cache.get(field, _MISSING)
    if cached is not _MISSING:
        return cached  # type: ignore[return-value]  # a cached result, not the sentinel
    name = _resolve(field)
    result = None if name is None else (name, QUANTITIES[name])
    if len(_cache) < _CACHE_LIMIT:  # hostile field names must not grow memory without bound
        _cache[field] = result
    return result


def canonical_quantity(name: str) -> str:
    """The catalogue's name for ``name`` when it is one of its names or aliases (``pm25`` ->
    ``pm2_5``), else ``name`` (a quantity of its own, from a field nothing maps). For names a
    subscriber gives: an observation never carries an alias, so a filter on one matched none."""
    return _INDEX.get(name, name)


def unit_of(quantity: str) -> str | None:
    """The catalogue unit of a canonical quantity name (None: unitless or not catalogued)."""
    return QUANTITIES.get(quantity)


def quantity_for_unit(unit: str) -> str | None:
    """The quantity that ``unit`` most likely measures (``%RH`` -> ``relative_humidity``), or
    None when the unit is unknown or says too little (``ug/m3``: which particulate?)."""
    return UNIT_QUANTITIES.get(unit)


QuantityName = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$"), AfterValidator(canonical_quantity)
]
"""A quantity as a subscriber names it (a filter's): the catalogue's name for an alias."""
