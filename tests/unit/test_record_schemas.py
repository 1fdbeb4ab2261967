"""The JSON Schemas of the records on the topics a service outside cityhub may read, against real
records made by the code that writes them (as the observation and aggregate schemas are checked in
test_normalise.py and test_windows.py): the health stage's device-health records, a delivery
process's subscription statuses, the open-data publisher's windows, and a sealed observation.
Each schema also names exactly the fields of the model it describes, so a field added to one
and not the other fails here."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from cityhub.schemas.device_health import DeviceActivity, DeviceDeadLetters, ReasonCount, Trend
from cityhub.schemas.open_data import OpenWindow
from cityhub.schemas.subscription import SubscriptionState
from cityhub.schemas.subscription_status import SubscriptionStatus
from cityhub.schemas.topics import Topics
from cityhub.schemas.validation import SCHEMA_NAMES, errors, load_schema, validator
from cityhub.streams.delivery import metrics as m
from cityhub.streams.delivery.status_publisher import StatusPublisher
from cityhub.streams.health.agent import DeadLetterHealthAgent, DeviceActivityAgent
from cityhub.streams.opendata.agent import OpenDataPointsAgent, OpenDataPublisherAgent
from cityhub.streams.runtime.agent import Write

from .opendata_support import NOW, Rec, Register, activity, observation
from .opendata_support import settings as open_data_settings
from .test_health_stage import T0, letter, obs, rec, settings
from .test_privacy_gate import PREFIX, START, city, normaliser, to, uplink

TOPICS = Topics.for_prefix("cityhub")


def test_every_schema_is_valid_json_schema() -> None:
    for name in SCHEMA_NAMES:
        validator(name)  # check_schema raises on a schema that is not one


def _fields(schema: dict[str, Any]) -> set[str]:
    return set(schema["properties"])


@pytest.mark.parametrize(
    ("model", "schema", "pointer"),
    [
        (DeviceActivity, "device-health", ("$defs", "activity")),
        (DeviceDeadLetters, "device-health", ("$defs", "deadLetters")),
        (Trend, "device-health", ("$defs", "trend")),
        (ReasonCount, "device-health", ("$defs", "deadLetters", "properties", "reasons", "items")),
        (SubscriptionStatus, "subscription-status", ()),
        (OpenWindow, "open-data-window", ()),
    ],
)
def test_each_schema_names_its_models_fields(
    model: type[BaseModel], schema: str, pointer: tuple[str, ...]
) -> None:
    node = load_schema(schema)
    for part in pointer:
        node = node[part]
    assert _fields(node) == set(model.model_fields)
    assert set(node["required"]) == set(model.model_fields)  # every field is always written
    assert node["additionalProperties"] is False


# --- <prefix>.device-health ---------------------------------------------------------------------


def _health(writes: list[Write]) -> list[Write]:
    return [w for w in writes if w.topic == TOPICS.device_health]


def test_the_health_stages_records_validate() -> None:
    activity_agent = DeviceActivityAgent(settings(), lambda tenant, device: 900)
    activity_agent.assign(0, [])
    readings = []
    for i in range(30):  # two hours of readings: trends with hourly means and a slope
        at = T0 + i * 300
        readings.append(obs(at, quantity="battery_voltage", value=3.6 - i * 0.01, unit="V"))
        readings.append(obs(at, quality=["spike"] if i == 7 else []))
    records = [rec(activity_agent.topic, i, doc) for i, doc in enumerate(readings)]
    written = _health(activity_agent.step(0, records, now=T0 + 9000))
    written += _health(activity_agent.tick(T0 + 9100, lambda p: True))
    letters_agent = DeadLetterHealthAgent(settings(), {"aq-1": ("city", "aq-1")}.get)
    letters_agent.assign(3, [])
    letters = [
        rec(letters_agent.topic, 0, letter(T0), partition=3),
        rec(letters_agent.topic, 1, letter(T0 + 60, reason="oversize"), partition=3),
        rec(letters_agent.topic, 2, letter(T0 + 120), partition=3),
    ]
    written += _health(letters_agent.step(3, letters, now=T0 + 200))
    docs = [orjson.loads(w.value or b"") for w in written]
    assert {d["kind"] for d in docs} == {"device", "deadletters"}
    device = next(d for d in docs if d["kind"] == "device")
    assert device["battery"]["slope_per_day"] is not None  # the record has every part
    assert device["rssi"]["hourly"]
    assert device["flags_24h"] == {"spike": 1}
    for write, doc in zip(written, docs, strict=True):
        assert errors("device-health", doc) == [], doc
        prefix = "device/" if doc["kind"] == "device" else "deadletters/"
        assert (write.key or b"").decode().startswith(prefix)


def test_the_device_health_schema_refuses_what_is_no_record() -> None:
    record = DeviceActivity(
        tenant="city",
        device="aq-1",
        first_seen="2026-12-04T00:00:00.000Z",
        last_seen="2026-12-04T00:00:00.000Z",
        last_observed="2026-12-04T00:00:00.000Z",
        readings=1,
        readings_24h=1,
        flagged_24h=0,
        flags_24h={},
    ).model_dump(mode="json")
    assert errors("device-health", record) == []
    assert errors("device-health", {**record, "kind": "deadletters"}) != []
    assert errors("device-health", {**record, "last_seen": "yesterday"}) != []
    assert errors("device-health", {**record, "state": "silent"}) != []  # readers compute it


# --- <prefix>.subscription-status ---------------------------------------------------------------


class _Delivering:
    def __init__(self, *keys: tuple[str, str]) -> None:
        self.keys = set(keys)

    def reporting(self) -> set[tuple[str, str]]:
        return self.keys

    def present(self) -> set[tuple[str, str]]:
        return self.keys


async def test_a_delivery_processs_status_records_validate() -> None:
    failing, paused = ("t-schema", "failing-sub"), ("t-schema", "paused-sub")
    m.set_state(*failing, SubscriptionState.FAILING)
    m.LAG_MESSAGES.labels(*failing).set(12)
    m.LAG_SECONDS.labels(*failing).set(4.25)
    m.DELIVERED.labels(*failing).inc(40)
    m.FAILED.labels(*failing).inc(3)
    m.DEADLETTERED.labels(*failing).inc(1)
    m.DROPPED.labels(*failing).inc(2)
    m.set_state(*paused, SubscriptionState.PAUSED)
    sent: list[tuple[str, bytes | None]] = []

    async def send(key: str, value: bytes | None) -> None:
        sent.append((key, value))

    clock = [1_796_371_200.0]
    publisher = StatusPublisher(
        _Delivering(failing, paused), clock=lambda: clock[0], process="deliver-1"
    )
    try:
        await publisher.publish(send)
        m.DELIVERED.labels(*failing).inc(10)
        clock[0] += 5
        await publisher.publish(send)  # the second round has a rate
    finally:
        m.forget(*failing)
        m.forget(*paused)
    docs = {key: orjson.loads(value or b"") for key, value in sent}
    assert set(docs) == {"status/t-schema/failing-sub", "status/t-schema/paused-sub"}
    assert docs["status/t-schema/failing-sub"]["rate_per_second"] == 2.0
    assert docs["status/t-schema/paused-sub"]["state"] == "paused"
    for key, value in sent:
        assert errors("subscription-status", orjson.loads(value or b"")) == [], key


# --- <prefix>.open-data -------------------------------------------------------------------------


def test_the_open_data_publishers_windows_validate() -> None:
    config = open_data_settings(k=2, partitions=1)
    points = OpenDataPointsAgent(config, Register(activity()))
    publisher = OpenDataPublisherAgent(config)
    points.assign(0, [])
    publisher.assign(0, [])
    docs = [
        # air: centrum passes on its own; noord and west (one device each) merge.
        observation("d1", value=10.0),
        observation("d2", value=12.5),
        observation("d3", area="noord", value=30.0),
        observation("d4", area="west", value=31.0),
        # comfort: personal devices (each its own subject): published without min and max.
        observation("p1", quantity="temperature", value=20.5, classification="personal"),
        observation("p2", quantity="temperature", value=21.5, classification="personal"),
    ]
    inputs = [Rec(TOPICS.observations, 0, i, b"k", orjson.dumps(d)) for i, d in enumerate(docs)]
    stripped = points.step(0, inputs, NOW.timestamp())
    stripped += points.tick(NOW.timestamp() + 3600, lambda p: True)
    records = [Rec(w.topic, 0, i, w.key, w.value, w.headers or []) for i, w in enumerate(stripped)]
    published = [
        w for w in publisher.step(0, records, NOW.timestamp()) if w.topic == TOPICS.open_data
    ]
    windows = [orjson.loads(w.value or b"") for w in published]
    assert {(w["dataset"], w["area"]) for w in windows} == {
        ("air", "centrum"),
        ("air", "other-areas"),
        ("comfort", "centrum"),
    }
    assert [w["min"] for w in windows if w["dataset"] == "comfort"] == [None]
    for write, window in zip(published, windows, strict=True):
        assert errors("open-data-window", window) == [], window
        assert write.key == OpenWindow.model_validate(window).key.encode()
    assert errors("open-data-window", {**windows[0], "device_id": "d1"}) != []


# --- a sealed observation on <prefix>.observations ----------------------------------------------


async def test_a_sealed_observation_validates_and_only_a_sealed_one_may_lack_its_value() -> None:
    c = await city()
    writes = normaliser(c).step(0, [uplink("alice-air", 21.5, 1)], now=START + 10)
    (stored,) = to(writes, f"{PREFIX}.observations")
    sealed = orjson.loads(stored.value or b"")
    assert sealed["sealed"].startswith("v1.")
    assert sealed["value"] is None
    assert errors("observation", sealed) == []
    # A sealed record keeps nothing of what it sealed in clear, and names its subject.
    assert errors("observation", {**sealed, "value": 21.5}) != []
    assert errors("observation", {**sealed, "extra": {"room": "kitchen"}}) != []
    assert errors("observation", {k: v for k, v in sealed.items() if k != "data_subject"}) != []
    # Without a seal a reading has its value.
    unsealed = {k: v for k, v in sealed.items() if k not in {"sealed", "data_subject"}}
    assert errors("observation", unsealed) != []
    assert errors("observation", {**unsealed, "value": 21.5}) == []
