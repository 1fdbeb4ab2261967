"""What the quantity catalogue means in standard vocabularies: each quantity's QUDT quantity
kind (the ObservedProperty ``definition``) and each SenML unit's UCUM code, name and QUDT unit
(a Datastream's ``unitOfMeasurement``).

Pure: constant tables and look-ups. QUDT (``http://qudt.org/vocab/quantitykind/``,
``http://qudt.org/vocab/unit/``) is the vocabulary SensorThings' own examples use. Where QUDT
has no kind as narrow as the quantity (the particulate fractions, the gases), the quantity
points at the general kind (``MassConcentration``, ``DimensionlessRatio``) and its name tells
them apart; ``tests/unit/test_sta_vocabulary.py`` checks that every catalogued quantity and
unit has an entry.
"""

from __future__ import annotations

from typing import Final

from cityhub.schemas.quantities import QUANTITIES

QUDT_KIND: Final = "http://qudt.org/vocab/quantitykind/"
QUDT_UNIT: Final = "http://qudt.org/vocab/unit/"

_KINDS: Final[dict[str, str]] = {
    "temperature": "Temperature",
    "relative_humidity": "RelativeHumidity",
    "barometric_pressure": "AtmosphericPressure",
    "dew_point": "DewPointTemperature",
    "illuminance": "Illuminance",
    "uv_index": "Dimensionless",
    "solar_radiation": "Irradiance",
    "wind_speed": "Speed",
    "wind_direction": "Angle",
    "precipitation": "Speed",
    "rainfall": "Length",
    "soil_moisture": "DimensionlessRatio",
    "soil_temperature": "Temperature",
    "water_temperature": "Temperature",
    "pm1": "MassConcentration",
    "pm2_5": "MassConcentration",
    "pm4": "MassConcentration",
    "pm10": "MassConcentration",
    "co2": "DimensionlessRatio",
    "co": "DimensionlessRatio",
    "no2": "MassConcentration",
    "o3": "MassConcentration",
    "so2": "MassConcentration",
    "tvoc": "Dimensionless",
    "concentration": "DimensionlessRatio",
    "sound_level": "SoundPressureLevel",
    "sound_level_max": "SoundPressureLevel",
    "sound_level_min": "SoundPressureLevel",
    "distance": "Length",
    "water_level": "Length",
    "fill_level": "DimensionlessRatio",
    "count": "Count",
    "occupancy": "Dimensionless",
    "presence": "Dimensionless",
    "percentage": "DimensionlessRatio",
    "battery": "DimensionlessRatio",
    "battery_voltage": "Voltage",
    "voltage": "Voltage",
    "current": "ElectricCurrent",
    "power": "Power",
    "energy": "Energy",
    "frequency": "Frequency",
    "latitude": "Latitude",
    "longitude": "Longitude",
    "altitude": "Altitude",
    "direction": "Angle",
    "speed": "Speed",
    "acceleration_x": "Acceleration",
    "acceleration_y": "Acceleration",
    "acceleration_z": "Acceleration",
    "angular_velocity_x": "AngularVelocity",
    "angular_velocity_y": "AngularVelocity",
    "angular_velocity_z": "AngularVelocity",
    "digital_in": "Dimensionless",
    "digital_out": "Dimensionless",
    "analog_in": "Dimensionless",
    "analog_out": "Dimensionless",
    "generic_sensor": "Dimensionless",
    "switch": "Dimensionless",
    "unix_time": "Time",
    "colour_r": "Dimensionless",
    "colour_g": "Dimensionless",
    "colour_b": "Dimensionless",
}

_UNITS: Final[dict[str, tuple[str, str, str]]] = {
    # SenML symbol: (UCUM code, name, QUDT unit)
    "Cel": ("Cel", "degree Celsius", "DEG_C"),
    "%RH": ("%", "percent (relative humidity)", "PERCENT_RH"),
    "hPa": ("hPa", "hectopascal", "HectoPA"),
    "lx": ("lx", "lux", "LUX"),
    "W/m2": ("W/m2", "watt per square metre", "W-PER-M2"),
    "m/s": ("m/s", "metre per second", "M-PER-SEC"),
    "deg": ("deg", "degree", "DEG"),
    "mm/h": ("mm/h", "millimetre per hour", "MilliM-PER-HR"),
    "mm": ("mm", "millimetre", "MilliM"),
    "%": ("%", "percent", "PERCENT"),
    "ug/m3": ("ug/m3", "microgram per cubic metre", "MicroGM-PER-M3"),
    "ppm": ("[ppm]", "part per million", "PPM"),
    "dB": ("dB", "decibel", "DeciB"),
    "m": ("m", "metre", "M"),
    "count": ("{count}", "count", "NUM"),
    "V": ("V", "volt", "V"),
    "A": ("A", "ampere", "A"),
    "W": ("W", "watt", "W"),
    "kWh": ("kW.h", "kilowatt hour", "KiloW-HR"),
    "Hz": ("Hz", "hertz", "HZ"),
    "lat": ("deg", "degree (latitude)", "DEG"),
    "lon": ("deg", "degree (longitude)", "DEG"),
    "s": ("s", "second", "SEC"),
}

UNITLESS: Final[dict[str, str | None]] = {"name": None, "symbol": None, "definition": None}
"""The ``unitOfMeasurement`` of a quantity without a unit (OGC 18-088 allows nulls)."""


def definition_of(quantity: str) -> str:
    """The QUDT quantity kind URI of a catalogued quantity (``Dimensionless`` for one that is
    not catalogued)."""
    return QUDT_KIND + _KINDS.get(quantity, "Dimensionless")


def describe(quantity: str) -> str:
    """A short description of a quantity: its name in words and its catalogue unit."""
    unit = QUANTITIES.get(quantity)
    words = quantity.replace("_", " ")
    return f"{words} ({unit})" if unit else words


def unit_of_measurement(senml_unit: str | None) -> dict[str, str | None]:
    """The SensorThings ``unitOfMeasurement`` of a SenML unit: UCUM code as ``symbol``, a name,
    and the QUDT unit as ``definition``; an unknown unit keeps its symbol with no definition."""
    if senml_unit is None:
        return dict(UNITLESS)
    known = _UNITS.get(senml_unit)
    if known is None:
        return {"name": senml_unit, "symbol": senml_unit, "definition": None}
    code, name, qudt = known
    return {"name": name, "symbol": code, "definition": QUDT_UNIT + qudt}


def catalogued_units() -> frozenset[str]:
    """Every SenML unit the table covers (tests check the catalogue's are all there)."""
    return frozenset(_UNITS)


def catalogued_kinds() -> frozenset[str]:
    """Every quantity the kind table covers."""
    return frozenset(_KINDS)
