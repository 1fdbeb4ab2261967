"""Data alliances: offers and agreements between tenants (issue 13).

A tenant (the *provider*) describes a dataset it is willing to share: an ``Offer``, a named
selection of its devices and quantities, the kinds of items (observations, aggregates), the most
restrictive classification it covers, its licence, and the purposes it may be used for. Another
tenant (the *consumer*) asks for access to it for one of those purposes and a period: an
``Agreement`` in state ``requested``; the provider approves or rejects it; either side may
revoke an approved one. An agreement is *active* while it is approved and the clock is inside
its period; an active agreement lets the consumer's subscriptions and reads see exactly the
offered items (``cityhub.streams.sharing.grants``).

Pure: models and the rules that need no view. The records live in two compacted topics
(``Topics.offers``, ``Topics.agreements``), keyed ``offer/<tenant>/<id>`` and
``agreement/<id>``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from cityhub.schemas.plain_text import Lines, OneLine
from cityhub.schemas.quantities import QuantityName
from cityhub.schemas.registry import Area, Classification, Id, Name, Tag
from cityhub.schemas.timefmt import parse_rfc3339

MAX_SELECTED = 1000
"""Most values one criterion of a selection may list (device ids included)."""
MAX_PURPOSES = 16
MAX_AGREEMENT_DAYS = 5 * 366
"""The longest period one agreement may run; a longer alliance renews it."""

QUANTITY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
Quantity = QuantityName
"""A quantity an offer selects (an alias as the catalogue's name: what observations carry)."""
Description = Annotated[
    str, StringConstraints(min_length=1, max_length=4000, strip_whitespace=True), Lines
]
Purpose = Annotated[
    str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True), OneLine
]
"""A stated public goal, in words (``air quality policy``) or as an IRI (a DPV purpose)."""
Reason = Annotated[str, StringConstraints(max_length=1000, strip_whitespace=True), Lines]


class Licence(StrEnum):
    """The licences data may be shared and published under, as SPDX identifiers."""

    CC0_1_0 = "CC0-1.0"
    CC_BY_4_0 = "CC-BY-4.0"

    @property
    def uri(self) -> str:
        """The licence's canonical URI (what DCAT's ``dct:license`` points to)."""
        return LICENCE_URIS[self]


LICENCE_URIS: dict[Licence, str] = {
    Licence.CC0_1_0: "http://creativecommons.org/publicdomain/zero/1.0/",
    Licence.CC_BY_4_0: "http://creativecommons.org/licenses/by/4.0/",
}


class ItemKind(StrEnum):
    """What an offer shares: a device's observations, window aggregates, or both."""

    OBSERVATIONS = "observations"
    AGGREGATES = "aggregates"


class AgreementState(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    REVOKED = "revoked"


CLASSIFICATION_RANK: dict[str, int] = {
    Classification.PUBLIC: 0,
    Classification.INTERNAL: 1,
    Classification.PERSONAL: 2,
}
"""How restrictive a classification is. An offer of ``internal`` covers items classified
``public`` or ``internal``; an item without a classification (or with one cityhub does not
know) is covered by no offer."""


def classification_covered(offered: str, item_classification: str | None) -> bool:
    """Whether an offer that carries ``offered`` covers an item of ``item_classification``."""
    if item_classification is None:
        return False
    rank = CLASSIFICATION_RANK.get(item_classification)
    return rank is not None and rank <= CLASSIFICATION_RANK[offered]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Selection(_Spec):
    """Which of the provider's items an offer covers. Each criterion that lists values must
    match (a value of a list matches: OR within a criterion, AND between them); an empty list
    does not restrict. ``device_types``, ``tags`` and ``device_ids`` select devices: an area's
    aggregates (which belong to no single device) are covered only when none of the three is
    given. At least one of ``device_types``, ``areas``, ``tags``, ``device_ids`` must be given:
    an offer never shares "everything" by omission."""

    device_types: list[Id] = Field(default_factory=list, max_length=MAX_SELECTED)
    areas: list[Area] = Field(default_factory=list, max_length=MAX_SELECTED)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_SELECTED)
    device_ids: list[Id] = Field(default_factory=list, max_length=MAX_SELECTED)
    quantities: list[Quantity] = Field(default_factory=list, max_length=MAX_SELECTED)

    @model_validator(mode="after")
    def _selects_something(self) -> Selection:
        if not (self.device_types or self.areas or self.tags or self.device_ids):
            raise ValueError(
                "a selection needs at least one of device_types, areas, tags or device_ids"
            )
        return self

    @property
    def selects_devices(self) -> bool:
        """Whether a device-level criterion is given (then no area aggregate is covered)."""
        return bool(self.device_types or self.tags or self.device_ids)


class OfferSpec(_Spec):
    """What an operator of the providing tenant sends to create or replace an offer."""

    id: Id
    title: Name
    description: Description
    selection: Selection
    kinds: list[ItemKind] = Field(min_length=1, max_length=2)
    classification: Classification = Classification.INTERNAL
    """The most restrictive classification the offer covers. ``personal`` only with
    ``processing_activity``: a valid activity of the provider's register that names its
    recipients (the consumer must be one of them when an agreement is approved)."""
    processing_activity: Id | None = None
    """The slug of the provider's processing activity under which personal items are shared;
    required for (and only allowed with) ``classification: personal``."""
    licence: Licence = Licence.CC_BY_4_0
    purposes: list[Purpose] = Field(min_length=1, max_length=MAX_PURPOSES)
    listed: bool = False
    """Whether the public catalogue lists the offer (its metadata, never its data)."""
    contact_email: (
        Annotated[str, StringConstraints(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}$"), OneLine] | None
    ) = None
    """The provider's contact point for the offer (the catalogue's ``dcat:contactPoint``)."""
    keywords: list[Annotated[str, StringConstraints(min_length=1, max_length=64), OneLine]] = Field(
        default_factory=list, max_length=32
    )

    @field_validator("kinds")
    @classmethod
    def _distinct_kinds(cls, value: list[ItemKind]) -> list[ItemKind]:
        if len(set(value)) != len(value):
            raise ValueError("kinds lists each kind at most once")
        return value

    @model_validator(mode="after")
    def _personal_needs_an_activity(self) -> OfferSpec:
        personal = self.classification is Classification.PERSONAL
        if personal and self.processing_activity is None:
            raise ValueError(
                "a personal offer needs processing_activity: the provider's registered "
                "activity under which it shares personal data"
            )
        if not personal and self.processing_activity is not None:
            raise ValueError("processing_activity belongs to personal offers only")
        return self


class Offer(BaseModel):
    """An offer as stored: the spec, its provider and its times. ``withdrawn_at`` set: no new
    agreement may be made for it; agreements already approved run on until they end or are
    revoked (withdrawing an offer is not revoking its agreements)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["offer"] = "offer"
    tenant: str
    spec: OfferSpec
    created_at: str
    updated_at: str
    withdrawn_at: str | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def ref(self) -> str:
        """``<tenant>/<id>``: how agreements and data requests name the offer."""
        return f"{self.tenant}/{self.spec.id}"

    def public(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "ref": self.ref,
            **self.spec.model_dump(mode="json"),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "withdrawn_at": self.withdrawn_at,
        }


OFFER_REF_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62})/[a-z0-9](?:[a-z0-9._-]{0,62})$"


class AgreementRequest(_Spec):
    """What the consuming tenant sends to ask for access to an offer."""

    offer: Annotated[str, StringConstraints(pattern=OFFER_REF_PATTERN)]
    """``<provider tenant>/<offer id>``."""
    purpose: Purpose
    """One of the offer's purposes, as the offer spells it."""
    starts_at: str | None = None
    """RFC 3339; None: from approval."""
    ends_at: str
    """RFC 3339; at most ``MAX_AGREEMENT_DAYS`` after the start."""
    note: Reason | None = None

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _instant(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rfc3339(value)
        return value

    @model_validator(mode="after")
    def _period(self) -> AgreementRequest:
        end = parse_rfc3339(self.ends_at)
        if self.starts_at is not None:
            start = parse_rfc3339(self.starts_at)
            if end <= start:
                raise ValueError("ends_at must be after starts_at")
            if end - start > timedelta(days=MAX_AGREEMENT_DAYS):
                raise ValueError(f"an agreement runs at most {MAX_AGREEMENT_DAYS} days")
        return self


class AgreementDecision(_Spec):
    """The body of approve, reject and revoke: an optional reason, shown to both parties."""

    reason: Reason | None = None


class AgreementEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    state: AgreementState
    at: str
    by_tenant: str
    reason: str | None = None


class Agreement(BaseModel):
    """An agreement as stored. The offer's terms are copied in at the request (``offer_spec``)
    and again at approval, so that what was agreed is what is enforced even if the provider
    later changes the offer: a changed offer needs a new agreement to widen what is shared."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["agreement"] = "agreement"
    id: str
    provider: str
    consumer: str
    offer_id: str
    offer_spec: OfferSpec
    purpose: str
    starts_at: str | None
    ends_at: str
    state: AgreementState
    requested_at: str
    history: list[AgreementEvent] = Field(min_length=1)
    note: str | None = None

    def active_at(self, when: datetime) -> bool:
        """Approved, started (from its start, or from approval without one) and not ended."""
        if self.state is not AgreementState.APPROVED:
            return False
        start = self.starts_at or self.approved_at
        if start is not None and when < parse_rfc3339(start):
            return False
        return when < parse_rfc3339(self.ends_at)

    @property
    def approved_at(self) -> str | None:
        for event in reversed(self.history):
            if event.state is AgreementState.APPROVED:
                return event.at
        return None

    def status_at(self, when: datetime) -> str:
        """The state a person reads: ``expired`` for an approved one past its end,
        ``scheduled`` for an approved one not started yet, else the state."""
        if self.state is AgreementState.APPROVED:
            if when >= parse_rfc3339(self.ends_at):
                return "expired"
            if not self.active_at(when):
                return "scheduled"
        return self.state.value

    def public(self, when: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "consumer": self.consumer,
            "offer": f"{self.provider}/{self.offer_id}",
            "offer_terms": self.offer_spec.model_dump(mode="json"),
            "purpose": self.purpose,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "state": self.state.value,
            "status": self.status_at(when),
            "active": self.active_at(when),
            "requested_at": self.requested_at,
            "note": self.note,
            "history": [event.model_dump(mode="json") for event in self.history],
        }


class AgreementUsage(BaseModel):
    """One counting process's cumulative uses under one agreement: the value on the
    ``agreement-usage`` topic, keyed ``usage/<agreement id>/<process>``. A process writes its
    totals since it started (a restarted process is a new ``process``), so the uses under an
    agreement are the sum over its records."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agreement: str = Field(min_length=1, max_length=200)
    process: str = Field(min_length=1, max_length=200)
    delivered: int = Field(ge=0)
    read: int = Field(ge=0)
    at: str

    @property
    def key(self) -> str:
        return f"usage/{self.agreement}/{self.process}"
