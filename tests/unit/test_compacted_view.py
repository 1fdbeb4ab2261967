"""The shared parts of the compacted topics' views and stores: ``CompactedView`` (offset, counts,
the skipped record's warning) and ``gauges`` (a store's ``on_applied``)."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from cityhub.streams.compacted_stores import gauges
from cityhub.streams.compacted_view import WHOLE_KEY, CompactedView

log = logging.getLogger("cityhub.test.compacted_view")


class Numbers(CompactedView):
    """A view of ``<name>`` -> a number; a value that is not one is skipped."""

    def __init__(self, *, key_chars: int | None = 5) -> None:
        super().__init__(log, "number", key_chars=key_chars)
        self.numbers: dict[str, int] = {}

    def _apply(self, key: str, value: bytes | None) -> None:
        if value is None:
            self.numbers.pop(key, None)
            return
        if not value.isdigit():
            raise ValueError("not a number")
        self.numbers[key] = int(value)

    def count(self) -> int:
        return len(self.numbers)


def test_a_view_counts_what_it_applied_and_skipped_and_keeps_the_last_offset() -> None:
    view = Numbers()
    assert (view.offset, view.applied, view.malformed) == (-1, 0, 0)
    view.apply("a", b"1", 0)
    view.apply("b", b"two", 1)
    view.apply("a", None, 2)
    assert (view.offset, view.applied, view.malformed) == (2, 3, 1)
    assert view.numbers == {}


@pytest.mark.parametrize(
    ("key_chars", "logged"),
    [
        (5, "skipping malformed number at offset 3 (key 'abcde'): not a number"),
        (WHOLE_KEY, "skipping malformed number at offset 3 (key 'abcdefgh'): not a number"),
        (None, "skipping malformed number at offset 3: not a number"),
    ],
)
def test_the_warning_names_the_offset_the_key_as_far_as_asked_and_the_reason(
    key_chars: int | None, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    view = Numbers(key_chars=key_chars)
    with caplog.at_level(logging.WARNING, log.name):
        view.apply("abcdefgh", b"x", 3)
    [record] = caplog.records
    assert record.getMessage() == logged


def test_an_error_the_view_does_not_expect_is_not_swallowed() -> None:
    class Broken(Numbers):
        def _apply(self, key: str, value: bytes | None) -> None:
            raise KeyError(key)

    with pytest.raises(KeyError):
        Broken().apply("a", b"1", 0)


def test_gauges_counts_the_malformed_records_and_sets_each_gauge_from_the_view() -> None:
    registry = CollectorRegistry()
    malformed = Counter("t_malformed", "", ["topic"], registry=registry)
    held = Gauge("t_held", "", registry=registry)
    view = Numbers()
    view.apply("a", b"1", 0)
    update = gauges(malformed, (held, Numbers.count), label="numbers")
    update(view, 1, 0)
    # No malformed record yet: the labelled child is not made (no series at 0 appears).
    assert registry.get_sample_value("t_malformed_total", {"topic": "numbers"}) is None
    assert registry.get_sample_value("t_held") == 1
    update(view, 3, 2)
    assert registry.get_sample_value("t_malformed_total", {"topic": "numbers"}) == 2
