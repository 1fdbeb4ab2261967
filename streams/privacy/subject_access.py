"""What a resident may see of themselves (GDPR articles 15 and 20): their devices, what those
collected, who received what and why, and all of it as one document.

Every answer is about exactly one data subject, the ``Resident``'s ``(tenant, subject)``:

- *devices* are the tenant's devices linked to the subject now (the registry's index);
- *observations* are the records of those devices on the observations topic that carry the
  subject's pseudonym (``data_subject``) in the subject's tenant. A device's earlier records,
  from before it was linked to this subject or linked to someone else, carry no pseudonym or
  another one and are never shown. Sealed values are opened with the subject's data key
  (``sealing.open_sealed``); a value whose key was erased, or that does not open, is counted,
  never shown;
- *aggregates* of a device are shown only for windows that start after the device's last change
  (its ``updated_at``, which is at or after its link to this subject), so that a window of a
  device's earlier holder is never shown. The normaliser seals the values of a linked device,
  and the aggregator does not aggregate sealed values, so for a linked device there are
  normally none: the answer says so;
- *who received what* is the processing log's index, this subject only.

Reading personal values is itself processing: every read that returns some writes one
processing-log record (``action="read"``, an export ``action="export"``) under the activity
``<register base>cityhub:subject-access`` before the answer is sent; when the log cannot be
written the read fails (503) and shows nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from cityhub.schemas.errors import InvalidTimestamp
from cityhub.schemas.processing_log import Action, ProcessingLogRecord, processing_record
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.schemas.trace_context import TraceContext
from cityhub.streams.aggregation.query import (
    AggregateQuery,
    AggregateSource,
    AggregatesUnavailable,
    check_range,
    device_group,
)
from cityhub.streams.privacy.device_observations import ObservationSource
from cityhub.streams.privacy.resident import Resident
from cityhub.streams.privacy.sealing import KeyErased, SubjectKey, Unsealable, open_sealed
from cityhub.streams.registry.view import DeviceEntry, RegistryView
from cityhub.streams.service_errors import NotFound, Unavailable

SUBJECT_ACCESS = "cityhub:subject-access"
"""Appended to the register's base URI: the activity a resident's own reads are logged under."""
SEALED_FIELDS = ("value", "location", "extra")
ITEM_FIELDS = (
    "event_id",
    "device_id",
    "device_type",
    "quantity",
    "field",
    "value",
    "unit",
    "observed_at",
    "received_at",
    "location",
    "area",
    "tags",
    "classification",
    "extra",
)
"""What a resident is shown of an observation: the measurement and where and when; not the
network's metadata (gateways, signal) nor the pseudonym and the ciphertext."""
MAX_DEVICES = 64
"""Devices of one subject read per request; a subject with more is told the answer is partial."""
AGGREGATES_NOTE = (
    "Observations of a device linked to you are sealed, and sealed values are not aggregated: "
    "windows are shown only when they start after the device was last changed (its link to "
    "you), never from before."
)


class SubjectAccessUnavailable(Unavailable):
    """A part a resident's read needs is not served by this process, or failed: try again."""

    title = "Service unavailable"


def subject_access_activity_id(base_uri: str) -> str:
    """The activity id a resident's own reads are logged under."""
    return f"{base_uri}{SUBJECT_ACCESS}"


class LogSink(Protocol):
    """Where processing-log records go (``ProcessingLogWriter``)."""

    async def write(self, records: Sequence[ProcessingLogRecord]) -> None: ...


class KeyLookup(Protocol):
    """The data keys by id (``SubjectKeyView``)."""

    def by_id(self, key_id: str) -> SubjectKey | None: ...


@dataclass(slots=True)
class Opened:
    """The resident's observations of one read, newest first, and what could not be shown."""

    items: list[dict[str, Any]] = field(default_factory=list)
    erased: int = 0
    """Their records whose data key is erased: the values are gone for good."""
    unreadable: int = 0
    """Their records whose sealed value did not open (altered, or not JSON)."""
    complete: bool = True

    def public(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "erased": self.erased,
            "unreadable": self.unreadable,
            "complete": self.complete,
        }


def device_doc(entry: DeviceEntry) -> dict[str, Any]:
    """A linked device as its resident sees it (no keys, no network binding)."""
    return {
        "id": entry.id,
        "name": entry.name,
        "type": entry.type,
        "dev_eui": entry.dev_eui,
        "area": entry.area,
        "tags": list(entry.tags),
        "active": entry.active,
        "latitude": entry.latitude,
        "longitude": entry.longitude,
        "altitude": entry.altitude,
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
    }


def open_own(
    value: bytes, resident: Resident, key_of: Callable[[str], SubjectKey | None], into: Opened
) -> None:
    """Add the observation in ``value`` to ``into`` if it is the resident's, its sealed fields
    opened; count it as erased or unreadable if they do not open; ignore it if it is not
    theirs (another tenant, another subject, no subject)."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return
    if not isinstance(doc, dict):
        return
    if doc.get("tenant") != resident.tenant or doc.get("data_subject") != resident.subject:
        return
    sealed = doc.get("sealed")
    if sealed is not None:
        try:
            fields = open_sealed(
                sealed if isinstance(sealed, str) else "",
                tenant=resident.tenant,
                subject=resident.subject,
                event_id=str(doc.get("event_id")),
                key_of=key_of,
            )
        except KeyErased:
            into.erased += 1
            return
        except Unsealable:
            into.unreadable += 1
            return
        for name in SEALED_FIELDS:
            doc[name] = fields.get(name)
    into.items.append({name: doc.get(name) for name in ITEM_FIELDS})


class SubjectAccess:
    """The resident's reads over the registry's view and, where given, the observations topic,
    the data keys, the aggregates and the processing log. A read that needs a part this process
    lacks is Unavailable (503), never answered without it."""

    def __init__(
        self,
        registry_view: RegistryView,
        *,
        base_uri: str,
        observations: ObservationSource | None = None,
        keys: KeyLookup | None = None,
        log: LogSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry_view
        self._activity_id = subject_access_activity_id(base_uri)
        self._observations = observations
        self._keys = keys
        self._log = log
        self._clock = clock

    @property
    def activity_id(self) -> str:
        return self._activity_id

    def devices(self, resident: Resident) -> list[DeviceEntry]:
        """The tenant's devices linked to the resident now, in id order."""
        return self._registry.devices_of_subject(resident.tenant, resident.subject)

    def _chosen(self, resident: Resident, device_id: str | None) -> tuple[list[DeviceEntry], bool]:
        devices = self.devices(resident)
        if device_id is not None:
            devices = [d for d in devices if d.id == device_id]
            if not devices:
                raise NotFound(f"device {device_id[:64]!r} is not one of yours")
        return devices[:MAX_DEVICES], len(devices) <= MAX_DEVICES

    async def observations(
        self,
        resident: Resident,
        *,
        since_ms: int,
        limit: int,
        device_id: str | None = None,
        trace: TraceContext | None = None,
        action: Action = "read",
    ) -> Opened:
        """The resident's observations from ``since_ms`` on, newest first, at most ``limit``
        (of one device if ``device_id``: NotFound unless it is theirs); logged before it
        returns when it holds any."""
        source, keys = self._observations, self._keys
        if source is None or keys is None or self._log is None:
            raise SubjectAccessUnavailable(
                "observations cannot be read back by this instance of the API"
            )
        started = self._clock()
        devices, whole = self._chosen(resident, device_id)
        opened = Opened(complete=whole)
        for device in devices:
            read = await source.recent(device.id, since_ms=since_ms, limit=limit)
            opened.complete &= read.complete
            for raw in read.records:
                open_own(raw.value, resident, keys.by_id, opened)
        opened.items.sort(key=lambda item: str(item.get("received_at") or ""), reverse=True)
        del opened.items[limit:]
        await self._logged(resident, len(opened.items), action, started, trace)
        return opened

    async def aggregates(
        self,
        resident: Resident,
        source: AggregateSource,
        *,
        from_ms: int,
        to_ms: int,
        device_id: str | None = None,
        trace: TraceContext | None = None,
        action: Action = "read",
    ) -> list[dict[str, Any]]:
        """The windows of the resident's devices overlapping ``[from_ms, to_ms)`` that started
        after each device's last change (see the module); QueryRejected for a range past the
        source's limits, Unavailable when the aggregates cannot be read."""
        if self._log is None:
            raise SubjectAccessUnavailable(
                "the processing log is not written by this instance of the API"
            )
        check_range(from_ms, to_ms, source.limits)
        started = self._clock()
        devices, _ = self._chosen(resident, device_id)
        windows: list[dict[str, Any]] = []
        for device in devices:
            since = int(parse_rfc3339(device.updated_at).timestamp() * 1000)
            query = AggregateQuery(
                group=device_group(device.id), from_ms=max(from_ms, since), to_ms=to_ms
            )
            if query.from_ms >= query.to_ms:
                continue
            try:
                result = await source.read(query)
            except AggregatesUnavailable as exc:
                raise SubjectAccessUnavailable(f"aggregates cannot be read now: {exc}") from None
            for item in result.items:
                if item.get("tenant") != resident.tenant or item.get("device_id") != device.id:
                    continue
                if _ms(item.get("window_start")) < since:
                    continue
                windows.append(dict(item))
        await self._logged(resident, len(windows), action, started, trace)
        return windows

    async def log_export(
        self, resident: Resident, items: int, started: float, trace: TraceContext | None
    ) -> None:
        """Log an export of ``items`` personal items (always, even of none: the resident asked
        for everything, and the log says that they did)."""
        if self._log is None:
            raise SubjectAccessUnavailable(
                "the processing log is not written by this instance of the API"
            )
        await self._write(resident, items, "export", started, trace)

    async def _logged(
        self,
        resident: Resident,
        items: int,
        action: Action,
        started: float,
        trace: TraceContext | None,
    ) -> None:
        # A read that returned nothing personal processed nothing: no record. An export is
        # logged by the export itself (log_export), once for all of its parts.
        if items and action == "read":
            await self._write(resident, items, action, started, trace)

    async def _write(
        self,
        resident: Resident,
        items: int,
        action: Action,
        started: float,
        trace: TraceContext | None,
    ) -> None:
        assert self._log is not None
        record = processing_record(
            name=f"subject-access {action}",
            trace=trace,
            parent_span_id=None,
            started=started,
            ended=self._clock(),
            ok=True,
            activity_id=self._activity_id,
            tenant=resident.tenant,
            subject=resident.subject,
            # The data subject themself, through a resident token or the identity provider.
            recipient=f"data subject ({resident.credential.partition(':')[0]})",
            items=items,
            action=action,
        )
        await self._log.write([record])


def _ms(value: object) -> int:
    """An RFC 3339 time as Unix ms; -1 for anything else (so it counts as before any link)."""
    try:
        return int(parse_rfc3339(value).timestamp() * 1000) if isinstance(value, str) else -1
    except InvalidTimestamp:
        return -1


class MemoryLog:
    """A ``LogSink`` that keeps what it is given (tests)."""

    def __init__(self) -> None:
        self.records: list[ProcessingLogRecord] = []
        self.fail = False

    async def write(self, records: Sequence[ProcessingLogRecord]) -> None:
        if self.fail:
            raise SubjectAccessUnavailable("the processing log is down")
        self.records.extend(records)


__all__ = [
    "AGGREGATES_NOTE",
    "SUBJECT_ACCESS",
    "KeyLookup",
    "LogSink",
    "MemoryLog",
    "Opened",
    "SubjectAccess",
    "SubjectAccessUnavailable",
    "device_doc",
    "open_own",
    "subject_access_activity_id",
]
