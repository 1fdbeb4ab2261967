"""The pipeline a message goes through, step by step as the bridge and the normaliser agent run
it (``cityhub.connectors.mqtt.bridge``, ``cityhub.streams.normaliser.agent``), without MQTT,
Kafka or faust; and the properties every outcome must have.

The agent's order: raw envelope from JSON -> receive time -> ``parse_envelope`` -> device
resolution -> duplicate check -> ``observations_from_uplink`` -> each observation encoded and
sized against Kafka's record limit (less the room kept for headers) -> the frame remembered.
Any ``MessageError`` becomes a dead letter with its reason; anything else is an
``internal_error`` dead letter, which is a bug: the properties here let no other exception
through, so hypothesis reports it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass

import orjson

from cityhub.connectors.formats import get_format
from cityhub.connectors.record_size import record_size
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import MessageError, Oversize, Reason
from cityhub.schemas.observation import Observation
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.schemas.validation import errors as schema_errors
from cityhub.streams.normaliser.agent import HEADER_ALLOWANCE_BYTES, STAGE
from cityhub.streams.normaliser.dedup import DeviceFrames
from cityhub.streams.normaliser.normalise import normalise_envelope, raw_dead_letter
from cityhub.streams.registry.view import RegistryView

SETTINGS = Settings()
MAX_RECORD = SETTINGS.kafka.max_message_bytes
MAX_PAYLOAD = SETTINGS.bridge.max_payload_bytes
WINDOW = SETTINGS.worker.duplicate_window_seconds
RECEIVED_AT = "2026-12-04T09:30:00.000Z"
"""When the bridge received every fuzzed message (a time in the accepted range)."""
FAILED_AT = "2026-12-04T09:30:00.100Z"
RAW_TOPIC = "cityhub.raw"


@dataclass(frozen=True, slots=True)
class Written:
    """An observation as the agent writes it: the record's value and key."""

    observation: Observation
    value: bytes
    key: bytes


def bridge_record(format_name: str, topic: str, payload: bytes) -> tuple[bytes, bytes] | None:
    """The raw record ``(value, key)`` the bridge writes for an MQTT message, or None when it
    dead-letters the message as too large (checked against the dead-letter properties here).

    Holds the bridge's properties: ``partition_key`` returns a string and never raises, the
    envelope fits the record limit or is refused, and it reads back as the same envelope."""
    fmt = get_format(format_name)
    key = fmt.partition_key(topic, payload)
    assert type(key) is str, f"{format_name}.partition_key gave {type(key).__name__}"
    key_bytes = key.encode()
    envelope = RawEnvelope(
        source="mqtt",
        format=format_name,
        topic=topic,
        device=key,
        received_at=RECEIVED_AT,
        payload=payload,
    )
    room = MAX_RECORD - record_size(key_bytes, b"")
    value = envelope.to_json(max_bytes=room)
    assert RawEnvelope.from_json(value) == envelope
    assert RawEnvelope.from_json(envelope.to_json()) == envelope
    if len(payload) > MAX_PAYLOAD or len(value) > room:
        check_dead_letter(Oversize("too large"), value=payload, key=key_bytes, stage="bridge")
        return None
    return value, key_bytes


def normalise_record(
    value: bytes,
    view: RegistryView,
    frames: MutableMapping[str, DeviceFrames],
    *,
    offset: int,
    allow_unknown: bool,
) -> list[Written]:
    """What the normaliser agent writes for the raw record ``value`` at ``offset``: its
    observations, ``[]`` for a duplicate; a ``MessageError`` for a dead letter (an
    ``Oversize`` for an observation too large for Kafka, as the agent raises it)."""
    result = normalise_envelope(
        RawEnvelope.from_json(value),
        offset=offset,
        directory=view,
        frames=frames,
        window=WINDOW,
        allow_unknown=allow_unknown,
        max_record_bytes=MAX_RECORD,
        header_allowance=HEADER_ALLOWANCE_BYTES,
    )
    if result.remembered is not None:
        # The state goes through JSON (its changelog): it must survive that.
        frames[result.remembered] = orjson.loads(orjson.dumps(frames[result.remembered]))
    return [Written(o, doc, key) for o, doc, key in result.observations]


def check_observations(written: list[Written]) -> None:
    """Every observation validates against ``observation.schema.json``, its record (with the
    header allowance) fits Kafka's limit, and its times are in the accepted range."""
    for w in written:
        doc = orjson.loads(w.value)
        # the uplink's documents, encoded together, are each observation's own
        assert doc == orjson.loads(w.observation.to_json())
        problems = schema_errors("observation", doc)
        assert problems == [], f"{problems} in {w.value[:2000]!r}"
        assert record_size(w.key, w.value) + HEADER_ALLOWANCE_BYTES <= MAX_RECORD
        parse_rfc3339(doc["observed_at"])
        parse_rfc3339(doc["received_at"])


def check_dead_letter(
    error: MessageError,
    *,
    value: bytes,
    key: bytes | None,
    stage: str = STAGE,
) -> bytes:
    """The failure is a project error with a reason other than ``internal_error``, and its
    dead letter, built as the agent builds it, validates and fits the record limit."""
    assert isinstance(error, MessageError)
    assert error.reason is not Reason.INTERNAL_ERROR, f"internal_error: {error.detail}"
    assert isinstance(error.detail, str)
    assert error.detail, f"{type(error).__name__} without a detail"
    letter = raw_dead_letter(
        value,
        key,
        error,
        stage=stage,
        failed_at=FAILED_AT,
        max_payload_bytes=MAX_PAYLOAD,
        topic=RAW_TOPIC,
        partition=0,
        offset=1,
    )
    cut_key = (key or b"")[:1024]
    limit = MAX_RECORD - record_size(cut_key, b"")
    data = letter.to_json(limit)
    assert len(data) <= limit, f"a dead letter of {len(data)} bytes, over its limit of {limit}"
    doc = orjson.loads(data)
    problems = schema_errors("deadletter", doc)
    assert problems == [], f"the dead letter does not validate: {problems} in {data[:1000]!r}"
    assert doc["reason"] == error.reason.value
    return data


def outcome(
    value: bytes,
    key: bytes | None,
    view: RegistryView,
    *,
    allow_unknown: bool,
) -> str:
    """Run one raw record through the normaliser and check the properties of what came out;
    the outcome's name (``observations`` or the dead-letter reason), for
    hypothesis' statistics. A record that gave observations is then sent again at a later
    offset, and must be recognised as a duplicate when it has a frame key (and give the same
    observations otherwise)."""
    frames: dict[str, DeviceFrames] = {}
    try:
        written = normalise_record(value, view, frames, offset=1, allow_unknown=allow_unknown)
    except MessageError as exc:
        check_dead_letter(exc, value=value, key=key)
        return exc.reason.value
    check_observations(written)
    assert written, "a record that is no dead letter and no duplicate gives observations"
    again = normalise_record(value, view, frames, offset=2, allow_unknown=allow_unknown)
    if frames:
        assert again == [], "the same frame at another offset is a duplicate"
    else:
        assert [w.observation.event_id for w in again] == [
            w.observation.event_id for w in written
        ], "an uplink without a frame key gives the same event ids again"
    return "observations"
