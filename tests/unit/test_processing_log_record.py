"""Processing-log records: the Logboek Dataverwerkingen shape, spans, validation, no leaks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cityhub.schemas.processing_log import (
    SUBJECT_ID_TYPE,
    ForeignOperation,
    InvalidRecord,
    ProcessingLogRecord,
    StatusCode,
    processing_record,
    record_from_json,
)
from cityhub.schemas.trace_context import TraceContext, new_trace

ACTIVITY = "urn:cityhub:processing-activity:acme:care-alarms"
SUBJECT = "res-7f3a9c21"


def make(**changes: object) -> ProcessingLogRecord:
    fields: dict[str, object] = {
        "name": "cityhub.delivery",
        "trace": TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True),
        "parent_span_id": None,
        "started": 1_764_000_000.1234,
        "ended": 1_764_000_000.5,
        "ok": True,
        "activity_id": ACTIVITY,
        "tenant": "acme",
        "subject": SUBJECT,
        "recipient": "webhook:sub-1",
        "items": 3,
        "action": "deliver",
    }
    fields.update(changes)
    return processing_record(**fields)  # type: ignore[arg-type]


def test_the_record_has_the_standards_fields_and_attributes() -> None:
    data = json.loads(make().to_json())
    # Logboek Dataverwerkingen, component Logboek, interface: required and optional fields
    assert set(data) == {
        "trace_id",
        "span_id",
        "parent_span_id",
        "name",
        "start_time",
        "end_time",
        "status_code",
        "foreign_operation",
        "resource",
        "attributes",
    }
    assert data["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert data["parent_span_id"] == "00f067aa0ba902b7"
    assert len(data["span_id"]) == 16
    assert data["span_id"] != "00f067aa0ba902b7"
    assert data["start_time"] == 1_764_000_000_123  # milliseconds
    assert data["end_time"] == 1_764_000_000_500
    assert data["status_code"] == "STATUS_CODE_OK"
    assert data["resource"] == {"attributes": {"service.name": "cityhub"}}
    assert data["attributes"] == {
        "dpl.core.processing_activity_id": ACTIVITY,
        "dpl.core.data_subject_id": SUBJECT,
        "dpl.core.data_subject_id_type": SUBJECT_ID_TYPE,
        "dpl.cityhub.tenant": "acme",
        "dpl.cityhub.action": "deliver",
        "dpl.cityhub.recipient": "webhook:sub-1",
        "dpl.cityhub.items": 3,
    }


def test_round_trip_and_key() -> None:
    record = make()
    assert record_from_json(record.to_json()) == record
    assert record.key() == b"acme/res-7f3a9c21"
    assert (record.tenant, record.subject, record.activity_id) == ("acme", SUBJECT, ACTIVITY)
    assert (record.action, record.recipient, record.items) == ("deliver", "webhook:sub-1", 3)


def test_every_record_is_a_span_of_its_own() -> None:
    trace = new_trace()
    records = [make(trace=trace, subject=f"res-{n:08d}") for n in range(50)]
    assert len({r.span_id for r in records}) == 50
    assert {r.trace_id for r in records} == {trace.trace_id}
    assert {r.parent_span_id for r in records} == {trace.span_id}
    explicit = make(trace=trace, parent_span_id="1111111111111111")
    assert explicit.parent_span_id == "1111111111111111"


def test_without_a_trace_a_new_one_is_started() -> None:
    one, two = make(trace=None), make(trace=None)
    assert one.trace_id != two.trace_id
    assert one.parent_span_id is None


def test_failure_end_before_start_and_no_subject() -> None:
    failed = make(ok=False, ended=1_764_000_000.0)
    assert failed.status_code is StatusCode.ERROR
    assert failed.end_time == failed.start_time
    nobody = make(subject="", recipient=None)
    assert nobody.subject is None
    assert nobody.recipient is None
    assert "dpl.core.data_subject_id" not in json.loads(nobody.to_json())["attributes"]
    assert nobody.key() == b"acme/"


def test_foreign_operation() -> None:
    foreign = ForeignOperation(
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="00f067aa0ba902b7",
        entity="https://portal.example.nl",
    )
    record = make(foreign=foreign)
    assert record_from_json(record.to_json()).foreign_operation == foreign


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"action": "sell"}, "attributes"),
        ({"tenant": "Not A Tenant"}, "attributes"),
        ({"subject": "123456789"}, "attributes"),  # a BSN-like id is not a pseudonym
        ({"items": -1}, "attributes"),
        ({"name": ""}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"activity_id": "x" * 2000}, "attributes"),
        ({"parent_span_id": "0" * 16}, "parent_span_id"),
    ],
)
def test_invalid_values_are_refused_naming_the_field_never_the_value(
    change: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidRecord) as refused:
        make(**change)
    assert field in str(refused.value)
    assert "123456789" not in str(refused.value)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not json",
        b"[]",
        b"\xff\xfe",
        b'{"trace_id": "00000000000000000000000000000000"}',
    ],
)
def test_hostile_topic_values_are_invalid_records(value: bytes) -> None:
    with pytest.raises(InvalidRecord):
        record_from_json(value)


def test_a_record_with_a_field_too_many_or_a_wrong_subject_type_is_refused() -> None:
    data = json.loads(make().to_json())
    with pytest.raises(InvalidRecord):
        record_from_json(json.dumps({**data, "extra": 1}))
    data["attributes"]["dpl.core.data_subject_id_type"] = "BSN"
    with pytest.raises(InvalidRecord):
        record_from_json(json.dumps(data))


def test_repr_never_shows_the_subject() -> None:
    record = make()
    assert SUBJECT not in repr(record)
    assert SUBJECT not in str(record)


def test_the_documented_example_is_a_valid_record() -> None:
    """docs/privacy.md shows a record; it must be one cityhub reads."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "privacy.md").read_text()
    section = text[text.index("## The processing log") :]
    example = section[
        section.index("```json") + len("```json") : section.index(
            "```\n", section.index("```json") + 7
        )
    ]
    record = record_from_json(example)
    assert record.key() == b"acme/res-7f3a9c21"
    assert record.action == "deliver"
