"""The processing log in memory, indexed for the two questions it answers: what was done with a
data subject's data (the resident's), and what was done under a processing activity (the privacy
officer's), each within one tenant.

Pure: no I/O. ``ProcessingLogFollower`` (``log_follower.py``) feeds it every record of the
``processing_log`` topic, all partitions from the beginning, then live.

**Memory bound.** The index holds at most ``max_records`` records (the setting
``CITYHUB_PRIVACY__PROCESSING_LOG_INDEX_MAX_RECORDS``). Past that it drops the records it took
in first, which are the oldest (records arrive about in time order). It remembers the latest
start time of what it dropped: every record that started after that is still held, so a query
whose range begins after it is complete, and any other query says it is not (``complete``
false, ``held_from``). Kafka keeps the whole log (its retention); only this index forgets.

**Queries.** Newest first by ``start_time`` (ties by trace and span id, so that the order is the
same in every API process), optionally within ``[since, until)`` in Unix milliseconds, at most
``limit`` records per page; ``next_cursor`` continues after the last record of a page and
means the same in every API process. A record seen twice (a retried write) is served once.
"""

from __future__ import annotations

import heapq
import logging
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from cityhub.schemas.processing_log import (
    InvalidRecord,
    ProcessingLogRecord,
    record_from_json,
)
from cityhub.streams.registry.paging import page_limit
from cityhub.streams.service_errors import FieldError, Invalid

log = logging.getLogger("cityhub.privacy.log_index")

DEFAULT_MAX_RECORDS: Final = 200_000
MAX_RECORD_BYTES: Final = 16 * 1024
"""A record on the topic larger than this is not one cityhub wrote (they are under 1 KB): it is
counted as malformed, not held."""

_CURSOR = re.compile(r"^(\d{1,15})\.([0-9a-f]{48})$")


@dataclass(frozen=True, slots=True)
class LogPage:
    """One page of processing-log records, newest first."""

    records: list[ProcessingLogRecord]
    next_cursor: str | None
    """Pass it as ``cursor`` for the next page; ``None``: this was the last."""
    complete: bool
    """False when the index dropped records (its memory bound) that this query's time range
    reaches: records may be missing, the oldest first."""
    held_from: int | None
    """Every record that started after this Unix time in ms is held; ``None``: nothing was
    dropped."""


class _Bucket:
    """The entries of one key, oldest taken first."""

    __slots__ = ("entries", "key")

    def __init__(self, key: str | tuple[str, str]) -> None:
        self.key = key
        self.entries: deque[_Entry] = deque()


class _Entry:
    """One record as held: its order, its raw JSON (parsed again when served: far smaller than
    the parsed model) and the buckets it is in."""

    __slots__ = ("activity", "order", "raw", "subject", "tenant")

    def __init__(
        self,
        order: tuple[int, str],
        raw: bytes,
        tenant: _Bucket,
        subject: _Bucket | None,
        activity: _Bucket,
    ) -> None:
        self.order = order
        self.raw = raw
        self.tenant = tenant
        self.subject = subject
        self.activity = activity


def _cursor(entry: _Entry) -> str:
    start, tie = entry.order
    return f"{start}.{tie}"


def parse_cursor(cursor: str) -> tuple[int, str]:
    """The position a cursor names; ``Invalid`` (422 on ``cursor``) if it is not one."""
    found = _CURSOR.fullmatch(cursor)
    if found is None:
        raise Invalid(
            "cursor is not a cursor of this listing",
            errors=[FieldError("cursor", "pass the next_cursor of the previous page")],
        )
    return int(found.group(1)), found.group(2)


class ProcessingLogIndex:
    """The held records by (tenant), (tenant, subject) and (tenant, activity id)."""

    def __init__(self, max_records: int = DEFAULT_MAX_RECORDS) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self._max = max_records
        self._all: deque[_Entry] = deque()
        self._tenants: dict[str, _Bucket] = {}
        self._subjects: dict[tuple[str, str], _Bucket] = {}
        self._activities: dict[tuple[str, str], _Bucket] = {}
        self._dropped = 0
        self._dropped_until: int | None = None
        self._malformed = 0
        self._applied = 0
        self._ready = False

    # --- state --------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether the index caught up with the topic as it was when its follower started."""
        return self._ready

    def mark_ready(self) -> None:
        self._ready = True

    @property
    def max_records(self) -> int:
        return self._max

    def count(self) -> int:
        """Records held."""
        return len(self._all)

    @property
    def dropped(self) -> int:
        """Records dropped to stay within the bound, since the start."""
        return self._dropped

    @property
    def held_from(self) -> int | None:
        """The latest start time (ms) of a dropped record; ``None`` if none was dropped."""
        return self._dropped_until

    @property
    def malformed(self) -> int:
        """Records on the topic that are not valid processing-log records (skipped)."""
        return self._malformed

    @property
    def applied(self) -> int:
        """Records taken from the topic, malformed ones included."""
        return self._applied

    # --- feeding ------------------------------------------------------------------------------
    def apply(self, key: bytes | None, value: bytes | None, *, partition: int, offset: int) -> bool:
        """Take one record of the topic; whether it was held. A record that is not a valid
        processing-log record, or whose key is not ``record.key()``, is counted and logged by
        its position only (never its content). Never raises."""
        self._applied += 1
        try:
            if value is None or len(value) > MAX_RECORD_BYTES:
                raise InvalidRecord("empty or larger than any record cityhub writes")
            record = record_from_json(value)
            if key != record.key():
                raise InvalidRecord("its key is not <tenant>/<data subject> of its content")
        except InvalidRecord as error:
            self._malformed += 1
            log.warning(
                "processing log record at partition %d offset %d skipped: %s",
                partition,
                offset,
                error,
            )
            return False
        self.add(record, value)
        return True

    def add(self, record: ProcessingLogRecord, raw: bytes | None = None) -> None:
        """Hold ``record`` (``raw``: its JSON as read, to save encoding it again), dropping the
        oldest held records past the bound."""
        tenant = record.tenant
        tenant_bucket = self._tenants.get(tenant)
        if tenant_bucket is None:
            tenant_bucket = self._tenants[tenant] = _Bucket(tenant)
        subject_bucket = None
        if record.subject is not None:
            subject_bucket = self._pair_bucket(self._subjects, (tenant, record.subject))
        activity_bucket = self._pair_bucket(self._activities, (tenant, record.activity_id))
        entry = _Entry(
            (record.start_time, record.trace_id + record.span_id),
            raw if raw is not None else record.to_json(),
            tenant_bucket,
            subject_bucket,
            activity_bucket,
        )
        self._all.append(entry)
        for bucket in (tenant_bucket, subject_bucket, activity_bucket):
            if bucket is not None:
                bucket.entries.append(entry)
        while len(self._all) > self._max:
            self._drop_oldest()

    @staticmethod
    def _pair_bucket(buckets: dict[tuple[str, str], _Bucket], key: tuple[str, str]) -> _Bucket:
        found = buckets.get(key)
        if found is None:
            found = buckets[key] = _Bucket(key)
        return found

    def _drop_oldest(self) -> None:
        entry = self._all.popleft()
        # Entries enter every bucket in the order they enter _all, so the oldest held is at the
        # head of each of its buckets.
        for bucket in (entry.tenant, entry.subject, entry.activity):
            if bucket is None:
                continue
            bucket.entries.popleft()
            if bucket.entries:
                continue
            if isinstance(bucket.key, str):
                del self._tenants[bucket.key]
            elif bucket is entry.subject:
                del self._subjects[bucket.key]
            else:
                del self._activities[bucket.key]
        self._dropped += 1
        start = entry.order[0]
        if self._dropped_until is None or start > self._dropped_until:
            self._dropped_until = start

    # --- queries ------------------------------------------------------------------------------
    def of_subject(
        self,
        tenant: str,
        subject: str,
        *,
        activity_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> LogPage:
        """The records of data subject ``subject`` of ``tenant`` (under ``activity_id`` only,
        if given), newest first."""
        bucket = self._subjects.get((tenant, subject))
        activity = None
        if activity_id is not None:
            activity = self._activities.get((tenant, activity_id))
            if activity is None:
                bucket = None
        return self._page(bucket, activity, since, until, limit, cursor)

    def of_activity(
        self,
        tenant: str,
        activity_id: str,
        *,
        since: int | None = None,
        until: int | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> LogPage:
        """The records of ``tenant`` under the processing activity ``activity_id`` (its URI),
        newest first."""
        bucket = self._activities.get((tenant, activity_id))
        return self._page(bucket, None, since, until, limit, cursor)

    def of_tenant(
        self,
        tenant: str,
        *,
        since: int | None = None,
        until: int | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> LogPage:
        """Every record of ``tenant``, newest first."""
        return self._page(self._tenants.get(tenant), None, since, until, limit, cursor)

    def _page(
        self,
        bucket: _Bucket | None,
        activity: _Bucket | None,
        since: int | None,
        until: int | None,
        limit: int,
        cursor: str | None,
    ) -> LogPage:
        limit = page_limit(limit)
        after = parse_cursor(cursor) if cursor is not None else None
        low = since if since is not None else -1
        complete = self._dropped_until is None or low > self._dropped_until
        entries: Iterable[_Entry] = bucket.entries if bucket is not None else ()

        def matching(after: tuple[int, str] | None) -> Iterator[_Entry]:
            return (
                e
                for e in entries
                if (activity is None or e.activity is activity)
                and e.order[0] >= low
                and (until is None or e.order[0] < until)
                and (after is None or e.order < after)
            )

        # The newest limit + 1 (and as many again for duplicates) without sorting the bucket.
        wanted = limit * 2 + 1
        newest = heapq.nlargest(wanted, matching(after), key=lambda e: e.order)
        served: list[_Entry] = []
        more = False
        for entry in newest:
            if served and served[-1].order == entry.order:
                continue  # the same record written twice
            if len(served) == limit:
                more = True
                break
            served.append(entry)
        if not more and served and len(newest) == wanted:
            # Duplicates filled the rest of what was taken: look past them.
            more = next(matching(served[-1].order), None) is not None
        return LogPage(
            [record_from_json(e.raw) for e in served],
            _cursor(served[-1]) if more else None,
            complete,
            self._dropped_until,
        )
