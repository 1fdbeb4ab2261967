"""No single message stops or slows a partition (issue 8, point 1), on the real stack.

Payloads made of characters that JSON escapes (control characters take six bytes, quotes and
backslashes two) or that take four bytes in UTF-8 grow when the bridge wraps them in a raw
envelope. Around the payload limit, in every ingest format, and mixed with ordinary messages:
each one is written (as a raw envelope, possibly with its payload in base64) or dead-lettered
with a reason, the ordinary messages arrive promptly, and the bridge never resets its session.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator

import pytest

from .hub import Hub, publish, read_topic
from .uplinks import chirpstack, tts, unique_eui

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RECORD_LIMIT = 262_144
PAYLOAD_LIMIT = 131_072
CHARACTERS = {
    "control": "\x01",
    "quote": '"',
    "backslash": "\\",
    "astral": "\U0001f600",
    "mixed": '\x00\x1f"\\\u2028\U0001f600a',
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    h = Hub(
        tmp_path_factory.mktemp("poison"),
        extra_env={
            "CITYHUB_WORKER__ALLOW_UNKNOWN_DEVICES": "true",
            "CITYHUB_KAFKA__MAX_MESSAGE_BYTES": str(RECORD_LIMIT),
            "CITYHUB_BRIDGE__MAX_PAYLOAD_BYTES": str(PAYLOAD_LIMIT),
            "CITYHUB_BRIDGE__SUBSCRIPTIONS": json.dumps(
                [
                    {"filter": "v3/+/devices/+/up", "format": "tts-v3"},
                    {"filter": "application/+/device/+/event/up", "format": "chirpstack-v4"},
                    {"filter": "cityhub/ingest/+", "format": "cityhub-json"},
                    {"filter": "cityhub/senml/+", "format": "senml-json"},
                ]
            ),
        },
    )
    h.start()
    yield h
    h.stop()


def blob(characters: str, size: int) -> bytes:
    """``characters`` repeated to exactly ``size`` bytes of UTF-8 (ASCII padding at the end)."""
    unit = characters.encode()
    data = unit * (size // len(unit))
    return data + b"a" * (size - len(data))


def json_with(characters: str, size: int, fmt: str, device: str, eui: str) -> bytes:
    """A message of the format's own shape carrying a string of ``characters`` (escaped by JSON
    where JSON must) that makes the payload about ``size`` bytes."""
    each = len(json.dumps(characters, ensure_ascii=False).encode()) - 2
    text = characters * (size // each)
    fields = {"temperature": 21.5, "note": text}
    if fmt == "senml-json":
        doc: object = [{"bn": f"urn:dev:{device}:", "n": "note", "vs": text}]
    elif fmt == "tts-v3":
        doc = {
            "end_device_ids": {
                "device_id": device,
                "application_ids": {"application_id": "poison"},
                "dev_eui": eui,
            },
            "uplink_message": {"f_port": 1, "f_cnt": size, "decoded_payload": fields},
        }
    elif fmt == "chirpstack-v4":
        doc = {"deviceInfo": {"devEui": eui}, "fCnt": size, "fPort": 1, "object": fields}
    else:
        doc = fields
    return json.dumps(doc, ensure_ascii=False).encode()


def topic_for(fmt: str, device: str, eui: str) -> str:
    return {
        "tts-v3": f"v3/poison@city/devices/{device}/up",
        "chirpstack-v4": f"application/poison/device/{eui}/event/up",
        "cityhub-json": f"cityhub/ingest/{device}",
        "senml-json": f"cityhub/senml/{device}",
    }[fmt]


async def test_escaped_payloads_around_the_limits_never_stall_ingest(hub: Hub) -> None:
    run = uuid.uuid4().hex[:6]
    hostile: list[tuple[str, bytes]] = []
    readable: set[str] = set()
    """Devices of hostile messages that still carry a temperature to normalise."""
    for fmt in ("tts-v3", "chirpstack-v4", "cityhub-json", "senml-json"):
        for name, characters in CHARACTERS.items():
            device, eui = f"poison-{run}-{fmt[:4]}-{name}", unique_eui()
            topic = topic_for(fmt, device, eui)
            if fmt != "senml-json":  # SenML's long string is its only value: nothing to keep
                readable.add(f"eui-{eui}" if fmt == "chirpstack-v4" else device)
            for size in (PAYLOAD_LIMIT - 1, PAYLOAD_LIMIT, PAYLOAD_LIMIT + 1):
                hostile.append((topic, blob(characters, size)))
            # messages the format can read, grown by escapes to half and nearly all the limit
            for size in (PAYLOAD_LIMIT // 2, PAYLOAD_LIMIT - 300):
                hostile.append((topic, json_with(characters, size, fmt, device, eui)))
    ordinary: list[tuple[str, bytes]] = []
    expected: set[str] = set()
    for i in range(40):
        eui = unique_eui()
        ordinary += [
            tts(f"calm-{run}-{i}", unique_eui(), i, decoded={"temperature": 20 + i / 10}),
            chirpstack(eui, i, obj={"laeq": 50 + i / 10}),
            (f"cityhub/ingest/calm-{run}-json-{i}", json.dumps({"noise": 40 + i}).encode()),
        ]
        expected |= {f"calm-{run}-{i}", f"eui-{eui}", f"calm-{run}-json-{i}"}
    # each hostile message followed by an ordinary one, the rest of the ordinary ones at the end
    mixed: list[tuple[str, bytes]] = []
    calm = iter(ordinary)
    for message in hostile:
        mixed.append(message)
        mixed.extend(itertools.islice(calm, 1))
    mixed.extend(calm)

    await publish(mixed)
    published = time.monotonic()

    def arrived(records: list[dict[str, object]]) -> bool:
        return expected <= {r.get("device_id") for r in records}

    observations = await read_topic(hub.topics["observations"], until=arrived, timeout=120)
    assert arrived(observations), "ordinary messages behind the hostile ones did not all arrive"
    # Promptly: well before a redelivery loop could have let them through.
    waited = time.monotonic() - published
    assert waited < 30, f"the ordinary messages took {waited:.0f} s after the last publish"

    # Nothing lost: every hostile message is a raw envelope or a dead letter of the bridge.
    hostile_topics = {t for t, _ in hostile}
    raw = await read_topic(hub.topics["raw"], until=lambda r: False, timeout=10)
    letters = await read_topic(hub.topics["deadletter"], until=lambda r: False, timeout=10)
    in_raw = [x for x in raw if x.get("topic") in hostile_topics]
    from_bridge = [
        x for x in letters if x["stage"] == "bridge" and x["source_topic"] in hostile_topics
    ]
    assert len(in_raw) + len(from_bridge) == len(hostile)
    assert {x["reason"] for x in from_bridge} == {"oversize"}
    assert len(from_bridge) >= len(CHARACTERS) * 4  # at least each PAYLOAD_LIMIT + 1
    # base64 carried those whose escaped text would not have fitted in a record
    assert any(x["payload_encoding"] == "base64" for x in in_raw)
    # the unreadable ones are dead letters with a reason, none a bug or a refused write
    assert not [x for x in letters if x["reason"] in ("internal_error", "kafka_refused")]
    # and the readable ones became observations (their long strings skipped, not the rest)
    observations = await read_topic(
        hub.topics["observations"],
        until=lambda r: readable <= {x.get("device_id") for x in r},
        timeout=30,
    )
    assert readable <= {r["device_id"] for r in observations if r["field"] == "temperature"}
    assert hub.metric("cityhub_bridge_reconnects_total") == 0
    assert hub.metric("cityhub_bridge_kafka_errors_total") == 0
