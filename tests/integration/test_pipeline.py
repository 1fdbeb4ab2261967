"""End to end on the real local stack: MQTT in through Mosquitto, the bridge and the normaliser,
observations and dead letters out of Kafka. Needs `cityhub stack up` (the Makefile does it)."""

from __future__ import annotations

import json
import urllib.error
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cityhub.connectors.decoders.cayenne import encode_lpp
from cityhub.schemas.validation import errors

from .hub import Hub, publish, read_topic
from .uplinks import chirpstack, tts, unique_eui

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    h = Hub(
        tmp_path_factory.mktemp("hub"),
        extra_env={
            # These tests are about the formats: the registry's own tests register devices.
            "CITYHUB_WORKER__ALLOW_UNKNOWN_DEVICES": "true",
            "CITYHUB_BRIDGE__MAX_PAYLOAD_BYTES": "4096",
            "CITYHUB_BRIDGE__SUBSCRIPTIONS": json.dumps(
                [
                    {"filter": "v3/+/devices/+/up", "format": "tts-v3"},
                    {"filter": "application/+/device/+/event/up", "format": "chirpstack-v4"},
                    {"filter": "cityhub/ingest/+", "format": "cityhub-json"},
                    {"filter": "cityhub/mystery/+", "format": "no-such-format"},
                ]
            ),
        },
    )
    h.start()
    yield h
    h.stop()


def by_device(records: list[dict[str, Any]], device_id: str) -> list[dict[str, Any]]:
    return [
        r
        for r in records
        if device_id in {r.get("device_id"), r.get("device")}
        or (r.get("source_topic") or "").endswith(f"/{device_id}")
    ]


async def test_every_format_arrives_as_canonical_observations(hub: Hub) -> None:
    eui_a, eui_b, eui_c = unique_eui(), unique_eui(), unique_eui()
    sensor = f"noise-{uuid.uuid4().hex[:6]}"
    senml_dev = f"meter-{uuid.uuid4().hex[:6]}"
    messages = [
        tts("aq-decoded", eui_a, 7, decoded={"temperature": 21.5, "humidity": 40, "pm2_5": 8.1}),
        tts(
            "aq-raw",
            eui_b,
            9,
            payload=encode_lpp([(1, "temperature", -3.2), (2, "relative_humidity", 81.5)]),
        ),
        chirpstack(eui_c, 812, obj={"laeq": 61.2}),
        (
            f"cityhub/ingest/{sensor}",
            json.dumps({"time": "2026-11-29T01:00:00Z", "noise": 55.5}).encode(),
        ),
        (
            f"cityhub/ingest/{senml_dev}",
            json.dumps(
                [
                    {
                        "bn": f"urn:dev:{senml_dev}:",
                        "bt": 1795914000,
                        "n": "temperature",
                        "u": "Cel",
                        "v": 4.5,
                    },
                    {"n": "voltage", "u": "V", "v": 230.1},
                ]
            ).encode(),
        ),
    ]
    await publish(messages)
    want = 3 + 2 + 1 + 1 + 2

    records = await read_topic(
        hub.topics["observations"], until=lambda r: len(r) >= want, timeout=60
    )
    assert len(records) == want, hub.log_tail()
    for record in records:
        key = record.pop("_key")
        assert key == record["device_id"]
        assert errors("observation", record) == []

    decoded = {r["quantity"]: r for r in by_device(records, "aq-decoded")}
    assert decoded["temperature"]["value"] == 21.5
    assert decoded["temperature"]["unit"] == "Cel"
    assert decoded["relative_humidity"]["unit"] == "%RH"
    assert decoded["pm2_5"]["unit"] == "ug/m3"
    net = decoded["temperature"]["network"]
    assert net["name"] == "tts"
    assert net["f_cnt"] == 7
    assert net["f_port"] == 1
    assert net["application"] == "city-air"
    assert [g["id"] for g in net["gateways"]] == ["townhall-gw", "library-gw"]
    assert net["gateways"][0]["rssi"] == -61
    assert decoded["temperature"]["dev_eui"] == eui_a
    assert decoded["temperature"]["observed_at"].startswith("2026-11-29T01:00:00.1")

    raw = {r["field"]: r for r in by_device(records, "aq-raw")}
    assert raw["temperature_1"]["value"] == pytest.approx(-3.2)
    assert raw["temperature_1"]["unit"] == "Cel"
    assert raw["relative_humidity_2"]["value"] == pytest.approx(81.5)

    noise = [r for r in records if r["dev_eui"] == eui_c]
    assert [(r["quantity"], r["value"], r["unit"]) for r in noise] == [("sound_level", 61.2, "dB")]
    assert noise[0]["network"]["name"] == "chirpstack"

    (json_obs,) = by_device(records, sensor)
    assert (json_obs["quantity"], json_obs["value"], json_obs["network"]["name"]) == (
        "sound_level",
        55.5,
        "mqtt",
    )

    senml = {r["quantity"]: r for r in by_device(records, senml_dev)}
    assert senml["temperature"]["value"] == 4.5
    assert senml["temperature"]["observed_at"] == "2026-11-29T01:00:00.000Z"
    assert senml["voltage"]["unit"] == "V"

    assert len({r["event_id"] for r in records}) == want
    assert hub.metric("cityhub_normaliser_observations_total") >= want


async def test_bad_input_goes_to_dead_letters_with_reasons_and_neighbours_still_flow(
    hub: Hub,
) -> None:
    eui = unique_eui()
    device = f"bad-{eui[:6]}"
    good_after = tts(device, eui, 3, decoded={"temperature": 12.0})
    bad = {
        "malformed_json": (f"v3/city-air@city/devices/{device}/up", b'{"end_device_ids": '),
        "schema_mismatch": tts(device, eui, 1, decoded={"temperature": 1.0}, f_port="abc"),
        "undecodable_payload": tts(device, eui, 2, payload=b"\x01\x67\x00"),
        "oversize": (f"cityhub/ingest/{device}", b"[" + b"1," * 4000 + b"1]"),
        "unknown_format": (f"cityhub/mystery/{device}", b"{}"),
        "no_measurements": (
            f"cityhub/ingest/{device}",
            json.dumps({"status": {"nested": [1]}}).encode(),
        ),
    }
    await publish([*bad.values(), good_after])

    letters = await read_topic(
        hub.topics["deadletter"],
        until=lambda r: {x["reason"] for x in by_device(r, device) + by_device(r, eui)} >= set(bad),
        timeout=60,
    )
    mine = by_device(letters, device) + by_device(letters, eui)
    reasons = {x["reason"]: x for x in mine}
    assert set(reasons) == set(bad), (reasons.keys(), hub.log_tail())
    for letter in mine:
        letter.pop("_key")
        assert errors("deadletter", letter) == []
        assert letter["detail"]
    assert reasons["oversize"]["stage"] == "bridge"
    assert reasons["oversize"]["truncated"] is True
    assert reasons["oversize"]["size"] == len(bad["oversize"][1])
    assert reasons["unknown_format"]["stage"] == "bridge"
    assert reasons["malformed_json"]["stage"] == "normalise"
    assert reasons["unknown_format"]["device"] is None
    assert json.loads(reasons["undecodable_payload"]["payload"])["uplink_message"]["f_cnt"] == 2
    assert reasons["malformed_json"]["payload"] == '{"end_device_ids": '
    assert reasons["schema_mismatch"]["kafka_offset"] is not None

    observations = await read_topic(
        hub.topics["observations"], until=lambda r: bool(by_device(r, device)), timeout=30
    )
    assert [o["value"] for o in by_device(observations, device)] == [12.0]
    assert hub.metric("cityhub_deadletters_total", stage="normalise", reason="malformed_json") >= 1
    assert hub.metric("cityhub_bridge_deadletters_total", reason="oversize") >= 1


async def test_a_duplicate_uplink_gives_one_set_of_observations(hub: Hub) -> None:
    eui = unique_eui()
    device = f"dup-{eui[:6]}"
    cayenne = encode_lpp([(1, "temperature", 19.5)])
    first = tts(device, eui, 42, payload=cayenne)
    again = tts(device, eui, 42, payload=cayenne)  # heard through another gateway
    via_chirpstack = chirpstack(eui, 42, payload=cayenne)  # and through the other network server
    following = tts(device, eui, 43, payload=encode_lpp([(1, "temperature", 19.75)]))
    before = hub.metric("cityhub_normaliser_duplicates_total")
    await publish([first, again, via_chirpstack, following])

    records = await read_topic(
        hub.topics["observations"],
        until=lambda r: any(o["network"]["f_cnt"] == 43 for o in r if o["dev_eui"] == eui),
        timeout=60,
    )
    mine = [o for o in records if o["dev_eui"] == eui]
    assert sorted(o["network"]["f_cnt"] for o in mine) == [42, 43]
    assert hub.metric("cityhub_normaliser_duplicates_total") - before == 2


async def test_a_counter_reset_within_the_window_keeps_the_new_frames(hub: Hub) -> None:
    """An ABP device rebooted: frame 42 again a minute later (the network server's counter check
    off), saying something else. It is a new frame, not a copy; a copy of it still is one."""
    eui = unique_eui()
    device = f"abp-{eui[:6]}"
    topic, body = tts(device, eui, 42, payload=encode_lpp([(1, "temperature", 19.5)]))
    reset_topic, reset_body = tts(device, eui, 42, payload=encode_lpp([(1, "temperature", 7.5)]))
    doc = json.loads(reset_body)
    doc["uplink_message"]["received_at"] = "2026-11-29T01:01:00.5Z"
    reset = (reset_topic, json.dumps(doc).encode())
    before = hub.metric("cityhub_normaliser_duplicates_total")
    await publish([(topic, body), reset, reset])

    records = await read_topic(
        hub.topics["observations"],
        until=lambda r: any(o["value"] == 7.5 for o in r if o["dev_eui"] == eui),
        timeout=60,
    )
    mine = [o for o in records if o["dev_eui"] == eui]
    assert sorted(o["value"] for o in mine) == [7.5, 19.5]
    assert len({o["event_id"] for o in mine}) == 2
    assert hub.metric("cityhub_normaliser_duplicates_total") - before == 1


async def test_metrics_and_health_are_served(hub: Hub) -> None:
    text = hub.metrics()
    for name in (
        "cityhub_bridge_messages_received_total",
        "cityhub_bridge_messages_written_total",
        "cityhub_bridge_produce_latency_seconds_bucket",
        "cityhub_bridge_inflight_messages",
        "cityhub_bridge_backpressure_seconds_total",
        "cityhub_normaliser_messages_total",
        "cityhub_normalise_latency_seconds_bucket",
        "cityhub_normaliser_duplicates_total",
        "cityhub_deadletters_total",
        "cityhub_consumer_lag_messages",
    ):
        assert name in text, name
    # one process per part under cityhub run's supervisor, each with its components
    body = hub.health()
    assert body == {
        "status": "ok",
        "components": {
            "bridge.bridge": True,
            "worker-1.registry": True,
            "worker-1.subscriptions": True,
            "worker-1.privacy": True,
            "worker-1.sharing": True,
            "worker-1.routing": True,
            "worker-1.worker": True,
            # The side stages in a worker process of their own.
            "worker-side.registry": True,
            "worker-side.privacy": True,
            "worker-side.open_data_worker": True,
            "worker-side.health_worker": True,
            "api.registry": True,
            "api.subscriptions": True,
            "api.subscription_secrets": True,
            "api.privacy": True,
            "api.sharing": True,
            "api.open_data": True,
            "api.data_requests": True,
            "api.agreement_usage": True,
            "api.device_health": True,
            "api.resident_tokens": True,
            "api.processing_log_index": True,
            "api.console_signouts": True,
            "api.subscription_secrets_moved": True,
            "deliver.registry": True,
            "deliver.subscriptions": True,
            "deliver.subscription_secrets": True,
            "deliver.privacy": True,
            "deliver.sharing": True,
            "deliver.delivery": True,
            "history.history": True,
        },
    }


@pytest.mark.parametrize("path", ["/metrics", "/healthz"])
def test_the_api_port_serves_neither_metrics_nor_health(hub: Hub, path: str) -> None:
    # The metrics name tenants and subscriptions: they are on the management port, not on the
    # API's, where they were readable without a key.
    with pytest.raises(urllib.error.HTTPError) as refused:
        hub.get(path)
    assert refused.value.code == 404
    assert refused.value.headers["Content-Type"].startswith("application/problem+json")
    problem = json.loads(refused.value.read())
    assert problem["status"] == 404
    assert "cityhub_" not in json.dumps(problem)
    assert hub.management(path)  # and the management port answers it
    # The management port serves nothing of the API.
    with pytest.raises(urllib.error.HTTPError) as elsewhere:
        hub.management("/api/v1/openapi.json")
    assert elsewhere.value.code == 404
    assert json.loads(hub.get("/api/v1/openapi.json"))["openapi"]  # documentation stays public
