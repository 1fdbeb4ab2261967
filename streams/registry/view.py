"""The registry's in-memory view: what the compacted registry topic says, indexed for lookups.

Pure: no I/O. A store feeds it the topic's records in offset order with ``apply``; every API and
worker instance holds one. The normaliser's lookups (``device_by_eui``, ``device_by_id``,
``device_type``) are single dict look-ups. Devices are kept as compact slotted ``DeviceEntry``
objects with repeated strings (tenant, type, area, tags) interned, so that 100 000 devices take
less memory than the same records as plain decoded JSON dicts would. A device's data subject
(issue 10) costs one slot; only linked devices enter the subject index (``subject_index.py``).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from pydantic import ValidationError

from cityhub.schemas.expected_interval import shared_interval
from cityhub.schemas.plain_text import STORED
from cityhub.schemas.registry import (
    ApiKey,
    Device,
    DeviceType,
    Location,
    NetworkBinding,
    Tenant,
    record_key,
)
from cityhub.streams.malformed import malformed_reason
from cityhub.streams.registry.sorted_ids import SortedIds
from cityhub.streams.registry.subject_index import SubjectIndex

__all__ = ["DeviceEntry", "MalformedRecord", "RegistryView", "SortedIds", "entry_from_json"]

log = logging.getLogger("cityhub.registry.view")

KINDS = ("tenant", "device_type", "device", "api_key")


@dataclass(slots=True, frozen=True)
class DeviceEntry:
    """One device as the view keeps it: flat, slotted, with interned repeated strings.

    ``app_key_sha256`` is the fingerprint of the write-only LoRaWAN key (kept so that a replace
    without a key keeps it); nothing public shows it, only ``has_app_key``. ``network`` is the
    device's network-server binding; devices bound to the same application share one object.
    """

    id: str
    tenant: str
    type: str
    dev_eui: str | None
    name: str
    latitude: float | None
    longitude: float | None
    altitude: float | None
    area: str | None
    tags: tuple[str, ...]
    active: bool
    app_key_sha256: str | None = field(repr=False)
    created_at: str
    updated_at: str
    network: NetworkBinding | None = None
    data_subject: str | None = field(default=None, repr=False)
    expected_interval_seconds: int | None = None
    """The device's own expected reporting interval (``schemas/expected_interval.py``); one
    shared int object per distinct value."""

    @property
    def has_app_key(self) -> bool:
        """Whether a LoRaWAN key is stored for the device (the key itself never leaves)."""
        return self.app_key_sha256 is not None

    @property
    def location(self) -> Location | None:
        """The device's location, or None when it has none."""
        if self.latitude is None or self.longitude is None:
            return None
        return Location(latitude=self.latitude, longitude=self.longitude, altitude=self.altitude)

    def to_device(self) -> Device:
        """The full record (with the key's fingerprint; use ``Device.public()`` for output)."""
        return Device(
            tenant=self.tenant,
            id=self.id,
            name=self.name,
            type=self.type,
            dev_eui=self.dev_eui,
            location=self.location,
            area=self.area,
            tags=list(self.tags),
            active=self.active,
            app_key_sha256=self.app_key_sha256,
            network=self.network,
            data_subject=self.data_subject,
            expected_interval_seconds=self.expected_interval_seconds,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    @classmethod
    def from_device(cls, device: Device) -> DeviceEntry:
        """The entry of a record (repeated strings interned)."""
        loc = device.location
        return cls(
            id=device.id,
            tenant=sys.intern(device.tenant),
            type=sys.intern(device.type),
            dev_eui=device.dev_eui,
            name=device.name,
            latitude=None if loc is None else loc.latitude,
            longitude=None if loc is None else loc.longitude,
            altitude=None if loc is None else loc.altitude,
            area=None if device.area is None else sys.intern(device.area),
            tags=tuple(sys.intern(t) for t in device.tags),
            active=device.active,
            app_key_sha256=device.app_key_sha256,
            created_at=device.created_at,
            updated_at=device.updated_at,
            network=(
                None
                if device.network is None
                else shared_binding(
                    device.network.server.value, device.network.application, device.network.tenant
                )
            ),
            data_subject=device.data_subject,
            expected_interval_seconds=shared_interval(device.expected_interval_seconds),
        )


@functools.lru_cache(maxsize=4096)
def shared_binding(server: str, application: str, tenant: str | None) -> NetworkBinding:
    """The validated binding of these ids, one object for every device bound to the same
    application (a city has tens of applications and thousands of devices in each); pydantic's
    ValidationError if the ids are not a valid binding. Bounded, so that hostile records cannot
    grow it without end."""
    return NetworkBinding(server=server, application=application, tenant=tenant)  # type: ignore[arg-type]


class MalformedRecord(ValueError):
    """A record on the registry topic that the view cannot use (logged and counted)."""


def _str(doc: dict[str, Any], name: str) -> str:
    value = doc[name]
    if not isinstance(value, str):
        raise MalformedRecord(f"{name} must be a string")
    return value


def _opt_str(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is not None and not isinstance(value, str):
        raise MalformedRecord(f"{name} must be a string or null")
    return value


def _opt_num(doc: dict[str, Any], name: str) -> float | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedRecord(f"{name} must be a number")
    return float(value)


def _network(doc: dict[str, Any]) -> NetworkBinding | None:
    network = doc.get("network")
    if network is None:
        return None
    if not isinstance(network, dict):
        raise MalformedRecord("network must be an object or null")
    unknown = network.keys() - {"server", "application", "tenant"}
    if unknown:
        raise MalformedRecord(f"network has unknown fields {sorted(unknown)}")
    try:
        return shared_binding(
            _str(network, "server"), _str(network, "application"), _opt_str(network, "tenant")
        )
    except ValidationError as exc:
        raise MalformedRecord(f"network is not a valid binding: {exc.errors()[0]['msg']}") from None


def entry_from_json(doc: dict[str, Any]) -> DeviceEntry:
    """A ``DeviceEntry`` straight from a decoded device record, without building the pydantic
    model (twice as fast when a view loads 100 000 devices). MalformedRecord if a field is
    missing or of the wrong type."""
    try:
        location = doc.get("location")
        if location is not None and not isinstance(location, dict):
            raise MalformedRecord("location must be an object or null")
        tags = doc.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise MalformedRecord("tags must be a list of strings")
        active = doc.get("active", True)
        if not isinstance(active, bool):
            raise MalformedRecord("active must be a boolean")
        area = _opt_str(doc, "area")
        return DeviceEntry(
            id=_str(doc, "id"),
            tenant=sys.intern(_str(doc, "tenant")),
            type=sys.intern(_str(doc, "type")),
            dev_eui=_opt_str(doc, "dev_eui"),
            name=_str(doc, "name"),
            latitude=None if location is None else _opt_num(location, "latitude"),
            longitude=None if location is None else _opt_num(location, "longitude"),
            altitude=None if location is None else _opt_num(location, "altitude"),
            area=None if area is None else sys.intern(area),
            tags=tuple(sys.intern(t) for t in tags),
            active=active,
            app_key_sha256=_opt_str(doc, "app_key_sha256"),
            created_at=_str(doc, "created_at"),
            updated_at=_str(doc, "updated_at"),
            network=_network(doc),
            data_subject=_opt_str(doc, "data_subject"),
            expected_interval_seconds=shared_interval(doc.get("expected_interval_seconds")),
        )
    except KeyError as exc:
        raise MalformedRecord(f"missing field {exc.args[0]}") from None


class RegistryView:
    """The registry's state after applying the topic's records up to ``offset``.

    ``apply`` never raises on a bad record: it logs it, counts it in ``malformed`` and moves on,
    so that one bad record cannot stop every instance from starting.
    """

    def __init__(self) -> None:
        self._offset = -1
        self.applied = 0
        """Records applied (tombstones and malformed records included)."""
        self.malformed = 0
        """Records that could not be used."""
        self._tenants: dict[str, Tenant] = {}
        self._tenant_ids = SortedIds()
        self._types: dict[str, dict[str, DeviceType]] = {}
        self._type_ids: dict[str, SortedIds] = {}
        self._devices: dict[str, DeviceEntry] = {}
        self._by_eui: dict[str, DeviceEntry] = {}
        self._device_ids: dict[str, SortedIds] = {}
        self._type_use: Counter[tuple[str, str]] = Counter()
        self._subjects = SubjectIndex()
        self._keys: dict[str, ApiKey] = {}
        self._key_ids = SortedIds()
        self._n_types = 0

    # --- applying the topic ----------------------------------------------------------------
    @property
    def offset(self) -> int:
        """The offset of the last record applied; -1 before the first."""
        return self._offset

    def apply(self, key: str, value: bytes | None, offset: int) -> None:
        """Apply one record of the registry topic: ``value`` None is a tombstone (delete
        ``key``), otherwise the JSON of a record with a ``kind`` whose key must be ``key``.
        Never raises: a malformed record is logged, counted and skipped."""
        self._offset = offset
        self.applied += 1
        try:
            if value is None:
                self._delete(key)
            else:
                self._put(key, value)
        except (MalformedRecord, ValidationError, ValueError, TypeError, KeyError) as exc:
            self.malformed += 1
            log.warning(
                "skipping malformed registry record at offset %d (key %r): %s",
                offset,
                key[:200],
                malformed_reason(exc),
            )

    def _put(self, key: str, value: bytes) -> None:
        doc = json.loads(value)
        if not isinstance(doc, dict):
            raise MalformedRecord("a record must be a JSON object")
        kind = doc.get("kind")
        if kind == "device":
            entry = entry_from_json(doc)
            if key != f"device/{entry.id}":
                raise MalformedRecord(f"key does not match the record's (device/{entry.id})")
            self._put_device(entry)
            return
        record: Tenant | DeviceType | ApiKey
        if kind == "tenant":
            record = Tenant.model_validate(doc, context=STORED)
        elif kind == "device_type":
            record = DeviceType.model_validate(doc, context=STORED)
        elif kind == "api_key":
            record = ApiKey.model_validate(doc, context=STORED)
        else:
            raise MalformedRecord(f"unknown kind {kind!r}")
        if key != record_key(record):
            raise MalformedRecord(f"key does not match the record's ({record_key(record)})")
        match record:
            case Tenant():
                if record.id not in self._tenants:
                    self._tenant_ids.add(record.id)
                self._tenants[record.id] = record
            case DeviceType():
                tenant = sys.intern(record.tenant)
                types = self._types.setdefault(tenant, {})
                if record.id not in types:
                    self._type_ids.setdefault(tenant, SortedIds()).add(record.id)
                    self._n_types += 1
                types[record.id] = record
            case ApiKey():
                if record.id not in self._keys:
                    self._key_ids.add(record.id)
                self._keys[record.id] = record

    def _put_device(self, entry: DeviceEntry) -> None:
        old = self._devices.get(entry.id)
        if old is not None:
            self._unindex_device(old, keep_id=old.tenant == entry.tenant)
        if old is None or old.tenant != entry.tenant:
            self._device_ids.setdefault(entry.tenant, SortedIds()).add(entry.id)
        self._devices[entry.id] = entry
        if entry.dev_eui is not None:
            self._by_eui[entry.dev_eui] = entry
        self._type_use[(entry.tenant, entry.type)] += 1
        if entry.data_subject is not None:
            self._subjects.add(entry.tenant, entry.data_subject, entry.id, entry.type)

    def _unindex_device(self, old: DeviceEntry, *, keep_id: bool) -> None:
        if old.dev_eui is not None and self._by_eui.get(old.dev_eui) is old:
            del self._by_eui[old.dev_eui]
        use = (old.tenant, old.type)
        self._type_use[use] -= 1
        if self._type_use[use] <= 0:
            del self._type_use[use]
        if old.data_subject is not None:
            self._subjects.remove(old.tenant, old.data_subject, old.id, old.type)
        if not keep_id:
            ids = self._device_ids.get(old.tenant)
            if ids is not None:
                ids.remove(old.id)

    def _delete(self, key: str) -> None:
        kind, _, rest = key.partition("/")
        if kind == "device":
            old = self._devices.pop(rest, None)
            if old is not None:
                self._unindex_device(old, keep_id=False)
        elif kind == "device_type":
            tenant, _, type_id = rest.partition("/")
            types = self._types.get(tenant)
            if types is not None and types.pop(type_id, None) is not None:
                self._type_ids[tenant].remove(type_id)
                self._n_types -= 1
        elif kind == "tenant":
            if self._tenants.pop(rest, None) is not None:
                self._tenant_ids.remove(rest)
        elif kind == "api_key":
            if self._keys.pop(rest, None) is not None:
                self._key_ids.remove(rest)
        else:
            raise MalformedRecord(f"tombstone of unknown kind {kind!r}")

    # --- hot-path lookups ------------------------------------------------------------------
    def device_by_eui(self, dev_eui: str) -> DeviceEntry | None:
        """The device with this DevEUI (16 lower-case hex digits), or None."""
        return self._by_eui.get(dev_eui)

    def device_by_id(self, device_id: str) -> DeviceEntry | None:
        """The device with this id (ids are global), or None."""
        return self._devices.get(device_id)

    def device_type(self, tenant: str, type_id: str) -> DeviceType | None:
        """The tenant's device type with this id, or None."""
        types = self._types.get(tenant)
        return None if types is None else types.get(type_id)

    # --- other lookups ---------------------------------------------------------------------
    def tenant(self, tenant_id: str) -> Tenant | None:
        """The tenant with this id, or None."""
        return self._tenants.get(tenant_id)

    def tenants(self) -> list[Tenant]:
        """Every tenant, in id order."""
        return [self._tenants[i] for i in self._tenant_ids.ordered()]

    def api_key(self, key_id: str) -> ApiKey | None:
        """The API key with this id, or None."""
        return self._keys.get(key_id)

    def api_keys(self, tenant: str | None = None) -> list[ApiKey]:
        """Every API key (of ``tenant`` if given), in id order."""
        keys = (self._keys[i] for i in self._key_ids.ordered())
        return [k for k in keys if tenant is None or k.tenant == tenant]

    def devices_of_subject(self, tenant: str, subject: str) -> list[DeviceEntry]:
        """The tenant's devices linked to this data subject, in id order (none for another
        tenant's subject of the same id: subjects are per tenant)."""
        return [self._devices[i] for i in self._subjects.device_ids(tenant, subject)]

    def subjects_linked_of_type(self, tenant: str, type_id: str) -> int:
        """How many of the tenant's devices of this type are linked to a data subject."""
        return self._subjects.linked_of_type(tenant, type_id)

    def type_in_use(self, tenant: str, type_id: str) -> int:
        """How many devices of the tenant have this type."""
        return self._type_use.get((tenant, type_id), 0)

    def types_page(
        self, tenant: str, *, limit: int, cursor: str | None = None
    ) -> tuple[list[DeviceType], str | None]:
        """Up to ``limit`` of the tenant's types with ids after ``cursor``, in id order, and the
        cursor of the next page (None when this page reaches the end)."""
        ids = self._type_ids.get(tenant)
        if ids is None:
            return [], None
        types = self._types[tenant]
        chosen = list(islice(ids.after(cursor), limit + 1))
        more = len(chosen) > limit
        page = [types[i] for i in chosen[:limit]]
        return page, (page[-1].id if more and page else None)

    def devices_page(
        self,
        tenant: str,
        *,
        limit: int,
        cursor: str | None = None,
        type_id: str | None = None,
        area: str | None = None,
        tag: str | None = None,
        active: bool | None = None,
    ) -> tuple[list[DeviceEntry], str | None]:
        """Up to ``limit`` of the tenant's devices with ids after ``cursor`` that match every
        filter given, in id order, and the cursor of the next page (None: no more). Cost: the
        devices skipped by the filters plus the page, never a sort of the whole tenant."""
        ids = self._device_ids.get(tenant)
        if ids is None:
            return [], None
        devices = self._devices
        match: Callable[[DeviceEntry], bool] | None = None
        if type_id is not None or area is not None or tag is not None or active is not None:

            def match(d: DeviceEntry) -> bool:
                return (
                    (type_id is None or d.type == type_id)
                    and (area is None or d.area == area)
                    and (tag is None or tag in d.tags)
                    and (active is None or d.active == active)
                )

        page: list[DeviceEntry] = []
        for device_id in ids.after(cursor):
            entry = devices[device_id]
            if match is not None and not match(entry):
                continue
            if len(page) == limit:
                return page, page[-1].id if page else None
            page.append(entry)
        return page, None

    # --- counts ----------------------------------------------------------------------------
    def device_count(self, tenant: str | None = None) -> int:
        """Devices of ``tenant``, or of every tenant."""
        if tenant is None:
            return len(self._devices)
        ids = self._device_ids.get(tenant)
        return 0 if ids is None else len(ids)

    def device_counts(self) -> dict[str, int]:
        """Devices per tenant (tenants that have had devices; a count may be 0)."""
        return {tenant: len(ids) for tenant, ids in self._device_ids.items()}

    def counts_by_kind(self) -> dict[str, int]:
        """How many records of each kind the view holds."""
        return {
            "tenant": len(self._tenants),
            "device_type": self._n_types,
            "device": len(self._devices),
            "api_key": len(self._keys),
        }
