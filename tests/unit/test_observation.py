import uuid

import pytest

from cityhub.schemas.observation import EVENT_ID_NAMESPACE, event_id
from cityhub.schemas.timefmt import parse_rfc3339, rfc3339


@pytest.mark.parametrize(
    ("identity", "frame", "field"),
    [("0004a30b001c0530", "4711@2026-11-29T01:00:00.000Z", "temperature_1"), ("dev", "-@x", "é∑")],
)
def test_event_id_is_exactly_uuid5(identity, frame, field):
    expected = uuid.uuid5(EVENT_ID_NAMESPACE, f"{identity}\x1f{frame}\x1f{field}")
    assert event_id(identity, frame, field) == str(expected)


def test_event_ids_differ_by_every_part():
    ids = {
        event_id("a", "1", "t"),
        event_id("b", "1", "t"),
        event_id("a", "2", "t"),
        event_id("a", "1", "u"),
    }
    assert len(ids) == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-29T01:00:00Z", "2026-11-29T01:00:00.000Z"),
        ("2026-11-29T01:00:00.123456789Z", "2026-11-29T01:00:00.123Z"),
        ("2026-11-29T02:00:00.5+01:00", "2026-11-29T01:00:00.500Z"),
        ("2024-05-01T10:00:00.823500726+00:00", "2024-05-01T10:00:00.823Z"),
    ],
)
def test_rfc3339_parsing_normalises_to_utc(text, expected):
    assert rfc3339(parse_rfc3339(text).timestamp()) == expected


@pytest.mark.parametrize("text", ["2026-11-29T01:00:00", "yesterday", "2026-13-01T00:00:00Z"])
def test_rfc3339_parsing_refuses_naive_or_invalid_times(text):
    with pytest.raises(ValueError):
        parse_rfc3339(text)
