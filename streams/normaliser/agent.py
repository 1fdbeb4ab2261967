"""The normaliser agent: ``cityhub.raw`` → ``cityhub.observations`` (or ``cityhub.deadletter``),
and every observation also to the topic of each subscription that takes it.

A thin shell around :func:`cityhub.streams.normaliser.normalise.normalise_envelope` for the
worker's runtime (``cityhub.streams.runtime``): for each batch of one input partition it
normalises every record, writes the observations (and their routed copies) and the dead
letters, and, once per batch, the duplicate state of every device whose frames changed, to the
changelog ``<app_id>-duplicate-frames-changelog`` (faust's table format, JSON key and value, so
a worker that ran on faust keeps its state). The runtime commits a record's offset only after
all of that was confirmed: a crash replays records, never loses them, and a replayed record
carries the same event ids (its own frame is no duplicate of itself: the state remembers which
offset brought each frame).

Pure: no I/O, no clock but for the latency metric (the runtime passes ``now``); the registry
view and the router are read, never written.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Collection, Sequence

import orjson

from cityhub.connectors.record_size import record_size
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import MessageError, Oversize, Reason
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.topics import DUPLICATE_FRAMES, Topics, changelog
from cityhub.schemas.trace_context import TRACEPARENT
from cityhub.streams import metrics
from cityhub.streams.normaliser.dedup import DeviceFrames
from cityhub.streams.normaliser.normalise import (
    DeviceDirectory,
    Normalised,
    normalise_envelope,
    raw_dead_letter,
)
from cityhub.streams.normaliser.personal import PersonalSealer
from cityhub.streams.privacy.gate import PrivacyGate
from cityhub.streams.privacy.purpose import PERSONAL, PersonalMark
from cityhub.streams.runtime.agent import CaughtUp, Record, StoredEntry, Write
from cityhub.streams.subscriptions.router import SubscriptionRouter

log = logging.getLogger("cityhub.normaliser")

STAGE = "normalise"
HEADER_ALLOWANCE_BYTES = 128
"""Room for the headers an observation gets downstream (the area repartition's watermark)."""
DEADLETTER_KEY_BYTES = 1024


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

    @property
    def partitions(self) -> Collection[int]:
        return self._frames.keys()

    def assign(self, partition: int, stored: Sequence[StoredEntry]) -> list[Write]:
        """The partition's duplicate state from its changelog; nothing to write again."""
        frames: dict[str, DeviceFrames] = {}
        for entry in stored:
            try:
                device, state = orjson.loads(entry.key), orjson.loads(entry.value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(device, str) and isinstance(state, dict):
                frames[device] = state
        self._frames[partition] = frames
        return []

    def revoke(self, partition: int) -> None:
        self._frames.pop(partition, None)

    def tick(self, now: float, caught_up: CaughtUp) -> list[Write]:
        return []

    def step(self, partition: int, records: Sequence[Record], now: float) -> list[Write]:
        """Normalise consecutive records of one raw partition (see the module docstring)."""
        frames = self._frames.setdefault(partition, {})
        writes: list[Write] = []
        changed: set[str] = set()
        formats: Counter[str] = Counter()
        made: Counter[str] = Counter()
        duplicates: Counter[str] = Counter()
        routed = 0
        router = self._router
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
                )
            except MessageError as exc:
                writes.append(self._dead_letter(record, exc, now))
                continue
            except Exception as exc:  # a bug must not stop the partition
                log.exception(
                    "normalising %s[%d]@%d failed", record.topic, record.partition, record.offset
                )
                bug = MessageError(repr(exc), reason=Reason.INTERNAL_ERROR)
                writes.append(self._dead_letter(record, bug, now))
                continue
            if result.duplicate:
                duplicates[result.network] += 1
                continue
            if result.remembered is not None:
                changed.add(result.remembered)
            if result.observations and result.observations[0][0].classification == PERSONAL:
                # The bridge's trace context goes with a personal uplink's observations to the
                # delivery and its processing-log record (the header as it came, not parsed).
                # Not with the others: carrying it cost the worker 7 % of its throughput.
                trace = _trace_header(record.headers)
                try:
                    routed += self._personal(result, [trace] if trace else None, writes)
                except MessageError as exc:
                    # A personal reading that could not be written is not copied in clear into
                    # the dead letters (the raw topic keeps it, within its bound).
                    writes.append(self._dead_letter(record, exc, now, withhold_payload=True))
                    continue
            else:
                for observation, doc, key in result.observations:
                    writes.append(Write(self._observations, key, doc))
                    if router is not None:
                        for topic in router.route(observation):
                            writes.append(router.write(topic, key, doc))
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
        _count(formats, made, duplicates, routed)
        return writes

    def _personal(
        self,
        result: Normalised,
        trace: list[tuple[str, bytes]] | None,
        writes: list[Write],
    ) -> int:
        """Seal and mark the observations of a personal device's uplink and add their writes:
        to the observations topic, and to the subscriptions the gate admits them to. All or
        nothing: raises (SubjectKeyMissing, Oversize) before adding any. Returns how many
        routed copies it added."""
        prepared = []
        for observation, doc, key in result.observations:
            mark: PersonalMark | None = None
            headers: list[tuple[str, bytes]] | None = trace
            if self._sealer is not None:
                doc, mark = self._sealer.prepare(observation, doc)
                size = record_size(key, doc) + HEADER_ALLOWANCE_BYTES
                if size > self._max_record:
                    raise Oversize(
                        f"the sealed observation would take {size} bytes, more than Kafka's "
                        f"record limit of {self._max_record} bytes"
                    )
                headers = [mark.header(), *(trace or ())]
            prepared.append((observation, doc, key, mark, headers))
        routed = 0
        router, gate = self._router, self._gate
        for observation, doc, key, mark, headers in prepared:
            writes.append(Write(self._observations, key, doc, headers=headers))
            if router is None or gate is None or mark is None:
                continue
            for topic in gate.routes(router.route(observation), mark, router.subscription_at):
                writes.append(router.write(topic, key, doc, headers=headers))
                routed += 1
        return routed

    def _dead_letter(
        self, record: Record, error: MessageError, now: float, *, withhold_payload: bool = False
    ) -> Write:
        metrics.DEADLETTERS.labels(STAGE, error.reason.value).inc()
        letter = raw_dead_letter(
            b"" if withhold_payload else record.value or b"",
            record.key,
            error,
            stage=STAGE,
            failed_at=rfc3339(now),
            max_payload_bytes=self._max_payload,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        key = (record.key or b"")[:DEADLETTER_KEY_BYTES]
        return Write(
            self._deadletter, key, letter.to_json(self._max_record - record_size(key, b""))
        )


def _trace_header(headers: Sequence[tuple[str, bytes]] | None) -> tuple[str, bytes] | None:
    if headers:
        for header in headers:
            if header[0] == TRACEPARENT:
                return header
    return None


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
