"""The quantity catalogue: canonical names, SenML units, aliases and field-name resolution."""

from __future__ import annotations

import re

import pytest

from cityhub.connectors.decoders.cayenne import TYPE_KEYS
from cityhub.schemas.quantities import ALIASES, QUANTITIES, lookup, unit_of


@pytest.mark.parametrize(
    ("field", "quantity", "unit"),
    [
        ("temperature", "temperature", "Cel"),
        ("Temperature", "temperature", "Cel"),
        ("temp", "temperature", "Cel"),
        ("air-temp", "temperature", "Cel"),
        ("humidity", "relative_humidity", "%RH"),
        ("rh", "relative_humidity", "%RH"),
        ("pressure", "barometric_pressure", "hPa"),
        ("pm25", "pm2_5", "ug/m3"),
        ("pm2.5", "pm2_5", "ug/m3"),
        ("PM2_5", "pm2_5", "ug/m3"),
        ("pm1_0", "pm1", "ug/m3"),
        ("pm10", "pm10", "ug/m3"),
        ("co2", "co2", "ppm"),
        ("no2", "no2", "ug/m3"),
        ("batt", "battery_voltage", "V"),
        ("bat", "battery_voltage", "V"),
        ("vbat", "battery_voltage", "V"),
        ("BatV", "battery_voltage", "V"),
        ("batteryVoltage", "battery_voltage", "V"),
        ("battery", "battery", "%"),
        ("LAeq", "sound_level", "dB"),
        ("noise", "sound_level", "dB"),
        ("luminosity", "illuminance", "lx"),
        ("windSpeed", "wind_speed", "m/s"),
        ("wind direction", "wind_direction", "deg"),
        ("people_count", "count", "count"),
        ("energy", "energy", "kWh"),
        # The Things Stack's Cayenne LPP formatter names, with their channel suffix.
        ("temperature_1", "temperature", "Cel"),
        ("relative_humidity_2", "relative_humidity", "%RH"),
        ("barometric_pressure_3", "barometric_pressure", "hPa"),
        ("luminosity_4", "illuminance", "lx"),
        ("analog_in_5", "analog_in", None),
        ("digital_out_255", "digital_out", None),
        ("presence_6", "presence", None),
        # Dotted paths from flattened objects.
        ("gps_8.latitude", "latitude", "lat"),
        ("gps_8.longitude", "longitude", "lon"),
        ("gps_8.altitude", "altitude", "m"),
        ("accelerometer_7.x", "acceleration_x", None),
        ("gyrometer_9.z", "angular_velocity_z", None),
        ("colour_2.g", "colour_g", None),
        ("location.lat", "latitude", "lat"),
        ("wind.speed", "wind_speed", "m/s"),
        ("sensors.temperature", "temperature", "Cel"),
    ],
)
def test_lookup(field: str, quantity: str, unit: str | None) -> None:
    assert lookup(field) == (quantity, unit)
    assert lookup(field) == (quantity, unit)  # the memoised answer is the same


@pytest.mark.parametrize(
    "field", ["", "_", "_1", "x", "foo", "temperature_x", "frobnicate_3", "gps_8.foo", "..."]
)
def test_unknown_fields(field: str) -> None:
    assert lookup(field) is None


def test_every_cayenne_type_is_catalogued() -> None:
    for key in TYPE_KEYS:
        if key in ("accelerometer", "gyrometer", "gps", "colour"):
            continue  # object-valued: their members are catalogued, checked above
        assert lookup(f"{key}_1") is not None, key


_UNIT = re.compile(r"^[A-Za-z%/0-9]+$")


def test_catalogue_is_consistent() -> None:
    for name, unit in QUANTITIES.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert unit is None or _UNIT.match(unit), (name, unit)
    for alias, name in ALIASES.items():
        assert name in QUANTITIES, alias
        assert alias not in QUANTITIES, f"alias {alias} shadows a canonical name"


def test_unit_of() -> None:
    assert unit_of("temperature") == "Cel"
    assert unit_of("presence") is None
    assert unit_of("nope") is None


def test_hostile_field_names_do_not_grow_memory() -> None:
    from cityhub.schemas import quantities

    for i in range(quantities._CACHE_LIMIT + 100):
        lookup(f"junk-{i}")
    assert len(quantities._cache) <= quantities._CACHE_LIMIT
