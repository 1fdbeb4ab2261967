"""Quality flags for the observations of one uplink: the limits that apply to each (the
catalogue's, under the settings', under the device type's), the device's own faults, and the
checks of ``checks.py`` against the device's series. Pure: the caller keeps the state.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, MutableMapping, Sequence
from datetime import datetime
from typing import Final, Protocol

from cityhub.schemas.observation import Observation
from cityhub.schemas.quality import QualityFlag, QualitySettings, QualitySpec, ordered_flags
from cityhub.schemas.quality_limits import catalogue_limits
from cityhub.schemas.quantities import QUANTITIES
from cityhub.streams.quality.checks import (
    NO_CHECKS,
    OUT_OF_RANGE,
    Limits,
    Series,
    check_value,
    out_of_range,
)

DEVICE_FAULT: Final = QualityFlag.DEVICE_FAULT.value
OTHER_QUANTITY: Final = "other"
"""The metric label of a quantity that is neither catalogued nor given limits by a setting:
field names are the device's to choose, and a label must not be."""
_CACHE_LIMIT: Final = 8192
_SEPARATORS: Final = str.maketrans({"-": "_", " ": "_", "/": "_"})
_NOT_A_FAULT: Final = frozenset({"", "0", "ok", "false", "no", "none", "normal", "off", "null"})

DeviceSeries = dict[str, Series]
"""One device's series, by field (``checks.py``): a field is one sensor channel of the device
(``temperature_1`` and ``temperature_2`` of one device are two thermometers, each its own
series), judged by its quantity's limits."""
MAX_SERIES_PER_DEVICE: Final = 64
"""Fields with a series per device: field names are the device's to choose, its state must not
grow without bound (a field beyond them gets its range checked, and no series)."""


class TypeQuality(Protocol):
    """What the assessor reads of a device type (``DeviceType`` has it)."""

    @property
    def tenant(self) -> str: ...

    @property
    def id(self) -> str: ...

    @property
    def updated_at(self) -> str: ...

    @property
    def quality(self) -> QualitySpec | None: ...


def field_key(field: str) -> str:
    """A field name as fault fields are compared: lower case, ``_`` separators, the leaf of a
    dotted path, without a trailing ``_<channel>`` (``Error_Code-1`` -> ``error_code``)."""
    found = _field_keys.get(field)
    if found is not None:
        return found
    key = field.rpartition(".")[2].lower().translate(_SEPARATORS).strip("_")
    head, sep, tail = key.rpartition("_")
    if sep and head and tail.isdigit():
        key = head
    if len(_field_keys) < _CACHE_LIMIT:  # field names are the devices' to choose: bounded
        _field_keys[field] = key
    return key


_field_keys: dict[str, str] = {}


def is_fault(value: object) -> bool:
    """Whether a fault field's value reports a fault: true, a number other than 0, a word other
    than ``ok``, ``normal``, ``none``, ``no``, ``off``, ``false``, ``0`` (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() not in _NOT_A_FAULT
    return False


def reports_fault(observations: Iterable[Observation], fault_fields: Collection[str]) -> bool:
    """Whether any of an uplink's observations is a fault field reporting a fault."""
    return any(field_key(o.field) in fault_fields and is_fault(o.value) for o in observations)


class QualityAssessor:
    """Sets the ``quality`` of each observation of an uplink (``assess``), with the limits of
    ``settings`` laid over the catalogue's and a device type's over those. Caches resolved
    limits per type revision and quantity (bounded)."""

    def __init__(self, settings: QualitySettings) -> None:
        self._settings = settings
        self._default_faults = frozenset(field_key(f) for f in settings.fault_fields)
        self._limits: dict[tuple[str | None, str | None, str | None, str], Limits] = {}
        self._plain: dict[str, Limits] = {}
        """The limits of a quantity for a device whose type sets none (most of them)."""
        self._faults: dict[tuple[str, str, str], frozenset[str]] = {}
        self._labels = frozenset(QUANTITIES) | frozenset(settings.limits)
        self._last_time: tuple[str, float | None] = ("", None)

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    def label(self, quantity: str) -> str:
        """The metric label for ``quantity`` (bounded: catalogued or configured, else other)."""
        return quantity if quantity in self._labels else OTHER_QUANTITY

    def limits(self, device_type: TypeQuality | None, quantity: str) -> Limits:
        """The limits that apply to ``quantity`` of a device of ``device_type``."""
        spec = device_type.quality if device_type is not None else None
        if spec is None:
            found = self._plain.get(quantity)
            if found is not None:
                return found
        key = (
            (device_type.tenant, device_type.id, device_type.updated_at, quantity)
            if device_type is not None and spec is not None
            else (None, None, None, quantity)
        )
        found = self._limits.get(key)
        if found is not None:
            return found
        merged = catalogue_limits(quantity)
        setting = self._settings.limits.get(quantity)
        if setting is not None:
            merged = setting.over(merged)
        own = spec.limits.get(quantity) if spec is not None else None
        if own is not None:
            merged = own.over(merged)
        limits = Limits.of(merged)
        if not limits.checks_anything:
            limits = NO_CHECKS
        if len(self._limits) >= _CACHE_LIMIT:
            self._limits.clear()
            self._plain.clear()
        self._limits[key] = limits
        if spec is None:
            self._plain[quantity] = limits
        return limits

    def fault_fields(self, device_type: TypeQuality | None) -> frozenset[str]:
        """The fault fields of a device of ``device_type`` (its own list, else the setting's)."""
        spec = device_type.quality if device_type is not None else None
        if device_type is None or spec is None or spec.fault_fields is None:
            return self._default_faults
        key = (device_type.tenant, device_type.id, device_type.updated_at)
        found = self._faults.get(key)
        if found is None:
            if len(self._faults) >= _CACHE_LIMIT:
                self._faults.clear()
            found = self._faults[key] = frozenset(field_key(f) for f in spec.fault_fields)
        return found

    def assess(
        self,
        observations: Sequence[Observation],
        device_type: TypeQuality | None,
        series: MutableMapping[str, Series],
    ) -> bool:
        """Set the ``quality`` of each of one uplink's observations (all of one device, whose
        ``series`` by field this reads and updates). Returns whether ``series`` changed."""
        if not self._settings.enabled or not observations:
            return False
        fault = reports_fault(observations, self.fault_fields(device_type))
        changed = False
        for o in observations:
            flags: list[str] = []
            value = o.value
            limits = self.limits(device_type, o.quantity)
            if limits is not NO_CHECKS and (type(value) is int or type(value) is float):
                number = float(value)
                at = self._seconds(o.observed_at) if limits.needs_series else None
                known = series.get(o.field)
                if at is None or (known is None and len(series) >= MAX_SERIES_PER_DEVICE):
                    flags = [OUT_OF_RANGE] if out_of_range(limits, number) else []
                else:
                    flags, stored = check_value(limits, known, number, at)
                    if stored is not None:
                        series[o.field] = stored
                        changed = True
            if fault:
                flags.append(DEVICE_FAULT)
            if flags:
                o.quality = tuple(flags) if len(flags) == 1 else ordered_flags(set(flags))
        return changed

    def uplink_check(
        self, series_of: MutableMapping[str, DeviceSeries], changed: set[str]
    ) -> Callable[[list[Observation], TypeQuality | None], None]:
        """The check the normaliser runs on each uplink (``normalise_envelope``'s ``quality``):
        ``assess`` with the uplink's device's series from ``series_of`` (by device id), adding
        the device to ``changed`` when its series changed."""
        assess = self.assess

        def check(observations: list[Observation], device_type: TypeQuality | None) -> None:
            device = observations[0].device_id
            series = series_of.get(device)
            if series is None:
                series = {}
            if assess(observations, device_type, series):
                series_of[device] = series
                changed.add(device)

        return check

    def _seconds(self, observed_at: str) -> float | None:
        """Epoch seconds of an observation's time (the observations of an uplink share one
        string: parsed once); None if it is no ISO time (then no series check)."""
        last, seconds = self._last_time
        if observed_at == last:
            return seconds
        try:
            seconds = datetime.fromisoformat(observed_at).timestamp()
        except ValueError:
            seconds = None
        self._last_time = (observed_at, seconds)
        return seconds
