import base64

import orjson
import pytest

from cityhub.schemas.deadletter import DeadLetter
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import InvalidEnvelope, MalformedJSON, Reason
from cityhub.schemas.validation import errors


@pytest.mark.parametrize("payload", [b'{"temperature": 21.5}', b"\x00\xff\x01binary", b""])
def test_envelope_round_trips_any_bytes_and_matches_its_schema(payload):
    env = RawEnvelope(
        "mqtt", "cityhub-json", "cityhub/ingest/d1", "d1", "2026-11-29T01:00:00.000Z", payload
    )
    data = env.to_json()
    assert errors("raw-envelope", orjson.loads(data)) == []
    assert RawEnvelope.from_json(data) == env


def test_text_payloads_stay_readable_in_the_envelope():
    doc = orjson.loads(
        RawEnvelope("mqtt", "f", "t", "d", "2026-11-29T01:00:00.000Z", b'{"a":1}').to_json()
    )
    assert doc["payload_encoding"] == "utf-8"
    assert doc["payload"] == '{"a":1}'


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"not json", MalformedJSON),
        (b"[1,2]", InvalidEnvelope),
        (b'{"source": "mqtt"}', InvalidEnvelope),
        (
            orjson.dumps(
                {
                    "source": "s",
                    "format": "f",
                    "topic": "t",
                    "device": "d",
                    "received_at": "x",
                    "payload": "%%%",
                    "payload_encoding": "base64",
                }
            ),
            InvalidEnvelope,
        ),
        (
            orjson.dumps(
                {
                    "source": "s",
                    "format": "f",
                    "topic": "t",
                    "device": "d",
                    "received_at": "x",
                    "payload": "x",
                    "payload_encoding": "rot13",
                }
            ),
            InvalidEnvelope,
        ),
    ],
)
def test_bad_envelopes_raise_errors_with_reasons(data, error):
    with pytest.raises(error) as info:
        RawEnvelope.from_json(data)
    assert info.value.reason in {Reason.MALFORMED_JSON, Reason.INVALID_ENVELOPE}


def test_dead_letter_cuts_the_payload_but_keeps_its_size_and_hash():
    payload = b"\xff" * 1000
    letter = DeadLetter.of(
        stage="bridge",
        reason=Reason.OVERSIZE,
        detail="too big",
        failed_at="2026-11-29T01:00:00.000Z",
        payload=payload,
        max_payload_bytes=100,
        source_topic="cityhub/ingest/x",
        device="x",
    )
    doc = orjson.loads(letter.to_json())
    assert errors("deadletter", doc) == []
    assert doc["truncated"] is True
    assert doc["size"] == 1000
    assert doc["payload_encoding"] == "base64"
    assert base64.b64decode(doc["payload"]) == payload[:100]
    assert doc["reason"] == "oversize"


def test_every_reason_is_allowed_by_the_dead_letter_schema():
    from cityhub.schemas.validation import load_schema

    assert set(load_schema("deadletter")["properties"]["reason"]["enum"]) == {
        r.value for r in Reason
    }


def test_asyncapi_document_names_every_topic_and_schema():
    from importlib.resources import files

    text = files("cityhub.schemas").joinpath("asyncapi.yaml").read_text()
    for topic in ("cityhub.raw", "cityhub.observations", "cityhub.deadletter"):
        assert f"address: {topic}" in text
    for schema in ("raw-envelope", "observation", "deadletter"):
        assert f"./json/{schema}.schema.json" in text
        assert files("cityhub.schemas").joinpath(f"json/{schema}.schema.json").is_file()
