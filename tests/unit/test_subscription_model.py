"""The subscription model: what a spec accepts and refuses, and that the webhook secret is
stored for signing but never leaves through ``public()``."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from cityhub.connectors.sinks import subscription_models
from cityhub.connectors.sinks.kinds.kafka import KafkaDelivery
from cityhub.connectors.sinks.kinds.mqtt import MqttDelivery
from cityhub.connectors.sinks.kinds.sse import SseDelivery
from cityhub.connectors.sinks.kinds.webhook import WebhookDelivery
from cityhub.connectors.sinks.webhook_signing import generate_webhook_secret, webhook_secret_key
from cityhub.schemas.replay import ReplaySpec
from cityhub.schemas.subscription import (
    DEFAULT_QUEUE_SIZE,
    OnFull,
    Source,
    Subscription,
    SubscriptionSpec,
    SubscriptionState,
    build_subscription,
    mqtt_topic,
    record_key,
    subscription_topic,
)

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
NOW = "2026-12-01T10:00:00.000Z"
LATER = "2026-12-01T11:00:00.000Z"
MODELS = subscription_models()
"""The models of the registered delivery kinds, as the API and the subscriptions store use."""


def spec(**overrides: Any) -> SubscriptionSpec:
    doc: dict[str, Any] = {
        "id": "air-quality",
        "name": "Air quality dashboard",
        "delivery": {"kind": "webhook", "url": "https://hooks.example.com/in"},
    }
    doc.update(overrides)
    return MODELS.spec.model_validate(doc)


def test_defaults() -> None:
    s = spec()
    assert s.source is Source.OBSERVATIONS
    assert s.on_full is OnFull.PAUSE
    assert s.queue_size == DEFAULT_QUEUE_SIZE
    assert s.filter.criteria == 0
    assert isinstance(s.delivery, WebhookDelivery)
    assert s.delivery.secret is None


@pytest.mark.parametrize(
    ("delivery", "cls"),
    [
        ({"kind": "kafka"}, KafkaDelivery),
        ({"kind": "webhook", "url": "http://hooks.example.com/"}, WebhookDelivery),
        ({"kind": "sse"}, SseDelivery),
        ({"kind": "mqtt", "topic": "air/quality", "qos": 0}, MqttDelivery),
    ],
)
def test_delivery_is_chosen_by_kind(delivery: dict[str, Any], cls: type) -> None:
    assert isinstance(spec(delivery=delivery).delivery, cls)


@pytest.mark.parametrize(
    "delivery",
    [
        {"kind": "carrier-pigeon"},
        {"kind": "kafka", "topic": "cityhub.devices"},  # the subscriber never names the topic
        {"kind": "webhook"},
        {"kind": "webhook", "url": "ftp://hooks.example.com/"},
        {"kind": "webhook", "url": "javascript:alert(1)"},
        {"kind": "webhook", "url": "https://x.example.com/" + "a" * 2048},
        {"kind": "webhook", "url": "https://x.example.com/", "timeout_s": 0},
        {"kind": "webhook", "url": "https://x.example.com/", "timeout_s": math.inf},
        {"kind": "webhook", "url": "https://x.example.com/", "max_batch_size": 0},
        {"kind": "webhook", "url": "https://x.example.com/", "max_batch_bytes": 10},
        {"kind": "mqtt", "topic": "city/+/air"},
        {"kind": "mqtt", "topic": "city/#"},
        {"kind": "mqtt", "topic": "$SYS/broker"},
        {"kind": "mqtt", "topic": "$share/g/t"},
        {"kind": "mqtt", "topic": "/absolute"},
        {"kind": "mqtt", "topic": "a//b"},
        {"kind": "mqtt", "topic": "a/../b"},
        {"kind": "mqtt", "topic": "nul\x00byte"},
        {"kind": "mqtt", "topic": "a\u202eb"},  # shows as another topic: a bidi override
        {"kind": "mqtt", "topic": "line\u2028break"},
        {"kind": "mqtt", "topic": "é" * 200},
        {"kind": "mqtt", "topic": "ok", "qos": 2},
    ],
)
def test_bad_deliveries_are_refused(delivery: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        spec(delivery=delivery)


@pytest.mark.parametrize(
    "secret",
    [
        "not-prefixed",
        "whsec_",
        "whsec_!!!notbase64!!!",
        "whsec_" + base64.b64encode(b"x" * 23).decode(),  # under 24 bytes
        "whsec_" + base64.b64encode(b"x" * 65).decode(),  # over 512 bits
        "whsec_" + base64.urlsafe_b64encode(b"\xfb" * 32).decode(),  # url-safe alphabet
    ],
)
def test_bad_webhook_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="webhook secret"):
        spec(delivery={"kind": "webhook", "url": "https://h.example.com/", "secret": secret})


def test_generated_secret_has_the_standard_form() -> None:
    secret = generate_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(webhook_secret_key(secret)) == 32
    assert generate_webhook_secret() != secret


@pytest.mark.parametrize(
    "subscription_id", ["", "A", "-x", "a.b", "a b", "a/b", "ä", "a" * 64, "a\nb"]
)
def test_bad_ids_are_refused(subscription_id: str) -> None:
    with pytest.raises(ValidationError):
        spec(id=subscription_id)


def test_surrounding_whitespace_is_stripped_as_in_the_registry() -> None:
    assert spec(id=" air-quality\n").id == "air-quality"


@pytest.mark.parametrize("queue_size", [0, -1, 10_001, 10**12])
def test_queue_size_is_bounded(queue_size: int) -> None:
    with pytest.raises(ValidationError):
        spec(queue_size=queue_size)


def test_filter_lists_and_box() -> None:
    s = spec(
        filter={
            "quantities": ["pm2_5", "no2"],
            "device_types": ["airq-v2"],
            "areas": ["centre"],
            "tags": ["school"],
            "device_ids": ["dev-1"],
            "bbox": {"min_lat": 52.3, "min_lon": 4.8, "max_lat": 52.4, "max_lon": 5.0},
        }
    )
    assert s.filter.criteria == 6


@pytest.mark.parametrize(
    "bbox",
    [
        {"min_lat": 52.4, "min_lon": 4.8, "max_lat": 52.3, "max_lon": 5.0},  # min > max
        {"min_lat": 52.3, "min_lon": 4.8, "max_lat": 52.3, "max_lon": 5.0},  # empty
        {"min_lat": 10, "min_lon": 170, "max_lat": 20, "max_lon": -170},  # antimeridian
        {"min_lat": -91, "min_lon": 0, "max_lat": 0, "max_lon": 1},
        {"min_lat": 0, "min_lon": 0, "max_lat": 1, "max_lon": 181},
        {"min_lat": 0, "min_lon": 0, "max_lat": 1e308, "max_lon": 1},
        {"min_lat": -1e309, "min_lon": 0, "max_lat": 1, "max_lon": 1},  # -inf
        {"min_lat": math.nan, "min_lon": 0, "max_lat": 1, "max_lon": 1},
        {"min_lat": 0, "min_lon": "nan", "max_lat": 1, "max_lon": 1},
        {"min_lat": 0, "min_lon": 0, "max_lat": 1},
        {"min_lat": 0, "min_lon": 0, "max_lat": 1, "max_lon": 1, "srid": 4326},
    ],
)
def test_bad_boxes_are_refused(bbox: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        spec(filter={"bbox": bbox})


@pytest.mark.parametrize(
    "filter_doc",
    [
        {"quantities": ["PM2.5"]},
        {"device_ids": ["Not An Id"]},
        {"areas": ["centre; drop"]},
        {"tags": ["with space"]},
        {"device_ids": [f"d{i}" for i in range(1001)]},
        {"colour": ["red"]},
    ],
)
def test_bad_filters_are_refused(filter_doc: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        spec(filter=filter_doc)


def test_a_webhook_without_secret_gets_one_returned_once() -> None:
    record, shown = build_subscription(spec(), tenant="acme", now=NOW)
    assert shown is not None
    assert record.signing_secret == shown
    assert record.state is SubscriptionState.ACTIVE
    assert record.created_at == record.updated_at == NOW
    # A replace without a secret keeps the stored one and shows nothing.
    replaced, shown_again = build_subscription(
        spec(name="renamed"), tenant="acme", now=LATER, previous=record
    )
    assert shown_again is None
    assert replaced.signing_secret == shown
    assert (replaced.created_at, replaced.updated_at) == (NOW, LATER)


def test_a_given_secret_is_kept_and_not_echoed() -> None:
    s = spec(delivery={"kind": "webhook", "url": "https://h.example.com/", "secret": SECRET})
    record, shown = build_subscription(s, tenant="acme", now=NOW)
    assert shown is None
    assert record.signing_secret == SECRET


def test_the_secret_is_stored_but_never_public_nor_in_repr() -> None:
    record, secret = build_subscription(spec(), tenant="acme", now=NOW)
    assert secret is not None
    stored = record.model_dump_json()
    assert secret in stored  # the storage form: the delivery task must be able to sign
    assert MODELS.record.model_validate_json(stored) == record  # round trip through the topic
    public = record.public()
    assert secret not in json.dumps(public)
    assert "secret" not in public["delivery"]
    assert public["delivery"]["has_secret"] is True
    assert len(public["delivery"]["secret_fingerprint"]) == 16
    assert "kind" not in public
    assert secret not in repr(record)
    assert secret not in str(record)


def test_a_webhook_record_without_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="signing secret"):
        Subscription(
            tenant="acme",
            id="x",
            name="x",
            source=Source.OBSERVATIONS,
            filter=spec().filter,
            delivery=WebhookDelivery(url="https://h.example.com/"),
            on_full=OnFull.PAUSE,
            queue_size=10,
            created_at=NOW,
            updated_at=NOW,
        )


def test_non_webhook_records_have_no_secret() -> None:
    record, shown = build_subscription(spec(delivery={"kind": "sse"}), tenant="acme", now=NOW)
    assert shown is None
    assert record.signing_secret is None
    assert "has_secret" not in record.public()["delivery"]


def test_keys_and_topic_names() -> None:
    record, _ = build_subscription(spec(delivery={"kind": "kafka"}), tenant="acme", now=NOW)
    assert record_key(record) == "subscription/acme/air-quality"
    assert subscription_topic("cityhub", "acme", "air-quality") == "cityhub.sub.acme.air-quality"
    assert mqtt_topic("cityhub/sub/", "acme", "air/q") == "cityhub/sub/acme/air/q"
    with pytest.raises(ValueError, match="249"):
        subscription_topic("p" * 200, "t" * 63, "s")


def test_topics_of_dotted_tenants_do_not_collide() -> None:
    # Subscription ids have no dot, so tenant "a.b" + "c" and tenant "a" + "b.c" cannot meet.
    with pytest.raises(ValidationError):
        spec(id="b.c")
    assert subscription_topic("p", "a.b", "c") != subscription_topic("p", "a", "b-c")


@pytest.mark.parametrize("loose", [True, "5", 5.0])
def test_numbers_are_not_coerced(loose: Any) -> None:
    # A review found true taken as a queue of 1 and as replay from offset 1.
    with pytest.raises(ValidationError, match="queue_size"):
        spec(queue_size=loose)
    with pytest.raises(ValidationError, match="from_offset"):
        ReplaySpec.model_validate({"from_offset": loose})
    assert spec(queue_size=5).queue_size == 5
    assert ReplaySpec.model_validate({"from_offset": 5}).from_offset == 5
