"""The open-data view's bounds (recent days, a cap on windows, the pending buffer, the feed), what
it tells the file writer, and the selection and paging of the windows API. Pure: no broker."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from cityhub.schemas.open_data import OpenWindow
from cityhub.streams.opendata.selection import (
    MAX_RANGE_DAYS,
    BadSelection,
    decode_cursor,
    entity_tag,
    matches,
    page,
    selection,
)
from cityhub.streams.opendata.view import OpenDataView

NOW = datetime(2026, 12, 4, 10, 30, tzinfo=UTC)


def window(
    start: datetime, area: str = "centrum", quantity: str = "pm10", dataset: str = "air-quality"
) -> OpenWindow:
    return OpenWindow(
        dataset=dataset,
        area=area,
        quantity=quantity,
        unit="ug/m3",
        window_start=start.isoformat().replace("+00:00", "Z"),
        window_end=(start + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        mean=20.0,
        min=None,
        max=None,
        readings=10,
        published_at=(start + timedelta(hours=1, minutes=3)).isoformat().replace("+00:00", "Z"),
    )


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now.timestamp()


def feed(view: OpenDataView, *windows: OpenWindow) -> None:
    for w in windows:
        view.apply(w.key, w.model_dump_json().encode(), view.offset + 1)


def make_view(clock: Clock | None = None, **bounds: int) -> OpenDataView:
    return OpenDataView(["air-quality", "noise"], recent_days=2, clock=clock or Clock(), **bounds)


def hours_ago(hours: int) -> datetime:
    return NOW.replace(minute=0) - timedelta(hours=hours)


def test_recent_days_are_held_older_ones_wait_for_their_file() -> None:
    view = make_view()
    today, yesterday, old = hours_ago(2), hours_ago(24), hours_ago(24 * 5)
    feed(view, window(today), window(yesterday), window(old))
    assert view.held == 2
    assert view.pending == 1
    assert view.holds(today.date())
    assert view.holds(yesterday.date())
    assert not view.holds(old.date())
    assert [w.window_start for w in view.windows("air-quality", today.date())] == [
        today.isoformat().replace("+00:00", ".000Z")
    ]
    written = view.take_dirty()
    assert [(d, day) for d, day, _ in written] == [
        ("air-quality", old.date()),
        ("air-quality", yesterday.date()),
        ("air-quality", today.date()),
    ]
    assert view.pending == 0  # handed to the writer
    assert view.take_dirty() == []  # nothing new


def test_days_leave_memory_as_the_clock_moves_on() -> None:
    clock = Clock()
    view = make_view(clock)
    feed(view, window(hours_ago(24)), window(hours_ago(1)))
    view.take_dirty()
    clock.now += timedelta(days=1)
    feed(view, window(clock.now.replace(minute=0) - timedelta(hours=1)))
    assert view.held == 2  # the day before yesterday left
    assert view.days("air-quality") == [NOW.date(), NOW.date() + timedelta(days=1)]


def test_a_day_that_leaves_before_its_file_is_written_still_gets_written() -> None:
    clock = Clock()
    view = make_view(clock)
    feed(view, window(hours_ago(24)))
    clock.now += timedelta(days=2)
    written = view.take_dirty()
    assert [(day, len(ws)) for _, day, ws in written] == [((NOW - timedelta(days=1)).date(), 1)]
    assert view.held == 0


def test_the_window_cap_drops_the_oldest_day() -> None:
    view = make_view(max_windows=3)
    feed(view, *(window(hours_ago(24), area=f"a{i}") for i in range(3)))
    feed(view, window(hours_ago(1)))
    assert view.held == 1
    assert view.days("air-quality") == [NOW.date()]
    # Its windows were not written yet: they wait for the writer rather than vanish.
    assert view.pending == 3


def test_the_pending_buffer_is_bounded_and_counts_what_it_skips() -> None:
    view = make_view(max_pending=2)
    feed(view, *(window(hours_ago(24 * 10), area=f"a{i}") for i in range(5)))
    assert view.pending == 2
    assert view.skipped == 3


def test_malformed_foreign_and_misfiled_records_are_counted_not_held() -> None:
    view = make_view()
    view.apply("k", b"{not json", 0)
    view.apply("k", b'{"kind": "open_window"}', 1)
    other = window(hours_ago(1), dataset="parking")
    view.apply(other.key, other.model_dump_json().encode(), 2)
    good = window(hours_ago(1))
    view.apply(
        "air-quality/elsewhere/pm10/" + good.window_start, good.model_dump_json().encode(), 3
    )
    assert view.malformed == 2
    assert view.ignored == 2
    assert view.held == 0
    assert view.offset == 3
    feed(view, good)
    assert view.held == 1


def test_a_tombstone_takes_a_window_out_of_memory() -> None:
    view = make_view()
    w = window(hours_ago(1))
    feed(view, w)
    view.apply(w.key, None, view.offset + 1)
    assert view.held == 0


def test_the_feed_is_bounded_and_ordered() -> None:
    view = make_view(feed_size=3)
    feed(view, *(window(hours_ago(1), area=f"a{i}") for i in range(5)))
    after = view.feed_after(-1)
    assert [o for o, _ in after] == [2, 3, 4]
    assert view.feed_start() == 2
    assert [w.area for _, w in view.feed_after(3)] == ["a4"]
    assert view.feed_after(4) == []


def test_the_same_instant_in_another_form_is_one_window() -> None:
    view = make_view()
    w = window(hours_ago(1))
    again = w.model_copy(update={"window_start": w.window_start.replace("Z", "+00:00")})
    feed(view, w)
    view.apply(again.key, again.model_dump_json().encode(), view.offset + 1)
    assert view.held == 1


# --- selection and paging ----------------------------------------------------------------------


def test_paging_walks_every_window_once_in_order() -> None:
    windows = [
        window(hours_ago(h), area=a, quantity=q)
        for h in range(1, 6)
        for a in ("centrum", "west")
        for q in ("pm10", "pm2_5")
    ]
    seen: list[OpenWindow] = []
    cursor = None
    for _ in range(20):
        chosen = selection("air-quality", start=None, end=None, now=NOW, cursor=cursor, limit=3)
        items, cursor = page(reversed(windows), chosen)
        seen += items
        if cursor is None:
            break
    assert len(seen) == len(windows) == 20
    assert seen == sorted(seen, key=lambda w: (w.window_start, w.area, w.quantity))


def test_filters_and_the_half_open_range() -> None:
    windows = [window(hours_ago(h), area=a) for h in (1, 2, 3) for a in ("centrum", "west")]
    chosen = selection(
        "air-quality",
        start=hours_ago(3),
        end=hours_ago(1),
        now=NOW,
        area="west",
        quantity="pm10",
    )
    items, cursor = page(windows, chosen)
    assert [w.window_start[11:13] for w in items] == ["07", "08"]
    assert {w.area for w in items} == {"west"}
    assert cursor is None
    assert chosen.days() == [NOW.date()]


def test_the_default_range_is_the_last_day_and_ranges_are_bounded() -> None:
    chosen = selection("air-quality", start=None, end=None, now=NOW)
    assert chosen.end - chosen.start == timedelta(days=1)
    assert chosen.days() == [date(2026, 12, 3), date(2026, 12, 4)]
    with pytest.raises(BadSelection) as too_long:
        selection(
            "air-quality",
            start=NOW - timedelta(days=MAX_RANGE_DAYS, seconds=1),
            end=NOW,
            now=NOW,
        )
    assert too_long.value.field == "to"
    with pytest.raises(BadSelection):
        selection("air-quality", start=NOW, end=NOW, now=NOW)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "x",
        "!!!!",
        "W10",
        "WyJhIiwgMV0",
        "a" * 600,
        "eyJhIjogMX0",
        "WzEsMiwzXQ",
        "WyJ4IiwieSIsInoiXQ",  # ["x","y","z"]: three strings, no time first (was a 500)
    ],
)
def test_a_cursor_this_api_did_not_give_is_refused(cursor: str) -> None:
    with pytest.raises(BadSelection):
        decode_cursor(cursor)


def test_entity_tags_are_content_hashes_and_if_none_match_compares_them() -> None:
    tag = entity_tag(b"{}")
    assert tag == entity_tag(b"{}") != entity_tag(b"[]")
    assert matches(tag, tag)
    assert matches(f'"other", W/{tag}', tag)
    assert matches("*", tag)
    assert not matches(None, tag)
    assert not matches('"other"', tag)
