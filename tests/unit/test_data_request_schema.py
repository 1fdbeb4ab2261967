"""The data request's models: every field bounded, control characters refused, exactly one
answer, the contact never in the public form, and the contact's retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from cityhub.schemas.data_request import (
    CONTACT_DAYS_AFTER_ANSWER,
    CONTACT_DAYS_OPEN,
    MAX_ANSWERS,
    MAX_QUANTITIES,
    MAX_REQUEST_BYTES,
    Answer,
    AnswerKind,
    AnswerSpec,
    DataRequest,
    DataRequestSpec,
    DataRequestStatus,
    DeclineSpec,
    contact_expired,
    without_contact,
)

CONTACT = "resident@example.org"


def spec(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "title": "Parking occupancy per street",
        "data": "Occupied spaces per street, every 15 minutes.\nThe last year too.",
        "purpose": "A thesis on parking pressure.",
        "contact": CONTACT,
    }
    doc.update(fields)
    return doc


def record(**fields: Any) -> DataRequest:
    doc: dict[str, Any] = {
        "id": "0190000000ab-0a1b2c3d",
        "spec": DataRequestSpec.model_validate(spec()),
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    doc.update(fields)
    return DataRequest(**doc)


def test_a_minimal_request_takes_defaults() -> None:
    parsed = DataRequestSpec.model_validate({"title": "t", "data": "d", "purpose": "p"})
    assert parsed.contact is None
    assert parsed.language == "nl"
    assert parsed.quantities == ()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", "x" * 201),
        ("title", ""),
        ("title", "   "),
        ("data", "x" * 3001),
        ("purpose", "x" * 2001),
        ("area", "x" * 201),
        ("contact", "x" * 255),
        ("language", "not a language"),
        ("quantities", ["pm2_5", "pm2_5"]),
        ("quantities", [f"q{i}" for i in range(MAX_QUANTITIES + 1)]),
        ("quantities", ["PM 2.5"]),
        ("unknown", "field"),
    ],
)
def test_limits_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        DataRequestSpec.model_validate(spec(**{field: value}))


@pytest.mark.parametrize("bad", ["\x00", "\x1b[31m", "\x7f", "\x85", "\u2028", "\u202e", "\ufeff"])
@pytest.mark.parametrize("field", ["title", "data", "purpose", "area", "contact"])
def test_control_characters_are_refused(field: str, bad: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DataRequestSpec.model_validate(spec(**{field: f"a{bad}b"}))
    # The message names the rule, never the value.
    assert bad not in str(caught.value.errors(include_input=False))


def test_line_breaks_only_in_the_long_fields() -> None:
    parsed = DataRequestSpec.model_validate(spec(data="one\ntwo\tthree", purpose="a\r\nb"))
    assert parsed.data == "one\ntwo\tthree"
    for field in ("title", "area", "contact"):
        with pytest.raises(ValidationError):
            DataRequestSpec.model_validate(spec(**{field: "one\ntwo"}))


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(ValidationError):
        DataRequestSpec.model_validate(spec(title="a\ud800b"))


def test_markup_is_stored_as_given() -> None:
    hostile = "<script>alert(1)</script>'; DROP TABLE requests; --"
    assert DataRequestSpec.model_validate(spec(title=hostile)).title == hostile


def test_the_longest_fields_fit_the_body_cap_in_ascii() -> None:
    import orjson

    longest = spec(
        title="t" * 200,
        data="d" * 3000,
        purpose="p" * 2000,
        area="a" * 200,
        contact="c" * 254,
        quantities=[f"q{i:02d}" + "x" * 59 for i in range(MAX_QUANTITIES)],
        language="nl-NL",
    )
    DataRequestSpec.model_validate(longest)
    assert len(orjson.dumps(longest)) <= MAX_REQUEST_BYTES


@pytest.mark.parametrize(
    "body",
    [{}, {"offer": "acme/parking", "dataset": "noise"}, {"note": "only a note"}],
)
def test_an_answer_is_exactly_one_offer_or_dataset(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AnswerSpec.model_validate(body)


def test_answer_kinds_and_refs() -> None:
    offer = AnswerSpec.model_validate({"offer": "acme/parking"})
    dataset = AnswerSpec.model_validate({"dataset": "noise", "note": "hourly"})
    assert (offer.kind, offer.ref) == (AnswerKind.OFFER, "acme/parking")
    assert (dataset.kind, dataset.ref) == (AnswerKind.DATASET, "noise")
    with pytest.raises(ValidationError):
        AnswerSpec.model_validate({"offer": "no-slash"})


def test_a_decline_needs_a_one_line_reason() -> None:
    assert DeclineSpec.model_validate({"reason": "spam"}).reason == "spam"
    for bad in ("", "a\nb", "x" * 501):
        with pytest.raises(ValidationError):
            DeclineSpec.model_validate({"reason": bad})


def test_the_public_form_never_holds_the_contact() -> None:
    public = record().public()
    assert "contact" not in public
    assert CONTACT not in str(public)
    assert public["title"] == "Parking occupancy per street"
    assert record().admin()["contact"] == CONTACT


def test_a_declined_request_shows_only_status_dates_and_reason() -> None:
    declined = record(
        status=DataRequestStatus.DECLINED, declined_at="2026-01-02T00:00:00Z", decline_reason="spam"
    )
    public = declined.public()
    assert set(public) == {
        "id",
        "status",
        "created_at",
        "updated_at",
        "answers",
        "declined_at",
        "decline_reason",
    }
    assert declined.admin()["title"] == "Parking occupancy per street"


def test_answers_are_bounded() -> None:
    answer = Answer(kind=AnswerKind.DATASET, ref="noise", tenant="acme", at="x", url="/u")
    with pytest.raises(ValidationError):
        record(answers=(answer,) * (MAX_ANSWERS + 1))


def _answered(at: str) -> DataRequest:
    answer = Answer(kind=AnswerKind.DATASET, ref="noise", tenant="acme", at=at, url="/u")
    return record(status=DataRequestStatus.ANSWERED, answers=(answer,))


def test_contact_retention() -> None:
    filed = datetime(2026, 1, 1, tzinfo=UTC)
    assert not contact_expired(record(), filed + timedelta(days=CONTACT_DAYS_OPEN - 1))
    assert contact_expired(record(), filed + timedelta(days=CONTACT_DAYS_OPEN))
    answered = _answered("2026-02-01T00:00:00Z")
    first = datetime(2026, 2, 1, tzinfo=UTC)
    assert not contact_expired(answered, first + timedelta(days=CONTACT_DAYS_AFTER_ANSWER - 1))
    assert contact_expired(answered, first + timedelta(days=CONTACT_DAYS_AFTER_ANSWER))
    assert contact_expired(record(status=DataRequestStatus.DECLINED), filed)
    erased = without_contact(record(), "2026-01-03T00:00:00Z")
    assert erased.contact is None
    assert erased.contact_erased_at == "2026-01-03T00:00:00Z"
    assert not contact_expired(erased, filed + timedelta(days=9999))
