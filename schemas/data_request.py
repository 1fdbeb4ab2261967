"""Data requests (issue 13, demand meets supply): anyone asks for data that is not published.

Anyone, without a key, files a ``DataRequestSpec`` (what data, what for, optionally where and
which quantities, optionally a contact); it is stored as a ``DataRequest`` with status ``open``
and listed publicly. A tenant answers it with one of its offers or with a published open dataset
(an ``Answer`` that links to it): the request becomes ``answered``. An admin may decline it
(spam, out of scope) with a reason: it becomes ``declined``, its text is no longer shown, and
its contact is erased.

The contact (an e-mail address or a name) is personal data: it is used only to tell the
requester about answers, is shown to admins only, and is erased when the request is declined,
``CONTACT_DAYS_AFTER_ANSWER`` days after the first answer, and ``CONTACT_DAYS_OPEN`` days after
filing whatever happens (``contact_expired``).

Every field is bounded (lengths, counts) and refuses control characters, line and paragraph
separators and bidirectional overrides (the multi-line ``data`` and ``purpose`` take line
breaks and tabs): text is stored as given (trimmed) and never interpreted, only served as JSON.

Pure: models and rules; the store, view and service are ``cityhub.streams.opendata.requests*``.
The records live in the compacted topic ``Topics.data_requests``, keyed ``data_request/<id>``.
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
    model_validator,
)

from cityhub.schemas.plain_text import Lines, OneLine
from cityhub.schemas.registry import ID_PATTERN
from cityhub.schemas.sharing import OFFER_REF_PATTERN, QUANTITY_PATTERN
from cityhub.schemas.timefmt import parse_rfc3339

MAX_REQUEST_BYTES = 8 * 1024
"""The largest body a keyless filing may send (413 past it); every field's limit fits in it."""
MAX_OPEN_REQUESTS = 10_000
"""The most requests open at once (a flood from many addresses fills no more than this)."""
MAX_ANSWERS = 20
"""The most answers one request collects."""
MAX_QUANTITIES = 16
CONTACT_DAYS_AFTER_ANSWER = 30
"""Days a contact is kept after a request's first answer: time to tell the requester."""
CONTACT_DAYS_OPEN = 365
"""Days a contact is kept after filing, whatever the request's status."""

_LANGUAGE = r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,4}$"


def _length(max_length: int) -> StringConstraints:
    return StringConstraints(min_length=1, max_length=max_length, strip_whitespace=True)


Title = Annotated[str, _length(200), OneLine]
Contact = Annotated[str, _length(254), OneLine]
"""An e-mail address or a name (personal data): 254 is the longest e-mail address."""
AreaText = Annotated[str, _length(200), OneLine]
"""Where, in words or as the hub's area ids (``centrum``, ``near the station``)."""
DataText = Annotated[str, _length(3000), Lines]
PurposeText = Annotated[str, _length(2000), Lines]
NoteText = Annotated[str, _length(1000), Lines]
ReasonText = Annotated[str, _length(500), OneLine]
Language = Annotated[str, StringConstraints(max_length=35, pattern=_LANGUAGE)]


class DataRequestStatus(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"
    DECLINED = "declined"


class AnswerKind(StrEnum):
    OFFER = "offer"
    DATASET = "dataset"


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataRequestSpec(_Body):
    """What anyone sends to file a request (``POST /open/data-requests``)."""

    title: Title
    """A short name for the data asked for."""
    data: DataText
    """What data: which measurements, where, how often, how far back."""
    purpose: PurposeText
    """What for: the use the requester has in mind."""
    area: AreaText | None = None
    quantities: tuple[Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN)], ...] = Field(
        default=(), max_length=MAX_QUANTITIES
    )
    """The hub's quantity names (``pm2_5``, ``laeq``), if the requester knows them."""
    contact: Contact | None = None
    """Personal data: an e-mail address or a name to tell about answers; admins only see it."""
    language: Language = "nl"
    """The language the request is written in (BCP 47)."""

    @model_validator(mode="after")
    def _distinct(self) -> DataRequestSpec:
        if len(set(self.quantities)) != len(self.quantities):
            raise ValueError("quantities lists each quantity once")
        return self


class AnswerSpec(_Body):
    """A tenant's answer: exactly one of ``offer`` (its own, ``<tenant>/<offer id>``) and
    ``dataset`` (a published open dataset's id), and an optional note."""

    offer: Annotated[str, StringConstraints(pattern=OFFER_REF_PATTERN)] | None = None
    dataset: Annotated[str, StringConstraints(pattern=ID_PATTERN)] | None = None
    note: NoteText | None = None

    @model_validator(mode="after")
    def _one_answer(self) -> AnswerSpec:
        if (self.offer is None) == (self.dataset is None):
            raise ValueError("give exactly one of offer and dataset")
        return self

    @property
    def kind(self) -> AnswerKind:
        return AnswerKind.OFFER if self.offer is not None else AnswerKind.DATASET

    @property
    def ref(self) -> str:
        ref = self.offer if self.offer is not None else self.dataset
        assert ref is not None  # the validator saw to it
        return ref


class DeclineSpec(_Body):
    """An admin's decline: the reason, shown publicly (``spam``, ``out of scope``)."""

    reason: ReasonText


class Answer(BaseModel):
    """One answer as stored and shown: what answers the request and where to find it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AnswerKind
    ref: str
    """The offer's ``<tenant>/<id>`` or the dataset's id."""
    tenant: str
    """The tenant that answered."""
    note: str | None = None
    at: str
    url: str
    """Where the answer is: the offer's or the dataset's address in the API."""


class DataRequest(BaseModel):
    """A request as stored in ``Topics.data_requests``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["data_request"] = "data_request"
    id: Annotated[str, StringConstraints(pattern=ID_PATTERN)]
    status: DataRequestStatus = DataRequestStatus.OPEN
    spec: DataRequestSpec
    created_at: str
    updated_at: str
    answers: tuple[Answer, ...] = Field(default=(), max_length=MAX_ANSWERS)
    declined_at: str | None = None
    decline_reason: str | None = None
    contact_erased_at: str | None = None
    """When the contact was erased (declined, or its retention ran out); None while kept."""

    @property
    def contact(self) -> str | None:
        return self.spec.contact

    def public(self) -> dict[str, Any]:
        """What anyone may see: never the contact; of a declined request only its status,
        dates and reason (its text may be the spam it was declined for)."""
        doc: dict[str, Any] = {"id": self.id, "status": self.status.value}
        if self.status is not DataRequestStatus.DECLINED:
            doc.update(self.spec.model_dump(mode="json", exclude={"contact"}))
        doc.update(
            created_at=self.created_at,
            updated_at=self.updated_at,
            answers=[a.model_dump(mode="json") for a in self.answers],
        )
        if self.status is DataRequestStatus.DECLINED:
            doc.update(declined_at=self.declined_at, decline_reason=self.decline_reason)
        return doc

    def admin(self) -> dict[str, Any]:
        """Everything, the contact and a declined request's text included (admin keys only)."""
        doc = self.public()
        doc.update(self.spec.model_dump(mode="json"))
        doc["contact_erased_at"] = self.contact_erased_at
        return doc


def record_key(request: DataRequest) -> str:
    """The compacted topic's key of ``request``."""
    return key_of(request.id)


def key_of(request_id: str) -> str:
    return f"data_request/{request_id}"


def contact_expired(request: DataRequest, now: datetime) -> bool:
    """Whether ``request`` holds a contact it may no longer keep at ``now``: declined,
    ``CONTACT_DAYS_AFTER_ANSWER`` days past its first answer, or ``CONTACT_DAYS_OPEN`` days past
    its filing."""
    if request.spec.contact is None:
        return False
    if request.status is DataRequestStatus.DECLINED:
        return True
    if now >= parse_rfc3339(request.created_at) + timedelta(days=CONTACT_DAYS_OPEN):
        return True
    if request.answers:
        first = parse_rfc3339(request.answers[0].at)
        return now >= first + timedelta(days=CONTACT_DAYS_AFTER_ANSWER)
    return False


def without_contact(request: DataRequest, now: str) -> DataRequest:
    """``request`` with its contact erased at ``now``."""
    return request.model_copy(
        update={
            "spec": request.spec.model_copy(update={"contact": None}),
            "contact_erased_at": now,
            "updated_at": now,
        }
    )


__all__ = [
    "CONTACT_DAYS_AFTER_ANSWER",
    "CONTACT_DAYS_OPEN",
    "MAX_ANSWERS",
    "MAX_OPEN_REQUESTS",
    "MAX_REQUEST_BYTES",
    "Answer",
    "AnswerKind",
    "AnswerSpec",
    "DataRequest",
    "DataRequestSpec",
    "DataRequestStatus",
    "DeclineSpec",
    "contact_expired",
    "key_of",
    "record_key",
    "without_contact",
]
