"""Mutated raw envelopes, as the normaliser may read them from ``cityhub.raw`` (written by an
older bridge, another connector, or anyone who can write to the topic): every field deleted,
retyped or hostile, the payload's encoding odd, the bytes flipped or cut."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from hypothesis import event, given
from hypothesis import strategies as st

from .corpus import registry as fuzz_registry
from .corpus import seeds, vocabulary
from .mutations import mutated_json
from .pipeline import bridge_record, outcome
from .profile import fuzz

ENVELOPE_KEYS = ["v", "source", "format", "topic", "device", "received_at", "payload_encoding"]


@st.composite
def envelopes(draw: Any) -> tuple[bytes, bytes]:
    """A mutated raw envelope of a valid message, and its record key."""
    seed = draw(st.sampled_from(seeds()))
    record = bridge_record(seed.format, seed.topic, orjson.dumps(seed.doc))
    assert record is not None
    value, key = record
    if draw(st.booleans()):
        # The same envelope with its payload as base64, as the bridge writes binary payloads.
        doc = orjson.loads(value)
        doc["payload_encoding"] = "base64"
        doc["payload"] = base64.b64encode(doc["payload"].encode()).decode()
        value = orjson.dumps(doc)
    mutated = draw(mutated_json(orjson.loads(value), [*ENVELOPE_KEYS, *vocabulary()]))
    return mutated, key


@fuzz
@given(record=envelopes(), allow_unknown=st.booleans())
def test_mutated_raw_envelopes_give_valid_observations_or_reasoned_dead_letters(
    record: tuple[bytes, bytes], allow_unknown: bool
) -> None:
    value, key = record
    event(outcome(value, key, fuzz_registry(), allow_unknown=allow_unknown))
