"""Quality flags of a canonical observation.

An observation is never dropped for its quality: the normaliser writes it with the flags its
checks raised in ``Observation.quality`` (a JSON array of these names, empty when none), and
consumers decide. Read it as ``doc.get("quality") or []``: records written before the field
existed have none. How each flag is computed: ``docs/quality.md``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    field_validator,
    model_serializer,
    model_validator,
)


class QualityFlag(StrEnum):
    """Why an observation is suspect (its value is kept as the device sent it)."""

    OUT_OF_RANGE = "out_of_range"
    """Outside the physically plausible range of its quantity (catalogue, setting or type)."""
    SPIKE = "spike"
    """Changed faster than its quantity plausibly can since the device's previous value."""
    FLAT_LINE = "flat_line"
    """The same value for longer than its quantity plausibly stays unchanged."""
    DEVICE_FAULT = "device_fault"
    """The device itself reported a fault in the same uplink."""


QUALITY_FLAGS: Final[tuple[str, ...]] = tuple(flag.value for flag in QualityFlag)
"""Every flag name, in the enum's order (the order flags appear in an observation)."""


def ordered_flags(flags: set[str] | frozenset[str]) -> tuple[str, ...]:
    """``flags`` as a tuple in the canonical order (the same set always encodes the same way,
    so a replayed record is byte-identical)."""
    return tuple(name for name in QUALITY_FLAGS if name in flags)


# --- limits and their configuration ---------------------------------------------------------

QUANTITY_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"
"""A canonical quantity name, as a field mapping names one."""
MAX_LIMIT_OVERRIDES: Final = 64
MAX_FAULT_FIELDS: Final = 32
MIN_FLAT_LINE_SECONDS: Final = 60
MAX_FLAT_LINE_SECONDS: Final = 31 * 86_400

DEFAULT_FAULT_FIELDS: Final[tuple[str, ...]] = (
    "fault",
    "faults",
    "error",
    "errors",
    "error_code",
    "error_flag",
    "alarm",
    "alarms",
    "sensor_error",
    "sensor_fault",
    "malfunction",
)
"""Decoded fields whose truthy value means the device reports a fault of its own (compared
case-insensitively, with ``-``/``.``/spaces as ``_``, a trailing ``_<channel>`` and a dotted
parent ignored). ``status`` is not among them: decoders use it for modes and states as often as
for faults; a type whose decoder means a fault by it names it in its ``quality.fault_fields``."""

_FAULT_FIELD = r"^[A-Za-z0-9_.-]{1,64}$"


class QuantityLimits(BaseModel):
    """Plausible limits of one quantity; a field left out inherits the next level's value
    (catalogue <- setting <- device type), a field given as ``null`` switches that check off.

    ``min``/``max``: the physical range (``out_of_range`` outside it, bounds included in the
    range). ``max_rate_per_second``: the fastest plausible change (``spike`` when the change
    since the device's previous value, over at least a minute, is faster). ``flat_line_seconds``:
    how long the value may stay exactly the same (``flat_line`` once it has stayed longer)."""

    # One schema for both directions (the answer is what a request may send back), so the
    # API's document has one QualitySpec, not an -Input and an -Output.
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_mode_override="validation")

    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)
    max_rate_per_second: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    flat_line_seconds: int | None = Field(
        default=None, ge=MIN_FLAT_LINE_SECONDS, le=MAX_FLAT_LINE_SECONDS, strict=True
    )

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Only the fields given: a left-out field inherits, a null one switches a check off,
        # and a stored record (the registry topic, an API answer sent back) must keep that.
        given = self.model_fields_set
        dumped: dict[str, Any] = handler(self)
        return {name: value for name, value in dumped.items() if name in given}

    @model_validator(mode="after")
    def _range(self) -> QuantityLimits:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        return self

    def over(self, base: QuantityLimits) -> QuantityLimits:
        """These limits laid over ``base``: each field given here (``null`` included) wins."""
        given = self.model_fields_set
        if not given:
            return base
        merged = {name: getattr(self if name in given else base, name) for name in _LIMIT_FIELDS}
        low, high = merged["min"], merged["max"]
        if low is not None and high is not None and low > high:
            # One bound given above (below) the inherited other: the given range is meant.
            merged["max" if "max" not in given else "min"] = None
        return QuantityLimits.model_construct(_fields_set=set(_LIMIT_FIELDS), **merged)


_LIMIT_FIELDS: Final = ("min", "max", "max_rate_per_second", "flat_line_seconds")
QuantityName = Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN)]
FaultField = Annotated[str, StringConstraints(pattern=_FAULT_FIELD)]


def _bounded_limits(value: dict[str, QuantityLimits]) -> dict[str, QuantityLimits]:
    if len(value) > MAX_LIMIT_OVERRIDES:
        raise ValueError(f"at most {MAX_LIMIT_OVERRIDES} quantities may be given limits")
    return value


class QualitySpec(BaseModel):
    """A device type's quality configuration (``DeviceTypeSpec.quality``)."""

    # One schema for both directions (the answer is what a request may send back), so the
    # API's document has one QualitySpec, not an -Input and an -Output.
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_mode_override="validation")

    limits: dict[QuantityName, QuantityLimits] = Field(default_factory=dict)
    """Per quantity, limits laid over the hub's (``QuantityLimits``)."""
    fault_fields: list[FaultField] | None = Field(default=None, max_length=MAX_FAULT_FIELDS)
    """The decoded fields through which its devices report faults; None: the hub's list
    (``quality.fault_fields``); ``[]``: its devices report none."""

    _limits = field_validator("limits")(_bounded_limits)


UNFLAGGED: Final = "unflagged"


class QualityExclusion(BaseModel):
    """The subscription filter's ``quality`` criterion that leaves out observations carrying
    any of these flags."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exclude: list[QualityFlag] = Field(min_length=1, max_length=len(QualityFlag))

    @field_validator("exclude")
    @classmethod
    def _once_each(cls, value: list[QualityFlag]) -> list[QualityFlag]:
        if len(set(value)) != len(value):
            raise ValueError("each flag may be named once")
        return value


QualityCriterion = Literal["unflagged"] | QualityExclusion
"""A subscription filter's ``quality``: ``"unflagged"`` takes only observations without any
flag (also one a later version adds), ``{"exclude": [...]}`` leaves out those with any of the
named flags. An item without flags (an aggregate, a record from before the flags) passes both."""


def excluded_flags(criterion: QualityCriterion | None) -> frozenset[str] | None:
    """The known flags whose observations ``criterion`` leaves out; None: it takes any."""
    if criterion is None:
        return None
    if isinstance(criterion, QualityExclusion):
        return frozenset(flag.value for flag in criterion.exclude)
    return frozenset(QUALITY_FLAGS)


class QualitySettings(BaseModel):
    """``CITYHUB_QUALITY__*``: the normaliser's quality checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    """False: no checks run and every observation's ``quality`` is empty."""
    limits: dict[QuantityName, QuantityLimits] = Field(default_factory=dict)
    """Per quantity, limits laid over the catalogue's (``schemas/quality_limits.py``), e.g.
    ``{"temperature": {"min": -30, "max": 50}, "sound_level": {"flat_line_seconds": null}}``."""
    fault_fields: tuple[FaultField, ...] = Field(
        default=DEFAULT_FAULT_FIELDS, max_length=MAX_FAULT_FIELDS
    )
    """The decoded fields through which devices report faults, unless their type names its own."""

    _limits = field_validator("limits")(_bounded_limits)
