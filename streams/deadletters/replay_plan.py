"""Which ingest dead letters to replay, and the raw record each becomes. Pure: no I/O.

``cityhub deadletters replay`` (``replayer.py``) reads the dead-letter topic, hands each record
to :func:`plan`, fetches the raw records the chosen letters point at, and writes what
:func:`replay_record` makes of each to the raw topic, where the normaliser takes it as any other.

Only the normaliser's letters (stage ``normalise``) are replayed: each points at the raw record
it was made from (``kafka_topic``, ``kafka_partition``, ``kafka_offset``). The bridge's letters
never reached Kafka, the worker's are about a record it made, and a subscription's come back
with that subscription's replay.

A replay writes the raw record as the raw topic holds it (its key, value and headers, on its
partition) while the topic still does (``kafka.raw_retention_hours``), else the envelope rebuilt
from the letter: its format, MQTT topic, device, receive time, and its payload if the letter
kept all of it. Either way the same uplink: the same deterministic event ids, and within the
duplicate window the normaliser's duplicate filter drops a second replay of one that succeeded.

Skipped, each with why (:class:`Skipped`):

- a letter of a device whose type is ``personal`` now: a replay would attribute a past reading to
  whoever the device's data subject is now, and write the reading in clear to the raw topic
  again (docs/privacy.md);
- an ``unknown_device`` letter whose device is still not registered: it would fail again;
- a letter whose raw record is gone and which kept only part of its payload (cut, or withheld);
- a raw record that is not the one the letter describes (another digest: a topic made again);
- every letter of an uplink but the last (a replay that failed again made another letter of it).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import InvalidEnvelope, InvalidTimestamp, MessageError, Reason
from cityhub.schemas.json_object import json_object
from cityhub.schemas.payload_text import payload_from_text
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.deadletters.view import attribute, device_is_personal
from cityhub.streams.registry.view import RegistryView

STAGE = "normalise"
"""The only stage whose letters are replayed."""
REPLAY_HEADER = "cityhub-replay-of"
"""Header of a replayed raw record: the dead letter it came from (``<partition>-<offset>``)."""
SOURCE = "mqtt"
"""The connector named in an envelope rebuilt from a letter (the only one that writes raw
records; a letter does not keep it)."""

Header = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """Which letters to replay; an empty criterion takes every letter."""

    reasons: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    """As the letter names them (a device id or DevEUI), or the registered device's id."""
    tenant: str | None = None
    """The tenant of the letter's registered device."""
    since: float = -math.inf
    """Letters written at or after this (seconds since the epoch)."""
    until: float = math.inf
    """Letters written before this."""


@dataclass(frozen=True, slots=True)
class Planned:
    """A letter chosen for replay."""

    letter: str
    """``<partition>-<offset>`` on the dead-letter topic."""
    reason: str
    device: str
    raw_topic: str
    raw_partition: int
    raw_offset: int
    sha256: str
    """Of the original payload: the raw record must carry the same one."""
    key: bytes
    """The raw record's key (the envelope's device): used when the letter rebuilds it."""
    rebuilt: RawEnvelope | None
    """The envelope rebuilt from the letter; None when the letter kept only part of it."""
    received_at: str | None
    """The uplink's receive time, as the letter keeps it (None: the record was no envelope)."""

    @property
    def uplink(self) -> tuple[str, str, str]:
        """What letters of one uplink share: its device, payload digest and receive time (a
        record that was no envelope has none: its own place on the raw topic stands in)."""
        place = f"{self.raw_partition}@{self.raw_offset}"
        return self.device, self.sha256, self.received_at or place


@dataclass(frozen=True, slots=True)
class Skipped:
    """A letter the filter chose that is not replayed, and why."""

    letter: str
    why: str


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record of the raw topic as Kafka holds it."""

    key: bytes | None
    value: bytes
    headers: Sequence[Header]


@dataclass(frozen=True, slots=True)
class Replay:
    """The record to write to the raw topic for one letter."""

    letter: str
    partition: int
    key: bytes | None
    value: bytes
    headers: list[Header]
    from_raw: bool
    """Whether it is the raw record itself (else the envelope rebuilt from the letter)."""


PERSONAL = "personal device: not replayed (its reading would be attributed to its data subject now)"
STILL_UNKNOWN = "device still not registered"
PARTIAL = "raw record gone and the letter kept only part of the payload"
OTHER_RECORD = "the raw record at that offset is another one (another digest)"
EARLIER = "a later letter is of the same uplink"


def plan(
    value: bytes | None,
    *,
    partition: int,
    offset: int,
    raw_topic: str,
    registry: RegistryView,
    selection: ReplayFilter,
) -> Planned | Skipped | None:
    """The plan for one record of the dead-letter topic: None when the filter does not choose
    it (or it is no normaliser letter of ``raw_topic``), else whether and how to replay it."""
    doc = json_object(value)
    if doc is None or doc.get("stage") != STAGE or doc.get("kafka_topic") != raw_topic:
        return None
    raw_partition, raw_offset = _count(doc.get("kafka_partition")), _count(doc.get("kafka_offset"))
    reason, device, sha256 = doc.get("reason"), doc.get("device"), doc.get("sha256")
    if raw_partition is None or raw_offset is None:
        return None
    if not (isinstance(reason, str) and isinstance(device, str) and isinstance(sha256, str)):
        return None
    failed_at = _seconds(doc.get("failed_at"))
    if failed_at is None or not selection.since <= failed_at < selection.until:
        return None
    if selection.reasons and reason not in selection.reasons:
        return None
    who = attribute(device, registry)
    if selection.devices and not ({device, who.device_id} & selection.devices):
        return None
    if selection.tenant is not None and who.tenant != selection.tenant:
        return None
    letter = f"{partition}-{offset}"
    if who.device_id is not None and device_is_personal(who.device_id, registry):
        return Skipped(letter, PERSONAL)
    if reason == Reason.UNKNOWN_DEVICE and who.device_id is None:
        return Skipped(letter, STILL_UNKNOWN)
    return Planned(
        letter=letter,
        reason=reason,
        device=device,
        raw_topic=raw_topic,
        raw_partition=raw_partition,
        raw_offset=raw_offset,
        sha256=sha256,
        key=device.encode(),
        rebuilt=_rebuilt(doc, device),
        received_at=received if isinstance(received := doc.get("received_at"), str) else None,
    )


def replay_record(planned: Planned, raw: RawRecord | None) -> Replay | Skipped:
    """What to write for ``planned``: ``raw`` (None: the raw topic no longer holds it) with a
    header naming the letter, else the envelope the letter rebuilds."""
    mark = (REPLAY_HEADER, planned.letter.encode())
    if raw is not None:
        if _digest(raw.value) != planned.sha256:
            return Skipped(planned.letter, OTHER_RECORD)
        headers = [h for h in raw.headers if h[0] != REPLAY_HEADER]
        return Replay(
            planned.letter,
            planned.raw_partition,
            raw.key,
            raw.value,
            [*headers, mark],
            from_raw=True,
        )
    if planned.rebuilt is None:
        return Skipped(planned.letter, PARTIAL)
    return Replay(
        planned.letter,
        planned.raw_partition,
        planned.key,
        planned.rebuilt.to_json(),
        [mark],
        from_raw=False,
    )


def last_of_each_uplink(plans: Sequence[Planned]) -> tuple[list[Planned], list[Skipped]]:
    """Each uplink's last letter (in the order given), and the others as skipped."""
    last = {item.uplink: item for item in plans}
    chosen = [item for item in plans if last[item.uplink] is item]
    earlier = [Skipped(item.letter, EARLIER) for item in plans if last[item.uplink] is not item]
    return chosen, earlier


def _count(value: object) -> int | None:
    """``value`` if it is a count (an int from 0 up), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _seconds(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_rfc3339(text).timestamp()
    except InvalidTimestamp:
        return None


def _rebuilt(doc: dict[str, object], device: str) -> RawEnvelope | None:
    """The envelope a complete letter describes; None if it kept only part of it."""
    fmt, topic, received = doc.get("format"), doc.get("source_topic"), doc.get("received_at")
    text, size = doc.get("payload"), doc.get("size")
    if doc.get("truncated") is not False or not isinstance(text, str):
        return None
    if not (isinstance(fmt, str) and isinstance(topic, str) and isinstance(received, str)):
        return None
    try:
        payload = payload_from_text(doc.get("payload_encoding"), text)
    except InvalidEnvelope:
        return None
    if len(payload) != size or hashlib.sha256(payload).hexdigest() != doc.get("sha256"):
        return None  # withheld (a personal reading's letter keeps none of it) or altered
    return RawEnvelope(SOURCE, fmt, topic, device, received, payload)


def _digest(raw_value: bytes) -> str:
    """The digest a letter keeps of a raw record: of its envelope's payload, or of the whole
    record when it is no envelope (``raw_dead_letter``)."""
    try:
        payload = RawEnvelope.from_json(raw_value).payload
    except MessageError:
        payload = raw_value
    return hashlib.sha256(payload).hexdigest()
