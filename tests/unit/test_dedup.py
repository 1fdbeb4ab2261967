from __future__ import annotations

import base64

import orjson

from cityhub.connectors.formats.base import Uplink
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.normaliser.dedup import DeviceFrames, check_duplicate
from cityhub.streams.normaliser.normalise import Normalised, duplicate_key, normalise_envelope


def test_first_sighting_is_not_a_duplicate_and_is_remembered():
    dup, state = check_duplicate(None, "f7", now=100.0, offset=3, window=60)
    assert not dup
    assert state == {"f7": [100.0, 3.0, -1.0]}  # -1: no digest known


def test_same_frame_from_another_record_within_the_window_is_a_duplicate():
    _, state = check_duplicate(None, "f7", now=100.0, offset=3, window=60)
    dup, state2 = check_duplicate(state, "f7", now=101.0, offset=4, window=60)
    assert dup
    assert state2 == state


def test_the_same_record_replayed_is_not_a_duplicate():
    # At-least-once: after a crash the record is processed again and must produce again.
    _, state = check_duplicate(None, "f7", now=100.0, offset=3, window=60)
    dup, _ = check_duplicate(state, "f7", now=100.0, offset=3, window=60)
    assert not dup


def test_a_frame_outside_the_window_is_new_again():
    # A device that rejoined starts its frame counter over.
    _, state = check_duplicate(None, "f0", now=100.0, offset=1, window=60)
    dup, state = check_duplicate(state, "f0", now=200.0, offset=9, window=60)
    assert not dup
    assert state == {"f0": [200.0, 9.0, -1.0]}


def test_state_is_bounded_and_forgets_the_oldest():
    state = None
    for i in range(10):
        _, state = check_duplicate(
            state, f"f{i}", now=100.0 + i, offset=i, window=1000, max_frames=4
        )
    assert sorted(state) == ["f6", "f7", "f8", "f9"]


# --- what a frame is: the session's DevAddr and the frame counter ----------------------------

EUI = "70b3d57ed0000001"
APP = "17c82e96-be03-4f38-aef3-f83d48582d97"
OLD, NEW = "260b1a2c", "260b77f0"  # the DevAddrs before and after an OTAA rejoin
T0 = 1_795_914_000.0
WINDOW = 300.0


def test_a_lorawan_frame_is_keyed_by_its_session_and_counter() -> None:
    assert duplicate_key(Uplink("tts", "aq-1", EUI, dev_addr=OLD, f_cnt=7)) == f"f{OLD}:7"
    # a message without a DevAddr: the counter alone, as before
    assert duplicate_key(Uplink("tts", "aq-1", EUI, f_cnt=7)) == "f7"
    assert duplicate_key(Uplink("tts", "aq-1", EUI, f_cnt=None)) is None
    assert duplicate_key(Uplink("mqtt", "plain-1", observed_at=rfc3339(T0))) == f"t{rfc3339(T0)}"


def test_a_new_session_s_frames_are_not_the_old_session_s() -> None:
    state = None
    for offset, f_cnt in enumerate([0, 1, 2]):
        key = duplicate_key(Uplink("tts", "aq-1", EUI, dev_addr=OLD, f_cnt=f_cnt))
        dup, state = check_duplicate(state, key or "", now=T0 + offset, offset=offset, window=60)
        assert not dup
    for offset, f_cnt in enumerate([0, 1, 2], start=3):
        key = duplicate_key(Uplink("tts", "aq-1", EUI, dev_addr=NEW, f_cnt=f_cnt))
        dup, state = check_duplicate(state, key or "", now=T0 + offset, offset=offset, window=60)
        assert not dup
    assert len(state) == 6


def _tts(
    f_cnt: int, dev_addr: str | None, at: float, *, value: float = 21.5, frm: bytes | None = None
) -> RawEnvelope:
    """A TTS uplink as it arrives: upper-case EUI and DevAddr, ``f_cnt`` 0 left out; ``frm``
    its application payload (``frm_payload``), when it carries one."""
    ids: dict[str, object] = {"device_id": "aq-1", "dev_eui": EUI.upper()}
    if dev_addr is not None:
        ids["dev_addr"] = dev_addr.upper()
    up: dict[str, object] = {
        "f_port": 1,
        "received_at": rfc3339(at),
        "decoded_payload": {"temperature": value},
    }
    if f_cnt:
        up["f_cnt"] = f_cnt
    if frm is not None:
        up["frm_payload"] = base64.b64encode(frm).decode()
    doc = {"end_device_ids": ids, "uplink_message": up}
    topic = "v3/city-air@city/devices/aq-1/up"
    return RawEnvelope("mqtt", "tts-v3", topic, EUI, rfc3339(at), orjson.dumps(doc))


def _chirpstack(
    f_cnt: int, dev_addr: str, at: float, *, value: float = 21.5, frm: bytes | None = None
) -> RawEnvelope:
    """The same frame as ChirpStack publishes it (the device also on the other server)."""
    doc: dict[str, object] = {
        "time": rfc3339(at),
        "deviceInfo": {"applicationId": APP, "devEui": EUI},
        "devAddr": dev_addr,
        "fCnt": f_cnt,
        "fPort": 1,
        "object": {"temperature": value},
    }
    if frm is not None:
        doc["data"] = base64.b64encode(frm).decode()
    topic = f"application/{APP}/device/{EUI}/event/up"
    return RawEnvelope("mqtt", "chirpstack-v4", topic, EUI, rfc3339(at), orjson.dumps(doc))


class _Nobody:
    """A registry without devices: the hub lets unknown devices through in these tests."""

    def device_by_eui(self, dev_eui: str) -> None:
        return None

    def device_by_id(self, device_id: str) -> None:
        return None

    def device_type(self, tenant: str, type_id: str) -> None:
        return None


def _normalise(envelope: RawEnvelope, offset: int, frames: dict[str, DeviceFrames]) -> Normalised:
    return normalise_envelope(
        envelope,
        offset=offset,
        directory=_Nobody(),
        frames=frames,
        window=WINDOW,
        allow_unknown=True,
    )


def test_frames_0_to_2_then_a_rejoined_session_s_0_to_2_are_all_normalised() -> None:
    # The device rejoins (OTAA) a minute later: new DevAddr, frame counter back at 0. Within the
    # window its frames 0, 1, 2 must not be taken for the old session's.
    frames: dict[str, DeviceFrames] = {}
    sent = [_tts(n, OLD, T0 + 10 * n, value=n) for n in range(3)]
    sent += [_tts(n, NEW, T0 + 60 + 10 * n, value=10 + n) for n in range(3)]
    results = [_normalise(envelope, offset, frames) for offset, envelope in enumerate(sent)]
    assert [r.duplicate for r in results] == [False] * 6
    assert [[o.value for o, _, _ in r.observations] for r in results] == [
        [0], [1], [2], [10], [11], [12]
    ]  # fmt: skip
    assert [o.network.f_cnt for r in results for o, _, _ in r.observations] == [0, 1, 2] * 2
    event_ids = [o.event_id for r in results for o, _, _ in r.observations]
    assert len(set(event_ids)) == 6
    assert sorted(frames[EUI]) == sorted(f"f{a}:{n}" for a in (OLD, NEW) for n in range(3))


def test_one_frame_through_both_network_servers_is_still_one_uplink() -> None:
    frames: dict[str, DeviceFrames] = {}
    first = _normalise(_tts(5, OLD, T0), 0, frames)
    copy = _normalise(_chirpstack(5, OLD, T0 + 0.2), 1, frames)
    assert not first.duplicate
    assert first.observations
    assert copy.duplicate
    assert copy.observations == ()
    # another gateway path through the same server, and a late redelivery, likewise
    assert _normalise(_tts(5, OLD, T0 + 0.05), 2, frames).duplicate
    assert _normalise(_chirpstack(5, OLD, T0 + WINDOW - 1), 3, frames).duplicate
    # the next frame of the session is new
    assert not _normalise(_chirpstack(6, OLD, T0 + 30), 4, frames).duplicate


def test_a_replay_of_the_same_record_produces_its_observations_again() -> None:
    # At least once: after a crash the record (same offset) is processed again, its frame already
    # in the restored state; it must produce the same observations, or they would be lost.
    envelope = _tts(0, NEW, T0)
    frames: dict[str, DeviceFrames] = {}
    first = _normalise(envelope, 41, frames)
    restored = {device: dict(state) for device, state in frames.items()}
    again = _normalise(envelope, 41, restored)
    assert not again.duplicate
    assert [doc for _, doc, _ in again.observations] == [doc for _, doc, _ in first.observations]


def test_a_counter_reset_without_the_application_payload_is_still_dropped() -> None:
    # The limit left: an ABP device keeps its DevAddr, so frame 0 after a reset has the key of
    # the frame 0 of a minute ago; a message with decoded fields only has no digest to tell them
    # apart (two network servers may decode one frame differently). Network servers refuse such
    # frames too unless their frame-counter checks are off.
    frames: dict[str, DeviceFrames] = {}
    assert not _normalise(_tts(0, OLD, T0), 0, frames).duplicate
    assert _normalise(_tts(0, OLD, T0 + 60, value=3.0), 1, frames).duplicate
    # a message without a DevAddr is keyed by its counter alone, with the same limit
    assert not _normalise(_tts(1, None, T0), 2, frames).duplicate
    assert _normalise(_tts(1, None, T0 + 60), 3, frames).duplicate


def test_state_from_before_sessions_were_keyed_does_not_match_once() -> None:
    # The upgrade's effect: a frame remembered as "f5" (before DevAddrs were in the key) and its
    # copy arriving after the upgrade as "f<DevAddr>:5" are taken for two frames, once.
    frames: dict[str, DeviceFrames] = {EUI: {"f5": [T0, 0.0]}}
    assert not _normalise(_tts(5, OLD, T0 + 1), 1, frames).duplicate
    assert _normalise(_chirpstack(5, OLD, T0 + 2), 2, frames).duplicate


# --- a counter reset within the window: told apart by what the frame says --------------------


def test_an_abp_device_s_frames_after_a_counter_reset_are_kept() -> None:
    # A brown-out reboots an ABP device a minute after its frame 0: same DevAddr, the counter
    # at 0 again (the network server's counter check off). Its new frames say other things.
    before, reset = b"\x01\x67\x00\x0a", b"\x01\x67\x00\x1e"  # Cayenne LPP: 1.0 and 3.0 °C
    frames: dict[str, DeviceFrames] = {}
    assert not _normalise(_tts(0, OLD, T0, value=1.0, frm=before), 0, frames).duplicate
    after = _normalise(_tts(0, OLD, T0 + 60, value=3.0, frm=reset), 1, frames)
    assert not after.duplicate
    assert [o.value for o, _, _ in after.observations] == [3.0]
    # a late copy of either frame through the other network server is still a copy
    assert _normalise(_chirpstack(0, OLD, T0 + 61, value=1.0, frm=before), 2, frames).duplicate
    assert _normalise(_chirpstack(0, OLD, T0 + 62, value=3.0, frm=reset), 3, frames).duplicate
    # ... and a frame that repeats the old frame's very payload is taken for a copy (the limit)
    assert _normalise(_tts(0, OLD, T0 + 120, value=1.0, frm=before), 4, frames).duplicate


def test_both_frames_of_one_key_replayed_after_a_crash_come_out_again() -> None:
    frames: dict[str, DeviceFrames] = {}
    sent = [_tts(0, OLD, T0, frm=b"a"), _tts(0, OLD, T0 + 60, value=3.0, frm=b"b")]
    first = [_normalise(envelope, offset, frames) for offset, envelope in enumerate(sent, 40)]
    restored = {device: dict(state) for device, state in frames.items()}
    again = [_normalise(envelope, offset, restored) for offset, envelope in enumerate(sent, 40)]
    assert [r.duplicate for r in first + again] == [False] * 4
    assert [r.observations for r in again] == [r.observations for r in first]


def test_plain_mqtt_messages_stamped_alike_are_copies_only_when_they_say_the_same() -> None:
    def plain(body: dict[str, object]) -> RawEnvelope:
        payload = orjson.dumps({"time": rfc3339(T0), **body})
        return RawEnvelope(
            "mqtt", "cityhub-json", "cityhub/ingest/pm-1", "pm-1", rfc3339(T0), payload
        )

    frames: dict[str, DeviceFrames] = {}
    # a sensor that sends each quantity in a message of its own, stamped with one time
    assert not _normalise(plain({"temperature": 21.5}), 0, frames).duplicate
    assert not _normalise(plain({"humidity": 40.0}), 1, frames).duplicate
    # a broker's redelivery of either repeats its bytes
    assert _normalise(plain({"humidity": 40.0}), 2, frames).duplicate


def test_at_most_a_few_frames_are_remembered_under_one_key() -> None:
    state: DeviceFrames | None = None
    for n in range(10):  # a device resetting its counter over and over
        dup, state = check_duplicate(state, "fx:0", now=T0 + n, offset=n, window=60, digest=n)
        assert not dup
    assert state is not None
    assert state["fx:0"] == [T0, 6.0, 6.0, 7.0, 7.0, 8.0, 8.0, 9.0, 9.0]
    assert check_duplicate(state, "fx:0", now=T0 + 11, offset=11, window=60, digest=8)[0]


def test_a_changelog_entry_of_another_shape_is_forgotten_not_a_crash() -> None:
    for odd in ([], [T0], [T0, 1.0, 2.0, 3.0], "f", [T0, "x", 1.0], None, [T0, True]):
        frames: DeviceFrames = {"f5": odd, "f6": [T0, 9.0]}  # type: ignore[dict-item]
        dup, state = check_duplicate(frames, "f5", now=T0 + 1, offset=1, window=60, digest=7)
        assert not dup
        assert state["f5"] == [T0 + 1, 1.0, 7.0]
        assert state["f6"] == [T0, 9.0]  # the older shape is still read, and left alone
