"""The open-data point: what the publisher needs of one observation, and which observations
may become one.

An observation becomes a point of an open dataset when it has an area, a numeric value, a
quantity of the dataset, and a device whose data may be published: classification ``public``
or ``internal``; ``personal`` only for a dataset with ``include_personal`` and only while the
device's tenant holds a valid processing activity ``open_data.personal_activity`` in its
register; never a sealed observation (a data subject's values, which only a delivery that
passed the purpose check may open). Anything else is skipped and counted by reason.

A point names its device and its data subject only by keys (BLAKE2b-128 of the tenant and the
id, under a personalisation of their own), so that the internal points topic carries no raw id;
the keys are the same in every process and after every restart (they have to be: the publisher
counts distinct devices with them, and a salt that changed would count one device twice). They
are pseudonyms, not anonymity: the published record never carries them. Each key starts with
its tenant's pseudonym (``<tenant key>.<key>``): the threshold must know whose devices
contributed, or one tenant's own devices could make up another's ``k`` (windows.py). A
personal device without a data subject is its own subject (conservative: each such device
counts as one person). Two ids whose keys collided would count as one device: the threshold
errs on the safe side.

Pure: no I/O, no clock (the caller passes ``now``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple, Protocol

import orjson

from cityhub.schemas.open_data import OpenDataSettings
from cityhub.schemas.processing import ProcessingActivity
from cityhub.streams.aggregation.points import epoch_us
from cityhub.streams.aggregation.window_stats import number

PUBLISHABLE = frozenset({"public", "internal"})
"""Classifications whose devices contribute to every dataset."""
PERSONAL = "personal"

_DEVICE_PERSON = b"cityhub-od-dev"
_SUBJECT_PERSON = b"cityhub-od-subj"
_TENANT_PERSON = b"cityhub-od-tnt"
TENANT_SEPARATOR = "."
DEVICE_AS_SUBJECT = "device:"
"""In front of the device key that stands for the subject of a personal device without one."""


class Skip(StrEnum):
    """Why an observation gave no point (a metric label: ``reason``)."""

    INVALID = "invalid"
    """Not an observation (the normaliser writes only valid ones: somebody else's record)."""
    SEALED = "sealed"
    NO_AREA = "no_area"
    NO_DATASET = "no_dataset"
    """Its quantity is in no open dataset (most observations)."""
    NON_NUMERIC = "non_numeric"
    FLAGGED = "flagged"
    """It carries a quality flag (docs/quality.md) and ``open_data.exclude_flagged`` is on: an
    implausible reading stays out of what the city publishes."""
    NOT_ELIGIBLE = "not_eligible"
    """Its device is unregistered, unclassified or of a classification that is never published."""
    PERSONAL = "personal"
    """A personal device's, and no dataset of its quantity includes personal devices."""
    NO_ACTIVITY = "no_activity"
    """A personal device's, for a dataset that includes them, but its tenant holds no valid
    ``personal_activity``."""
    FUTURE = "future"
    """Claims a time too far ahead of the clock (it would push the watermark ahead)."""
    LATE = "late"
    """Reached the publisher after its window closed (counted by the publisher)."""
    UNKNOWN_DATASET = "unknown_dataset"
    """A point of a dataset the publisher's settings no longer have."""


class Activities(Protocol):
    """The register's view (``cityhub.streams.privacy.view.RegisterView``)."""

    def get(self, tenant: str, slug: str) -> ProcessingActivity | None: ...


class OpenPoint(NamedTuple):
    """One observation as the open-data publisher takes it (``Topics.open_data_points``)."""

    dataset: str
    area: str
    quantity: str
    unit: str | None
    value: float
    observed_us: int
    device: str
    """The device's key (``device_key``), never its id."""
    subject: str
    """The data subject's key (``subject_key``); the device's own for a device without one."""
    personal: bool

    def to_json(self) -> bytes:
        return orjson.dumps(self._asdict())

    @classmethod
    def from_json(cls, raw: bytes) -> OpenPoint:
        """Raises ``ValueError`` (``orjson.JSONDecodeError`` is one), ``KeyError`` or
        ``TypeError`` for anything that is not a point."""
        doc = orjson.loads(raw)
        value = number(doc["value"])
        if value is None:
            raise ValueError("the value of a point is a finite number")
        return cls(
            str(doc["dataset"]),
            str(doc["area"]),
            str(doc["quantity"]),
            None if doc["unit"] is None else str(doc["unit"]),
            value,
            int(doc["observed_us"]),
            str(doc["device"]),
            str(doc["subject"]),
            bool(doc["personal"]),
        )

    @property
    def kafka_key(self) -> bytes:
        return point_key(self.dataset, self.area)


def point_key(dataset: str, area: str) -> bytes:
    """The key of a point on ``Topics.open_data_points``: ``<dataset>/<area>``."""
    return f"{dataset}/{area}".encode()


def tenant_key(tenant: str) -> str:
    """The pseudonym of a tenant, in front of its devices' and subjects' keys."""
    return hashlib.blake2b(tenant.encode(), digest_size=8, person=_TENANT_PERSON).hexdigest()


def device_key(tenant: str, device_id: str) -> str:
    """The pseudonym of a tenant's device on the points topic (see the module docstring):
    ``<tenant key>.<device key>``."""
    raw = f"{len(tenant)}:{tenant}/{device_id}".encode()
    own = hashlib.blake2b(raw, digest_size=16, person=_DEVICE_PERSON).hexdigest()
    return f"{tenant_key(tenant)}{TENANT_SEPARATOR}{own}"


def subject_key(tenant: str, subject: str) -> str:
    """The pseudonym of a tenant's data subject on the points topic:
    ``<tenant key>.<subject key>``."""
    raw = f"{len(tenant)}:{tenant}/{subject}".encode()
    own = hashlib.blake2b(raw, digest_size=16, person=_SUBJECT_PERSON).hexdigest()
    return f"{tenant_key(tenant)}{TENANT_SEPARATOR}{own}"


def tenant_of(member: str) -> str:
    """The tenant key a device or subject key starts with ("" for a key of a point written
    before keys named their tenant: all of those count as one unknown tenant's)."""
    head, separator, _ = member.removeprefix(DEVICE_AS_SUBJECT).partition(TENANT_SEPARATOR)
    return head if separator else ""


@dataclass(frozen=True, slots=True)
class PointRules:
    """Which datasets take which quantities, and who may contribute (from the settings)."""

    datasets_of: Mapping[str, tuple[tuple[str, bool], ...]]
    """quantity -> the (dataset id, include_personal) of every dataset that has it."""
    personal_activity: str
    max_future_us: int
    exclude_flagged: bool = True

    @classmethod
    def of(cls, settings: OpenDataSettings, max_future_seconds: int) -> PointRules:
        datasets_of: dict[str, list[tuple[str, bool]]] = {}
        for dataset in settings.datasets:
            for quantity in dataset.quantities:
                datasets_of.setdefault(quantity, []).append((dataset.id, dataset.include_personal))
        return cls(
            {q: tuple(ds) for q, ds in datasets_of.items()},
            settings.personal_activity,
            max_future_seconds * 1_000_000,
            settings.exclude_flagged,
        )


def activity_valid(activities: Activities, tenant: str, slug: str, now: datetime) -> bool:
    """Whether ``tenant``'s register holds activity ``slug``, valid at ``now``."""
    activity = activities.get(tenant, slug)
    return activity is not None and activity.current.valid_at(now)


def points_of(
    doc: object,
    rules: PointRules,
    activities: Activities,
    now: datetime,
    now_us: int,
) -> tuple[list[OpenPoint], Skip | None, int | None]:
    """The points of one decoded observation (one per dataset that takes it), why it gave none
    (None when it gave some), and its event time in µs when it has a valid one (for the
    watermark: every observation of the partition moves it, published or not, unless it claims
    a time more than ``max_future`` ahead of ``now_us``)."""
    if not isinstance(doc, Mapping):
        return [], Skip.INVALID, None
    try:
        observed_us = epoch_us(doc["observed_at"])
        quantity = doc["quantity"]
        device_id = doc["device_id"]
    except (KeyError, TypeError, ValueError):
        return [], Skip.INVALID, None
    if not isinstance(quantity, str) or not isinstance(device_id, str):
        return [], Skip.INVALID, None
    if observed_us > now_us + rules.max_future_us:
        return [], Skip.FUTURE, None
    if "sealed" in doc:
        return [], Skip.SEALED, observed_us
    area = doc.get("area")
    if not isinstance(area, str) or not area:
        return [], Skip.NO_AREA, observed_us
    datasets = rules.datasets_of.get(quantity)
    if not datasets:
        return [], Skip.NO_DATASET, observed_us
    value = number(doc.get("value"))
    if value is None:
        return [], Skip.NON_NUMERIC, observed_us
    tenant, classification = doc.get("tenant"), doc.get("classification")
    if not isinstance(tenant, str) or not (
        classification in PUBLISHABLE or classification == PERSONAL
    ):
        return [], Skip.NOT_ELIGIBLE, observed_us
    personal = classification == PERSONAL
    if personal:
        datasets = tuple(d for d in datasets if d[1])
        if not datasets:
            return [], Skip.PERSONAL, observed_us
        if not activity_valid(activities, tenant, rules.personal_activity, now):
            return [], Skip.NO_ACTIVITY, observed_us
    # After the reasons it could never count: a flag is about this reading only.
    if rules.exclude_flagged and doc.get("quality"):
        return [], Skip.FLAGGED, observed_us
    device = device_key(tenant, device_id)
    subject_id = doc.get("data_subject")
    # A device without a data subject is its own subject; the keys differ in kind (a device
    # key is never a subject key), so a device never passes for a person of the register.
    subject = (
        subject_key(tenant, subject_id)
        if isinstance(subject_id, str) and subject_id
        else DEVICE_AS_SUBJECT + device
    )
    unit = doc.get("unit")
    unit = unit if isinstance(unit, str) else None
    points = [
        OpenPoint(dataset, area, quantity, unit, value, observed_us, device, subject, personal)
        for dataset, _ in datasets
    ]
    return points, None, observed_us
