"""The data requests in memory: what their compacted topic (``Topics.data_requests``) says.

Pure: no I/O. A store feeds it the topic's records in offset order with ``apply``; every API
instance holds one. Request ids begin with their filing time in hexadecimal milliseconds
(``new_request_id``), so id order is filing order: listings go newest first, and a page's
cursor is the last id it showed (a cursor that names no request still has its place).
"""

from __future__ import annotations

import bisect
import json
import logging
import secrets
from collections.abc import Iterator

from cityhub.schemas.data_request import DataRequest, DataRequestStatus, record_key
from cityhub.schemas.plain_text import STORED
from cityhub.streams.compacted_view import CompactedView
from cityhub.streams.registry.paging import Page, page_limit

log = logging.getLogger("cityhub.opendata.requests")


class MalformedRequest(ValueError):
    """A record on the topic the view cannot use (logged and counted)."""


def new_request_id(now: float) -> str:
    """A fresh id: the filing time in milliseconds (12 hexadecimal digits, so that ids sort in
    filing order until the year 10 889) and 8 random hexadecimal digits."""
    return f"{int(now * 1000):012x}-{secrets.token_hex(4)}"


class DataRequestView(CompactedView):
    """The requests after applying the topic's records up to ``offset``. ``apply`` never raises
    on a bad record: it logs the offset and key, counts it and moves on. A tombstone removes a
    request (an admin's ``cityhub`` tooling may purge one; the API never writes one)."""

    def __init__(self) -> None:
        super().__init__(log, "data request")
        self._requests: dict[str, DataRequest] = {}
        self._ids: list[str] = []
        """Every id, ascending (oldest first)."""
        self._open = 0

    def _apply(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._remove(key.removeprefix("data_request/"))
            return
        doc = json.loads(value)
        if not isinstance(doc, dict) or doc.get("kind") != "data_request":
            raise MalformedRequest("not a data request")
        record = DataRequest.model_validate(doc, context=STORED)
        if key != record_key(record):
            raise MalformedRequest(f"key does not match the record's ({record_key(record)})")
        self._put(record)

    def _put(self, record: DataRequest) -> None:
        before = self._requests.get(record.id)
        if before is None:
            bisect.insort(self._ids, record.id)
        elif before.status is DataRequestStatus.OPEN:
            self._open -= 1
        self._requests[record.id] = record
        if record.status is DataRequestStatus.OPEN:
            self._open += 1

    def _remove(self, request_id: str) -> None:
        before = self._requests.pop(request_id, None)
        if before is None:
            return
        del self._ids[bisect.bisect_left(self._ids, request_id)]
        if before.status is DataRequestStatus.OPEN:
            self._open -= 1

    def get(self, request_id: str) -> DataRequest | None:
        return self._requests.get(request_id)

    def count(self) -> int:
        return len(self._requests)

    def open_count(self) -> int:
        """Requests with status ``open``."""
        return self._open

    def all(self) -> Iterator[DataRequest]:
        """Every request, oldest first."""
        for request_id in list(self._ids):
            yield self._requests[request_id]

    def page(
        self, *, status: DataRequestStatus | None = None, limit: int, cursor: str | None = None
    ) -> Page[DataRequest]:
        """The requests with ``status`` (any: None), newest first, after ``cursor``."""
        size = page_limit(limit)
        end = len(self._ids) if cursor is None else bisect.bisect_left(self._ids, cursor)
        items: list[DataRequest] = []
        for index in range(end - 1, -1, -1):
            record = self._requests[self._ids[index]]
            if status is not None and record.status is not status:
                continue
            if len(items) == size:
                return Page(items, items[-1].id)
            items.append(record)
        return Page(items, None)


__all__ = ["DataRequestView", "MalformedRequest", "new_request_id"]
