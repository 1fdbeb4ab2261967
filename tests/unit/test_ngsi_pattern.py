"""Clients' regular expressions (NGSI-LD ``idPattern``, ``q``'s ``~=``) match in linear time.

Before, they were Python ``re`` patterns: ``^urn:ngsi-ld:(.+)+!`` held the API process's event
loop for 5 to 7 seconds per request against the simulated fleet, one character less in its
prefix for minutes, and any key could send it. The bounds below are a thousand times what RE2
takes and a tiny part of what backtracking took."""

from __future__ import annotations

import time

import pytest

from cityhub.connectors.ngsi_ld.pattern import (
    MAX_PATTERN_LENGTH,
    PatternRefused,
    compile_pattern,
)
from cityhub.connectors.ngsi_ld.query import BadQuery, matches, parse_q

URN = "urn:ngsi-ld:Device:city:aq-0003-" + "a" * 200

CATASTROPHIC = [
    r"^urn:ngsi-ld:(.+)+!",
    r"^urn:ngsi-ld:D(.+)+!",
    r"(a+)+!",
    r"(a|a)*!",
    r"(a|aa)+!",
    r"(.*a){20}!",
    ".*" * 20 + "!",
]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_a_backtracking_pattern_takes_no_time(pattern: str) -> None:
    compiled = compile_pattern(pattern)
    started = time.perf_counter()
    for _ in range(10):
        assert compiled.search(URN) is None
        assert compiled.fullmatch(URN) is None
    assert time.perf_counter() - started < 0.5


def test_q_with_a_backtracking_pattern_takes_no_time() -> None:
    entity = {
        "id": "urn:ngsi-ld:Device:x",
        "type": "Device",
        "name": {"type": "Property", "value": "a" * 5000},
    }
    started = time.perf_counter()
    assert not matches(parse_q('name~="(a+)+!"'), entity)
    assert matches(parse_q('name!~="(a+)+!"'), entity)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("pattern", "text", "search", "full"),
    [
        (r".*:aq-.*", "urn:ngsi-ld:Device:city:aq-1", True, True),
        (r"^Dam", "Damrak", True, False),
        (r"(?i)damrak", "DAMRAK", True, True),
        (r"\d{4}-\d{2}", "x 2026-12 y", True, False),
        ("café", "le café", True, False),
        (r"caf\x{e9}", "le café", True, False),
        (r"[^a]+", "bbb", True, True),
    ],
)
def test_patterns_match_as_python_s_do(pattern: str, text: str, search: bool, full: bool) -> None:
    compiled = compile_pattern(pattern)
    assert (compiled.search(text) is not None) is search
    assert (compiled.fullmatch(text) is not None) is full


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "invalid escape sequence"),  # a backreference
        (r"(?=a)b", "invalid perl operator"),  # lookahead
        (r"(?<!a)b", "invalid perl operator"),  # lookbehind
        ("a{1001}", "invalid repetition size"),
        ("(", r"missing \)"),
        (r"caf\u00e9", "invalid escape"),  # RE2 writes it \x{e9}
        ("a" * (MAX_PATTERN_LENGTH + 1), "longer than"),
        ("\ud800", "not valid Unicode"),
    ],
)
def test_what_cannot_be_matched_in_linear_time_is_refused_with_a_reason(
    pattern: str, why: str
) -> None:
    with pytest.raises(PatternRefused, match=why):
        compile_pattern(pattern)


@pytest.mark.parametrize("pattern", [r".{1000}", r"\pL{1000}", r"[^a]{250}[^b]{250}"])
def test_a_pattern_with_too_large_a_program_is_refused(pattern: str) -> None:
    with pytest.raises(PatternRefused, match="too large"):
        compile_pattern(pattern)


def test_a_text_with_a_lone_surrogate_is_matched_not_an_error() -> None:
    compiled = compile_pattern("^a")
    assert compiled.search("a\ud800") is not None
    assert compiled.fullmatch("\ud800") is None


def test_a_refused_q_pattern_is_bad_request_data_naming_q() -> None:
    with pytest.raises(BadQuery, match="backreferences") as caught:
        parse_q(r'name~="(a)\1"')
    assert caught.value.parameter == "q"
