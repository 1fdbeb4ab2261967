"""Raw payloads for every registered payload decoder: random bytes and valid Cayenne LPP with
mutated channels, types and lengths, decoded directly and through the whole pipeline (a TTS
uplink and a ChirpStack event of a registered device whose type names the decoder)."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from cityhub.connectors.decoders import decoder_names, get_decoder
from cityhub.connectors.measurements import measurements_from_fields
from cityhub.schemas.errors import MessageError

from .corpus import decoder_seeds, registry, vocabulary
from .mutations import binary_payloads, mutated_json
from .pipeline import bridge_record, check_dead_letter, outcome
from .profile import fuzz

DECODERS = decoder_names()


def _json_ready(value: Any) -> None:
    """Decoder output is JSON-shaped: str keys, finite numbers, strings, booleans, None, lists
    and objects of the same."""
    if isinstance(value, dict):
        for key, inner in value.items():
            assert type(key) is str
            _json_ready(inner)
    elif isinstance(value, list):
        for inner in value:
            _json_ready(inner)
    elif isinstance(value, float):
        assert math.isfinite(value)
    else:
        assert value is None or type(value) in (str, int, bool)


@pytest.mark.parametrize("decoder_name", DECODERS)
@fuzz
@given(
    payload=binary_payloads(),
    f_port=st.none() | st.integers(min_value=0, max_value=255),
)
def test_a_decoder_gives_fields_or_says_why_not(
    decoder_name: str, payload: bytes, f_port: int | None
) -> None:
    try:
        fields = get_decoder(decoder_name).decode(payload, f_port)
    except MessageError as exc:
        check_dead_letter(exc, value=payload, key=None)
        event(exc.reason.value)
        return
    assert isinstance(fields, dict)
    _json_ready(fields)
    orjson.dumps(fields)
    event("decoded" if measurements_from_fields(fields) else "decoded, nothing measurable")


@pytest.mark.parametrize("decoder_name", DECODERS)
@fuzz
@given(data=st.data(), payload=binary_payloads(), allow_unknown=st.booleans())
def test_a_decoders_payloads_through_the_pipeline(
    decoder_name: str, data: st.DataObject, payload: bytes, allow_unknown: bool
) -> None:
    seed = data.draw(st.sampled_from(decoder_seeds(decoder_name, payload)), label="message")
    body = orjson.dumps(seed.doc)
    if data.draw(st.integers(min_value=0, max_value=3), label="mutate envelope") == 0:
        body = data.draw(mutated_json(seed.doc, vocabulary()), label="mutated message")
    record = bridge_record(seed.format, seed.topic, body)
    if record is None:
        event("bridge: oversize")
        return
    value, key = record
    event(outcome(value, key, registry(), allow_unknown=allow_unknown))
