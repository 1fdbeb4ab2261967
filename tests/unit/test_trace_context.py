"""W3C Trace Context level 1 ``traceparent``: parse (incl. hostile values), format, new traces."""

from __future__ import annotations

import pytest

from cityhub.schemas.trace_context import (
    TRACEPARENT,
    TraceContext,
    TraceparentPool,
    child,
    new_trace,
    new_traceparents,
    new_traces,
    parse_traceparent,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


def test_header_name() -> None:
    assert TRACEPARENT == "traceparent"


def test_parses_the_specifications_example() -> None:
    assert parse_traceparent(VALID) == TraceContext(TRACE, SPAN, sampled=True)
    assert parse_traceparent(VALID.encode()) == TraceContext(TRACE, SPAN, sampled=True)


def test_flags_only_the_sampled_bit_counts() -> None:
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00") == TraceContext(TRACE, SPAN, False)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-03") == TraceContext(TRACE, SPAN, True)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-fe") == TraceContext(TRACE, SPAN, False)


def test_a_later_version_is_parsed_by_its_first_four_fields() -> None:
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01") == TraceContext(TRACE, SPAN, True)
    assert parse_traceparent(f"cc-{TRACE}-{SPAN}-01-what-comes-next") == TraceContext(
        TRACE, SPAN, True
    )
    # what follows the four fields must start with a dash
    assert parse_traceparent(f"cc-{TRACE}-{SPAN}-01x") is None


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "00",
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 is exactly 55 characters
        f"00-{TRACE}-{SPAN}-1",
        f"00-{TRACE.upper()}-{SPAN}-01",  # lower-case hex only
        f"00-{TRACE}-{SPAN.upper()}-01",
        f"0A-{TRACE}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-0A",
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero ids are invalid
        f"00-{TRACE}-{'0' * 16}-01",
        f"00_{TRACE}-{SPAN}-01",
        f"00-{TRACE}_{SPAN}-01",
        f"00-{TRACE}-{SPAN}_01",
        f" 00-{TRACE}-{SPAN}-0",
        f"00-{TRACE[:-1]}g-{SPAN}-01",
        f"00-{TRACE[:-1]}-{SPAN}0-01",
        f"zz-{TRACE}-{SPAN}-01",
        f"0-{TRACE}-{SPAN}-01x",
        f"00-{TRACE}-{SPAN}-01".replace("a", "\u0430"),  # a Cyrillic look-alike
        f"cc-{TRACE}-{SPAN}-01-" + "x" * 10_000,  # too long to be read at all
    ],
)
def test_anything_else_is_no_trace_context(value: str | None) -> None:
    assert parse_traceparent(value) is None


@pytest.mark.parametrize(
    "value",
    [
        b"\xff" * 55,
        b"\x00" * 55,
        VALID.encode("utf-16"),
        b"00-" + TRACE.encode() + b"-" + SPAN.encode() + b"-0\x81",
        b"",
    ],
)
def test_hostile_bytes_never_raise(value: bytes) -> None:
    assert parse_traceparent(value) is None


def test_a_non_string_is_no_trace_context() -> None:
    assert parse_traceparent(55) is None  # type: ignore[arg-type]


def test_header_round_trips() -> None:
    ctx = TraceContext(TRACE, SPAN, sampled=True)
    assert ctx.header() == VALID.encode()
    assert TraceContext(TRACE, SPAN, sampled=False).header().endswith(b"-00")


def test_new_traces_are_valid_sampled_and_distinct() -> None:
    traces = new_traces(1000)
    assert len(traces) == 1000
    assert len({t.trace_id for t in traces}) == 1000
    assert len({t.span_id for t in traces}) == 1000
    for ctx in traces:
        assert ctx.sampled
        assert parse_traceparent(ctx.header()) == ctx
    assert new_traces(0) == []
    assert parse_traceparent(new_trace().header()) is not None


def test_child_keeps_the_trace_and_draws_a_new_span() -> None:
    parent = new_trace()
    kid = child(parent)
    assert kid.trace_id == parent.trace_id
    assert kid.span_id != parent.span_id
    assert kid.sampled == parent.sampled
    assert child(TraceContext(TRACE, SPAN, sampled=False)).sampled is False


def test_traceparent_values_in_bulk_are_valid_and_distinct() -> None:
    values = new_traceparents(500)
    contexts = [parse_traceparent(v) for v in values]
    assert all(ctx is not None and ctx.sampled for ctx in contexts)
    assert len({ctx.trace_id for ctx in contexts if ctx is not None}) == 500
    assert all(len(v) == 55 for v in values)
    assert new_traceparents(0) == []


def test_the_pool_hands_out_each_value_once_across_refills() -> None:
    pool = TraceparentPool(batch=7)
    values = [pool.next() for _ in range(50)]
    assert len(set(values)) == 50
    assert all(parse_traceparent(v) is not None for v in values)
    with pytest.raises(ValueError, match="at least 1"):
        TraceparentPool(batch=0)
