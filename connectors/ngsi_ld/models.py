"""Which Smart Data Model a device is shown as, and how each of its quantities becomes an
NGSI-LD attribute: name, value and UN/CEFACT ``unitCode``.

A device type names its model and attribute names in ``DeviceType.ngsi_ld``
(``cityhub.schemas.registry.NgsiLdSpec``); whatever it leaves out comes from here:

* the model: the one the quantities of the type's field mappings suggest (sound levels:
  ``NoiseLevelObserved``; particulates and gases: ``AirQualityObserved``; wind, rain,
  pressure, radiation: ``WeatherObserved``; occupancy: ``ParkingSpot``), else ``Device``;
* the attribute of a quantity: the model's own attribute for it (``pm2_5`` is ``pm25``,
  ``sound_level`` is ``LAeq``, ``barometric_pressure`` is ``atmosphericPressure`` in a
  ``WeatherObserved`` and ``pressure`` in an ``AirQualityObserved``), else the quantity's name
  in lower camel case (``battery_voltage``: ``batteryVoltage``);
* the ``unitCode``: the UN/CEFACT common code (Recommendation 20) of the observation's SenML
  unit (``Cel``: ``CEL``, ``ug/m3``: ``GQ``, ``dB``: ``2N``); none for a unitless value.

Two values change form because the models say so: a relative humidity or a battery level in
percent becomes the fraction from 0 to 1 that Smart Data Models use (``unitCode`` ``C62``,
"one"), and a ``ParkingSpot``'s occupancy (0/1, true/false) becomes its ``status``
(``free``/``occupied``).

Pure: tables and functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from cityhub.schemas.observation import Value
from cityhub.schemas.quantities import QUANTITIES
from cityhub.schemas.registry import NGSI_LD_RESERVED_ATTRIBUTES, DeviceType, SmartDataModel

__all__ = [
    "SDM_TERMS",
    "UNIT_CODES",
    "AttributeRule",
    "EntityMapping",
    "SmartDataModel",
    "Transform",
    "attribute_value",
    "camel_case",
    "mapping_for",
    "suggested_model",
]


class Transform(Enum):
    """How a value changes form on its way to the attribute."""

    NONE = "none"
    PERCENT_TO_FRACTION = "percent_to_fraction"
    """Percent (``%``, ``%RH``, ``%EL``) to a fraction from 0 to 1, ``unitCode`` ``C62``."""
    OCCUPANCY_TO_STATUS = "occupancy_to_status"
    """0/false: ``free``; any other number, true: ``occupied`` (a ParkingSpot's ``status``)."""


@dataclass(frozen=True, slots=True)
class AttributeRule:
    """How one quantity appears on an entity."""

    attribute: str
    unit_code: str | None = None
    """Overrides the code of the observation's unit (a type's ``NgsiLdAttribute.unit_code``)."""
    transform: Transform = Transform.NONE


UNIT_CODES: Final[dict[str, str]] = {
    "Cel": "CEL",
    "K": "KEL",
    "%": "P1",
    "%RH": "P1",
    "%EL": "P1",
    "hPa": "A97",
    "Pa": "PAL",
    "kPa": "KPA",
    "lx": "LUX",
    "W/m2": "D54",
    "m/s": "MTS",
    "km/h": "KMH",
    "deg": "DD",
    "lat": "DD",
    "lon": "DD",
    "rad": "C81",
    "mm/h": "H67",
    "mm": "MMT",
    "cm": "CMT",
    "m": "MTR",
    "km": "KMT",
    "ug/m3": "GQ",
    "mg/m3": "GP",
    "ppm": "59",
    "ppb": "61",
    "dB": "2N",
    "count": "C62",
    "/": "C62",
    "V": "VLT",
    "mV": "2Z",
    "A": "AMP",
    "mA": "4K",
    "W": "WTT",
    "kW": "KWT",
    "Wh": "WHR",
    "kWh": "KWH",
    "Hz": "HTZ",
    "s": "SEC",
    "ms": "C26",
    "min": "MIN",
    "h": "HUR",
    "l": "LTR",
    "m3": "MTQ",
    "l/s": "G51",
    "m3/s": "MQS",
    "kg": "KGM",
    "g": "GRM",
}
"""SenML unit symbol (RFC 8428, RFC 8798) -> UN/CEFACT common code (Recommendation 20)."""

_PERCENT_UNITS: Final = frozenset({"%", "%RH", "%EL"})
FRACTION_UNIT_CODE: Final = "C62"

_COMMON: Final[dict[str, AttributeRule]] = {
    "battery": AttributeRule("batteryLevel", transform=Transform.PERCENT_TO_FRACTION),
}

_MODEL_RULES: Final[dict[SmartDataModel, dict[str, AttributeRule]]] = {
    SmartDataModel.AIR_QUALITY_OBSERVED: {
        "temperature": AttributeRule("temperature"),
        "relative_humidity": AttributeRule(
            "relativeHumidity", transform=Transform.PERCENT_TO_FRACTION
        ),
        "barometric_pressure": AttributeRule("pressure"),
        "pm1": AttributeRule("pm1"),
        "pm2_5": AttributeRule("pm25"),
        "pm4": AttributeRule("pm4"),
        "pm10": AttributeRule("pm10"),
        "no2": AttributeRule("no2"),
        "o3": AttributeRule("o3"),
        "so2": AttributeRule("so2"),
        "co": AttributeRule("co"),
        "co2": AttributeRule("co2"),
        "tvoc": AttributeRule("volatileOrganicCompoundsTotal"),
        "wind_speed": AttributeRule("windSpeed"),
        "wind_direction": AttributeRule("windDirection"),
        "precipitation": AttributeRule("precipitation"),
    },
    SmartDataModel.NOISE_LEVEL_OBSERVED: {
        "sound_level": AttributeRule("LAeq"),
        "sound_level_max": AttributeRule("LAmax"),
    },
    SmartDataModel.WEATHER_OBSERVED: {
        "temperature": AttributeRule("temperature"),
        "relative_humidity": AttributeRule(
            "relativeHumidity", transform=Transform.PERCENT_TO_FRACTION
        ),
        "barometric_pressure": AttributeRule("atmosphericPressure"),
        "wind_speed": AttributeRule("windSpeed"),
        "wind_direction": AttributeRule("windDirection"),
        "precipitation": AttributeRule("precipitation"),
        "illuminance": AttributeRule("illuminance"),
        "solar_radiation": AttributeRule("solarRadiation"),
        "uv_index": AttributeRule("uVIndexMax"),
        "dew_point": AttributeRule("dewPoint"),
    },
    SmartDataModel.PARKING_SPOT: {
        "occupancy": AttributeRule("status", transform=Transform.OCCUPANCY_TO_STATUS),
    },
    SmartDataModel.DEVICE: {},
}
"""Each model's own attribute for a quantity (from its ``schema.json`` at smart-data-models)."""

_SUGGESTIONS: Final[tuple[tuple[SmartDataModel, frozenset[str]], ...]] = (
    (SmartDataModel.NOISE_LEVEL_OBSERVED, frozenset({"sound_level", "sound_level_max"})),
    (
        SmartDataModel.AIR_QUALITY_OBSERVED,
        frozenset({"pm1", "pm2_5", "pm4", "pm10", "no2", "o3", "so2", "co", "co2", "tvoc"}),
    ),
    (
        SmartDataModel.WEATHER_OBSERVED,
        frozenset(
            {
                "barometric_pressure",
                "wind_speed",
                "wind_direction",
                "precipitation",
                "rainfall",
                "solar_radiation",
                "uv_index",
                "dew_point",
            }
        ),
    ),
    (SmartDataModel.PARKING_SPOT, frozenset({"occupancy"})),
)
"""In this order, the first model one of whose quantities a type maps is suggested."""

SDM_TERMS: Final[dict[str, str]] = {
    # Entity types.
    "AirQualityObserved": "https://smartdatamodels.org/dataModel.Environment/AirQualityObserved",
    "NoiseLevelObserved": "https://smartdatamodels.org/dataModel.Environment/NoiseLevelObserved",
    "WeatherObserved": "https://smartdatamodels.org/dataModel.Weather/WeatherObserved",
    "ParkingSpot": "https://smartdatamodels.org/dataModel.Parking/ParkingSpot",
    "Device": "https://smartdatamodels.org/dataModel.Device/Device",
    # Attributes the models above share: one IRI each (see _term_domain).
    "name": "https://smartdatamodels.org/name",
    "areaServed": "https://smartdatamodels.org/areaServed",
    "dateObserved": "https://smartdatamodels.org/dateObserved",
    "refDevice": "https://smartdatamodels.org/dataModel.Environment/refDevice",
    "batteryLevel": "https://smartdatamodels.org/dataModel.Device/batteryLevel",
    "controlledProperty": "https://smartdatamodels.org/dataModel.Device/controlledProperty",
    "dateLastValueReported": ("https://smartdatamodels.org/dataModel.Device/dateLastValueReported"),
    # dataModel.Environment (AirQualityObserved, NoiseLevelObserved).
    "temperature": "https://smartdatamodels.org/dataModel.Environment/temperature",
    "relativeHumidity": "https://smartdatamodels.org/dataModel.Environment/relativeHumidity",
    "pressure": "https://smartdatamodels.org/dataModel.Environment/pressure",
    "pm1": "https://smartdatamodels.org/dataModel.Environment/pm1",
    "pm25": "https://smartdatamodels.org/dataModel.Environment/pm25",
    "pm4": "https://smartdatamodels.org/dataModel.Environment/pm4",
    "pm10": "https://smartdatamodels.org/dataModel.Environment/pm10",
    "no2": "https://smartdatamodels.org/dataModel.Environment/no2",
    "o3": "https://smartdatamodels.org/dataModel.Environment/o3",
    "so2": "https://smartdatamodels.org/dataModel.Environment/so2",
    "co": "https://smartdatamodels.org/dataModel.Environment/co",
    "co2": "https://smartdatamodels.org/dataModel.Environment/co2",
    "volatileOrganicCompoundsTotal": (
        "https://smartdatamodels.org/dataModel.Environment/volatileOrganicCompoundsTotal"
    ),
    "windSpeed": "https://smartdatamodels.org/dataModel.Environment/windSpeed",
    "windDirection": "https://smartdatamodels.org/dataModel.Environment/windDirection",
    "precipitation": "https://smartdatamodels.org/dataModel.Environment/precipitation",
    "illuminance": "https://smartdatamodels.org/dataModel.Environment/illuminance",
    "solarRadiation": "https://smartdatamodels.org/dataModel.Environment/solarRadiation",
    "atmosphericPressure": (
        "https://smartdatamodels.org/dataModel.Environment/atmosphericPressure"
    ),
    "LAeq": "https://smartdatamodels.org/dataModel.Environment/LAeq",
    "LAmax": "https://smartdatamodels.org/dataModel.Environment/LAmax",
    # dataModel.Weather (WeatherObserved's own).
    "uVIndexMax": "https://smartdatamodels.org/dataModel.Weather/uVIndexMax",
    "dewPoint": "https://smartdatamodels.org/dataModel.Weather/dewPoint",
}
"""The terms of cityhub's ``@context`` and their IRIs, as the Smart Data Models' own contexts
(``context.jsonld`` of dataModel.Environment, .Weather, .Parking and .Device) define them.
A flat context gives a term one IRI: where several of those contexts define the same term
(``temperature``, ``windSpeed``, ``refDevice``), this one takes dataModel.Environment's
(``batteryLevel``: dataModel.Device's). ``status`` and ``location`` are the core context's
(``ngsi-ld:status``, ``ngsi-ld:location``), as dataModel.Parking's context has them; an
attribute without a term here expands with the core context's default vocabulary
(``https://uri.etsi.org/ngsi-ld/default-context/<name>``)."""

_CAMEL_SPLIT = re.compile(r"_+([a-z0-9])")


def camel_case(quantity: str) -> str:
    """``relative_humidity`` -> ``relativeHumidity``, ``pm2_5`` -> ``pm25``."""
    return _CAMEL_SPLIT.sub(lambda m: m.group(1).upper(), quantity)


def suggested_model(quantities: Iterable[str]) -> SmartDataModel:
    """The model the first matching rule of ``_SUGGESTIONS`` names for a set of quantities;
    ``Device`` when none matches."""
    present = set(quantities)
    for model, marks in _SUGGESTIONS:
        if present & marks:
            return model
    return SmartDataModel.DEVICE


@dataclass(frozen=True, slots=True)
class EntityMapping:
    """How the devices of one type appear: their model, and a rule per quantity."""

    model: SmartDataModel
    explicit: Mapping[str, AttributeRule] = field(default_factory=dict)
    """The type's own rules, by quantity."""

    @property
    def has_ref_device(self) -> bool:
        """Whether the model has ``refDevice`` (every observed model; not ``Device`` itself)."""
        return self.model is not SmartDataModel.DEVICE

    def rule(self, quantity: str) -> AttributeRule:
        """The rule of ``quantity``: the type's, else the model's, else its camel-case name. A
        default whose name the type gave to another quantity takes ``<name>Value``."""
        own = self.explicit.get(quantity)
        if own is not None:
            return own
        default = _MODEL_RULES[self.model].get(quantity) or _COMMON.get(quantity)
        if default is None:
            name = camel_case(quantity)
            # A quantity named like an attribute cityhub sets itself (``name``, ``location``).
            default = AttributeRule(f"{name}Value" if name in NGSI_LD_RESERVED_ATTRIBUTES else name)
        if any(rule.attribute == default.attribute for rule in self.explicit.values()):
            return AttributeRule(f"{default.attribute}Value")
        return default

    def quantities_of(self, attribute: str) -> frozenset[str]:
        """The quantities whose attribute is ``attribute`` here: the type's, the model's and
        the catalogue's, and, for a name not in those, the quantity it is the camel case of
        (``batteryVoltage``: ``battery_voltage``), for quantities outside the catalogue."""
        known = set(QUANTITIES) | set(_MODEL_RULES[self.model]) | set(self.explicit)
        found = {q for q in known if self.rule(q).attribute == attribute}
        guess = re.sub(r"(?<!^)([A-Z])", r"_\1", attribute).lower()
        if self.rule(guess).attribute == attribute:
            found.add(guess)
        if self.rule(attribute).attribute == attribute:
            found.add(attribute)
        return frozenset(found)


def mapping_for(device_type: DeviceType | None) -> EntityMapping:
    """The mapping of a device type's devices (None: a type that is gone, shown as ``Device``
    with the default attributes)."""
    if device_type is None:
        return EntityMapping(SmartDataModel.DEVICE)
    spec = device_type.ngsi_ld
    declared = [] if spec is None else spec.attributes
    model = spec.model if spec is not None else None
    if model is None:
        model = suggested_model(
            [m.quantity for m in device_type.fields] + [a.quantity for a in declared]
        )
    explicit: dict[str, AttributeRule] = {}
    for entry in declared:
        default = _MODEL_RULES[model].get(entry.quantity) or _COMMON.get(entry.quantity)
        # The model's transform belongs to its attribute: kept when the type keeps the name.
        keeps = default is not None and default.attribute == entry.attribute
        explicit[entry.quantity] = AttributeRule(
            entry.attribute,
            entry.unit_code,
            default.transform if keeps and default is not None else Transform.NONE,
        )
    return EntityMapping(model, explicit)


def attribute_value(
    rule: AttributeRule, value: Value, unit: str | None
) -> tuple[Value, str | None]:
    """The attribute's value and ``unitCode`` (None: none) for an observation's value in
    ``unit``. A transform applies only to values it fits (a percentage in a percent unit, a
    number or boolean occupancy); anything else passes as it is."""
    if (
        rule.transform is Transform.PERCENT_TO_FRACTION
        and unit in _PERCENT_UNITS
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        return value / 100, rule.unit_code or FRACTION_UNIT_CODE
    if rule.transform is Transform.OCCUPANCY_TO_STATUS and isinstance(value, int | float | bool):
        return ("occupied" if value else "free"), rule.unit_code
    if isinstance(value, bool | str):
        return value, rule.unit_code
    return value, rule.unit_code or (None if unit is None else UNIT_CODES.get(unit))
