"""Processing-log records in the shape of Logboek Dataverwerkingen (Logius).

Every delivery of personal items, every read of them through the API, every export, every
erasure and every consent change leaves one record per data subject on the append-only topic
``processing_log`` (keyed ``<tenant>/<data subject>``). The record follows the standard's
interface of the Logboek component (``sections/03-specificaties/02-component-logboek.md``):

==========================  ==============================================================
``trace_id``                32 lower-case hex digits (16 bytes): the W3C trace the action is in
``span_id``                 16 hex digits (8 bytes): this action (the standard's operation id)
``parent_span_id``          the action that started this one in the same trace, or ``null``
``name``                    the action's name (``cityhub.delivery``, ``cityhub.api.read``, ...)
``start_time``/``end_time`` Unix time in milliseconds ("timestamp (ms)")
``status_code``             ``STATUS_CODE_OK`` or ``STATUS_CODE_ERROR`` (cityhub always knows
                            the outcome, so it never writes ``STATUS_CODE_UNSET``)
``foreign_operation``       the caller's trace and span at another party, with its ``entity``
                            URI, when an action was started by a W3C ``traceparent`` received
                            from outside, else ``null``
``resource``                ``{"attributes": {"service.name": "cityhub"}}``
``attributes``              ``dpl.core.processing_activity_id`` (the activity's URI in the
                            register), ``dpl.core.data_subject_id`` and
                            ``dpl.core.data_subject_id_type``, and cityhub's own, in the
                            standard's ``dpl.`` namespace: ``dpl.cityhub.tenant``,
                            ``dpl.cityhub.action``, ``dpl.cityhub.recipient``,
                            ``dpl.cityhub.items``
==========================  ==============================================================

The data subject id is the tenant's pseudonym (the standard recommends pseudonymising it): a
token that the tenant chose and cityhub never maps to a person (``docs/privacy.md``); its type is
``urn:cityhub:data-subject``, meaning "the pseudonym of the tenant in ``dpl.cityhub.tenant``".
A record holds no personal values: what was processed is told by the activity, the recipient and
the number of items, never by the items.

Pure: models and functions, no I/O.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from cityhub.schemas.registry import ID_PATTERN, validate_data_subject
from cityhub.schemas.trace_context import TraceContext, child, new_trace

PROCESSING_ACTIVITY_ID: Final = "dpl.core.processing_activity_id"
DATA_SUBJECT_ID: Final = "dpl.core.data_subject_id"
DATA_SUBJECT_ID_TYPE: Final = "dpl.core.data_subject_id_type"
TENANT: Final = "dpl.cityhub.tenant"
ACTION: Final = "dpl.cityhub.action"
RECIPIENT: Final = "dpl.cityhub.recipient"
ITEMS: Final = "dpl.cityhub.items"

SUBJECT_ID_TYPE: Final = "urn:cityhub:data-subject"
"""``dpl.core.data_subject_id_type`` of every record: a pseudonym chosen by the tenant."""
SERVICE_NAME: Final = "cityhub"

Action = Literal["deliver", "read", "export", "erase", "consent"]
ACTIONS: Final[tuple[str, ...]] = get_args(Action)

MAX_NAME = 200
MAX_TEXT = 1000
"""Bound of the activity URI, the recipient and the foreign entity (the register's URIs are
far shorter; a bound keeps a hostile record on the topic small)."""
MAX_ITEMS = 10_000_000
MAX_ATTRIBUTES = 32


def _not_zero(value: str) -> str:
    if not value.strip("0"):
        raise ValueError("must not be all zero")
    return value


TraceId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$"), AfterValidator(_not_zero)]
SpanId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$"), AfterValidator(_not_zero)]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class StatusCode(StrEnum):
    """Logboek Dataverwerkingen's ``status_code`` (0 unset, 1 ok, 2 error), by name."""

    UNSET = "STATUS_CODE_UNSET"
    OK = "STATUS_CODE_OK"
    ERROR = "STATUS_CODE_ERROR"


def _bounded_text(value: str, limit: int) -> str:
    if not value or len(value) > limit:
        raise ValueError(f"must be 1 to {limit} characters")
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class ForeignOperation(_Frozen):
    """The action at another party that started this one (received as W3C trace context)."""

    trace_id: TraceId
    span_id: SpanId
    entity: str
    """A URI naming the other party."""

    @field_validator("entity")
    @classmethod
    def _entity(cls, value: str) -> str:
        return _bounded_text(value, MAX_TEXT)


class Resource(_Frozen):
    """The system that wrote the record (the standard's ``resource``)."""

    attributes: dict[str, str] = Field(default_factory=lambda: {"service.name": SERVICE_NAME})

    @field_validator("attributes")
    @classmethod
    def _bounded(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
        for key, item in value.items():
            _bounded_text(key, MAX_NAME)
            _bounded_text(item, MAX_TEXT)
        return value


class ProcessingLogRecord(_Frozen):
    """One action on one data subject's personal data (see the module docstring)."""

    trace_id: TraceId
    span_id: SpanId
    parent_span_id: SpanId | None = None
    name: str
    start_time: int = Field(ge=0)
    end_time: int = Field(ge=0)
    status_code: StatusCode
    foreign_operation: ForeignOperation | None = None
    resource: Resource = Field(default_factory=Resource)
    attributes: dict[str, str | int]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _bounded_text(value, MAX_NAME)

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        if len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
        for key in (PROCESSING_ACTIVITY_ID, TENANT, ACTION, ITEMS):
            if key not in value:
                raise ValueError(f"{key} is required")
        if not isinstance(value[ITEMS], int) or not 0 <= value[ITEMS] <= MAX_ITEMS:
            raise ValueError(f"{ITEMS} must be a whole number from 0 to {MAX_ITEMS}")
        if value[ACTION] not in ACTIONS:
            raise ValueError(f"{ACTION} must be one of {', '.join(ACTIONS)}")
        if not isinstance(value[TENANT], str) or not re.fullmatch(ID_PATTERN, value[TENANT]):
            raise ValueError(f"{TENANT} must be a tenant id")
        subject = value.get(DATA_SUBJECT_ID)
        if subject is not None:
            if not isinstance(subject, str):
                raise ValueError(f"{DATA_SUBJECT_ID} must be a data subject id")
            validate_data_subject(subject)
            if value.get(DATA_SUBJECT_ID_TYPE) != SUBJECT_ID_TYPE:
                raise ValueError(f"{DATA_SUBJECT_ID_TYPE} must be {SUBJECT_ID_TYPE}")
        for key, item in value.items():
            _bounded_text(key, MAX_NAME)
            if isinstance(item, str):
                _bounded_text(item, MAX_TEXT)
        return value

    # What the index and the API read, by name rather than by attribute key.
    @property
    def tenant(self) -> str:
        return str(self.attributes[TENANT])

    @property
    def subject(self) -> str | None:
        """The data subject's pseudonym, or ``None`` for an action on no known subject."""
        subject = self.attributes.get(DATA_SUBJECT_ID)
        return None if subject is None else str(subject)

    @property
    def activity_id(self) -> str:
        return str(self.attributes[PROCESSING_ACTIVITY_ID])

    @property
    def action(self) -> str:
        return str(self.attributes[ACTION])

    @property
    def recipient(self) -> str | None:
        recipient = self.attributes.get(RECIPIENT)
        return None if recipient is None else str(recipient)

    @property
    def items(self) -> int:
        return int(self.attributes[ITEMS])

    def to_json(self) -> bytes:
        """The record as compact UTF-8 JSON (the topic's value)."""
        return self.model_dump_json().encode()

    def key(self) -> bytes:
        """The topic's key, ``<tenant>/<data subject>`` (``<tenant>/`` for no subject): one
        subject's records stay in one partition, in the order they were written."""
        return f"{self.tenant}/{self.subject or ''}".encode()

    def __repr__(self) -> str:
        # The subject's pseudonym is personal data: no repr, log line or error message shows it.
        return (
            f"ProcessingLogRecord(name={self.name!r}, action={self.action!r}, "
            f"tenant={self.tenant!r}, trace_id={self.trace_id!r}, span_id={self.span_id!r})"
        )

    __str__ = __repr__


class InvalidRecord(ValueError):
    """A value that is not a valid processing-log record. Its message names the fields at fault
    and never their values (a data subject's pseudonym must not reach a log line)."""


def _fields_at_fault(error: ValidationError) -> str:
    places = sorted(
        {".".join(str(part) for part in item["loc"]) or "record" for item in error.errors()}
    )
    return ", ".join(places)


def record_from_json(value: bytes | str) -> ProcessingLogRecord:
    """Parse a record from the topic; raises ``InvalidRecord`` when it is not a valid record."""
    try:
        return ProcessingLogRecord.model_validate_json(value)
    except ValidationError as error:
        raise InvalidRecord(f"not a processing-log record: {_fields_at_fault(error)}") from None


def millis(seconds: float) -> int:
    """Unix time in seconds as the whole milliseconds the record holds."""
    return max(0, round(seconds * 1000))


def processing_record(
    *,
    name: str,
    trace: TraceContext | None,
    parent_span_id: str | None,
    started: float,
    ended: float,
    ok: bool,
    activity_id: str,
    tenant: str,
    subject: str,
    recipient: str | None,
    items: int,
    action: Action,
    foreign: ForeignOperation | None = None,
) -> ProcessingLogRecord:
    """The record of one action on one data subject's personal data.

    The record is a new span of its own, so that records never share a span id (the standard
    asks for one record, and one span, per action and per subject):

    - ``trace`` is the context the action continues: the item's ``traceparent`` for a delivery,
      the request's for an API read. The record's ``trace_id`` is its trace id, its ``span_id``
      a new one, and its parent ``parent_span_id`` if given, else ``trace.span_id``.
    - ``trace`` ``None`` (nothing to continue): a new trace, parent ``parent_span_id``.

    ``started``/``ended`` are Unix times in seconds (``time.time()``); an end before the start
    (a clock step) is recorded as the start. ``subject`` ``""`` records an action on no known
    data subject (the data-subject attributes are then left out). Raises ``ValueError`` when a
    value is not valid for the record (an unknown action, a tenant or subject id that is not
    one) as ``InvalidRecord``, naming the field but never the subject.
    """
    if trace is None:
        span = new_trace()
        parent = parent_span_id
    else:
        span = child(trace)
        parent = parent_span_id if parent_span_id is not None else trace.span_id
    attributes: dict[str, str | int] = {
        PROCESSING_ACTIVITY_ID: activity_id,
        TENANT: tenant,
        ACTION: action,
        ITEMS: items,
    }
    if subject:
        attributes[DATA_SUBJECT_ID] = subject
        attributes[DATA_SUBJECT_ID_TYPE] = SUBJECT_ID_TYPE
    if recipient is not None:
        attributes[RECIPIENT] = recipient
    start = millis(started)
    try:
        return ProcessingLogRecord(
            trace_id=span.trace_id,
            span_id=span.span_id,
            parent_span_id=parent,
            name=name,
            start_time=start,
            end_time=max(start, millis(ended)),
            status_code=StatusCode.OK if ok else StatusCode.ERROR,
            foreign_operation=foreign,
            attributes=attributes,
        )
    except ValidationError as error:
        raise InvalidRecord(
            f"not a valid processing-log record: {_fields_at_fault(error)}"
        ) from None
