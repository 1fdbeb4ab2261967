"""The open-data publisher's agents: ``cityhub.observations`` → ``cityhub.open-data-points`` →
``cityhub.open-data``.

Two agents on the worker's runtime (``cityhub.streams.runtime``), in a consumer group of their
own (``open_data_group``), each a thin shell around a pure core:

* ``open-data-points`` reads the observations and writes, for every one that may be published
  (``cityhub.streams.opendata.points``), one stripped point per dataset that takes its quantity
  to the points topic, keyed ``<dataset>/<area>``: value, unit, time, and the device and
  subject as keys, never as ids. All points of a dataset go to one partition (chosen by the
  dataset id), because the areas of a window too small to publish are merged, and the merge
  needs every area of the window in one state;
* ``open-data-publisher`` reads the points, keeps the windows
  (``cityhub.streams.opendata.windows``) in a changelog (``<app_id>-open-data-windows-
  changelog``), and writes the windows it may publish, once each, to the compacted open-data
  topic (key ``OpenWindow.key``, value the record's JSON, timestamp the window's end plus
  grace): the same record after a replay, byte for byte.

Watermarks across the repartition, as the area aggregator does (``cityhub.streams.aggregation
.agent``): the point stage's watermark per observations partition is the greatest event time it
took (observations more than ``aggregation.max_future_seconds`` ahead of the clock are skipped,
not taken), moved to ``wall clock - aggregation.idle_close_seconds`` when the partition is
quiet and caught up; every point carries it in the ``cityhub-watermark`` header, and on each
tick a marker (no value) tells it to every points partition. The publisher's watermark is the
least of them, once every observations partition has reported; a group of windows closes when
it passes their end plus ``open_data.grace_seconds``.

Pure: no I/O, no clock (the runtime passes ``now``).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from cityhub.schemas.open_data import OpenWindow
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import OPEN_DATA_WINDOWS, Topics, changelog
from cityhub.streams.aggregation.agent import read_watermark, watermark_header
from cityhub.streams.aggregation.points import US, epoch_us
from cityhub.streams.opendata import metrics
from cityhub.streams.opendata.points import Activities, OpenPoint, PointRules, Skip, points_of
from cityhub.streams.opendata.windows import (
    COUNTERS,
    PublisherConfig,
    PublisherState,
)
from cityhub.streams.runtime.agent import CaughtUp, Record, StoredEntry, Write

log = logging.getLogger("cityhub.opendata")

META = "meta"


def dataset_partition(dataset: str, partitions: int) -> int:
    """The points partition of every point of ``dataset`` (stable across processes)."""
    return zlib.crc32(dataset.encode()) % partitions


class OpenDataPointsAgent:
    """Observations → open-data points (the module docstring)."""

    name = "open-data-points"
    changelog: str | None = None

    def __init__(self, settings: Settings, activities: Activities) -> None:
        """``activities``: the register's view, for the personal devices' activity."""
        topics = Topics.for_prefix(settings.kafka.topic_prefix)
        self.topic = topics.observations
        self._points = topics.open_data_points
        self._rules = PointRules.of(settings.open_data, settings.aggregation.max_future_seconds)
        self._activities = activities
        self._idle_close = settings.aggregation.idle_close_seconds
        self._partition_count = settings.kafka.partitions
        self.watermarks: dict[int, int | None] = {}
        self._last_taken: dict[int, float] = {}

    @property
    def partitions(self) -> Collection[int]:
        return self.watermarks.keys()

    @property
    def tick_interval(self) -> float | None:
        return max(0.2, min(5.0, self._idle_close / 4))

    def assign(self, partition: int, stored: Sequence[StoredEntry]) -> list[Write]:
        self.watermarks[partition] = None
        self._last_taken[partition] = -1.0  # "never": quiet from the start
        return []

    def revoke(self, partition: int) -> None:
        self.watermarks.pop(partition, None)
        self._last_taken.pop(partition, None)

    def step(self, partition: int, records: Sequence[Record], now: float) -> list[Write]:
        """The points of a batch of one partition's observations, each with the partition's
        watermark after it."""
        watermark = self.watermarks.get(partition)
        self._last_taken[partition] = now
        when = datetime.fromtimestamp(now, UTC)
        now_us = int(now * US)
        writes: list[Write] = []
        skipped: dict[Skip, int] = {}
        written = 0
        for record in records:
            if record.value is None:
                continue
            try:
                doc: Any = orjson.loads(record.value)
            except orjson.JSONDecodeError:
                skipped[Skip.INVALID] = skipped.get(Skip.INVALID, 0) + 1
                continue
            points, skip, observed_us = points_of(doc, self._rules, self._activities, when, now_us)
            if observed_us is not None and (watermark is None or observed_us > watermark):
                watermark = observed_us
            if skip is not None:
                skipped[skip] = skipped.get(skip, 0) + 1
                continue
            assert watermark is not None  # a point has a time, which moved it
            header = [watermark_header(partition, watermark)]
            for point in points:
                writes.append(
                    Write(
                        self._points,
                        point.kafka_key,
                        point.to_json(),
                        partition=dataset_partition(point.dataset, self._partition_count),
                        headers=header,
                    )
                )
                written += 1
        self.watermarks[partition] = watermark
        if written:
            metrics.OPEN_DATA_POINTS.inc(written)
        for reason, count in skipped.items():
            metrics.OPEN_DATA_SKIPPED.labels(reason.value).inc(count)
        return writes

    def tick(self, now: float, caught_up: CaughtUp) -> list[Write]:
        """Advance quiet, caught-up partitions to ``now - idle_close`` and tell every points
        partition each one's watermark."""
        for partition, watermark in self.watermarks.items():
            if now - self._last_taken.get(partition, now) < self._idle_close:
                continue
            if not caught_up(partition):
                continue
            idle = int((now - self._idle_close) * US)
            if watermark is None or idle > watermark:
                self.watermarks[partition] = idle
        marks = [(p, w) for p, w in self.watermarks.items() if w is not None]
        return [
            Write(
                self._points,
                f"watermark/{source}".encode(),
                None,
                partition=target,
                headers=[watermark_header(source, watermark)],
            )
            for target in range(self._partition_count)
            for source, watermark in marks
        ]


def publisher_config(settings: Settings) -> PublisherConfig:
    od = settings.open_data
    return PublisherConfig(
        window_us={d.id: d.window_seconds * US for d in od.datasets},
        k=od.k,
        merge=od.merge_small_areas,
        grace_us=od.grace_seconds * US,
        decimals_of=od.decimals_of,
    )


class OpenDataPublisherAgent:
    """Open-data points → published windows (the module docstring)."""

    name = "open-data-publisher"

    def __init__(self, settings: Settings) -> None:
        topics = Topics.for_prefix(settings.kafka.topic_prefix)
        self.topic = topics.open_data_points
        self.changelog: str | None = changelog(settings.worker.app_id, OPEN_DATA_WINDOWS)
        self._published = topics.open_data
        self.config = publisher_config(settings)
        self._source_count = settings.kafka.partitions
        """Partitions of the observations topic (created with ``kafka.partitions``): how many
        point-stage partitions report their watermark."""
        self.states: dict[int, PublisherState] = {}
        self._sources: dict[int, dict[int, int]] = {}
        self._exported: dict[int, dict[str, int]] = {}
        self._meta_written: dict[int, Any] = {}

    @property
    def partitions(self) -> Collection[int]:
        return self.states.keys()

    @property
    def tick_interval(self) -> float | None:
        return None  # the point stage's markers move the watermark

    def assign(self, partition: int, stored: Sequence[StoredEntry]) -> list[Write]:
        """Rebuild the partition's state from its changelog, and write again the records of the
        groups it closed lately (a crash may have lost them; a replay writes the same bytes)."""
        prefix = f"{partition}/"
        meta: Any = None
        entries: list[tuple[str, Any]] = []
        for entry in stored:
            try:
                key = entry.key.decode()
                value = orjson.loads(entry.value)
            except (UnicodeDecodeError, orjson.JSONDecodeError):
                continue
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            if rest == META:
                meta = value if isinstance(value, dict) else None
            else:
                entries.append((rest, value))
        state = PublisherState.from_entries(meta, entries, self.config)
        self.states[partition] = state
        self._meta_written[partition] = meta or {"watermark": None}
        self._exported[partition] = dict(state.counters)
        again = state.closed_records()
        log.info(
            "open-data windows of partition %d restored: %d open, %d records written again",
            partition,
            len(state),
            len(again),
        )
        return self._record_writes(again)

    def revoke(self, partition: int) -> None:
        self.states.pop(partition, None)
        self._sources.pop(partition, None)
        self._exported.pop(partition, None)
        self._meta_written.pop(partition, None)
        self._set_gauge()

    def step(self, partition: int, records: Sequence[Record], now: float) -> list[Write]:
        """Add a batch of points to their windows, follow the point stage's watermarks, and
        publish what closes; the changed state once."""
        state = self.states.get(partition)
        if state is None:  # not assigned through the runtime (tests): an empty state
            state = self.states[partition] = PublisherState(self.config)
            self._exported[partition] = dict(state.counters)
            self._meta_written[partition] = {"watermark": None}
        published: list[OpenWindow] = []
        invalid = 0
        for record in records:
            if record.value is not None:
                try:
                    state.add(OpenPoint.from_json(record.value), record.offset)
                except (KeyError, TypeError, ValueError):
                    invalid += 1
                    continue
            published += self._follow_sources(partition, state, record.headers)
        if invalid:
            log.warning("%d records on %s[%d] are not points", invalid, self.topic, partition)
            metrics.OPEN_DATA_SKIPPED.labels("invalid_point").inc(invalid)
        writes = self._persist(partition, state)
        writes += self._record_writes(published)
        self._export(partition)
        return writes

    def tick(self, now: float, caught_up: CaughtUp) -> list[Write]:
        return []

    # -- helpers -------------------------------------------------------------------------------

    def _follow_sources(
        self, partition: int, state: PublisherState, headers: Any
    ) -> list[OpenWindow]:
        reported = read_watermark(headers)
        if reported is None:
            return []
        source, watermark = reported
        sources = self._sources.setdefault(partition, {})
        if watermark <= sources.get(source, watermark - 1):
            return []
        sources[source] = watermark
        if len(sources) < self._source_count:
            return []
        return state.advance(min(sources.values()))

    def _persist(self, partition: int, state: PublisherState) -> list[Write]:
        meta, entries = state.take_changes()
        if not entries and self._meta_written.get(partition) == meta:
            return []
        self._meta_written[partition] = meta
        topic = self.changelog or ""
        writes = [
            Write(
                topic,
                f"{partition}/{key}".encode(),
                None if value is None else orjson.dumps(value),
                partition=partition,
            )
            for key, value in sorted(entries.items())
        ]
        writes.append(
            Write(topic, f"{partition}/{META}".encode(), orjson.dumps(meta), partition=partition)
        )
        return writes

    def _record_writes(self, records: Sequence[OpenWindow]) -> list[Write]:
        grace = self.config.grace_us
        writes = []
        for record in records:
            end_ms = _epoch_ms(record.window_end) + grace // 1000
            writes.append(
                Write(
                    self._published,
                    record.key.encode(),
                    record.model_dump_json().encode(),
                    timestamp_ms=end_ms,
                )
            )
        return writes

    def _export(self, partition: int) -> None:
        state = self.states.get(partition)
        if state is None:
            return
        before = self._exported.get(partition) or dict.fromkeys(COUNTERS, 0)
        now = state.counters
        for name in ("late", "unknown_dataset", "replayed"):
            if (delta := now[name] - before[name]) > 0:
                metrics.OPEN_DATA_SKIPPED.labels(name).inc(delta)
        for name in ("published", "withheld", "merged"):
            if (delta := now[name] - before[name]) > 0:
                metrics.OPEN_DATA_WINDOWS.labels(name).inc(delta)
        self._exported[partition] = dict(now)
        self._set_gauge()

    def _set_gauge(self) -> None:
        metrics.OPEN_DATA_OPEN_WINDOWS.set(sum(len(s) for s in self.states.values()))


def _epoch_ms(text: str) -> int:
    return epoch_us(text) // 1000
