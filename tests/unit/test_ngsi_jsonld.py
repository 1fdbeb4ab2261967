"""Every NGSI-LD document cityhub writes, expanded and compacted by a JSON-LD processor (pyld),
with the core context and cityhub's context served from local copies (no network)."""

from __future__ import annotations

from typing import Any

import pytest
from pyld import jsonld

from cityhub.connectors.ngsi_ld.context import (
    CORE_CONTEXT_URL,
    context_document,
    core_context_document,
    link_header,
)
from cityhub.connectors.ngsi_ld.entities import (
    DeviceFacts,
    GeoPoint,
    Reading,
    entity,
    fragment,
    temporal_entity,
)
from cityhub.connectors.ngsi_ld.models import SDM_TERMS, EntityMapping, SmartDataModel
from cityhub.connectors.ngsi_ld.notification import notification_body, upsert_body

HUB_CONTEXT_URL = "http://127.0.0.1:8080/ngsi-ld/v1/context.jsonld"
NGSI = "https://uri.etsi.org/ngsi-ld/"
ENV = "https://smartdatamodels.org/dataModel.Environment/"
T0 = "2026-12-03T10:00:00.000Z"


def local_loader(url: str, options: Any = None) -> dict[str, Any]:
    """Serves the two contexts; any other URL fails the test (nothing is fetched)."""
    documents = {CORE_CONTEXT_URL: core_context_document(), HUB_CONTEXT_URL: context_document()}
    if url not in documents:
        raise AssertionError(f"the processor asked for {url}")
    return {"contextUrl": None, "documentUrl": url, "document": documents[url]}


def expand(doc: Any) -> list[dict[str, Any]]:
    return jsonld.expand(doc, {"documentLoader": local_loader})  # type: ignore[no-any-return]


def _aq() -> DeviceFacts:
    return DeviceFacts(
        "city",
        "aq-1",
        "Air one",
        EntityMapping(SmartDataModel.AIR_QUALITY_OBSERVED),
        GeoPoint(4.9, 52.37),
        "centrum",
    )


READINGS = [
    Reading("pm2_5", 12.5, "ug/m3", T0, "3f1c0a52-0c57-5d5e-8d55-1f9f1c1a2b3c"),
    Reading("temperature", 7.5, "Cel", T0, "3f1c0a52-0c57-5d5e-8d55-1f9f1c1a2b3d"),
]


def test_the_core_context_copy_is_the_protected_v1_8_core() -> None:
    core = core_context_document()["@context"]
    assert core["@protected"] is True
    assert core["ngsi-ld"] == NGSI
    assert core["observedAt"] == {"@id": "ngsi-ld:observedAt", "@type": "DateTime"}
    assert "jsonKeys" in core  # a 1.8 term


def test_cityhubs_context_processes_and_redefines_no_core_term() -> None:
    core = core_context_document()["@context"]
    assert not set(SDM_TERMS) & set(core)
    expanded = expand({"@context": HUB_CONTEXT_URL, "@id": "urn:x:1", "pm25": 1})
    assert expanded[0][ENV + "pm25"] == [{"@value": 1}]


def test_an_entity_expands_to_the_ngsi_ld_and_smart_data_models_iris() -> None:
    doc = entity(_aq(), "AirQualityObserved", READINGS)
    assert doc is not None
    node = expand({**doc, "@context": HUB_CONTEXT_URL})[0]
    assert node["@id"] == "urn:ngsi-ld:AirQualityObserved:city:aq-1"
    assert node["@type"] == [ENV + "AirQualityObserved"]
    pm25 = node[ENV + "pm25"][0]
    assert pm25["@type"] == [NGSI + "Property"]
    assert pm25[NGSI + "hasValue"] == [{"@value": 12.5}]
    assert pm25[NGSI + "unitCode"] == [{"@value": "GQ"}]
    assert pm25[NGSI + "observedAt"] == [{"@type": NGSI + "DateTime", "@value": T0}]
    assert node[ENV + "temperature"][0][NGSI + "unitCode"] == [{"@value": "CEL"}]
    location = node[NGSI + "location"][0]
    assert location["@type"] == [NGSI + "GeoProperty"]
    point = location[NGSI + "hasValue"][0]
    assert point["@type"] == ["https://purl.org/geojson/vocab#Point"]
    ref = node[ENV + "refDevice"][0]
    assert ref["@type"] == [NGSI + "Relationship"]
    assert ref[NGSI + "hasObject"] == [{"@id": "urn:ngsi-ld:Device:city:aq-1"}]
    assert node["https://smartdatamodels.org/name"][0][NGSI + "hasValue"] == [{"@value": "Air one"}]


def test_an_entity_compacts_back_to_what_cityhub_serves() -> None:
    doc = entity(_aq(), "AirQualityObserved", READINGS)
    assert doc is not None
    compacted = jsonld.compact(
        expand({**doc, "@context": HUB_CONTEXT_URL}),
        HUB_CONTEXT_URL,
        {"documentLoader": local_loader},
    )
    compacted.pop("@context")
    # The one difference: a compacted DateTime value's @type takes its term, "type".
    date = compacted["dateObserved"]["value"]
    assert date == {"type": "DateTime", "@value": T0}
    compacted["dateObserved"]["value"] = doc["dateObserved"]["value"]
    assert compacted == doc


@pytest.mark.parametrize(
    ("model", "quantity", "unit", "iri"),
    [
        (SmartDataModel.NOISE_LEVEL_OBSERVED, "sound_level", "dB", ENV + "LAeq"),
        (
            SmartDataModel.WEATHER_OBSERVED,
            "barometric_pressure",
            "hPa",
            ENV + "atmosphericPressure",
        ),
        (SmartDataModel.WEATHER_OBSERVED, "dew_point", "Cel", SDM_TERMS["dewPoint"]),
        (SmartDataModel.PARKING_SPOT, "occupancy", None, NGSI + "status"),
        (
            SmartDataModel.DEVICE,
            "battery",
            "%",
            "https://smartdatamodels.org/dataModel.Device/batteryLevel",
        ),
        (SmartDataModel.DEVICE, "battery_voltage", "V", NGSI + "default-context/batteryVoltage"),
    ],
)
def test_each_models_attributes_expand_to_the_iris_meant(
    model: SmartDataModel, quantity: str, unit: str | None, iri: str
) -> None:
    device = DeviceFacts("city", "d", "D", EntityMapping(model))
    doc = entity(device, model.value, [Reading(quantity, 1, unit, T0)])
    assert doc is not None
    node = expand({**doc, "@context": HUB_CONTEXT_URL})[0]
    assert node["@type"] == [SDM_TERMS[model.value]]
    assert iri in node


def test_a_temporal_entity_expands_with_instances() -> None:
    doc = temporal_entity(_aq(), "AirQualityObserved", READINGS)
    node = expand({**doc, "@context": HUB_CONTEXT_URL})[0]
    instance = node[ENV + "pm25"][0]
    assert instance[NGSI + "instanceId"] == [{"@id": "urn:uuid:" + READINGS[0].instance_id}]  # type: ignore[operator]


@pytest.mark.parametrize("context_url", [None, HUB_CONTEXT_URL])
def test_a_notification_expands_with_its_own_context(context_url: str | None) -> None:
    body = notification_body(
        tenant="city",
        subscription_id="feed",
        batch_key="m-1",
        notified_at=T0,
        fragments=[fragment(_aq(), READINGS[0])],
        context_url=context_url,
    )
    node = expand(body)[0]
    assert node["@type"] == [NGSI + "Notification"]
    assert node["@id"] == body["id"]
    assert node[NGSI + "subscriptionId"] == [{"@id": "urn:ngsi-ld:Subscription:city:feed"}]
    assert node[NGSI + "notifiedAt"] == [{"@type": NGSI + "DateTime", "@value": T0}]
    data = node[NGSI + "data"][0]
    assert data["@id"] == "urn:ngsi-ld:AirQualityObserved:city:aq-1"
    assert ENV + "pm25" in data
    again = notification_body(
        tenant="city",
        subscription_id="feed",
        batch_key="m-1",
        notified_at=T0,
        fragments=[],
    )
    assert again["id"] == body["id"]  # one id per batch, on every attempt


def test_an_upsert_body_is_entities_each_with_its_context() -> None:
    body = upsert_body([fragment(_aq(), r) for r in READINGS])
    assert len(body) == 1  # one entity, both attributes
    node = expand(body[0])[0]
    assert node["@type"] == [ENV + "AirQualityObserved"]
    assert ENV + "pm25" in node
    assert ENV + "temperature" in node


def test_the_link_header_names_the_context_as_the_spec_says() -> None:
    assert link_header(HUB_CONTEXT_URL) == (
        f'<{HUB_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; '
        'type="application/ld+json"'
    )
