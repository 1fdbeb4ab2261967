"""Which windows an open-API call asks for: its time range (bounded), filters and page. Pure.

Windows are served in file order (start, area, quantity); a page's cursor is the order key of
its last window, so the next page starts right after it, whichever process serves it and however
many windows were published meanwhile (a new window of an earlier start than the cursor is not
shown to a client already past it: windows arrive in time order, and a client that wants them
all reads a closed range).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import orjson

from cityhub.schemas import base64url
from cityhub.schemas.errors import InvalidTimestamp
from cityhub.schemas.open_data import OpenWindow
from cityhub.schemas.timefmt import parse_rfc3339, rfc3339_from_datetime
from cityhub.streams.opendata.files import sort_key

MAX_RANGE_DAYS = 31
"""The longest time range one call may ask for; longer ones are a 400 (the daily files serve
bulk downloads)."""
DEFAULT_RANGE = timedelta(days=1)
MAX_CURSOR_LENGTH = 512

Cursor = tuple[str, str, str]


class BadSelection(ValueError):
    """A call's range or cursor that cannot be served; ``field`` names the parameter."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(why)
        self.field = field
        self.why = why


@dataclass(frozen=True, slots=True)
class WindowSelection:
    """The windows of one dataset that start in ``[start, end)``, optionally of one area and
    one quantity, after ``after`` (a cursor), at most ``limit`` of them."""

    dataset: str
    start: datetime
    end: datetime
    area: str | None
    quantity: str | None
    after: Cursor | None
    limit: int

    def days(self) -> list[date]:
        """The UTC days the range touches (each is one daily file), oldest first."""
        first = self.start.date()
        last = (self.end - timedelta(microseconds=1)).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def admits(self, window: OpenWindow) -> bool:
        start = self.start_text
        return (
            start <= window.window_start < self.end_text
            and (self.area is None or window.area == self.area)
            and (self.quantity is None or window.quantity == self.quantity)
            and (self.after is None or sort_key(window) > self.after)
        )

    @property
    def start_text(self) -> str:
        return rfc3339_from_datetime(self.start)

    @property
    def end_text(self) -> str:
        return rfc3339_from_datetime(self.end)


def selection(
    dataset: str,
    *,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
    area: str | None = None,
    quantity: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> WindowSelection:
    """The selection of a call: ``end`` defaults to the minute after ``now``, ``start`` to a day
    before ``end``.
    BadSelection when ``start`` is not before ``end``, the range is longer than
    ``MAX_RANGE_DAYS`` days, or the cursor is not one this API gave."""
    # The default end is the next whole minute, not now: the answer (and its ETag) stays the
    # same for a minute unless a window is published, so caches and If-None-Match work.
    end = end if end is not None else now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = start if start is not None else end - DEFAULT_RANGE
    if start >= end:
        raise BadSelection("from", "must be before to")
    if end - start > timedelta(days=MAX_RANGE_DAYS):
        raise BadSelection(
            "to", f"the range may be at most {MAX_RANGE_DAYS} days; use the daily files for more"
        )
    return WindowSelection(
        dataset=dataset,
        start=start,
        end=end,
        area=area,
        quantity=quantity,
        after=decode_cursor(cursor) if cursor is not None else None,
        limit=limit,
    )


def page(
    windows: Iterable[OpenWindow], chosen: WindowSelection
) -> tuple[list[OpenWindow], str | None]:
    """The windows ``chosen`` admits, in order, at most ``chosen.limit``, and the cursor of the
    next page (None when this is the last)."""
    admitted = sorted((w for w in windows if chosen.admits(w)), key=sort_key)
    items = admitted[: chosen.limit]
    more = len(admitted) > chosen.limit
    return items, encode_cursor(sort_key(items[-1])) if more and items else None


def encode_cursor(key: Cursor) -> str:
    return base64url.encode(orjson.dumps(list(key)))


def decode_cursor(text: str) -> Cursor:
    """The order key in a cursor; BadSelection for anything else."""
    if len(text) > MAX_CURSOR_LENGTH:
        raise BadSelection("cursor", "too long; pass the next_cursor of the previous page")
    try:
        raw = base64url.decode(text)
        value = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError):
        raise BadSelection("cursor", "not a cursor of this API") from None
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)):
        raise BadSelection("cursor", "not a cursor of this API")
    try:  # the first is a window's start: the reader takes its day from it
        parse_rfc3339(value[0])
    except InvalidTimestamp:
        raise BadSelection("cursor", "not a cursor of this API") from None
    return (value[0], value[1], value[2])


def entity_tag(body: bytes) -> str:
    """A strong ETag of a response body: the same bytes get the same tag in every process."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``tag`` (or is ``*``); weak tags compare by
    their opaque part, as RFC 9110 says for ``If-None-Match``."""
    if not if_none_match:
        return False
    for part in if_none_match.split(","):
        candidate = part.strip()
        if candidate == "*" or candidate.removeprefix("W/") == tag:
            return True
    return False
