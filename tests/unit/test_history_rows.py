"""Canonical JSON as history rows, without a database: what each column gets, what is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from cityhub.schemas.aggregate import Aggregate
from cityhub.schemas.errors import MalformedJSON, SchemaMismatch
from cityhub.schemas.observation import Location, NetworkMeta, Observation
from cityhub.streams.history.rows import (
    AGGREGATE_COLUMNS,
    OBSERVATION_COLUMNS,
    Row,
    aggregate_row,
    current_revisions,
    observation_row,
    unique_events,
)

EVENT = "2b0f6a52-4a4e-5c1b-9e0e-7d1c2f3a4b5c"


def _observation(**fields: object) -> dict[str, object]:
    doc = Observation(
        event_id=EVENT,
        device_id="dev-1",
        dev_eui="0011223344556677",
        quantity="temperature",
        field="temperature_1",
        value=21.5,
        unit="Cel",
        observed_at="2026-12-03T10:15:00.250Z",
        received_at="2026-12-03T10:15:01Z",
        format="tts-v3",
        network=NetworkMeta(name="tts"),
        tenant="north",
        device_type="climate",
        location=Location(latitude=52.1, longitude=5.1, altitude=3.5),
        area="centrum",
        classification="public",
    ).to_dict()
    doc.update(fields)
    return doc


def _columns(row: Row) -> dict[str, object]:
    return dict(zip(OBSERVATION_COLUMNS, row.values, strict=True))


def test_an_observation_fills_every_column_and_keeps_its_document() -> None:
    raw = orjson.dumps(_observation())
    row = observation_row(raw)
    columns = _columns(row)
    assert row.key == EVENT
    assert row.at == datetime(2026, 12, 3, 10, 15, 0, 250_000, tzinfo=UTC)
    assert columns == {
        "event_id": EVENT,
        "observed_at": "2026-12-03T10:15:00.250Z",
        "received_at": "2026-12-03T10:15:01Z",
        "tenant": "north",
        "device_id": "dev-1",
        "device_type": "climate",
        "quantity": "temperature",
        "unit": "Cel",
        "value_number": 21.5,
        "value_text": None,
        "value_boolean": None,
        "area": "centrum",
        "longitude": 5.1,
        "latitude": 52.1,
        "altitude": 3.5,
        "classification": "public",
        "data_subject": None,
        "doc": raw.decode(),
    }


@pytest.mark.parametrize(
    ("value", "number", "text", "boolean"),
    [(True, None, None, True), (3, 3.0, None, None), ("open", None, "open", None)],
)
def test_each_kind_of_value_has_its_column(
    value: object, number: float | None, text: str | None, boolean: bool | None
) -> None:
    columns = _columns(observation_row(orjson.dumps(_observation(value=value))))
    assert (columns["value_number"], columns["value_text"], columns["value_boolean"]) == (
        number,
        text,
        boolean,
    )


def test_a_sealed_observation_stores_no_value_and_no_place_whatever_it_says() -> None:
    doc = _observation(sealed="v1.key.ciphertext", data_subject="resident-1", value=37.0)
    columns = _columns(observation_row(orjson.dumps(doc)))
    assert columns["data_subject"] == "resident-1"
    for name in (
        "value_number",
        "value_text",
        "value_boolean",
        "longitude",
        "latitude",
        "altitude",
    ):
        assert columns[name] is None, name


@pytest.mark.parametrize(
    ("raw", "error", "says"),
    [
        (b"{nope", MalformedJSON, "not JSON"),
        (b"[1, 2]", SchemaMismatch, "not an object"),
        (orjson.dumps(_observation(event_id="42")), SchemaMismatch, "event_id is not a uuid"),
        (orjson.dumps(_observation(event_id=None)), SchemaMismatch, "event_id"),
        (orjson.dumps(_observation(device_id="")), SchemaMismatch, "device_id is empty"),
        (orjson.dumps(_observation(quantity=7)), SchemaMismatch, "quantity is a int"),
        (orjson.dumps(_observation(observed_at="yesterday")), SchemaMismatch, "observed_at"),
        (
            orjson.dumps(_observation(observed_at="2100-01-01T00:00:00Z")),
            SchemaMismatch,
            "observed_at",
        ),
        (orjson.dumps(_observation(value={"a": 1})), SchemaMismatch, "value is a dict"),
        (
            orjson.dumps(_observation(location={"latitude": 91, "longitude": 0})),
            SchemaMismatch,
            "outside",
        ),
        (
            orjson.dumps(_observation(location={"latitude": "x", "longitude": 0})),
            SchemaMismatch,
            "latitude",
        ),
        (orjson.dumps(_observation(value="a\x00b")), SchemaMismatch, r"U\+0000"),
        (orjson.dumps(_observation(extra={"k\x00": 1})), SchemaMismatch, r"U\+0000"),
    ],
)
def test_what_postgresql_would_refuse_is_refused_with_a_reason(
    raw: bytes, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        observation_row(raw)


def test_an_escaped_backslash_before_u0000_is_no_nul() -> None:
    columns = _columns(observation_row(orjson.dumps(_observation(value="C:\\u0000"))))
    assert columns["value_text"] == "C:\\u0000"


def _aggregate(revision: int = 0, **fields: object) -> dict[str, object]:
    doc = Aggregate(
        aggregate_id=str(uuid.uuid5(uuid.NAMESPACE_URL, "window")),
        grouping="area",
        key="centrum",
        tenant="north",
        classification="internal",
        device_id=None,
        area="centrum",
        quantity="noise",
        unit="dB",
        window_size=3600,
        window_start="2026-12-03T10:00:00Z",
        window_end="2026-12-03T11:00:00Z",
        count=4,
        min=40.0,
        max=60.0,
        sum=200.0,
        mean=50.0,
        last=45.0,
        last_observed_at="2026-12-03T10:59:00Z",
        last_event_id=EVENT,
        revision=revision,
    ).to_dict()
    doc.update(fields)
    return doc


def test_an_aggregate_fills_every_column() -> None:
    raw = orjson.dumps(_aggregate(revision=3))
    row = aggregate_row(raw)
    columns = dict(zip(AGGREGATE_COLUMNS, row.values, strict=True))
    assert row.revision == 3
    assert row.at == datetime(2026, 12, 3, 10, tzinfo=UTC)
    assert columns["group_kind"] == "area"
    assert columns["group_key"] == "centrum"
    assert columns["device_id"] is None
    assert (columns["count"], columns["min"], columns["max"], columns["mean"]) == (
        4,
        40.0,
        60.0,
        50.0,
    )
    assert columns["window_size"] == 3600
    assert columns["doc"] == raw.decode()


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"grouping": "city"}, "grouping"),
        ({"window_end": "2026-12-03T10:00:00Z"}, "not after"),
        ({"count": "4"}, "count is not an integer"),
        ({"revision": 2**31}, "revision is out of range"),
        ({"mean": None}, "mean is not a number"),
        ({"min": True}, "min is not a number"),
    ],
)
def test_a_broken_aggregate_is_refused(fields: dict[str, object], says: str) -> None:
    with pytest.raises(SchemaMismatch, match=says):
        aggregate_row(orjson.dumps(_aggregate(**fields)))


def test_a_batch_keeps_one_row_per_event_and_the_newest_revision_per_window() -> None:
    first = observation_row(orjson.dumps(_observation()))
    again = observation_row(orjson.dumps(_observation()))
    other = observation_row(orjson.dumps(_observation(event_id=str(uuid.uuid4()))))
    assert unique_events([first, again, other]) == [first, other]

    revisions = [aggregate_row(orjson.dumps(_aggregate(revision=r))) for r in (1, 3, 2, 3)]
    assert current_revisions(revisions) == [revisions[3]]
