"""The ngsi-ld and ngsi-ld-upsert webhook encodings: bodies, sizes, what is left out, and the
device type's model; every body expanded by pyld (offline)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pyld import jsonld

from cityhub.connectors.ngsi_ld.context import CORE_CONTEXT_URL, core_context_document
from cityhub.connectors.ngsi_ld.encoding import (
    NgsiLdEncodingBase,
    NgsiLdNotification,
    NgsiLdUpsert,
)
from cityhub.connectors.sinks.base import InvalidDeliverySpec, Item
from cityhub.connectors.sinks.encodings import (
    EncodingContext,
    check_encoding,
    get_encoding,
)
from cityhub.connectors.sinks.errors import UnknownEncoding
from cityhub.schemas.registry import Classification, DeviceType, NgsiLdSpec, SmartDataModel
from cityhub.schemas.settings import Settings
from cityhub.streams.ngsi_ld.encodings import use_registry

NGSI = "https://uri.etsi.org/ngsi-ld/"
ENV = "https://smartdatamodels.org/dataModel.Environment/"
T0 = "2026-12-03T10:00:00.000Z"
T1 = "2026-12-03T10:05:00.000Z"
CONTEXT = EncodingContext("webhook", "observations", "city", "feed", Settings())


def loader(url: str, options: Any = None) -> dict[str, Any]:
    assert url == CORE_CONTEXT_URL, f"the processor asked for {url}"
    return {"contextUrl": None, "documentUrl": url, "document": core_context_document()}


def observation(offset: int, **fields: Any) -> Item:
    doc = {
        "event_id": f"00000000-0000-5000-8000-{offset:012d}",
        "device_id": "aq-1",
        "tenant": "city",
        "device_type": "aq",
        "quantity": "pm2_5",
        "value": 12.5,
        "unit": "ug/m3",
        "observed_at": T0,
        "location": {"latitude": 52.37, "longitude": 4.9, "altitude": None},
        "classification": "public",
    }
    doc.update(fields)
    return Item(0, offset, 0, None, orjson.dumps(doc))


def aq_type() -> DeviceType:
    return DeviceType(
        tenant="city",
        id="aq",
        name="Air",
        decoder="network",
        fields=[],
        only_mapped=False,
        classification=Classification.PUBLIC,
        created_at=T0,
        updated_at=T0,
        ngsi_ld=NgsiLdSpec(model=SmartDataModel.AIR_QUALITY_OBSERVED),
    )


def lookup(tenant: str, type_id: str) -> DeviceType | None:
    return aq_type() if (tenant, type_id) == ("city", "aq") else None


ITEMS = [
    observation(1),
    observation(2, quantity="temperature", value=7.5, unit="Cel"),
    observation(3, value=None, classification="personal", data_subject="resident-0001"),
    observation(4, device_id="aq-2", value=14.0, observed_at=T1),
    Item(0, 5, 0, None, b"not json"),
]


def test_a_notification_of_a_batch() -> None:
    encoding = NgsiLdNotification(lookup, clock=lambda: 1_764_756_000.0)
    body = encoding.encode_batch(ITEMS, CONTEXT)
    assert body.content_type == "application/ld+json"
    doc = orjson.loads(body.data)
    assert doc["type"] == "Notification"
    assert doc["id"].startswith("urn:ngsi-ld:Notification:")
    assert doc["subscriptionId"] == "urn:ngsi-ld:Subscription:city:feed"
    assert doc["notifiedAt"] == "2025-12-03T10:00:00.000Z"
    # The personal item and the broken one are left out.
    assert [f["id"] for f in doc["data"]] == [
        "urn:ngsi-ld:AirQualityObserved:city:aq-1",
        "urn:ngsi-ld:AirQualityObserved:city:aq-1",
        "urn:ngsi-ld:AirQualityObserved:city:aq-2",
    ]
    first = doc["data"][0]
    assert first["pm25"] == {"type": "Property", "value": 12.5, "observedAt": T0, "unitCode": "GQ"}
    assert first["location"]["value"] == {"type": "Point", "coordinates": [4.9, 52.37]}
    node = jsonld.expand(doc, {"documentLoader": loader})[0]
    assert node["@type"] == [NGSI + "Notification"]
    data = node[NGSI + "data"]
    assert data[0]["@type"] == [ENV + "AirQualityObserved"]
    assert data[1][ENV + "temperature"][0][NGSI + "unitCode"] == [{"@value": "CEL"}]
    again = encoding.encode_batch(ITEMS, CONTEXT)
    assert orjson.loads(again.data)["id"] == doc["id"]  # a retry of the batch: the same id
    other = orjson.loads(encoding.encode_batch(ITEMS[:2], CONTEXT).data)
    assert other["id"] != doc["id"]


def test_an_upsert_body_has_each_entity_once_with_its_newest_attributes() -> None:
    later = observation(6, value=20.0, observed_at=T1)
    body = NgsiLdUpsert(lookup).encode_batch([*ITEMS, later, observation(7)], CONTEXT)
    entities = orjson.loads(body.data)
    assert [e["id"] for e in entities] == [
        "urn:ngsi-ld:AirQualityObserved:city:aq-1",
        "urn:ngsi-ld:AirQualityObserved:city:aq-2",
    ]
    assert entities[0]["pm25"]["value"] == 20.0  # T1 beats the T0 that came after it
    assert entities[0]["temperature"]["value"] == 7.5
    for entity in entities:
        node = jsonld.expand(entity, {"documentLoader": loader})[0]
        assert node["@type"] == [ENV + "AirQualityObserved"]


@pytest.mark.parametrize("encoding", [NgsiLdNotification(lookup), NgsiLdUpsert(lookup)])
def test_sizes_bound_the_body(encoding: NgsiLdEncodingBase) -> None:
    items = [observation(i, device_id=f"aq-{i}") for i in range(1, 6)]
    size = encoding.batch_overhead(CONTEXT) + sum(encoding.item_size(i, CONTEXT) for i in items)
    assert len(encoding.encode_batch(items, CONTEXT).data) <= size
    assert len(encoding.encode_batch([], CONTEXT).data) <= encoding.batch_overhead(CONTEXT)


def test_without_the_registry_devices_are_generic_devices() -> None:
    doc = orjson.loads(NgsiLdNotification().encode_batch(ITEMS[:1], CONTEXT).data)
    assert doc["data"][0]["id"] == "urn:ngsi-ld:Device:city:aq-1"


def test_a_device_aggregate_is_its_windows_latest_value_and_an_area_one_is_left_out() -> None:
    context = EncodingContext("webhook", "aggregates", "city", "feed", Settings())
    device = {
        "grouping": "device",
        "key": "aq-1",
        "device_id": "aq-1",
        "tenant": "city",
        "device_type": "aq",
        "quantity": "pm2_5",
        "unit": "ug/m3",
        "last": 9.5,
        "last_observed_at": T1,
        "classification": "public",
    }
    area = {**device, "grouping": "area", "key": "centrum", "device_id": None}
    items = [Item(0, 1, 0, None, orjson.dumps(device)), Item(0, 2, 0, None, orjson.dumps(area))]
    doc = orjson.loads(NgsiLdNotification(lookup).encode_batch(items, context).data)
    assert doc["data"] == [
        {
            "id": "urn:ngsi-ld:AirQualityObserved:city:aq-1",
            "type": "AirQualityObserved",
            "pm25": {"type": "Property", "value": 9.5, "observedAt": T1, "unitCode": "GQ"},
        }
    ]


def test_the_encodings_are_registered_for_webhooks_only() -> None:
    for name in ("ngsi-ld", "ngsi-ld-upsert"):
        assert isinstance(check_encoding("webhook", name), NgsiLdEncodingBase)
        with pytest.raises(InvalidDeliverySpec):
            check_encoding("mqtt", name)
    with pytest.raises(TypeError):
        NgsiLdNotification().encode_message(ITEMS[0], CONTEXT)


def test_a_registry_store_gives_the_registered_encodings_their_models() -> None:
    class Store:
        class view:  # noqa: N801 - the shape of a store's view
            @staticmethod
            def device_type(tenant: str, type_id: str) -> DeviceType | None:
                return lookup(tenant, type_id)

    encoding = get_encoding("ngsi-ld")
    assert isinstance(encoding, NgsiLdEncodingBase)
    try:
        use_registry(Store())  # type: ignore[arg-type]
        doc = orjson.loads(encoding.encode_batch(ITEMS[:1], CONTEXT).data)
        assert doc["data"][0]["type"] == "AirQualityObserved"
    finally:
        for name in ("ngsi-ld", "ngsi-ld-upsert"):
            registered = get_encoding(name)
            assert isinstance(registered, NgsiLdEncodingBase)
            registered.use_device_types(None)
    with pytest.raises(UnknownEncoding):
        get_encoding("ngsi-ld-nothing")


# --- through the webhook sink, to a receiver on loopback ---------------------------------------


async def test_a_webhook_subscription_posts_signed_ngsi_ld_bodies() -> None:
    """The webhook sink sends what the encoding makes, as application/ld+json, signed as ever."""
    import base64

    from aiohttp import web
    from standardwebhooks.webhooks import Webhook

    from cityhub.connectors.sinks import subscription_models
    from cityhub.connectors.sinks.kinds.webhook import WebhookTarget
    from cityhub.schemas.settings import SubscriptionSettings
    from cityhub.schemas.subscription import build_subscription

    secret = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    got: list[tuple[str, bytes]] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        Webhook(secret).verify(body, dict(request.headers))
        got.append((request.headers["Content-Type"], body))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/upsert", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        spec = subscription_models().spec.model_validate(
            {
                "id": "orion",
                "name": "orion",
                "delivery": {
                    "kind": "webhook",
                    "url": f"http://127.0.0.1:{port}/upsert?options=update",
                    "encoding": "ngsi-ld-upsert",
                },
            }
        )
        record, _ = build_subscription(spec, tenant="city", now=T0, new_secret=lambda: secret)
        settings = Settings(
            subscriptions=SubscriptionSettings(webhook_allowed_hosts=("127.0.0.1",))
        )
        target = WebhookTarget(record, settings)
        await target.start()
        try:
            await target.send(ITEMS, "msg-1")
        finally:
            await target.stop()
    finally:
        await runner.cleanup()
    [(content_type, body)] = got
    assert content_type.startswith("application/ld+json")
    entities = orjson.loads(body)
    # Without a registry in this process the devices are generic Devices.
    assert [e["id"] for e in entities] == [
        "urn:ngsi-ld:Device:city:aq-1",
        "urn:ngsi-ld:Device:city:aq-2",
    ]
    node = jsonld.expand(entities[0], {"documentLoader": loader})[0]
    assert node["@type"] == ["https://smartdatamodels.org/dataModel.Device/Device"]
