"""SenML (RFC 8428) JSON packs resolved into Measurements, and the ``senml-json`` format.

Resolution follows RFC 8428 section 4.6: base fields (``bn``, ``bt``, ``bu``, ``bv``, ``bs``,
``bver``) apply to their record and every later one until replaced; the name is ``bn + n``,
the time ``bt + t``, the unit ``u`` else ``bu``, the value ``bv + v`` (or ``vs``, ``vb``,
``vd``), the sum ``bs + s``. A resolved time below 2**28 is relative to now, i.e. to the
message's receive time (``0`` or absent: received now; ``-60``: a minute earlier); larger
times are seconds since the epoch.

Mapping to Measurements:

* The field is the resolved name without the base name when the base name ends in ``:`` or
  ``/`` (it names the device, like ``urn:dev:ow:10e2073a01080063:``), and without any leading
  ``urn:dev:...:`` device URN otherwise; the quantity is looked up in the catalogue from the
  field's last ``/``- or ``:``-separated segment. The record's unit wins over the catalogue's.
* A record that names only the device (no name of its own) is named after the quantity its
  unit measures (``%RH`` -> ``relative_humidity``, ``lat`` -> ``latitude``), else its unit.
* Units (``u``, ``bu``) apply to numbers (``v``, ``s``) only, not to ``vs``, ``vb``, ``vd``.
* A record's sum becomes a second measurement, field ``<field>.sum``, quantity
  ``<quantity>_sum``.
* Every measurement carries its own ``observed_at``.

Errors (``SchemaMismatch``, naming the record index): a record that is not an object, a field
of the wrong type, an empty name, a record with neither value nor sum, a value or sum that
the base value or sum takes beyond the range of a number (``bv + v`` of ``1e308 + 1e308``),
a ``bver`` above 10,
and any field ending in ``_`` (RFC 8428 "must understand" extensions we do not know). The limits
of decoded fields hold for packs too: a field name of at most 128 characters (it becomes the
quantity), a unit of at most 32, at most 512 values in one message (a record's sum counts). A time
that resolves outside 1970-01-01T00:00:00Z up to 2100 is an ``InvalidTimestamp`` (also a
``SchemaMismatch``).
"""

from __future__ import annotations

import math
from typing import Any, Final

from cityhub.connectors.formats.base import (
    MAX_FIELD_NAME_LENGTH,
    MAX_MEASUREMENTS,
    MAX_UNIT_LENGTH,
    Measurement,
    Uplink,
)
from cityhub.connectors.formats.jsondoc import load_json, mismatch, shown
from cityhub.schemas.errors import InvalidTimestamp, SchemaMismatch
from cityhub.schemas.quantities import lookup, quantity_for_unit
from cityhub.schemas.timefmt import RANGE, epoch_to_rfc3339
from cityhub.schemas.timefmt import shown as shown_time

NAME: Final = "senml-json"
SENML_VERSION: Final = 10
MAX_RECORDS: Final = 1024
_RELATIVE_BELOW: Final = 2**28
_MAX_STRING: Final = 256


def _number(record: dict[str, Any], key: str, path: str) -> float | int | None:
    value = record.get(key)
    if value is None:
        return None
    kind = type(value)
    if kind is int or (kind is float and math.isfinite(value)):
        return value  # type: ignore[no-any-return]
    raise mismatch(f"{path}.{key}", "a finite number", value)


def _string(record: dict[str, Any], key: str, path: str) -> str | None:
    value = record.get(key)
    if value is None or type(value) is str:
        return value
    raise mismatch(f"{path}.{key}", "a string", value)


def _field_of(name: str, base_name: str) -> str:
    """The name without the device prefix; ``""`` when the record names only the device."""
    if base_name and base_name[-1] in ":/" and name.startswith(base_name):
        return name[len(base_name) :]
    if name.startswith("urn:dev:"):
        return name.rpartition(":")[2]
    return name


def _quantity_of(field: str) -> tuple[str, str | None]:
    last = field
    for sep in ("/", ":"):
        last = last.rpartition(sep)[2] or last
    found = lookup(last)
    return found if found is not None else (field, None)


def _time(total: float, received_at: float, path: str, seen: dict[float, str]) -> str:
    ts = received_at + total if total < _RELATIVE_BELOW else total
    text = seen.get(ts)
    if text is None:
        try:
            # Records of one pack share few times; formatting one costs more than the rest.
            text = seen[ts] = epoch_to_rfc3339(ts)
        except InvalidTimestamp:
            how = "relative to the receive time" if total < _RELATIVE_BELOW else "absolute"
            why = f"expected bt + t ({how}) to resolve to a time {RANGE}"
            raise InvalidTimestamp(f"{path}.t: {why}, got {shown_time(total)}", why=why) from None
    return text


def resolve_senml(records: Any, received_at: float) -> list[Measurement]:
    """Resolve a parsed SenML pack (a JSON array of records) into Measurements, each with its
    ``observed_at``. ``received_at`` (epoch seconds) anchors relative times. Raises
    ``SchemaMismatch`` naming the record for anything RFC 8428 does not allow (see module)."""
    if type(records) is not list:
        raise SchemaMismatch(f"SenML pack: expected a JSON array, got {type(records).__name__}")
    if len(records) > MAX_RECORDS:
        raise SchemaMismatch(f"SenML pack: {len(records)} records, at most {MAX_RECORDS} taken")
    out: list[Measurement] = []
    bn = ""
    bt: float = 0.0
    bu: str | None = None
    bv: float = 0.0
    bs: float = 0.0
    times: dict[float, str] = {}
    for i, record in enumerate(records):
        path = f"[{i}]"
        if type(record) is not dict:
            raise mismatch(path, "a SenML record object", record)
        for key in record:
            if key.endswith("_"):
                raise SchemaMismatch(f"{path}.{key}: unknown must-understand SenML field")
        bver = record.get("bver")
        if bver is not None and (type(bver) is not int or not 1 <= bver <= SENML_VERSION):
            raise mismatch(f"{path}.bver", f"a SenML version in 1..{SENML_VERSION}", bver)
        value_bn = _string(record, "bn", path)
        if value_bn is not None:
            bn = value_bn
        value_bt = _number(record, "bt", path)
        if value_bt is not None:
            bt = value_bt
        if "bu" in record:
            bu = _string(record, "bu", path)
        value_bv = _number(record, "bv", path)
        if value_bv is not None:
            bv = value_bv
        value_bs = _number(record, "bs", path)
        if value_bs is not None:
            bs = value_bs

        name = bn + (_string(record, "n", path) or "")
        if not name:
            raise SchemaMismatch(f"{path}: the record has no name (neither bn nor n)")
        t = _number(record, "t", path)
        observed_at = _time(bt + (t or 0), received_at, path, times)
        unit = _string(record, "u", path) or bu

        value: float | int | bool | str | None
        v = _number(record, "v", path)
        if v is not None:
            value = v + bv if bv else v
            if not math.isfinite(value):
                raise mismatch(f"{path}.v", "a number that stays finite once bv is added", v)
        elif "vs" in record:
            value = _string(record, "vs", path)
        elif "vb" in record:
            value = record["vb"]
            if type(value) is not bool:
                raise mismatch(f"{path}.vb", "a boolean", value)
        elif "vd" in record:
            value = _string(record, "vd", path)
        else:
            value = None
        if type(value) is str and len(value) > _MAX_STRING:
            raise SchemaMismatch(f"{path}: string value of {len(value)} characters is too long")
        s = _number(record, "s", path)
        if value is None and s is None:
            raise SchemaMismatch(f"{path}: record {shown(name)} has no value (v, vs, vb, vd or s)")

        if unit is not None and len(unit) > MAX_UNIT_LENGTH:
            raise SchemaMismatch(
                f"{path}: a unit of {len(unit)} characters, at most {MAX_UNIT_LENGTH} taken"
            )
        field = _field_of(name, bn)
        if not field:
            # The record measures the device itself (RFC 8428's humidity-and-position example):
            # name it after what its unit measures, so that its records stay apart.
            field = (quantity_for_unit(unit) if unit else None) or unit or name
        if len(field) > MAX_FIELD_NAME_LENGTH:
            # The field becomes the quantity that aggregates, filters and topics carry.
            raise SchemaMismatch(
                f"{path}: a field name of {len(field)} characters, at most "
                f"{MAX_FIELD_NAME_LENGTH} taken"
            )
        quantity, catalogue_unit = _quantity_of(field)
        if value is not None:
            # Units measure numbers: a base unit does not stick to a string or a boolean.
            numeric = v is not None
            value_unit = (unit or catalogue_unit) if numeric else None
            out.append(Measurement(field, quantity, value, value_unit, observed_at))
        if s is not None:
            total = s + bs if bs else s
            if not math.isfinite(total):
                raise mismatch(f"{path}.s", "a number that stays finite once bs is added", s)
            out.append(
                Measurement(
                    f"{field}.sum", f"{quantity}_sum", total, unit or catalogue_unit, observed_at
                )
            )
        if len(out) > MAX_MEASUREMENTS:
            raise SchemaMismatch(
                f"SenML pack: more than {MAX_MEASUREMENTS} values (each record's value and sum "
                "count), at most that many taken from one message"
            )
    return out


def ingest_device(topic: str) -> str | None:
    """The device id of a ``.../{device_id}`` ingest topic (its last segment), None if empty."""
    device = topic.rpartition("/")[2]
    if not device or "+" in device or "#" in device:
        return None
    return device


class SenmlJsonFormat:
    """The ``senml-json`` format: a SenML JSON pack on ``cityhub/ingest/{device_id}``."""

    name = NAME

    def partition_key(self, topic: str, payload: bytes) -> str:
        """The topic's last segment (the device id); the whole topic if that is empty."""
        return ingest_device(topic) or topic

    def parse(self, topic: str, payload: bytes, received_at: float) -> Uplink:
        """Parse a SenML JSON pack into an ``mqtt`` Uplink whose measurements carry times."""
        device = ingest_device(topic)
        if device is None:
            raise SchemaMismatch(f"topic {shown(topic)}: expected .../{{device_id}}")
        pack = load_json(payload, "SenML pack")
        return Uplink(
            network="mqtt",
            device_id=device,
            measurements=tuple(resolve_senml(pack, received_at)),
        )
