"""The CloudEvents encodings without a broker: the attribute rules of the NL GOV profile, every
mode read back with the ``cloudevents`` SDK, and hostile values (odd device ids, huge items)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cloudevents.http import CloudEvent, from_json
from cloudevents.kafka import KafkaMessage, from_binary, from_structured

from cityhub.connectors.cloudevents import (
    BATCH,
    MAX_SUBJECT_BYTES,
    STRUCTURED,
    attributes,
    safe_string,
)
from cityhub.connectors.sinks.base import Item
from cityhub.connectors.sinks.encodings import EncodingContext, check_encoding, get_encoding
from cityhub.schemas.settings import CloudEventsSettings, Settings

OIN = "00000001823288444000"
SETTINGS = Settings(
    cloudevents=CloudEventsSettings(
        oin=OIN, type_prefix="nl.utrecht.cityhub", dataschema_base_url="https://hub.example/s/"
    )
)
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def observation(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "8b0f8a0c-53c5-5b7e-9d0e-0a3c2b1f4e21",
        "device_id": "air-7",
        "dev_eui": None,
        "quantity": "pm2_5",
        "field": "pm2_5",
        "value": 12.5,
        "unit": "ug/m3",
        "observed_at": "2026-12-01T10:00:00.000Z",
        "received_at": "2026-12-01T10:00:00.250Z",
        "format": "cityhub-json",
        "network": {"name": "mqtt"},
        "tenant": "acme",
        "classification": "internal",
    }
    doc.update(overrides)
    return doc


def aggregate(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "aggregate_id": "0d7c61a4-9a3e-5f4e-8a66-6a2f3c7d9b10",
        "grouping": "device",
        "key": "air-7",
        "tenant": "acme",
        "classification": "public",
        "device_id": "air-7",
        "area": "centre",
        "quantity": "pm2_5",
        "unit": "ug/m3",
        "window_size": 3600,
        "window_start": "2026-12-01T10:00:00.000Z",
        "window_end": "2026-12-01T11:00:00.000Z",
        "count": 4,
        "revision": 2,
    }
    doc.update(overrides)
    return doc


def item(doc: Any, headers: tuple[tuple[str, bytes], ...] = ()) -> Item:
    return Item(3, 17, 1_000, b"air-7", orjson.dumps(doc), headers)


def ctx(kind: str, source: str = "observations", settings: Settings = SETTINGS) -> EncodingContext:
    return EncodingContext(kind, source, "acme", "s1", settings)


def structured(doc: Any, kind: str = "mqtt", source: str = "observations") -> CloudEvent:
    message = get_encoding("cloudevents").encode_message(item(doc), ctx(kind, source))
    assert message.content_type == STRUCTURED
    return from_json(message.payload)


def attrs_of(event: CloudEvent) -> dict[str, Any]:
    return dict(event.get_attributes())


# --- attributes after the NL GOV profile --------------------------------------------------------


def test_an_observation_as_a_structured_event() -> None:
    doc = observation()
    event = structured(doc)
    assert attrs_of(event) == {
        "specversion": "1.0",
        "id": doc["event_id"],
        "source": f"urn:nld:oin:{OIN}:systeem:cityhub",
        "type": "nl.utrecht.cityhub.observation.v1",
        "subject": "air-7",
        "time": "2026-12-01T10:00:00.250Z",
        "datacontenttype": "application/json",
        "dataschema": "https://hub.example/s/observation.schema.json",
    }
    assert event.get_data() == doc


def test_an_aggregate_is_one_event_per_revision_timed_at_its_window_end() -> None:
    event = structured(aggregate(), source="aggregates")
    assert event["id"] == "0d7c61a4-9a3e-5f4e-8a66-6a2f3c7d9b10.2"
    assert event["type"] == "nl.utrecht.cityhub.aggregate.v1"
    assert event["time"] == "2026-12-01T11:00:00.000Z"
    assert event["subject"] == "air-7"
    assert event["dataschema"] == "https://hub.example/s/aggregate.schema.json"
    later = structured(aggregate(revision=3, count=5), source="aggregates")
    assert later["id"] != event["id"]


def test_an_area_aggregates_subject_is_its_area() -> None:
    doc = aggregate(grouping="area", key="centre", device_id=None)
    assert structured(doc, source="aggregates")["subject"] == "centre"


def test_ids_are_stable_across_deliveries_of_one_item() -> None:
    doc = observation()
    assert structured(doc)["id"] == structured(doc)["id"] == doc["event_id"]


def test_without_an_oin_the_source_names_the_system_and_no_dataschema_is_claimed() -> None:
    plain = Settings()
    message = get_encoding("cloudevents").encode_message(
        item(observation()), ctx("mqtt", settings=plain)
    )
    event = from_json(message.payload)
    assert event["source"] == "urn:nld:systeem:cityhub"
    assert event["type"] == "nl.cityhub.observation.v1"
    assert "dataschema" not in attrs_of(event)


def test_a_personal_item_names_no_subject() -> None:
    sealed = observation(classification="personal", data_subject="s-1", value=None)
    event = structured(sealed, kind="webhook")
    assert "subject" not in attrs_of(event)
    assert event.get_data() == sealed  # data is the item as the gate let it through
    opened = observation(data_subject="s-1")
    assert "subject" not in attrs_of(structured(opened))


def test_the_trace_context_goes_as_the_distributed_tracing_extension() -> None:
    headers = (("cityhub-privacy", b"x"), ("traceparent", TRACE.encode()))
    message = get_encoding("cloudevents").encode_message(item(observation(), headers), ctx("mqtt"))
    event = from_json(message.payload)
    assert event["traceparent"] == TRACE
    assert "cityhub-privacy" not in message.payload.decode()


def test_every_attribute_name_keeps_to_the_naming_rule() -> None:
    names = attributes(observation(), "observations", SETTINGS.cloudevents, [("traceparent", b"t")])
    assert all(name.isalnum() and name.islower() and len(name) <= 20 for name in names)


# --- hostile values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "subject"),
    [
        ("dev\n1", "dev%0A1"),
        ("100%", "100%25"),
        ("a\x00b\x7f\x85", "a%00b%7F%C2%85"),
        ("straße/ü", "straße/ü"),
        ("x\ufffey", "x%EF%BF%BEy"),
        ("'); DROP TABLE", "'); DROP TABLE"),
    ],
)
def test_odd_device_ids_become_a_subject_every_binding_carries(device: str, subject: str) -> None:
    doc = observation(device_id=device)
    assert structured(doc)["subject"] == subject
    assert structured(doc).get_data() == doc  # data keeps the device id exactly
    kafka = get_encoding("cloudevents-binary").encode_message(item(doc), ctx("kafka"))
    headers = {name: value.encode() for name, value in kafka.headers}
    assert from_binary(KafkaMessage(headers, None, kafka.payload))["subject"] == subject


def test_percent_encoding_keeps_different_ids_apart() -> None:
    assert safe_string("a%0Ab") != safe_string("a\nb")


def test_a_subject_too_long_for_headers_is_left_out() -> None:
    assert "subject" not in attrs_of(
        structured(observation(device_id="d" * (MAX_SUBJECT_BYTES + 1)))
    )
    assert structured(observation(device_id="d" * MAX_SUBJECT_BYTES))["subject"]


def test_a_huge_item_round_trips() -> None:
    doc = observation(extra={"blob": "x" * 2_000_000})
    assert structured(doc, kind="kafka").get_data() == doc


def test_an_item_that_is_not_the_workers_json_still_makes_an_event() -> None:
    odd = Item(0, 1, 1, None, b"\xff not json")
    encoding = get_encoding("cloudevents-binary")
    first = encoding.encode_message(odd, ctx("mqtt"))
    again = encoding.encode_message(odd, ctx("mqtt"))
    assert first.payload == odd.value
    assert dict(first.headers)["id"] == dict(again.headers)["id"]  # stable, from the content
    other = encoding.encode_message(Item(0, 2, 1, None, b"\xfe other"), ctx("mqtt"))
    assert dict(other.headers)["id"] != dict(first.headers)["id"]
    without_id = encoding.encode_message(item({"device_id": "d"}), ctx("mqtt"))
    assert dict(without_id.headers)["id"] not in (dict(first.headers)["id"], "")
    assert "subject" not in dict(first.headers)


# --- modes ----------------------------------------------------------------------------------------


def test_a_webhook_batch_is_a_json_batch_of_events_whose_size_was_known() -> None:
    docs = [observation(event_id=f"e-{i}", device_id=f"dev-{i}") for i in range(3)]
    items = [item(doc) for doc in docs]
    encoding, context = get_encoding("cloudevents"), ctx("webhook")
    body = encoding.encode_batch(items, context)
    assert body.content_type == BATCH
    events = [from_json(orjson.dumps(e)) for e in orjson.loads(body.data)]
    assert [e["id"] for e in events] == ["e-0", "e-1", "e-2"]
    assert [e.get_data() for e in events] == docs
    predicted = encoding.batch_overhead(context) + sum(
        encoding.item_size(i, context) for i in items
    )
    assert predicted == len(body.data)


def test_kafka_structured_and_binary_carry_the_same_event() -> None:
    doc = observation()
    structured_message = get_encoding("cloudevents").encode_message(item(doc), ctx("kafka"))
    from_structure = from_structured(
        KafkaMessage(
            {"content-type": (structured_message.content_type or "").encode()},
            b"air-7",
            structured_message.payload,
        )
    )
    binary = get_encoding("cloudevents-binary").encode_message(item(doc), ctx("kafka"))
    assert binary.payload == item(doc).value  # the item as it is
    assert binary.content_type == "application/json"
    assert all(name.startswith("ce_") for name, _ in binary.headers)
    headers = {name: value.encode() for name, value in binary.headers}
    headers["content-type"] = b"application/json"
    from_headers = from_binary(KafkaMessage(headers, None, binary.payload))
    # The SDK reads a structured record's content-type header (the event format's media type,
    # as the Kafka binding has it) into datacontenttype, and the key into partitionkey; the
    # envelope itself says application/json.
    assert orjson.loads(structured_message.payload)["datacontenttype"] == "application/json"
    assert from_structure["datacontenttype"] == STRUCTURED
    assert from_structure["partitionkey"] == b"air-7"
    quirks = {"datacontenttype", "partitionkey"}
    assert {k: v for k, v in attrs_of(from_headers).items() if k not in quirks} == {
        k: v for k, v in attrs_of(from_structure).items() if k not in quirks
    }
    assert from_headers["datacontenttype"] == "application/json"
    assert from_headers.get_data() == from_structure.get_data() == doc


def test_mqtt_binary_names_user_properties_as_the_attributes() -> None:
    doc = observation()
    message = get_encoding("cloudevents-binary").encode_message(item(doc), ctx("mqtt"))
    names = [name for name, _ in message.headers]
    assert names[:4] == ["specversion", "id", "source", "type"]
    assert "datacontenttype" not in names  # it is the message's Content Type
    event = CloudEvent.create(
        {**dict(message.headers), "datacontenttype": message.content_type},
        orjson.loads(message.payload),
    )
    assert attrs_of(event) == attrs_of(structured(doc))


def test_binary_mode_serves_no_batches() -> None:
    encoding = get_encoding("cloudevents-binary")
    with pytest.raises(TypeError, match="batch is structured"):
        encoding.encode_batch([item(observation())], ctx("webhook"))
    check_encoding("mqtt", "cloudevents-binary")
    check_encoding("kafka", "cloudevents-binary")
