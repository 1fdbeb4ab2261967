"""Timestamps at the edges of the calendar on the real stack: TTS, ChirpStack and cityhub-json
messages published through Mosquitto with years 0001 and 9999 and offsets, Unicode digits, a
huge epoch number and a SenML time past 2100 are ``schema_mismatch`` dead letters whose detail
names the field (none is an ``internal_error``); the ordinary messages published after them,
times at the edges of the accepted range among them, arrive as observations."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cityhub.schemas.validation import errors

from .hub import Hub, publish, read_topic
from .uplinks import chirpstack, tts, unique_eui

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    h = Hub(
        tmp_path_factory.mktemp("hub"),
        extra_env={
            # About times, not identity: the registry's own tests register devices.
            "CITYHUB_WORKER__ALLOW_UNKNOWN_DEVICES": "true",
            "CITYHUB_BRIDGE__SUBSCRIPTIONS": json.dumps(
                [
                    {"filter": "v3/+/devices/+/up", "format": "tts-v3"},
                    {"filter": "application/+/device/+/event/up", "format": "chirpstack-v4"},
                    {"filter": "cityhub/ingest/+", "format": "cityhub-json"},
                ]
            ),
        },
    )
    h.start()
    yield h
    h.stop()


def tts_received_at(device: str, eui: str, f_cnt: int, received_at: str) -> tuple[str, bytes]:
    topic, payload = tts(device, eui, f_cnt, decoded={"temperature": 20.5})
    doc = json.loads(payload)
    doc["uplink_message"]["received_at"] = received_at
    doc["received_at"] = received_at
    return topic, json.dumps(doc).encode()


def ingest(device: str, body: Any) -> tuple[str, bytes]:
    return f"cityhub/ingest/{device}", json.dumps(body).encode()


def named(records: list[dict[str, Any]], topics: set[str]) -> dict[str, dict[str, Any]]:
    """Dead letters by the MQTT topic of their message."""
    return {r["source_topic"]: r for r in records if r.get("source_topic") in topics}


def by_device(records: list[dict[str, Any]], devices: set[str]) -> dict[str, dict[str, Any]]:
    """Observations by device id (each ordinary message gives one)."""
    return {r["device_id"]: r for r in records if r.get("device_id") in devices}


async def test_edge_timestamps_are_schema_mismatches_and_ordinary_messages_still_arrive(
    hub: Hub,
) -> None:
    tag = uuid.uuid4().hex[:6]
    euis = [unique_eui() for _ in range(4)]
    edge = [
        tts_received_at(f"edge-a-{tag}", euis[0], 1, "0001-01-01T00:00:00+01:00"),
        tts_received_at(f"edge-b-{tag}", euis[1], 1, "\uff12\uff10\uff12\uff16-11-29T01:00:00Z"),
        chirpstack(euis[2], 1, obj={"laeq": 50.0}, time="9999-12-31T23:59:59-01:00"),
        ingest(f"edge-c-{tag}", {"time": "2026-11-29T01:00:0\u00b2Z", "noise": 50.0}),
        ingest(f"edge-d-{tag}", {"ts": 2**64 - 1, "noise": 50.0}),
        ingest(f"edge-e-{tag}", [{"bn": f"edge-e-{tag}:", "bt": 5e9, "n": "noise", "v": 50.0}]),
        ingest(f"edge-f-{tag}", {"time": "2024-05-01T10:00:00." + "9" * 2000, "noise": 50.0}),
    ]
    ordinary = {
        f"fine-a-{tag}": tts(f"fine-a-{tag}", euis[3], 2, decoded={"temperature": 21.5}),
        f"eui-{euis[3][::-1]}": chirpstack(euis[3][::-1], 2, obj={"laeq": 61.0}),
        f"fine-b-{tag}": ingest(f"fine-b-{tag}", {"time": "2026-11-29T01:00:00Z", "noise": 55.5}),
        f"fine-c-{tag}": ingest(f"fine-c-{tag}", {"time": "1970-01-01T01:00:00+01:00", "n": 1}),
        f"fine-d-{tag}": ingest(f"fine-d-{tag}", {"time": "2099-12-31T23:59:59.999999Z", "n": 2}),
    }
    await publish([*edge, *ordinary.values()])

    edge_topics = {topic for topic, _ in edge}
    letters = named(
        await read_topic(
            hub.topics["deadletter"],
            until=lambda r: len(named(r, edge_topics)) == len(edge),
            timeout=60,
        ),
        edge_topics,
    )
    assert set(letters) == edge_topics, hub.log_tail()
    for topic, letter in letters.items():
        letter.pop("_key")
        letter.pop("_ts")
        assert errors("deadletter", letter) == []
        assert (letter["stage"], letter["reason"]) == ("normalise", "schema_mismatch"), letter
        assert ": expected " in letter["detail"], letter["detail"]
        assert len(letter["detail"]) < 500, topic
    details = sorted(letter["detail"] for letter in letters.values())
    assert sum(d.startswith("uplink_message.received_at: ") for d in details) == 2
    assert sum(d.startswith("time: ") for d in details) == 3  # ChirpStack's and two generic
    assert sum(d.startswith("ts: ") for d in details) == 1
    assert sum(d.startswith("[0].t: ") for d in details) == 1

    observations = by_device(
        await read_topic(
            hub.topics["observations"],
            until=lambda r: len(by_device(r, set(ordinary))) == len(ordinary),
            timeout=60,
        ),
        set(ordinary),
    )
    assert set(observations) == set(ordinary), hub.log_tail()
    times = {device: o["observed_at"] for device, o in observations.items()}
    assert times[f"fine-c-{tag}"] == "1970-01-01T00:00:00.000Z"
    assert times[f"fine-d-{tag}"] == "2099-12-31T23:59:59.999Z"
    for observation in observations.values():
        observation.pop("_key")
        observation.pop("_ts")
        assert errors("observation", observation) == []
    assert hub.metric("cityhub_deadletters_total", stage="normalise", reason="internal_error") == 0
    assert hub.metric(
        "cityhub_deadletters_total", stage="normalise", reason="schema_mismatch"
    ) == len(edge)
