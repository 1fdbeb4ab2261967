"""The aggregator agents: ``cityhub.observations`` → ``cityhub.aggregates``.

Two agents, each a thin shell around :class:`cityhub.streams.aggregation.windows.WindowState`
for the worker's runtime (``cityhub.streams.runtime``):

* ``aggregator-device`` reads ``cityhub.observations`` (keyed by device) and keeps the device
  windows; it also forwards every observation that has an area and a tenant, unchanged, to
  ``cityhub.observations-by-area`` keyed ``<tenant>/<area>``;
* ``aggregator-area`` reads that topic and keeps the (tenant, area) windows.

An area's observations come from many devices, hence from many partitions of the observations
topic: the repartition brings them to one partition, so that one state sees all of them.

Watermarks across the repartition. An area partition receives the interleaved output of every
device partition, and the interleaving depends on how fast each is processed: after a restart
or during a backlog one device partition may run an hour ahead of another. Were the area state
to take its watermark from the observations it sees (the greatest event time), the lagging
partition's observations would arrive "too late" and be dropped, and the area aggregates would
no longer equal the recomputation. So, as Flink does across input channels, the area watermark
is the least of the device partitions' watermarks: every forwarded observation carries its
device partition's watermark (header ``cityhub-watermark: <partition>:<µs>``, taken after the
observation was added), and every device partition broadcasts a marker record (no value, the
same header) to every area partition on each tick, so that a device partition without area
traffic (or an idle one, advanced by the clock) does not hold the areas back. The area state
runs with ``own_watermark`` off and is advanced to that minimum once every device partition has
reported. Then an observation is too late for an area window exactly when it was too late for
the device windows of its partition: the two stages drop the same observations.

State. One ``WindowState`` per input partition, kept in a compacted changelog
(``<app_id>-device-windows-changelog``, ``<app_id>-area-windows-changelog``; faust's table
format, JSON key and value, so a worker that ran on faust keeps its state) with one entry per
series (a device's quantity: its windows and seen event ids; an area's quantity: its windows),
key ``"<partition>/<series key>"``, and the state's meta ``"<partition>/meta"``. Only what a
batch changed is written (``take_changes``), once per batch, in the changelog partition of the
input partition; the runtime commits the batch's offsets only once Kafka confirmed the state
with the aggregates and the forwarded copies.

Restart and rebalance. A partition given to the worker has its state rebuilt from its
changelog entries, and the last emission of every closed window still held (within grace) is
written again (``WindowState.emitted``): a crash between the state's write and the aggregate's
must not lose an emission. Consumers drop the copies by ``aggregate_id`` and ``revision``. An
observation processed again after a crash is a duplicate for the restored state (its event id
was saved with it), or new if its state was never confirmed.

Clock. A device partition whose devices go quiet would keep its last windows open forever: on
each tick, one that has taken no record for ``idle_close_seconds`` and has read all its
records (its position is its high watermark) is advanced to ``wall clock - idle_close_seconds``,
as if an observation that old had arrived: windows close ``idle_close`` after their end; an
observation delayed by up to ``idle_close + grace`` still counts (late ones re-emit), beyond
that it is dropped. Not ``- grace`` as well: grace already covers late data through
re-emission, and subtracting it would delay every first emission of a quiet partition by
another grace period. The caught-up check keeps the clock from overtaking a backlog (after a
restart a partition may hold an hour of observations; advancing past them would drop them
all). The area states follow through the markers.

Aggregates are written keyed by their group (``Aggregate.kafka_key``) with the window end as the
record timestamp, and to the topic of every subscription to aggregates that takes them.

Traces. An aggregate comes from many observations, each with its own trace, and from the clock
(a window closed by a tick has no last observation): each aggregate record (each revision of a
window) starts a new trace (``traceparent`` header), and each copy routed to a subscription's
topic carries a child span of it. Following one uplink into an aggregate goes by the window
(``aggregate_id``), not by the trace. Pure: no I/O, no clock (the runtime passes ``now``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import orjson

from cityhub.schemas.aggregate import Aggregate, Grouping
from cityhub.schemas.log_context import about_message
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import Source
from cityhub.schemas.topics import AREA_WINDOWS, DEVICE_WINDOWS, Topics, changelog
from cityhub.schemas.trace_context import TRACEPARENT, SpanPool, traceparent_in
from cityhub.streams import metrics
from cityhub.streams.aggregation.points import Point
from cityhub.streams.aggregation.window_config import WindowConfig
from cityhub.streams.aggregation.windows import COUNTERS, WindowState
from cityhub.streams.privacy.gate import PrivacyGate
from cityhub.streams.privacy.purpose import PERSONAL, aggregate_mark
from cityhub.streams.runtime.agent import CaughtUp, Record, StoredEntry, Write
from cityhub.streams.subscriptions.router import SubscriptionRouter

log = logging.getLogger("cityhub.aggregator")

META = "meta"
WATERMARK_HEADER = "cityhub-watermark"


def window_config(settings: Settings, grouping: Grouping) -> WindowConfig:
    """The windowing of one grouping, from the ``aggregation`` settings."""
    agg = settings.aggregation
    return WindowConfig(
        sizes=tuple(agg.window_sizes_seconds),
        grace=agg.grace_seconds,
        groupings=(grouping,),
        max_future=agg.max_future_seconds,
        # The area states follow the device partitions' watermarks (see the module docstring).
        own_watermark=grouping == "device",
        exclude_flagged=agg.exclude_flagged,
        roster_seconds=agg.coverage_roster_seconds,
    )


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def table_key(partition: int, entry_key: str) -> str:
    """The table key of a state entry (``entry_key`` from ``take_changes``, or ``meta``)."""
    return f"{partition}/{entry_key}"


def state_from_entries(
    items: Iterable[tuple[Any, Any]], partitions: Iterable[int], config: WindowConfig
) -> dict[int, WindowState]:
    """The states of ``partitions`` rebuilt from table items (key, value), in one pass; a
    partition without a meta entry gets an empty state (entries without meta cannot occur: the
    meta is written with every change)."""
    wanted = {str(p): p for p in partitions}
    metas: dict[int, dict[str, Any]] = {}
    entries: dict[int, list[Any]] = {p: [] for p in wanted.values()}
    for key, value in items:
        if not isinstance(key, str) or value is None:
            continue
        prefix, _, rest = key.partition("/")
        partition = wanted.get(prefix)
        if partition is None:
            continue
        if rest == META:
            metas[partition] = value
        else:
            entries[partition].extend(value)  # a series: its windows and seen-id sets
    states: dict[int, WindowState] = {}
    for partition in wanted.values():
        meta = metas.get(partition)
        if meta is None:
            states[partition] = WindowState(config)
        else:
            states[partition] = WindowState.from_json(
                {**meta, "entries": entries[partition]}, config
            )
    return states


def watermark_header(partition: int, watermark: int) -> tuple[str, bytes]:
    """The header that carries a device partition's watermark (µs) across the repartition."""
    return (WATERMARK_HEADER, f"{partition}:{watermark}".encode())


def read_watermark(headers: Any) -> tuple[int, int] | None:
    """(device partition, watermark µs) from a record's headers (a list of pairs or a
    mapping), or None when there is none or it is malformed."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name == WATERMARK_HEADER and isinstance(value, bytes | bytearray):
            source, sep, wm = bytes(value).partition(b":")
            if sep:
                try:
                    return int(source), int(wm)
                except ValueError:
                    return None
    return None


class AggregatorAgent:
    """One grouping's windows as the runtime drives them (``cityhub.streams.runtime.agent``)."""

    def __init__(
        self,
        settings: Settings,
        grouping: Grouping,
        router: SubscriptionRouter | None = None,
        *,
        gate: PrivacyGate | None = None,
        category_of: Callable[[str, str], str] | None = None,
        interval_of: Callable[[str | None, str], int | None] | None = None,
    ) -> None:
        """Aggregates classified personal (of personal devices without a data subject: sealed
        observations are never aggregated) are routed only where ``gate`` admits them, as the
        category ``category_of(tenant, device id)`` gives (an area's: ``aggregates``); without
        a gate, nowhere. ``interval_of(tenant, device id)``: the device's expected reporting
        interval in seconds, which coverage counts against (without it: no coverage)."""
        topics = Topics.for_prefix(settings.kafka.topic_prefix)
        self.grouping = grouping
        self.name = f"aggregator-{grouping}"
        self.topic = topics.observations if grouping == "device" else topics.area_observations
        state = DEVICE_WINDOWS if grouping == "device" else AREA_WINDOWS
        self.changelog: str | None = changelog(settings.worker.app_id, state)
        self.config = window_config(settings, grouping)
        self._aggregates = topics.aggregates
        self._area_topic = topics.area_observations
        self._router = router
        self._gate = gate
        self._category_of = category_of
        self._interval_of = interval_of
        self._idle_close = settings.aggregation.idle_close_seconds
        self._partition_count = settings.kafka.partitions
        """Partitions of the observations and the area topics, both created by cityhub with
        ``kafka.partitions``: how many device partitions report to an area partition, and how
        many area partitions a device partition tells its watermark."""
        self.states: dict[int, WindowState] = {}
        self._last_taken: dict[int, float] = {}
        """Wall clock of each partition's last batch (or of its assignment)."""
        self._sources: dict[int, dict[int, int]] = {}
        """Area: by area partition, the last watermark (µs) each device partition reported."""
        self._exported: dict[int, dict[str, int]] = {}
        self._meta_written: dict[int, dict[str, Any]] = {}
        """The meta last written per partition (its changelog's, after an assignment)."""
        self._events = metrics.AGGREGATOR_EVENTS
        self._windows = metrics.AGGREGATOR_WINDOWS.labels(grouping)
        self._rewritten = metrics.AGGREGATOR_REWRITTEN.labels(grouping)
        self._spans = SpanPool()

    @property
    def partitions(self) -> Collection[int]:
        return self.states.keys()

    @property
    def tick_interval(self) -> float | None:
        """Device windows tick (idle close, watermark markers); area windows follow them."""
        if self.grouping != "device":
            return None
        return max(0.2, min(5.0, self._idle_close / 4))

    # -- the runtime's calls -------------------------------------------------------------------

    def assign(self, partition: int, stored: Sequence[StoredEntry]) -> list[Write]:
        """Rebuild the partition's state from its changelog entries and write again the last
        emission of its closed windows still held (a crash may have lost it)."""
        items = []
        for entry in stored:
            try:
                items.append((orjson.loads(entry.key), orjson.loads(entry.value)))
            except orjson.JSONDecodeError:
                continue
        state = state_from_entries(items, (partition,), self.config)[partition]
        self.states[partition] = state
        stored_meta = dict(items).get(table_key(partition, META))
        if isinstance(stored_meta, dict):
            self._meta_written[partition] = stored_meta
        self._exported[partition] = dict(state.counters)
        self._last_taken[partition] = -1.0  # "never": quiet from the start
        again = state.emitted()
        log.info(
            "%s windows of partition %d restored: %d held, %d closed ones written again",
            self.grouping,
            partition,
            len(state),
            len(again),
        )
        self._rewritten.inc(len(again))
        return self._aggregate_writes(again)

    def revoke(self, partition: int) -> None:
        self._export(partition)
        self.states.pop(partition, None)
        self._exported.pop(partition, None)
        self._meta_written.pop(partition, None)
        self._last_taken.pop(partition, None)
        self._sources.pop(partition, None)

    def step(self, partition: int, records: Sequence[Record], now: float) -> list[Write]:
        """Add a batch of one partition's observations to its windows (see the module
        docstring); the aggregates they close or change, the forwarded copies (device) and, once,
        the state entries the batch changed."""
        state = self.states.get(partition)
        if state is None:  # not assigned through the runtime (tests): an empty state
            state = self.states[partition] = WindowState(self.config)
            self._exported[partition] = dict(state.counters)
        self._last_taken[partition] = now
        writes: list[Write] = []
        aggregates: list[Aggregate] = []
        device = self.grouping == "device"
        counters = state.counters
        for record in records:
            value = record.value
            if value is None:
                if not device:
                    aggregates += self._follow_sources(partition, state, record.headers)
                continue
            try:
                doc = orjson.loads(value)
                if "sealed" in doc:
                    # A data subject's values: only a delivery or a read that passed the
                    # purpose check may open them, so they are not aggregated.
                    self._events.labels(self.grouping, "sealed").inc()
                    continue
                interval = None
                if self._interval_of is not None:
                    interval = self._interval_of(doc.get("tenant"), doc["device_id"])
                point = Point.from_observation(doc, interval)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                # The normaliser writes only valid observations: this is somebody else's.
                with about_message(traceparent_in(record.headers)):
                    log.warning(
                        "not an observation at %s[%d]@%d: %r",
                        record.topic,
                        partition,
                        record.offset,
                        exc,
                    )
                self._events.labels(self.grouping, "invalid").inc()
                continue
            dropped = counters["late_dropped"] + counters["future_dropped"]
            aggregates += state.add(point, now=now, seq=record.offset)
            if not device:
                aggregates += self._follow_sources(partition, state, record.headers)
                continue
            # Forwarded unless the device windows dropped it as too late or from the future:
            # the area windows, whose watermark may trail this partition's, would take it.
            forward = dropped == counters["late_dropped"] + counters["future_dropped"]
            tenant, area = doc.get("tenant"), doc.get("area")
            if (
                forward
                and isinstance(tenant, str)
                and isinstance(area, str)
                and state.watermark is not None
            ):
                writes.append(
                    Write(
                        self._area_topic,
                        f"{tenant}/{area}".encode(),
                        value,
                        headers=[watermark_header(partition, state.watermark)],
                    )
                )
        writes += self._persist(partition, state)
        writes += self._aggregate_writes(aggregates)
        self._export(partition)
        return writes

    def tick(self, now: float, caught_up: CaughtUp) -> list[Write]:
        """Device: advance quiet, caught-up partitions to ``now - idle_close`` and tell every
        area partition each one's watermark."""
        writes: list[Write] = []
        for partition, state in self.states.items():
            if now - self._last_taken.get(partition, now) < self._idle_close:
                continue
            if not caught_up(partition):
                continue
            aggregates = state.advance(now - self._idle_close)
            writes += self._persist(partition, state)
            if aggregates:
                log.debug("device partition %d idle: %d windows closed", partition, len(aggregates))
                writes += self._aggregate_writes(aggregates)
            self._export(partition)
        marks = [(p, s.watermark) for p, s in self.states.items() if s.watermark is not None]
        for target in range(self._partition_count):
            for source, watermark in marks:
                writes.append(
                    Write(
                        self._area_topic,
                        f"watermark/{source}".encode(),
                        None,
                        partition=target,
                        headers=[watermark_header(source, watermark)],
                    )
                )
        return writes

    # -- helpers -------------------------------------------------------------------------------

    def _persist(self, partition: int, state: WindowState) -> list[Write]:
        """The changelog entries of what changed in ``state`` (the meta last); none when only
        counters moved, or the meta is what was written last and no entry changed."""
        meta, entries = state.take_changes()
        written = self._meta_written.get(partition)
        if not entries and written is not None and written.get("watermark") == meta["watermark"]:
            return []  # a duplicate, a late drop: not worth a write
        self._meta_written[partition] = meta
        topic = self.changelog or ""
        writes = [
            Write(
                topic,
                _json(table_key(partition, key)),
                None if value is None else _json(value),
                partition=partition,
            )
            for key, value in entries.items()
        ]
        writes.append(
            Write(topic, _json(table_key(partition, META)), _json(meta), partition=partition)
        )
        return writes

    def _aggregate_writes(self, aggregates: Iterable[Aggregate]) -> list[Write]:
        """To ``cityhub.aggregates``, and to the topic of every subscription to aggregates whose
        filter takes the aggregate (its JSON, as the filter reads aggregates)."""
        writes = []
        router = self._router
        spans = self._spans
        routed = 0
        for a in aggregates:
            doc, key, timestamp = a.to_json(), a.kafka_key(), a.timestamp_ms()
            trace = spans.new_trace()
            if a.classification == PERSONAL:
                mark = aggregate_mark(a.tenant, a.device_id, self._category_of)
                headers = [mark.header(), (TRACEPARENT, trace)]
                writes.append(
                    Write(self._aggregates, key, doc, timestamp_ms=timestamp, headers=headers)
                )
                if router is None or self._gate is None:
                    continue
                topics = router.route(orjson.loads(doc), Source.AGGREGATES)
                for topic in self._gate.routes(
                    topics, mark, router.subscription_at, router.grant_at
                ):
                    copy = [mark.header(), (TRACEPARENT, spans.child_of_own(trace))]
                    writes.append(
                        router.write(topic, key, doc, timestamp_ms=timestamp, headers=copy)
                    )
                    routed += 1
                continue
            headers = [(TRACEPARENT, trace)]
            writes.append(
                Write(self._aggregates, key, doc, timestamp_ms=timestamp, headers=headers)
            )
            if router is not None:
                for topic in router.route(orjson.loads(doc), Source.AGGREGATES):
                    copy = [(TRACEPARENT, spans.child_of_own(trace))]
                    writes.append(
                        router.write(topic, key, doc, timestamp_ms=timestamp, headers=copy)
                    )
                    routed += 1
        if routed:
            metrics.ROUTED.labels("aggregates").inc(routed)
        return writes

    def _follow_sources(self, partition: int, state: WindowState, headers: Any) -> list[Aggregate]:
        """Area: note the device partition's watermark that the record carries, and advance the
        state to the least of all device partitions' watermarks once each has reported."""
        reported = read_watermark(headers)
        if reported is None:
            return []
        source, watermark = reported
        sources = self._sources.setdefault(partition, {})
        if watermark <= sources.get(source, watermark - 1):
            return []
        sources[source] = watermark
        if len(sources) < self._partition_count:
            return []
        return state.advance_us(min(sources.values()))

    def _export(self, partition: int) -> None:
        """Add what the partition's state counted since the last call to the counters."""
        state = self.states.get(partition)
        if state is None:
            return
        before = self._exported.get(partition)
        now = state.counters
        for name in COUNTERS:
            delta = now[name] - (before[name] if before else 0)
            if delta > 0:
                self._events.labels(self.grouping, name).inc(delta)
        self._exported[partition] = dict(now)
        self._windows.set(sum(len(s) for s in self.states.values()))
