"""The register of processing activities (verwerkingsregister): what a city does with personal
data, why, on which legal basis, for how long and who receives it.

An activity belongs to a tenant and is named by a ``slug`` unique in it; its ``id`` is a URI
made from the configured base (``CITYHUB_PRIVACY__REGISTER_BASE_URI``), the tenant and the slug,
so that a processing-log record (Logboek Dataverwerkingen's ``dpl.core.processing_activity_id``)
can point at it. The register is public, so every value is bounded and checked here, and escaped
wherever it is rendered.

Versions: a change never overwrites an activity. Each update appends a version (1, 2, ...) and
keeps the earlier ones in the record; nothing is deleted, an activity ends by its ``valid_to``.
At most ``MAX_VERSIONS`` versions are kept per activity (the record must fit in one Kafka
message); past that an update is refused and the activity must be ended and a new one created.

Legal bases are the six of GDPR article 6(1), named as the issue names them. Stored and accepted
by their short name (``Consent``); a record also says its IRI: the DPV core concept where DPV
has one (``https://w3id.org/dpv#Consent``), and for ``PublicTask`` the DPV GDPR extension's
article 6(1)(e) (``https://w3id.org/dpv/legal/eu/gdpr#A6-1-e``), because DPV core splits that
basis into ``PublicInterest`` and ``OfficialAuthority`` and has no ``PublicTask``.

Pure: pydantic models and functions, no I/O.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from cityhub.schemas.plain_text import lines, one_line
from cityhub.schemas.registry import ID_PATTERN
from cityhub.schemas.timefmt import parse_rfc3339, rfc3339_from_datetime

DPV = "https://w3id.org/dpv#"
DPV_GDPR = "https://w3id.org/dpv/legal/eu/gdpr#"
DEFAULT_BASE_URI = "urn:cityhub:processing-activity:"

MAX_VERSIONS = 32
"""Versions kept per activity (the current one included): a record stays well under 1 MB."""
MAX_CATEGORIES = 32
MAX_RECIPIENTS = 16


class LegalBasis(StrEnum):
    """GDPR article 6(1)'s legal bases, by the names DPV (and the issue) use."""

    CONSENT = "Consent"
    CONTRACT = "Contract"
    LEGAL_OBLIGATION = "LegalObligation"
    VITAL_INTEREST = "VitalInterest"
    PUBLIC_TASK = "PublicTask"
    LEGITIMATE_INTEREST = "LegitimateInterest"

    @property
    def iri(self) -> str:
        """The basis's IRI in DPV (see the module docstring for ``PublicTask``)."""
        if self is LegalBasis.PUBLIC_TASK:
            return f"{DPV_GDPR}A6-1-e"
        return f"{DPV}{self.value}"


def parse_legal_basis(value: object) -> LegalBasis:
    """A legal basis from its short name or its IRI; ValueError naming the accepted ones."""
    if isinstance(value, LegalBasis):
        return value
    if isinstance(value, str):
        for basis in LegalBasis:
            if value in (basis.value, basis.iri):
                return basis
    names = ", ".join(b.value for b in LegalBasis)
    raise ValueError(f"must be one of {names} (or its DPV IRI)")


Slug = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
"""Path-safe, as ids in the registry: lower-case letters, digits, ``.``, ``_``, ``-``; 1-63."""
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Category = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Iri = Annotated[
    str, StringConstraints(min_length=8, max_length=512, pattern=r"^https?://[!#-;=?-~]+$")
]
"""An absolute http(s) IRI of printable ASCII, no spaces, quotes, ``<`` or ``>``."""

# ISO 8601 durations: ``P1Y``, ``P6M``, ``P30D``, ``PT12H``, ``P2W``, ``P1Y2M10DT2H30M``. ASCII
# digits ([0-9], never \d), at most 4 per part; no fractions, no negative durations.
_DURATION = re.compile(
    r"^P(?=[0-9]|T[0-9])(?:[0-9]{1,4}Y)?(?:[0-9]{1,4}M)?(?:[0-9]{1,4}W)?(?:[0-9]{1,4}D)?"
    r"(?:T(?=[0-9])(?:[0-9]{1,4}H)?(?:[0-9]{1,4}M)?(?:[0-9]{1,4}S)?)?$"
)


def check_duration(value: str) -> str:
    """``value`` if it is an ISO 8601 duration (``P30D``, ``P1Y6M``, ``PT12H``) with whole
    numbers of at most 4 digits per part; ValueError otherwise."""
    if len(value) > 40 or not _DURATION.match(value):
        raise ValueError("must be an ISO 8601 duration such as P30D, P1Y6M or PT12H")
    return value


def normalise_time(value: str) -> str:
    """An RFC 3339 time through the project's time gate, written as cityhub writes times."""
    if len(value) > 64:
        raise ValueError("must be an RFC 3339 timestamp")
    return rfc3339_from_datetime(parse_rfc3339(value))


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ActivityFields(_Spec):
    """What an operator states about an activity (every version holds these)."""

    name: Text
    purpose: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    """The purpose in words a resident understands (lines allowed)."""
    purpose_iri: Iri | None = None
    """Optionally the purpose as a DPV (or other vocabulary's) IRI."""
    legal_basis: LegalBasis
    personal_data_categories: list[Category] = Field(min_length=1, max_length=MAX_CATEGORIES)
    retention: str
    """How long the data is kept: an ISO 8601 duration (``P30D``)."""
    controller: Text
    recipients: list[Text] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    valid_from: str | None = None
    """RFC 3339; None: from the moment it is recorded."""
    valid_to: str | None = None
    """RFC 3339; None: until ended."""

    @field_validator("legal_basis", mode="before")
    @classmethod
    def _legal_basis(cls, value: object) -> LegalBasis:
        return parse_legal_basis(value)

    @field_validator("name", "controller")
    @classmethod
    def _line(cls, value: str) -> str:
        return one_line(value)

    @field_validator("purpose")
    @classmethod
    def _purpose(cls, value: str) -> str:
        return lines(value)

    @field_validator("personal_data_categories", "recipients")
    @classmethod
    def _lines(cls, values: list[str]) -> list[str]:
        for value in values:
            one_line(value)
        if len(set(values)) != len(values):
            raise ValueError("must not repeat an entry")
        return values

    @field_validator("retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        return check_duration(value)

    @field_validator("valid_from")
    @classmethod
    def _from(cls, value: str | None) -> str | None:
        return None if value is None else normalise_time(value)

    @field_validator("valid_to")
    @classmethod
    def _to(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        end = normalise_time(value)
        start = info.data.get("valid_from")
        if start is not None and parse_rfc3339(end) <= parse_rfc3339(start):
            raise ValueError("must be after valid_from")
        return end


class ActivitySpec(ActivityFields):
    """A new activity: its slug and its first version."""

    slug: Slug


class ActivityUpdate(ActivityFields):
    """A new version of an activity: the whole statement again (what is left out is not
    kept). ``base_version``, when given, must be the current version (409 otherwise): two
    editors cannot overwrite each other unnoticed."""

    base_version: int | None = Field(default=None, ge=1)


class ActivityEnd(_Spec):
    """Ending an activity: a version that is the current one with ``valid_to`` set."""

    valid_to: str | None = None
    """RFC 3339; None: now."""
    base_version: int | None = Field(default=None, ge=1)

    @field_validator("valid_to")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        return None if value is None else normalise_time(value)


class ActivityVersion(BaseModel):
    """One version of an activity, as recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    name: str
    purpose: str
    purpose_iri: str | None = None
    legal_basis: LegalBasis
    personal_data_categories: list[str]
    retention: str
    controller: str
    recipients: list[str]
    valid_from: str
    valid_to: str | None = None
    recorded_at: str

    def valid_at(self, when: datetime) -> bool:
        """Whether the activity is valid at ``when``: from ``valid_from``, before ``valid_to``."""
        if when < parse_rfc3339(self.valid_from):
            return False
        return self.valid_to is None or when < parse_rfc3339(self.valid_to)

    def public(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json")
        doc["legal_basis_iri"] = self.legal_basis.iri
        return doc


class ProcessingActivity(BaseModel):
    """An activity and every version of it, oldest first: the record on the register's topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["processing_activity"] = "processing_activity"
    id: str
    tenant: str
    slug: str
    created_at: str
    versions: list[ActivityVersion] = Field(min_length=1, max_length=MAX_VERSIONS)

    @property
    def current(self) -> ActivityVersion:
        return self.versions[-1]

    def public(self, *, history: bool = True) -> dict[str, Any]:
        """The activity as the API answers: the current version's fields at the top, and
        (``history``) the earlier versions, newest first."""
        doc: dict[str, Any] = {
            "id": self.id,
            "tenant": self.tenant,
            "slug": self.slug,
            "created_at": self.created_at,
            **self.current.public(),
        }
        if history:
            doc["earlier_versions"] = [v.public() for v in reversed(self.versions[:-1])]
        return doc


def check_base_uri(value: str) -> str:
    """A register base URI: absolute (``urn:`` or ``http(s)://``), printable ASCII without
    spaces, ending in ``:`` or ``/`` so that the tenant and slug can follow."""
    if not re.fullmatch(r"(?:urn:[a-z0-9][a-z0-9-]{0,31}:|https?://)[!#-;=?-~]*[:/]", value):
        raise ValueError(
            "must be a urn: or http(s):// URI ending in ':' or '/', e.g. "
            "urn:cityhub:processing-activity: or https://data.example.nl/verwerkingsregister/"
        )
    if len(value) > 256:
        raise ValueError("must be at most 256 characters")
    return value


def activity_uri(base: str, tenant: str, slug: str) -> str:
    """The activity's id: ``<base><tenant>:<slug>`` after a URN base (ending ``:``),
    ``<base><tenant>/<slug>`` after a URL base (ending ``/``)."""
    separator = ":" if base.endswith(":") else "/"
    return f"{base}{tenant}{separator}{slug}"


def record_key(record: ProcessingActivity) -> str:
    """The compacted topic's key: ``processing_activity/<tenant>/<slug>``."""
    return f"processing_activity/{record.tenant}/{record.slug}"


def make_version(spec: ActivityFields, *, version: int, now: str) -> ActivityVersion:
    """A version recording ``spec`` at ``now`` (``valid_from`` defaults to ``now``);
    ValueError if ``valid_to`` is not after ``valid_from``."""
    valid_from = spec.valid_from or now
    if spec.valid_to is not None and parse_rfc3339(spec.valid_to) <= parse_rfc3339(valid_from):
        raise ValueError("valid_to must be after valid_from")
    return ActivityVersion(
        version=version,
        name=spec.name,
        purpose=spec.purpose,
        purpose_iri=spec.purpose_iri,
        legal_basis=spec.legal_basis,
        personal_data_categories=list(spec.personal_data_categories),
        retention=spec.retention,
        controller=spec.controller,
        recipients=list(spec.recipients),
        valid_from=valid_from,
        valid_to=spec.valid_to,
        recorded_at=now,
    )
