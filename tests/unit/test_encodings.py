"""The body encodings' mechanism: the registry, the ``encoding`` option of a delivery and its
check against the kind, the ``cityhub`` encoding (today's bodies, byte for byte), the byte
accounting of batches, the worker's routing to a ``kafka`` topic in an encoding, and the MQTT 5
properties a message carries."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest
from pydantic import ValidationError

from cityhub.connectors.mqtt.codec import (
    CONTENT_TYPE,
    USER_PROPERTY,
    MqttDecoder,
    Publish,
    encode_publish,
    publish_packet_size,
    publish_properties,
)
from cityhub.connectors.sinks import validate_spec
from cityhub.connectors.sinks.base import InvalidDeliverySpec, Item
from cityhub.connectors.sinks.encodings import (
    CityhubEncoding,
    EncodedBody,
    EncodedMessage,
    EncodingContext,
    check_encoding,
    encoding_names,
    get_encoding,
    register_encoding,
    unregister_encoding,
)
from cityhub.connectors.sinks.errors import UnknownEncoding
from cityhub.connectors.sinks.kinds.webhook import WebhookDelivery, webhook_batch_limits
from cityhub.connectors.sinks.webhook_body import webhook_body
from cityhub.schemas.registry import Role, TenantSpec
from cityhub.schemas.settings import CloudEventsSettings, Settings
from cityhub.schemas.subscription import (
    DeliverySpec,
    Subscription,
    SubscriptionSpec,
    build_subscription,
)
from cityhub.streams.delivery.queue import batch_length
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.service_errors import Invalid
from cityhub.streams.subscriptions.router import SubscriptionRouter
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore

SETTINGS = Settings(cloudevents=CloudEventsSettings())  # the defaults, whatever the environment


def context(kind: str = "webhook", source: str = "observations") -> EncodingContext:
    return EncodingContext(kind, source, "acme", "s1", SETTINGS)


def item(offset: int, value: bytes) -> Item:
    return Item(0, offset, 1_000, b"dev-1", value)


class Shouting:
    """A toy encoding for webhooks only: the items upper-cased, one per line."""

    name = "shouting"
    kinds: frozenset[str] | None = frozenset({"webhook"})
    media_type = "text/plain"

    def encode_batch(self, items: Sequence[Item], context: EncodingContext) -> EncodedBody:
        return EncodedBody("text/plain", b"\n".join(i.value.upper() for i in items))

    def batch_overhead(self, context: EncodingContext) -> int:
        return -1

    def item_size(self, item: Item, context: EncodingContext) -> int:
        return len(item.value) + 1

    def encode_message(self, item: Item, context: EncodingContext) -> EncodedMessage:
        raise TypeError("webhooks only")


# --- registry and validation -------------------------------------------------------------------


def test_the_built_in_encodings_are_registered() -> None:
    assert {"cityhub", "cloudevents", "cloudevents-binary"} <= set(encoding_names())
    assert isinstance(get_encoding("cityhub"), CityhubEncoding)
    with pytest.raises(UnknownEncoding, match="no body encoding named 'nope'"):
        get_encoding("nope")


def test_a_registered_encoding_serves_its_kinds_only() -> None:
    register_encoding(Shouting())
    try:
        assert check_encoding("webhook", "shouting").name == "shouting"
        with pytest.raises(InvalidDeliverySpec) as err:
            check_encoding("mqtt", "shouting")
        field, message = err.value.errors[0]
        assert field == "delivery.encoding"
        assert "'shouting' does not serve mqtt deliveries" in message
        takes = message.split("takes: ")[1].split(", ")
        assert {"cityhub", "cloudevents", "cloudevents-binary"} <= set(takes)
        assert "shouting" not in takes
    finally:
        unregister_encoding("shouting")


def test_a_bad_encoding_plugin_is_refused_when_it_registers() -> None:
    bad = Shouting()
    bad.name = "Not Valid"
    with pytest.raises(TypeError, match="does not match"):
        register_encoding(bad)
    empty = Shouting()
    empty.kinds = frozenset()
    with pytest.raises(TypeError, match="non-empty"):
        register_encoding(empty)


@pytest.mark.parametrize(
    ("kind", "name", "why"),
    [
        ("webhook", "cloudevents-binary", "does not serve webhook deliveries"),
        ("sse", "cloudevents", "does not serve sse deliveries"),
        ("kafka", "ngsi-ld-or-not", "is not an encoding"),
    ],
)
def test_an_encoding_the_kind_does_not_take_is_refused(kind: str, name: str, why: str) -> None:
    with pytest.raises(InvalidDeliverySpec) as err:
        check_encoding(kind, name)
    assert err.value.errors[0][0] == "delivery.encoding"
    assert why in err.value.detail


def test_cityhub_serves_every_kind_even_a_plugins() -> None:
    for kind in ("kafka", "webhook", "sse", "mqtt", "memory", "anything"):
        assert check_encoding(kind, "cityhub").name == "cityhub"


def test_a_delivery_names_its_encoding_and_defaults_to_cityhub() -> None:
    plain = validate_spec({"id": "s1", "name": "n", "delivery": {"kind": "kafka"}})
    assert plain.delivery.encoding == "cityhub"
    chosen = validate_spec(
        {"id": "s1", "name": "n", "delivery": {"kind": "kafka", "encoding": "cloudevents"}}
    )
    assert chosen.delivery.encoding == "cloudevents"
    assert chosen.delivery.public()["encoding"] == "cloudevents"
    # The base models (no kinds loaded) read an encoding too, and nothing else.
    base = SubscriptionSpec.model_validate(
        {"id": "s1", "name": "n", "delivery": {"kind": "kafka", "encoding": "cloudevents"}}
    )
    assert type(base.delivery) is DeliverySpec
    assert base.delivery.encoding == "cloudevents"


@pytest.mark.parametrize("name", ["CloudEvents", "", "a b", "x" * 33, "-lead", "ce_binary"])
def test_an_encoding_name_has_a_shape(name: str) -> None:
    with pytest.raises(ValidationError, match="encoding"):
        validate_spec({"id": "s1", "name": "n", "delivery": {"kind": "kafka", "encoding": name}})


async def test_the_service_refuses_a_pair_before_anything_is_stored() -> None:
    registry = Registry(InMemoryRegistryStore())
    await registry.create_tenant(Principal.system(), TenantSpec(id="acme", name="acme"))
    store = InMemorySubscriptionStore()
    service = Subscriptions(store, registry.view, clock=lambda: 1_700_000_000.0)
    who = Principal("k1", "acme", Role.SUBSCRIBER)
    bad = validate_spec(
        {"id": "s1", "name": "n", "delivery": {"kind": "sse", "encoding": "cloudevents"}}
    )
    with pytest.raises(Invalid) as err:
        await service.create(who, "acme", bad)
    assert [e.field for e in err.value.errors] == ["delivery.encoding"]
    assert store.log == []
    good = validate_spec(
        {"id": "s1", "name": "n", "delivery": {"kind": "kafka", "encoding": "cloudevents"}}
    )
    record, _ = await service.create(who, "acme", good)
    assert record.public()["delivery"] == {"kind": "kafka", "encoding": "cloudevents"}


# --- the cityhub encoding and the byte accounting ------------------------------------------------


ITEMS = [item(0, b'{"a":1}'), item(1, b'{"b":"' + b"x" * 40 + b'"}'), item(2, b"{}")]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_cityhub_batches_are_todays_bodies_and_their_size_is_known(n: int) -> None:
    encoding, ctx = get_encoding("cityhub"), context()
    body = encoding.encode_batch(ITEMS[:n], ctx)
    assert body == EncodedBody(
        "application/json", webhook_body("observations", "acme", "s1", ITEMS[:n])
    )
    predicted = encoding.batch_overhead(ctx) + sum(encoding.item_size(i, ctx) for i in ITEMS[:n])
    assert predicted == len(body.data)
    assert encoding.encode_message(ITEMS[0], ctx) == EncodedMessage(b'{"a":1}')


def webhook_record(encoding: str, max_batch_bytes: int = 1024) -> Subscription:
    spec = validate_spec(
        {
            "id": "s1",
            "name": "n",
            "delivery": {
                "kind": "webhook",
                "url": "https://example.org/hook",
                "encoding": encoding,
                "max_batch_bytes": max_batch_bytes,
            },
        }
    )
    record, _ = build_subscription(spec, tenant="acme", now="2026-12-01T00:00:00.000Z")
    return record


@pytest.mark.parametrize("encoding", ["cityhub", "cloudevents"])
def test_webhook_batches_keep_to_max_batch_bytes_in_every_encoding(encoding: str) -> None:
    record = webhook_record(encoding, max_batch_bytes=1024)
    assert isinstance(record.delivery, WebhookDelivery)
    chosen, ctx = get_encoding(encoding), context()
    limits = webhook_batch_limits(record, record.delivery, chosen, ctx)
    docs = [
        orjson.dumps({"event_id": f"e{i}", "device_id": "d" * (i % 7 + 1), "v": "x" * (i * 13)})
        for i in range(40)
    ]
    rest = [item(i, doc) for i, doc in enumerate(docs)]
    bodies = 0
    while rest:
        n, _ = batch_length(
            rest, limits.max_items, limits.max_bytes, limits.item_overhead, limits.item_size
        )
        body = chosen.encode_batch(rest[:n], ctx)
        assert len(body.data) <= 1024 or n == 1
        rest = rest[n:]
        bodies += 1
    assert bodies > 3  # the bound did cut


def test_batch_length_counts_an_items_size_by_the_function_given() -> None:
    items = [item(i, b"x") for i in range(5)]
    assert batch_length(items, 10, max_bytes=30, item_size=lambda i: 10) == (3, True)
    assert batch_length(items, 10, max_bytes=30) == (5, False)


# --- the worker's routing to a kafka topic --------------------------------------------------------


def record(sub_id: str, kind: str = "kafka", encoding: str = "cityhub") -> Subscription:
    delivery: dict[str, object] = {"kind": kind, "encoding": encoding}
    if kind == "mqtt":
        delivery["topic"] = "out"
    spec = validate_spec({"id": sub_id, "name": sub_id, "delivery": delivery})
    built, _ = build_subscription(spec, tenant="acme", now="2026-12-01T00:00:00.000Z")
    return built


DOC = orjson.dumps(
    {
        "event_id": "e-1",
        "device_id": "dev-1",
        "tenant": "acme",
        "classification": "internal",
        "quantity": "pm2_5",
        "received_at": "2026-12-01T10:00:00.100Z",
    }
)


def test_the_router_writes_a_kafka_topic_in_its_subscriptions_encoding() -> None:
    router = SubscriptionRouter("px", settings=SETTINGS)
    plain, binary, mqtt = (
        record("plain"),
        record("binary", encoding="cloudevents-binary"),
        record("mq", kind="mqtt", encoding="cloudevents-binary"),
    )
    router.refresh([plain, binary, mqtt])
    trace = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    as_is = router.write("px.sub.acme.plain", b"k", DOC, headers=trace)
    assert (as_is.value, as_is.headers) == (DOC, trace)
    # A task kind's topic is its buffer: canonical JSON, encoded later by its sink.
    assert router.write("px.sub.acme.mq", b"k", DOC).value == DOC
    out = router.write("px.sub.acme.binary", b"k", DOC, timestamp_ms=5, headers=trace)
    assert (out.topic, out.key, out.value, out.timestamp_ms) == ("px.sub.acme.binary", b"k", DOC, 5)
    headers = dict(out.headers or [])
    assert headers["content-type"] == b"application/json"
    assert headers["ce_id"] == b"e-1"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_subject"] == b"dev-1"
    assert headers["traceparent"] == trace[0][1]  # the item's own headers stay
    assert headers["ce_traceparent"] == trace[0][1]


def test_aggregates_go_to_a_kafka_topic_as_aggregate_events_per_revision() -> None:
    spec = validate_spec(
        {
            "id": "win",
            "name": "win",
            "source": "aggregates",
            "delivery": {"kind": "kafka", "encoding": "cloudevents-binary"},
        }
    )
    built, _ = build_subscription(spec, tenant="acme", now="2026-12-01T00:00:00.000Z")
    router = SubscriptionRouter("px", settings=SETTINGS)
    router.refresh([built])
    window = {
        "aggregate_id": "a-1",
        "revision": 1,
        "grouping": "area",
        "area": "centre",
        "tenant": "acme",
        "classification": "internal",
        "window_end": "2026-12-01T11:00:00.000Z",
    }
    out = router.write("px.sub.acme.win", b"area/acme/centre", orjson.dumps(window), timestamp_ms=9)
    headers = dict(out.headers or [])
    assert out.timestamp_ms == 9
    assert headers["ce_type"] == b"nl.cityhub.aggregate.v1"
    assert headers["ce_id"] == b"a-1.1"
    assert headers["ce_subject"] == b"centre"
    assert headers["ce_time"] == b"2026-12-01T11:00:00.000Z"


def test_a_changed_encoding_is_routed_anew() -> None:
    router = SubscriptionRouter("px", settings=SETTINGS)
    router.refresh([record("s1")])
    assert router.write("px.sub.acme.s1", b"k", DOC).value == DOC
    assert router.refresh([record("s1", encoding="cloudevents")])
    structured = router.write("px.sub.acme.s1", b"k", DOC)
    assert orjson.loads(structured.value or b"")["data"] == orjson.loads(DOC)
    assert router.refresh([record("s1")])
    assert router.write("px.sub.acme.s1", b"k", DOC).value == DOC


def test_an_encoding_this_worker_lacks_still_routes_the_canonical_json(
    caplog: pytest.LogCaptureFixture,
) -> None:
    built = record("s1")
    odd = built.model_copy(
        update={"delivery": built.delivery.model_copy(update={"encoding": "gone"})}
    )
    router = SubscriptionRouter("px", settings=SETTINGS)
    router.refresh([odd])
    assert router.write("px.sub.acme.s1", b"k", DOC).value == DOC
    assert "encoding 'gone' is not installed in this worker" in caplog.text


# --- MQTT 5 properties ---------------------------------------------------------------------------


def test_a_publish_carries_its_content_type_and_user_properties() -> None:
    pairs = [("id", "e-1"), ("subject", "dév/1"), ("id", "again")]
    props = publish_properties(content_type="application/json", user_properties=pairs)
    data = encode_publish("city/t", b'{"v":1}', qos=1, packet_id=7, properties=props)
    assert publish_packet_size("city/t", 7, 1, len(props)) == len(data)
    (packet,) = MqttDecoder().feed(data)
    assert isinstance(packet, Publish)
    assert packet.payload == b'{"v":1}'
    assert packet.properties[CONTENT_TYPE] == "application/json"
    assert packet.properties[USER_PROPERTY] == pairs


def test_properties_refuse_what_mqtt_cannot_carry() -> None:
    with pytest.raises(ValueError, match="U\\+0000"):
        publish_properties(user_properties=[("a", "b\x00")])
    with pytest.raises(ValueError, match="65535"):
        publish_properties(content_type="x" * 70_000)
