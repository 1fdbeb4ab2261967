"""Mutated messages of every registered ingest format, through the bridge and the normaliser.

For each format (listed from the registry, so a plugin's is fuzzed too), messages start from
valid ones and are mutated in structure, in bytes and in topic. Each becomes the raw record the
bridge writes and then goes through the normaliser's steps against a real registry view: every
observation validates and fits a Kafka record, every failure is a project error with a reason
other than ``internal_error`` and a dead letter that validates and fits.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from .corpus import Seed, all_format_names, registry, seeds, seeds_for, vocabulary
from .mutations import (
    binary_payloads,
    escaped_text,
    long_text,
    mutated_json,
    near_valid_topic,
)
from .pipeline import bridge_record, outcome
from .profile import fuzz

FORMATS = all_format_names()


@st.composite
def messages(draw: Any, format_name: str) -> tuple[str, bytes]:
    """``(topic, payload)``: a seed of the format (one time in eight another format's) with a
    mutated payload and perhaps a near-valid topic."""
    pool = seeds_for(format_name)
    if draw(st.integers(min_value=0, max_value=7)) == 0:
        pool = seeds()
    seed: Seed = draw(st.sampled_from(pool))
    topic = draw(near_valid_topic(seed.topic))
    payload = draw(mutated_json(seed.doc, vocabulary()))
    return topic, payload


@pytest.mark.parametrize("format_name", FORMATS)
@fuzz
@given(data=st.data(), allow_unknown=st.booleans())
def test_mutated_messages_give_valid_observations_or_reasoned_dead_letters(
    format_name: str, data: st.DataObject, allow_unknown: bool
) -> None:
    topic, payload = data.draw(messages(format_name), label="message")
    record = bridge_record(format_name, topic, payload)
    if record is None:
        event("bridge: oversize")
        return
    value, key = record
    event(outcome(value, key, registry(), allow_unknown=allow_unknown))


@pytest.mark.parametrize("format_name", FORMATS)
@fuzz
@given(
    topic=st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
    | long_text().filter(lambda t: all(not 0xD800 <= ord(c) <= 0xDFFF for c in t)),
    payload=st.binary(max_size=512)
    | binary_payloads()
    | escaped_text(200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
def test_any_message_makes_a_raw_envelope_that_reads_back(
    format_name: str, topic: str, payload: bytes
) -> None:
    # partition_key never raises; the envelope round-trips or is refused as too large; and
    # whatever it is, the normaliser gives observations or a reasoned dead letter.
    record = bridge_record(format_name, topic, payload)
    if record is not None:
        value, key = record
        event(outcome(value, key, registry(), allow_unknown=True))
