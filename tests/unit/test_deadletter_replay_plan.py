"""Which ingest dead letters a replay takes and what it writes for each: the raw record as
Kafka holds it, else the envelope the letter rebuilds; personal devices, devices still unknown,
partial letters and earlier letters of one uplink skipped with why; filters seen from another
tenant's side."""

from __future__ import annotations

import math

import orjson

from cityhub.schemas.deadletter import DeadLetter
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import MessageError, Reason
from cityhub.streams.deadletters.replay_plan import (
    EARLIER,
    OTHER_RECORD,
    PARTIAL,
    PERSONAL,
    REPLAY_HEADER,
    STILL_UNKNOWN,
    Planned,
    RawRecord,
    Replay,
    ReplayFilter,
    Skipped,
    last_of_each_uplink,
    plan,
    replay_record,
)
from cityhub.streams.normaliser.normalise import raw_dead_letter
from cityhub.streams.registry.view import RegistryView

from .deadletter_support import registry_view

RAW = "city.raw"
FAILED_AT = "2026-12-04T10:00:00.000Z"
EVERYTHING = ReplayFilter()
REGISTRY = registry_view()


def _envelope(device: str = "00000000000000a1", payload: bytes = b'{"pm10": 3}') -> RawEnvelope:
    return RawEnvelope(
        "mqtt",
        "cityhub-json",
        f"cityhub/ingest/{device}",
        device,
        "2026-12-04T09:59:59.5Z",
        payload,
    )


def _letter(
    raw: bytes,
    *,
    reason: Reason = Reason.UNDECODABLE_PAYLOAD,
    key: bytes | None = b"00000000000000a1",
    raw_offset: int = 41,
    failed_at: str = FAILED_AT,
    max_payload_bytes: int = 64 * 1024,
) -> bytes:
    return raw_dead_letter(
        raw,
        key,
        MessageError("the decoder says no", reason=reason),
        stage="normalise",
        failed_at=failed_at,
        max_payload_bytes=max_payload_bytes,
        topic=RAW,
        partition=2,
        offset=raw_offset,
    ).to_json()


def _plan(
    letter: bytes | None,
    selection: ReplayFilter = EVERYTHING,
    *,
    offset: int = 7,
    registry: RegistryView = REGISTRY,
) -> Planned | Skipped | None:
    return plan(
        letter, partition=0, offset=offset, raw_topic=RAW, registry=registry, selection=selection
    )


def _planned(letter: bytes, *, offset: int = 7) -> Planned:
    made = _plan(letter, offset=offset)
    assert isinstance(made, Planned), made
    return made


def test_a_letter_points_at_its_raw_record_and_rebuilds_its_envelope() -> None:
    envelope = _envelope()
    made = _planned(_letter(envelope.to_json()))
    assert (made.letter, made.raw_topic, made.raw_partition, made.raw_offset) == (
        "0-7",
        RAW,
        2,
        41,
    )
    assert made.rebuilt is not None
    assert (made.rebuilt.format, made.rebuilt.topic, made.rebuilt.device) == (
        envelope.format,
        envelope.topic,
        envelope.device,
    )
    assert made.rebuilt.payload == envelope.payload
    assert made.rebuilt.received_at == "2026-12-04T09:59:59.500Z"


def test_the_raw_record_itself_is_replayed_while_kafka_holds_it() -> None:
    raw = _envelope().to_json()
    made = _planned(_letter(raw))
    headers = [("traceparent", b"00-abc-def-01"), (REPLAY_HEADER, b"0-3")]
    replay = replay_record(made, RawRecord(b"00000000000000a1", raw, headers))
    assert isinstance(replay, Replay)
    assert replay.from_raw
    assert replay.value == raw
    assert replay.partition == 2
    assert replay.key == b"00000000000000a1"
    # The trace goes on; a replay of a replayed record names only the letter it comes from now.
    assert replay.headers == [("traceparent", b"00-abc-def-01"), (REPLAY_HEADER, b"0-7")]


def test_a_raw_record_gone_is_rebuilt_from_a_whole_letter() -> None:
    envelope = _envelope(payload=bytes(range(256)))  # binary: the letter keeps it as base64
    made = _planned(_letter(envelope.to_json()))
    replay = replay_record(made, None)
    assert isinstance(replay, Replay)
    assert not replay.from_raw
    again = RawEnvelope.from_json(replay.value)
    assert again.payload == envelope.payload
    assert (again.format, again.topic, again.device, again.source) == (
        envelope.format,
        envelope.topic,
        envelope.device,
        "mqtt",
    )
    assert replay.key == b"00000000000000a1"
    assert replay.headers == [(REPLAY_HEADER, b"0-7")]


def test_a_letter_that_kept_part_of_the_payload_needs_the_raw_record() -> None:
    letter = DeadLetter.of(
        stage="normalise",
        reason=Reason.SCHEMA_MISMATCH,
        detail="cut",
        failed_at=FAILED_AT,
        payload=b"x" * 100,
        max_payload_bytes=10,
        format="cityhub-json",
        source_topic="cityhub/ingest/n-aq-1",
        device="n-aq-1",
        received_at=FAILED_AT,
        kafka_topic=RAW,
        kafka_partition=0,
        kafka_offset=5,
    ).to_json()
    made = _planned(letter)
    assert made.rebuilt is None
    assert replay_record(made, None) == Skipped("0-7", PARTIAL)


def test_a_raw_record_of_another_digest_is_not_replayed() -> None:
    made = _planned(_letter(_envelope().to_json()))
    other = RawRecord(b"k", _envelope(payload=b'{"pm10": 4}').to_json(), [])
    assert replay_record(made, other) == Skipped("0-7", OTHER_RECORD)


def test_a_record_that_was_no_envelope_is_replayed_from_kafka_only() -> None:
    made = _planned(_letter(b"\xff not json", reason=Reason.MALFORMED_JSON))
    assert made.rebuilt is None
    assert made.received_at is None
    replay = replay_record(made, RawRecord(b"00000000000000a1", b"\xff not json", []))
    assert isinstance(replay, Replay)
    assert replay.value == b"\xff not json"
    assert replay_record(made, None) == Skipped("0-7", PARTIAL)


def test_personal_devices_are_never_replayed() -> None:
    raw = _envelope(device="00000000000000b1").to_json()
    assert _plan(_letter(raw, key=b"00000000000000b1")) == Skipped("0-7", PERSONAL)
    # A letter that withheld a personal reading keeps nothing to rebuild.
    withheld = _letter(b"", key=b"n-track-1", reason=Reason.SUBJECT_KEY_MISSING)
    assert _plan(withheld) == Skipped("0-7", PERSONAL)


def test_a_device_still_unknown_is_skipped_and_one_registered_since_is_replayed() -> None:
    unknown = _envelope(device="00000000000000ff").to_json()
    letter = _letter(unknown, key=b"00000000000000ff", reason=Reason.UNKNOWN_DEVICE)
    assert _plan(letter) == Skipped("0-7", STILL_UNKNOWN)
    known = _letter(_envelope().to_json(), reason=Reason.UNKNOWN_DEVICE)
    assert isinstance(_plan(known), Planned)
    # Another reason for a device nobody registered: replayed (allow_unknown may take it).
    assert isinstance(_plan(_letter(unknown, key=b"00000000000000ff")), Planned)


def test_filters_by_reason_device_tenant_and_time() -> None:
    north = _letter(_envelope().to_json())
    south_raw = _envelope(device="00000000000000c1").to_json()
    south = _letter(south_raw, key=b"00000000000000c1", reason=Reason.NO_MEASUREMENTS)
    by_reason = ReplayFilter(reasons=frozenset({"no_measurements"}))
    assert _plan(north, by_reason) is None
    assert isinstance(_plan(south, by_reason), Planned)
    # A device by its DevEUI as the letter names it, or by its registered id.
    for name in ("00000000000000a1", "n-aq-1"):
        chosen = ReplayFilter(devices=frozenset({name}))
        assert isinstance(_plan(north, chosen), Planned)
        assert _plan(south, chosen) is None
    # A tenant's filter never takes another tenant's letters, from either side.
    assert _plan(north, ReplayFilter(tenant="south")) is None
    assert _plan(south, ReplayFilter(tenant="north")) is None
    assert isinstance(_plan(south, ReplayFilter(tenant="south")), Planned)
    at = 1_796_378_400.0  # FAILED_AT
    assert isinstance(_plan(north, ReplayFilter(since=at, until=at + 1)), Planned)
    assert _plan(north, ReplayFilter(since=at + 0.001)) is None
    assert _plan(north, ReplayFilter(until=at)) is None
    assert ReplayFilter().since == -math.inf


def test_only_the_normalisers_letters_of_this_raw_topic_are_planned() -> None:
    good = orjson.loads(_letter(_envelope().to_json()))
    for change in (
        {"stage": "deliver"},
        {"stage": "bridge", "kafka_topic": None},
        {"kafka_topic": "other.raw"},
        {"kafka_partition": True},
        {"kafka_offset": -1},
        {"failed_at": "yesterday"},
        {"sha256": None},
    ):
        assert _plan(orjson.dumps({**good, **change})) is None, change
    for junk in (b"", None, b"[1]", b"{", b"\xff"):
        assert _plan(junk) is None


def test_each_uplink_is_replayed_once_from_its_last_letter() -> None:
    raw = _envelope().to_json()
    first = _planned(_letter(raw, raw_offset=41), offset=1)
    # The same uplink failed again after a replay: a second letter of it, at another offset.
    second = _planned(_letter(raw, raw_offset=90), offset=2)
    other = _planned(_letter(_envelope(payload=b'{"pm10": 9}').to_json(), raw_offset=42), offset=3)
    chosen, earlier = last_of_each_uplink([first, other, second])
    assert chosen == [other, second]
    assert earlier == [Skipped("0-1", EARLIER)]
    # Records that were no envelope have no receive time: the same bytes twice are two uplinks.
    junk_a = _planned(_letter(b"junk", raw_offset=50), offset=4)
    junk_b = _planned(_letter(b"junk", raw_offset=51), offset=5)
    assert last_of_each_uplink([junk_a, junk_b]) == ([junk_a, junk_b], [])
