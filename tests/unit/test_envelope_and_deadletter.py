import base64

import orjson
import pytest

from cityhub.schemas.deadletter import DeadLetter
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import InvalidEnvelope, MalformedJSON, Reason
from cityhub.schemas.validation import errors
from cityhub.streams.normaliser.normalise import raw_dead_letter


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
                    "v": 1,
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
                    "v": 1,
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


def test_a_base64_payload_with_other_than_ascii_is_an_invalid_envelope() -> None:
    # binascii refuses such text with a ValueError of its own, not binascii.Error (the fuzzer
    # found it as an internal_error)
    doc = {
        "v": 1,
        "source": "mqtt",
        "format": "cityhub-json",
        "topic": "cityhub/ingest/x",
        "device": "x",
        "received_at": "2026-12-01T10:00:00.000Z",
        "payload_encoding": "base64",
        "payload": "aGVsbG8=\u00e9",
    }
    with pytest.raises(InvalidEnvelope, match="not valid base64"):
        RawEnvelope.from_json(orjson.dumps(doc))


def test_the_dead_letter_of_a_raw_record_leaves_out_a_received_at_that_is_no_time() -> None:
    envelope = RawEnvelope(
        "mqtt", "cityhub-json", "cityhub/ingest/x", "x", "9999-12-31T23:59:59-01:00", b"{}"
    )
    error = InvalidEnvelope("raw envelope received_at is not an RFC 3339 time")
    letter = raw_dead_letter(
        envelope.to_json(),
        b"x",
        error,
        stage="normalise",
        failed_at="2026-12-03T10:00:00.000Z",
        max_payload_bytes=1024,
        topic="cityhub.raw",
        partition=0,
        offset=7,
    )
    doc = orjson.loads(letter.to_json(65_536))
    assert doc["received_at"] is None
    assert doc["source_topic"] == "cityhub/ingest/x"
    assert doc["reason"] == "invalid_envelope"
    assert errors("deadletter", doc) == []


@pytest.mark.parametrize("version", [None, 0, 2, 99, "1", True, 1.5])
def test_an_envelope_of_another_version_is_invalid(version: object) -> None:
    """Read as version 1, another version's fields could mean something else (one with
    ``"v": 99`` produced straight into the raw topic used to be normalised as version 1)."""
    doc = orjson.loads(RawEnvelope("mqtt", "f", "t", "d", "2026-12-04T00:00:00Z", b"x").to_json())
    if version is None:
        del doc["v"]
    else:
        doc["v"] = version
    with pytest.raises(InvalidEnvelope, match="version"):
        RawEnvelope.from_json(orjson.dumps(doc))
