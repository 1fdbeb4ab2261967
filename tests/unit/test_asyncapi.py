"""The AsyncAPI document (schemas/asyncapi.yaml, shipped in the wheel) against the code: every
topic a service outside cityhub may read is a channel and every internal one is named as such;
each channel's Kafka configuration is the one cityhub creates the topic with; every payload is a
schema of schemas/json/ and every such schema is used; the headers the code writes on a topic
are the ones its messages declare. And Spectral's AsyncAPI ruleset, as `make lint` runs it,
finds nothing in it and does find the faults it is about in a document that has them."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from cityhub.connectors.sinks import validate_spec
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import build_subscription, subscription_topic
from cityhub.schemas.topics import Topics
from cityhub.schemas.trace_context import TRACEPARENT, new_trace
from cityhub.schemas.validation import SCHEMA_NAMES
from cityhub.streams.privacy.purpose import PRIVACY_HEADER
from cityhub.streams.subscriptions.agreements import AGREEMENT_HEADER
from cityhub.streams.subscriptions.router import SubscriptionRouter
from cityhub.streams.subscriptions.topics import (
    SUBSCRIPTION_PARTITIONS,
    subscription_topic_config,
)
from cityhub.streams.topic_admin import topic_specs

from .test_privacy_gate import PREFIX, START, city, normaliser, to, uplink

ROOT = Path(__file__).resolve().parents[2]
LINT = ROOT / "deploy" / "lint"
SPECTRAL = LINT / "node_modules" / ".bin" / "spectral"
RULESET = LINT / "asyncapi-rules.yaml"
DOCUMENT = ROOT / "schemas" / "asyncapi.yaml"

INTERFACES = {
    "raw",
    "observations",
    "deadletter",
    "aggregates",
    "device_health",
    "subscription_status",
    "open_data",
}
"""The fields of ``Topics`` a service outside cityhub may read (docs/topics.md, docs/health.md,
docs/console.md, docs/open-data.md); with each Kafka subscription's own topic."""


def _document() -> dict[str, Any]:
    text = files("cityhub.schemas").joinpath("asyncapi.yaml").read_text("utf-8")
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


def _channel(doc: dict[str, Any], address: str) -> dict[str, Any]:
    found = [c for c in doc["channels"].values() if c["address"] == address]
    assert len(found) == 1, address
    return found[0]


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or what its local ``$ref`` points at."""
    while "$ref" in node and node["$ref"].startswith("#/"):
        target: Any = doc
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def _messages(doc: dict[str, Any], channel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: _resolve(doc, ref) for name, ref in channel["messages"].items()}


def _header_names(doc: dict[str, Any], message: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(every header the message declares, those it requires)."""
    headers = message.get("headers")
    if headers is None:
        return set(), set()
    return set(headers.get("properties", {})), set(headers.get("required", []))


TOPICS = Topics.for_prefix("cityhub")


def test_every_interface_topic_is_a_channel_and_no_internal_one_is() -> None:
    doc = _document()
    addresses = {c["address"] for c in doc["channels"].values()}
    for field in INTERFACES:
        assert getattr(TOPICS, field) in addresses, field
    assert subscription_topic("cityhub", "{tenant}", "{subscription}") in addresses
    described = doc["info"]["description"]
    for field in dataclasses.fields(Topics):
        if field.name in INTERFACES:
            continue
        name = getattr(TOPICS, field.name)
        assert name not in addresses, name
        # Named as internal, so a reader knows it exists and is no contract.
        assert name.removeprefix("cityhub.") in described, name
    assert "changelog" in described


def test_each_channel_has_the_configuration_cityhub_creates_its_topic_with() -> None:
    doc = _document()
    specs = {spec.name: spec for spec in topic_specs(Settings())}
    checked = 0
    for channel in doc["channels"].values():
        kafka = channel.get("bindings", {}).get("kafka")
        if kafka is None:
            continue
        address = channel["address"]
        if address.startswith("cityhub.sub."):
            partitions = SUBSCRIPTION_PARTITIONS
            config = subscription_topic_config(Settings().kafka)
        else:
            partitions, config = specs[address].partitions, specs[address].config
        if "partitions" in kafka:
            assert kafka["partitions"] == partitions, address
        elif partitions == 1:
            raise AssertionError(f"{address}: say that it has one partition")
        for name, value in kafka.get("topicConfiguration", {}).items():
            expected = config[name]
            stated = ",".join(value) if isinstance(value, list) else str(value)
            assert stated == expected, (address, name)
        checked += 1
    assert checked == len(INTERFACES) + 1


def test_every_payload_is_a_shipped_schema_and_every_schema_is_used() -> None:
    text = DOCUMENT.read_text()
    used = set()
    for name in SCHEMA_NAMES:
        ref = f"./json/{name}.schema.json"
        if ref in text:
            used.add(name)
        assert files("cityhub.schemas").joinpath(f"json/{name}.schema.json").is_file()
    assert used == set(SCHEMA_NAMES)
    referenced = {
        line.split("./json/")[1].split("'")[0] for line in text.splitlines() if "./json/" in line
    }
    assert referenced == {f"{name}.schema.json" for name in SCHEMA_NAMES}
    doc = _document()
    for name in ("deviceHealth", "subscriptionStatus", "openData", "aggregates"):
        for message in _messages(doc, doc["channels"][name]).values():
            assert "key" in message["bindings"]["kafka"], name


def test_the_headers_the_worker_writes_are_the_ones_declared() -> None:
    doc = _document()
    for name in ("rawEnvelope", "observation", "aggregate"):
        declared, required = _header_names(doc, doc["components"]["messages"][name])
        assert TRACEPARENT in required, name
        if name != "rawEnvelope":
            assert PRIVACY_HEADER in declared, name
    # What a Kafka subscriber reads never carries the personal mark nor an agreement.
    channel = _channel(doc, subscription_topic("cityhub", "{tenant}", "{subscription}"))
    for message in _messages(doc, channel).values():
        declared, required = _header_names(doc, message)
        assert TRACEPARENT in required
        assert not {PRIVACY_HEADER, AGREEMENT_HEADER} & declared
    assert PRIVACY_HEADER in channel["description"]
    assert AGREEMENT_HEADER in channel["description"]


async def test_a_personal_observations_headers_are_declared() -> None:
    doc = _document()
    declared, required = _header_names(doc, doc["components"]["messages"]["observation"])
    c = await city()
    writes = normaliser(c).step(0, [uplink("alice-air", 21.5, 1)], now=START + 10)
    (stored,) = to(writes, f"{PREFIX}.observations")
    names = {name for name, _ in stored.headers or ()}
    assert required <= names <= declared
    assert PRIVACY_HEADER in names


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("cityhub", "deliveredObservation"),
        ("cloudevents", "cloudEventStructured"),
        ("cloudevents-binary", "cloudEventBinary"),
    ],
)
def test_a_kafka_subscriptions_records_carry_the_declared_headers(
    encoding: str, message: str
) -> None:
    doc = _document()
    declared, required = _header_names(doc, doc["components"]["messages"][message])
    spec = validate_spec(
        {"id": "air", "name": "air", "delivery": {"kind": "kafka", "encoding": encoding}}
    )
    record, _ = build_subscription(spec, tenant="city", now="2026-12-01T00:00:00Z")
    router = SubscriptionRouter("cityhub", settings=Settings())
    router.refresh([record])
    observation = {
        "event_id": "8c1f7f5e-4c1e-5a35-9d3c-2f6a3c1b0e11",
        "device_id": "aq-1",
        "received_at": "2026-12-04T10:00:01.000Z",
        "tenant": "city",
        "classification": "public",
    }
    write = router.write(
        router.topic_of(record),
        b"aq-1",
        orjson.dumps(observation),
        headers=[(TRACEPARENT, new_trace().header())],
    )
    names = {name for name, _ in write.headers or ()}
    assert required <= names <= declared, names
    content_type = dict(write.headers or ()).get("content-type")
    if content_type is not None:
        assert content_type.decode() == doc["components"]["messages"][message].get(
            "contentType", "application/json"
        )


# --- Spectral, as `make lint` runs it --------------------------------------------------------


def spectral(document: Path) -> list[dict[str, Any]]:
    assert SPECTRAL.exists(), (
        "Spectral is not installed: `make setup` runs `npm ci --ignore-scripts` in deploy/lint"
    )
    result = subprocess.run(
        [str(SPECTRAL), "lint", "-r", str(RULESET), "-f", "json", "-q", "-F", "hint", document],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout.strip(), result.stderr
    findings: list[dict[str, Any]] = json.loads(result.stdout)
    return findings


def test_spectral_finds_nothing_in_the_document() -> None:
    assert spectral(DOCUMENT) == []


def test_spectral_finds_what_its_rules_forbid(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "schemas" / "json", tmp_path / "json")
    broken = _document()
    del broken["info"]["license"]
    del broken["operations"]["writeAggregates"]["description"]
    broken["channels"]["openData"]["bindings"]["kafka"]["partitions"] = 0
    broken["operations"]["writeOpenData"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/nowhere"},
        "description": "a channel that is not there",
    }
    path = tmp_path / "asyncapi.yaml"
    path.write_text(yaml.safe_dump(broken, sort_keys=False))
    codes = {finding["code"] for finding in spectral(path)}
    assert {
        "asyncapi-info-license",
        "asyncapi-3-operation-description",
        "asyncapi-3-document-resolved",
        "invalid-ref",
    } <= codes
