"""What a read of aggregates does, without Kafka: which partition holds a group, which records
match, which revision is current, when a scan may stop, and what a tenant may see.

The data (written by the window agent, ``cityhub.streams.aggregation.windows``):

- the record key is the *group*, ``device/<device id>`` or ``area/<tenant>/<area>``, so every
  quantity, size and window of one group is in one partition (Kafka's default partitioner:
  murmur2 of the key);
- the record timestamp is the window end (ms) and the value is an ``Aggregate`` as JSON;
- a window is written at close (revision 0) and again for each late change within the grace
  period; the highest revision of an ``aggregate_id`` is the current one.

A query asks for the windows of one group that overlap ``[from, to)`` (``window_end > from``
and ``window_start < to``), optionally of one quantity and one window size. Every such window
ends at or after ``from``, so a scan starts at the partition's first offset whose timestamp is
at or after ``from`` and reads forward.

When a scan may stop early: one group's aggregates come from one window state, whose watermark
``W`` never goes back; a window is written when ``W`` reaches its end, or again while
``W < end + grace``, and closes are written in order of their ends. So once a record of the
group with window end ``E`` has been written, every later record of the group has an end above
``E - grace``. Once a record with ``E >= to + grace + largest size`` has been seen, every later
one ends after ``to + largest size`` and hence starts after ``to``: nothing more can match. (A
query of one window size needs only that size in place of the largest: a 60 s query stops a
minute past ``to + grace``, not an hour.) The high watermark at the start of the query is the
hard stop.

Pure: no Kafka, no clock.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson

from cityhub.schemas.errors import CityhubError
from cityhub.schemas.registry import Classification
from cityhub.schemas.settings import AggregationSettings
from cityhub.schemas.sharing import ItemKind
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.sharing.grants import DeviceFacts, Grant, facts_of
from cityhub.streams.sharing.read_access import covering
from cityhub.streams.subscriptions.filter import may_see

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

_MURMUR_SEED = 0x9747B28C
_MURMUR_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF


# --- groups and partitions ---------------------------------------------------------------------


def device_group(device_id: str) -> str:
    """The record key of a device's aggregates."""
    return f"device/{device_id}"


def area_group(tenant: str, area: str) -> str:
    """The record key of a tenant's area's aggregates (areas are per tenant)."""
    return f"area/{tenant}/{area}"


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``) as an unsigned 32-bit
    value, as aiokafka's ``DefaultPartitioner`` computes it."""
    length = len(data)
    h = (_MURMUR_SEED ^ length) & _MASK32
    m = _MURMUR_M
    full = length - length % 4
    for i in range(0, full, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & _MASK32
        k ^= k >> 24
        k = (k * m) & _MASK32
        h = ((h * m) & _MASK32) ^ k
    rest = length - full
    if rest >= 3:
        h ^= data[full + 2] << 16
    if rest >= 2:
        h ^= data[full + 1] << 8
    if rest >= 1:
        h ^= data[full]
        h = (h * m) & _MASK32
    h ^= h >> 13
    h = (h * m) & _MASK32
    h ^= h >> 15
    return h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions`` (0..n-1)."""
    if partitions < 1:
        raise ValueError("a topic has at least one partition")
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# --- the query and its limits ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """What one query may cost, and the window settings its early stop depends on."""

    grace_seconds: int
    largest_window_seconds: int
    max_range_seconds: int
    max_scanned_records: int
    max_items: int
    timeout_seconds: float
    concurrency: int

    @classmethod
    def from_settings(cls, aggregation: AggregationSettings) -> QueryLimits:
        return cls(
            grace_seconds=aggregation.grace_seconds,
            largest_window_seconds=max(aggregation.window_sizes_seconds, default=0),
            max_range_seconds=aggregation.query_max_range_seconds,
            max_scanned_records=aggregation.query_max_scanned_records,
            max_items=aggregation.query_max_items,
            timeout_seconds=aggregation.query_timeout_seconds,
            concurrency=aggregation.query_concurrency,
        )


@dataclass(frozen=True, slots=True)
class AggregateQuery:
    """The windows of one group that overlap ``[from_ms, to_ms)``, optionally of one quantity
    and one window size (seconds)."""

    group: str
    from_ms: int
    to_ms: int
    quantity: str | None = None
    window_size: int | None = None

    @property
    def key(self) -> bytes:
        return self.group.encode()


class QueryRejected(CityhubError):
    """A query this instance will not run (or finish) within its limits; the API answers 400.
    ``field`` names the query parameter to change."""

    def __init__(self, detail: str, *, field: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class AggregatesUnavailable(CityhubError):
    """Kafka did not answer the read in time (or the topic is missing); trying again may work."""

    retriable = True


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (exact, no float rounding)."""
    return (moment.astimezone(UTC) - _EPOCH) // _ONE_MS


def format_ms(ms: int) -> str:
    """RFC 3339 UTC with milliseconds."""
    return (
        (_EPOCH + timedelta(milliseconds=ms))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def check_range(from_ms: int, to_ms: int, limits: QueryLimits) -> None:
    """Raise QueryRejected unless ``from < to`` and the range is within the configured most."""
    if from_ms >= to_ms:
        raise QueryRejected("from must be before to.", field="to")
    span_s = (to_ms - from_ms) / 1000
    if span_s > limits.max_range_seconds:
        raise QueryRejected(
            f"The range from {format_ms(from_ms)} to {format_ms(to_ms)} is {_span(span_s)} long; "
            f"one query covers at most {_span(limits.max_range_seconds)}. Split it into shorter "
            "ranges.",
            field="to",
        )


def _span(seconds: float) -> str:
    # Seconds, with days beside them once they are hard to read (a history range of 400 days);
    # every digit written out: 366 days and a minute is not "3.16225e+07 s (366 days)".
    text = f"{seconds:.3f}".rstrip("0").rstrip(".") + " s"
    if seconds < 2 * 24 * 3600:
        return text
    days, rest = divmod(seconds, 86400)
    return f"{text} ({days:.0f} days" + (f" and {rest:g} s)" if rest else ")")


# --- the scan ----------------------------------------------------------------------------------


class RecordLike(Protocol):
    """What a scan reads of a Kafka record (aiokafka's ConsumerRecord has these)."""

    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@functools.lru_cache(maxsize=65_536)
def _ms_of(text: str) -> int:
    # Window starts repeat across every group of a window: parse each once. Raises
    # InvalidTimestamp (a ValueError: a malformed record) outside the range of timefmt.
    return to_ms(parse_rfc3339(text))


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The current revision of every matching window, sorted by start, size, quantity, unit."""

    items: list[dict[str, Any]]
    scanned: int
    """Records read from the partition (every group's)."""
    partition: int
    stopped_early: bool
    """True when the watermark rule ended the scan before the high watermark."""
    malformed: int = 0
    """Records of the group whose value was not a readable aggregate (skipped)."""
    source: str = "kafka"
    """Where the items were read: ``kafka`` (this scan) or ``history`` (the history store,
    ``cityhub.streams.history.aggregates_source``; ``scanned`` is then the rows read and
    ``partition`` -1)."""


class Scan:
    """One query's pass over one partition: feed it records in offset order until it is done.

    Keeps the highest revision per ``aggregate_id`` of the matching records (a replay, same id
    and revision, replaces the earlier copy: they are the same). Raises QueryRejected when the
    partition holds more records than ``max_scanned_records`` before the scan could stop, or
    more matching windows than ``max_items``.
    """

    def __init__(self, query: AggregateQuery, limits: QueryLimits) -> None:
        self.query = query
        self._limits = limits
        self._key = query.key
        self._grace_ms = limits.grace_seconds * 1000
        # With a size filter only windows of that size can match, so only it counts; without,
        # the largest size configured (widened below if the topic holds larger ones).
        self._fixed_size = query.window_size is not None
        largest = query.window_size or limits.largest_window_seconds
        self._largest_ms = largest * 1000
        self._stop_at = query.to_ms + self._grace_ms + self._largest_ms
        self._current: dict[str, tuple[int, dict[str, Any]]] = {}
        self.scanned = 0
        self.malformed = 0
        self.done = False
        self.stopped_early = False
        self.reached_ms: int | None = None
        """The greatest window end of the group seen so far."""

    def feed(self, records: Iterable[RecordLike], *, end_offset: int) -> bool:
        """Take the next records (offset order); ``end_offset`` is the partition's high
        watermark when the query started (records from there on are not read). Returns
        ``done``."""
        if self.done:
            return True
        key = self._key
        most = self._limits.max_scanned_records
        for record in records:
            if record.offset >= end_offset:
                self.done = True
                break
            self.scanned += 1
            if self.scanned > most:
                raise self._too_much_to_scan()
            if record.key == key and self._take(record.value):
                self.done = self.stopped_early = True
                break
        return self.done

    def finish(self) -> None:
        """The partition had nothing more up to the high watermark."""
        self.done = True

    def _too_much_to_scan(self) -> QueryRejected:
        q = self.query
        reached = (
            f"; the group's windows read so far end up to {format_ms(self.reached_ms)}"
            if self.reached_ms is not None and self.reached_ms > q.from_ms
            else ""
        )
        return QueryRejected(
            f"The partition of {q.group} holds more than {self._limits.max_scanned_records} "
            f"records from {format_ms(q.from_ms)} on before this query could end{reached}. "
            "Ask for a shorter range (an earlier to).",
            field="to",
        )

    def _take(self, value: bytes | None) -> bool:
        """Take one record of the group; True when no later record can match."""
        try:
            doc = orjson.loads(value or b"")
            size = doc["window_size"]
            start = _ms_of(doc["window_start"])
            aggregate_id = doc["aggregate_id"]
            revision = doc["revision"]
            quantity = doc["quantity"]
            if type(size) is not int or type(revision) is not int or size < 1:
                raise TypeError("window_size and revision must be integers")
            # The end from start and size, as the record's timestamp: a window's start is inside
            # the range that parse_rfc3339 takes, its end may pass it (2099's last hour ends in
            # 2100), and it is no less readable for that.
            end = start + size * 1000
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError):
            self.malformed += 1
            return False
        if self.reached_ms is None or end > self.reached_ms:
            self.reached_ms = end
        if size * 1000 > self._largest_ms and not self._fixed_size:
            # A size beyond the configured ones (the sizes were changed): widen the stop rule.
            self._largest_ms = size * 1000
            self._stop_at = self.query.to_ms + self._grace_ms + self._largest_ms
        if end >= self._stop_at:
            return True
        q = self.query
        if end <= q.from_ms or start >= q.to_ms:
            return False
        if q.quantity is not None and quantity != q.quantity:
            return False
        if q.window_size is not None and size != q.window_size:
            return False
        current = self._current.get(aggregate_id)
        if current is None:
            if len(self._current) >= self._limits.max_items:
                raise QueryRejected(
                    f"More than {self._limits.max_items} windows of {q.group} match; ask for one "
                    "quantity, one windowSize or a shorter range.",
                    field="windowSize",
                )
        elif revision < current[0]:
            return False
        self._current[aggregate_id] = (revision, doc)
        return False

    def result(self, partition: int) -> ScanResult:
        items = [doc for _, doc in self._current.values()]
        items.sort(key=_order)
        return ScanResult(
            items=items,
            scanned=self.scanned,
            partition=partition,
            stopped_early=self.stopped_early,
            malformed=self.malformed,
        )


def _order(doc: Mapping[str, Any]) -> tuple[int, int, str, str, str]:
    return (
        _ms_of(doc["window_start"]),
        doc["window_size"],
        str(doc["quantity"]),
        str(doc.get("unit") or ""),
        str(doc["aggregate_id"]),
    )


def reads_history(query: AggregateQuery, *, now_ms: int, kafka_window_ms: int) -> bool:
    """Whether a query is served from the history store rather than Kafka: when its range
    starts more than ``kafka_window_ms`` before ``now_ms`` or is longer than that. A Kafka scan
    reads every group's records of one partition from ``from`` on, so it suits short recent
    ranges only; the store's index reads one group's windows whatever the range."""
    return query.from_ms < now_ms - kafka_window_ms or query.to_ms - query.from_ms > kafka_window_ms


class AggregateSource(Protocol):
    """Where the API reads aggregates: the Kafka reader, or the in-memory one in tests."""

    @property
    def limits(self) -> QueryLimits: ...

    async def read(self, query: AggregateQuery) -> ScanResult:
        """The current revisions of the windows ``query`` asks for; QueryRejected past a limit,
        AggregatesUnavailable when the data cannot be read now."""
        ...

    async def close(self) -> None: ...


# --- who may see what --------------------------------------------------------------------------


def visible_to(viewer_tenant: str, items: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The items a key of ``viewer_tenant`` may read without an agreement (the subscription
    filter's ``may_see``: its own tenant's, other tenants' only when ``public``). Apply it to
    current revisions only: an older public revision of a window that became more restricted
    must not show."""
    return visible_under(viewer_tenant, items)[0]


def visible_under(
    viewer_tenant: str,
    items: Sequence[Mapping[str, Any]],
    grants: Sequence[Grant] = (),
    device_of: DeviceFacts | None = None,
    *,
    personal: bool = False,
) -> tuple[list[Mapping[str, Any]], dict[str, Grant]]:
    """The items a key of ``viewer_tenant`` may read: ``visible_to``'s, and other tenants'
    windows that one of ``grants`` (the viewer's active agreements) covers, with the device
    type and tags of a device's window from ``device_of`` (the registry's); and the agreement
    each of those is read under, by ``aggregate_id``. A ``personal`` window of another tenant
    only with ``personal`` (the caller then checks it against the provider's activity, as
    ``cityhub.streams.privacy.reads`` does) and only under a personal offer."""
    out: list[Mapping[str, Any]] = []
    under: dict[str, Grant] = {}
    for item in items:
        tenant = item.get("tenant")
        classification = item.get("classification")
        owner = tenant if isinstance(tenant, str) else None
        if may_see(
            viewer_tenant,
            owner,
            classification if isinstance(classification, str) else None,
        ):
            out.append(item)
            continue
        if not grants or (classification == Classification.PERSONAL and not personal):
            continue
        aggregate = item.get("aggregate_id")
        if not isinstance(aggregate, str):
            continue
        grant = covering(grants, facts_of(item, ItemKind.AGGREGATES, device_of))
        if grant is not None:
            out.append(item)
            under[aggregate] = grant
    return out, under


def read_under(items: Iterable[Mapping[str, Any]], under: Mapping[str, Grant]) -> dict[str, int]:
    """How many of ``items`` (what a read returned) each agreement let through, by agreement
    id, from ``visible_under``'s mapping."""
    tally: dict[str, int] = {}
    for item in items:
        grant = under.get(str(item.get("aggregate_id")))
        if grant is not None:
            tally[grant.agreement_id] = tally.get(grant.agreement_id, 0) + 1
    return tally
