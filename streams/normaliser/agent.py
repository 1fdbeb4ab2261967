"""The normaliser agent: ``cityhub.raw`` → ``cityhub.observations`` (or ``cityhub.deadletter``),
and every observation also to the topic of each subscription that takes it.

A thin shell around :func:`cityhub.streams.normaliser.normalise.normalise_envelope` for the
worker's runtime (``cityhub.streams.runtime``): for each batch of one input partition it
normalises every record, writes the observations (and their routed copies) and the dead
letters, and, once per batch, the duplicate state of every device whose frames changed, to the
changelog ``<app_id>-duplicate-frames-changelog`` (faust's table format, JSON key and value, so
a worker that ran on faust keeps its state), and the quality series of every device whose
series changed (``streams/quality/``), to the same changelog under the key ``["quality",
<device id>]`` (a JSON array, which a worker of before issue 14 skips). The runtime commits
a record's offset only after all of that was confirmed: a crash replays records, never loses
them, and a replayed record carries the same event ids (its own frame is no duplicate of
itself: the state remembers which offset brought each frame) and the same quality flags (a
value is judged against the points before its own time). An observation is never dropped for
its quality.

Traces: a raw record carries the ``traceparent`` the bridge started. Normalising one uplink is
one span, a child of the bridge's: every observation of the uplink carries it on its record
(``traceparent`` header), every copy routed to a subscription's topic a child span of that
one (the routing; a personal uplink's copies keep its span, since the processing log writes a
record per traceparent), and a dead letter a child span of the refused record's. A record without a
valid ``traceparent`` starts a new trace here. Span ids come from a pool (``SpanPool``): no
system call and no parse per record.

Pure: no I/O, no clock but for the latency metric (the runtime passes ``now``); the registry
view and the router are read, never written.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence

import orjson

from cityhub.connectors.record_size import record_size
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import MessageError, Oversize, Reason
from cityhub.schemas.log_context import about_message
from cityhub.schemas.observation import Observation
from cityhub.schemas.registry import DeviceType
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.topics import DUPLICATE_FRAMES, Topics, changelog
from cityhub.schemas.trace_context import TRACEPARENT, SpanPool, traceparent_in
from cityhub.streams import metrics
from cityhub.streams.normaliser.dedup import DeviceFrames
from cityhub.streams.normaliser.normalise import (
    DeviceDirectory,
    Normalised,
    normalise_envelope,
    raw_dead_letter,
)
from cityhub.streams.normaliser.personal import (
    PersonalSealer,
    keyed_by_personal_device,
    withheld_detail,
)
from cityhub.streams.privacy.gate import PrivacyGate
from cityhub.streams.privacy.purpose import PERSONAL, PersonalMark
from cityhub.streams.quality.assess import DeviceSeries, QualityAssessor
from cityhub.streams.quality.checks import is_series
from cityhub.streams.runtime.agent import CaughtUp, Record, StoredEntry, Write
from cityhub.streams.subscriptions.router import SubscriptionRouter

log = logging.getLogger("cityhub.normaliser")

STAGE = "normalise"
HEADER_ALLOWANCE_BYTES = 128
"""Room for the headers an observation gets downstream (the area repartition's watermark)."""
DEADLETTER_KEY_BYTES = 1024
QUALITY_KEY = "quality"
"""The first element of a quality-series key in the changelog (``["quality", device]``)."""
DEADLETTER_LOG_INTERVAL_S = 1.0
"""At most one log line per this many seconds about a dead letter (with its trace id); a
device that sends only garbage must not flood the log. The metric counts every one."""


class NormaliserAgent:
    """The normaliser as the runtime drives it (``cityhub.streams.runtime.agent.Agent``)."""

    name = "normaliser"
    tick_interval = None

    def __init__(
        self,
        settings: Settings,
        directory: DeviceDirectory,
        router: SubscriptionRouter | None = None,
        *,
        sealer: PersonalSealer | None = None,
        gate: PrivacyGate | None = None,
    ) -> None:
        """Personal observations are sealed by ``sealer`` and routed only where ``gate``
        admits them; without a gate they are routed nowhere (nothing checks their purpose)."""
        topics = Topics.for_prefix(settings.kafka.topic_prefix)
        self.topic = topics.raw
        self.changelog: str | None = changelog(settings.worker.app_id, DUPLICATE_FRAMES)
        self._observations = topics.observations
        self._deadletter = topics.deadletter
        self._directory = directory
        self._router = router
        self._sealer = sealer
        self._gate = gate
        self._window = settings.worker.duplicate_window_seconds
        self._allow_unknown = settings.worker.allow_unknown_devices
        self._max_record = settings.kafka.max_message_bytes
        self._max_payload = settings.bridge.max_payload_bytes
        self._frames: dict[int, dict[str, DeviceFrames]] = {}
        self._quality = QualityAssessor(settings.quality)
        self._series: dict[int, dict[str, DeviceSeries]] = {}
        self._spans = SpanPool()
        self._dead_logged_at = -math.inf
        self._dead_unlogged = 0

    @property
    def partitions(self) -> Collection[int]:
        return self._frames.keys()

    def assign(self, partition: int, stored: Sequence[StoredEntry]) -> list[Write]:
        """The partition's duplicate and quality state from its changelog; nothing to write
        again. A record of another shape is skipped."""
        frames: dict[str, DeviceFrames] = {}
        series: dict[str, DeviceSeries] = {}
        for entry in stored:
            try:
                device, state = orjson.loads(entry.key), orjson.loads(entry.value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(device, str) and isinstance(state, dict):
                frames[device] = state
            elif _is_quality_key(device) and isinstance(state, dict):
                kept = {q: s for q, s in state.items() if is_series(s)}
                if kept:
                    series[device[1]] = {q: [float(x) for x in s] for q, s in kept.items()}
        self._frames[partition] = frames
        self._series[partition] = series
        return []

    def revoke(self, partition: int) -> None:
        self._frames.pop(partition, None)
        self._series.pop(partition, None)

    def tick(self, now: float, caught_up: CaughtUp) -> list[Write]:
        return []

    def step(self, partition: int, records: Sequence[Record], now: float) -> list[Write]:
        """Normalise consecutive records of one raw partition (see the module docstring)."""
        frames = self._frames.setdefault(partition, {})
        writes: list[Write] = []
        changed: set[str] = set()
        quality, checked = self._quality_check(partition)
        flagged: Counter[tuple[str, str]] = Counter()
        label = self._quality.label
        formats: Counter[str] = Counter()
        made: Counter[str] = Counter()
        duplicates: Counter[str] = Counter()
        ignored: Counter[tuple[str, str]] = Counter()
        routed = 0
        router = self._router
        spans = self._spans
        timed = metrics.NORMALISE_LATENCY.observe
        for record in records:
            value = record.value or b""
            started = time.perf_counter()
            try:
                envelope = RawEnvelope.from_json(value)
                formats[envelope.format] += 1
                result = normalise_envelope(
                    envelope,
                    offset=record.offset,
                    directory=self._directory,
                    frames=frames,
                    window=self._window,
                    allow_unknown=self._allow_unknown,
                    max_record_bytes=self._max_record,
                    header_allowance=HEADER_ALLOWANCE_BYTES,
                    quality=quality,
                )
            except MessageError as exc:
                # A personal device's message is not copied in clear into the dead letters.
                withhold = keyed_by_personal_device(self._directory, record.key)
                writes.append(self._dead_letter(record, exc, now, withhold_payload=withhold))
                continue
            except Exception as exc:  # a bug must not stop the partition
                with about_message(traceparent_in(record.headers), _device_of(record)):
                    log.exception(
                        "normalising %s[%d]@%d failed",
                        record.topic,
                        record.partition,
                        record.offset,
                    )
                bug = MessageError(repr(exc), reason=Reason.INTERNAL_ERROR)
                withhold = keyed_by_personal_device(self._directory, record.key)
                writes.append(self._dead_letter(record, bug, now, withhold_payload=withhold))
                continue
            if result.duplicate:
                duplicates[result.network] += 1
                continue
            if result.ignored is not None:
                ignored[result.network, result.ignored] += 1
                continue
            if result.remembered is not None:
                changed.add(result.remembered)
            observations = result.observations
            for observation, _, _ in observations:
                for flag in observation.quality:
                    flagged[flag, label(observation.quantity)] += 1
            if observations:
                # This uplink's span: one header list shared by all its observations' records.
                trace = spans.child_of(traceparent_in(record.headers))
                if observations[0][0].classification == PERSONAL:
                    # The trace also goes to the delivery's processing-log record.
                    try:
                        routed += self._personal(result, trace, writes)
                    except MessageError as exc:
                        # A personal reading that could not be written is not copied in clear
                        # into the dead letters (the raw topic keeps it, within its bound).
                        writes.append(self._dead_letter(record, exc, now, withhold_payload=True))
                        continue
                else:
                    headers = [(TRACEPARENT, trace)]
                    for observation, doc, key in observations:
                        writes.append(Write(self._observations, key, doc, None, None, headers))
                        if router is not None:
                            for topic in router.route(observation):
                                copy = [(TRACEPARENT, spans.child_of_own(trace))]
                                writes.append(router.write(topic, key, doc, headers=copy))
                                routed += 1
            made[envelope.format] += len(result.observations)
            timed(time.perf_counter() - started)
            metrics.PIPELINE_LATENCY.observe(max(0.0, now - result.received))
        # The state once per batch: a device's last frames, not each step of them.
        for device in changed:
            writes.append(
                Write(
                    self.changelog or "",
                    orjson.dumps(device),
                    orjson.dumps(frames[device]),
                    partition=partition,
                )
            )
        series = self._series.get(partition, {})
        for device in checked:
            writes.append(
                Write(
                    self.changelog or "",
                    orjson.dumps([QUALITY_KEY, device]),
                    orjson.dumps(series[device]),
                    partition=partition,
                )
            )
        _count(formats, made, duplicates, routed)
        for (network, kind), n in ignored.items():
            metrics.IGNORED.labels(network, kind).inc(n)
        for (flag, quantity), n in flagged.items():
            metrics.QUALITY_FLAGS.labels(flag, quantity).inc(n)
        return writes

    def _quality_check(
        self, partition: int
    ) -> tuple[Callable[[list[Observation], DeviceType | None], None] | None, set[str]]:
        """The quality check of one batch of ``partition`` (None: checks are off) and the set
        of devices whose series it changed (filled as the batch goes)."""
        checked: set[str] = set()
        if not self._quality.enabled:
            return None, checked
        series_of = self._series.setdefault(partition, {})
        return self._quality.uplink_check(series_of, checked), checked

    def _personal(self, result: Normalised, trace: bytes, writes: list[Write]) -> int:
        """Seal and mark the observations of a personal device's uplink and add their writes:
        to the observations topic, and to the subscriptions the gate admits them to. All or
        nothing: raises (SubjectKeyMissing, Oversize) before adding any. Returns how many
        routed copies it added. ``trace``: the uplink's span (``traceparent``)."""
        prepared = []
        traced = (TRACEPARENT, trace)
        for observation, doc, key in result.observations:
            mark: PersonalMark | None = None
            headers: list[tuple[str, bytes]] = [traced]
            if self._sealer is not None:
                doc, mark = self._sealer.prepare(observation, doc)
                size = record_size(key, doc) + HEADER_ALLOWANCE_BYTES
                if size > self._max_record:
                    raise Oversize(
                        f"the sealed observation would take {size} bytes, more than Kafka's "
                        f"record limit of {self._max_record} bytes"
                    )
                headers = [mark.header(), traced]
            prepared.append((observation, doc, key, mark, headers))
        routed = 0
        router, gate = self._router, self._gate
        for observation, doc, key, mark, headers in prepared:
            writes.append(Write(self._observations, key, doc, headers=headers))
            if router is None or gate is None or mark is None:
                continue
            # The copies keep the observation's span: the processing log writes one record per
            # data subject and traceparent of a delivery, so one per uplink, not one per copy.
            topics = router.route(observation)
            for topic in gate.routes(topics, mark, router.subscription_at, router.grant_at):
                writes.append(router.write(topic, key, doc, headers=headers))
                routed += 1
        return routed

    def _dead_letter(
        self, record: Record, error: MessageError, now: float, *, withhold_payload: bool = False
    ) -> Write:
        metrics.DEADLETTERS.labels(STAGE, error.reason.value).inc()
        shown = error
        if withhold_payload:  # a personal device's: neither its payload nor a value it quotes
            shown = MessageError(withheld_detail(error.detail), reason=error.reason)
        letter = raw_dead_letter(
            b"" if withhold_payload else record.value or b"",
            record.key,
            shown,
            stage=STAGE,
            failed_at=rfc3339(now),
            max_payload_bytes=self._max_payload,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        key = (record.key or b"")[:DEADLETTER_KEY_BYTES]
        # The dead letter continues the refused record's trace (a child span: the refusal).
        headers = [(TRACEPARENT, self._spans.child_of(traceparent_in(record.headers)))]
        # A personal reading's error text stays out of the log, as its payload does.
        self._log_dead_letter(record, None if withhold_payload else error, headers[0][1], now)
        room = self._max_record - record_size(key, b"", headers)
        return Write(self._deadletter, key, letter.to_json(room), headers=headers)

    def _log_dead_letter(
        self, record: Record, error: MessageError | None, trace: bytes, now: float
    ) -> None:
        """One line about a dead letter with its trace id (and ``error``'s reason and text, when
        given), at most every ``DEADLETTER_LOG_INTERVAL_S``; the line says how many went
        unlogged before it."""
        if now - self._dead_logged_at < DEADLETTER_LOG_INTERVAL_S:
            self._dead_unlogged += 1
            return
        with about_message(trace, _device_of(record)):
            log.info(
                "%s[%d]@%d went to the dead letters%s%s",
                record.topic,
                record.partition,
                record.offset,
                "" if error is None else f" ({error.reason.value}): {error}",
                f" ({self._dead_unlogged} more since the last line)" if self._dead_unlogged else "",
            )
        self._dead_logged_at, self._dead_unlogged = now, 0


def _is_quality_key(key: object) -> bool:
    return (
        isinstance(key, list)
        and len(key) == 2
        and key[0] == QUALITY_KEY
        and isinstance(key[1], str)
    )


def _device_of(record: Record) -> str | None:
    """The device a raw record is about: the bridge keys each by its device."""
    return record.key.decode(errors="replace") if record.key else None


def _count(
    formats: Counter[str], made: Counter[str], duplicates: Counter[str], routed: int
) -> None:
    """Add a batch's counts to the Prometheus counters, once per label (not once per record)."""
    for fmt, n in formats.items():
        metrics.MESSAGES_IN.labels(fmt).inc(n)
    for fmt, n in made.items():
        metrics.OBSERVATIONS_OUT.labels(fmt).inc(n)
    for network, n in duplicates.items():
        metrics.DUPLICATES.labels(network).inc(n)
    if routed:
        metrics.ROUTED.labels("observations").inc(routed)
