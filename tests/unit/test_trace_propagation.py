"""W3C ``traceparent`` from stage to stage without a broker: child spans from the pool, the
normaliser's observations, routed copies and dead letters, the aggregator's new traces, and what
each delivery sends on (webhook header, MQTT User Property, dead letters)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import orjson
import pytest

from cityhub.connectors.dead_letter_route import DeadLetterRoute, traceparent_of
from cityhub.connectors.sinks.base import Item
from cityhub.connectors.sinks.kinds.mqtt import _traced
from cityhub.connectors.sinks.tracing import (
    batch_traceparent,
    delivering,
    delivery_span,
    item_device,
    item_traceparent,
)
from cityhub.schemas import log_context
from cityhub.schemas.errors import MessageError, Reason
from cityhub.schemas.settings import Settings
from cityhub.schemas.trace_context import (
    TRACEPARENT,
    SpanPool,
    new_trace,
    parse_traceparent,
    traceparent_in,
)
from cityhub.streams.aggregation.agent import AggregatorAgent
from cityhub.streams.delivery.dead_letters import delivery_dead_letters
from cityhub.streams.devtools.simulator.registration import TENANT
from cityhub.streams.normaliser.agent import NormaliserAgent
from cityhub.streams.runtime.agent import Write
from cityhub.streams.subscriptions.router import SubscriptionRouter
from tests.unit.test_aggregator import T0, US, observation
from tests.unit.test_aggregator import Rec as ObservationRec
from tests.unit.test_normaliser_agent import (
    PREFIX,
    SETTINGS,
    Rec,
    match_all,
    raw_batch,
    registry_of,
    to,
)
from tests.unit.test_privacy_gate import START, city, uplink
from tests.unit.test_privacy_gate import normaliser as privacy_normaliser
from tests.unit.test_privacy_gate import topic_of as privacy_topic_of

PARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
"""The specification's example."""


def trace_of(write: Write) -> tuple[str, str]:
    """(trace id, span id) of the one ``traceparent`` header of ``write``."""
    values = [value for name, value in write.headers or () if name == TRACEPARENT]
    assert len(values) == 1, write.headers
    context = parse_traceparent(values[0])
    assert context is not None, values[0]
    return context.trace_id, context.span_id


# -- the pool -----------------------------------------------------------------------------------


def test_a_child_keeps_trace_and_flags_and_draws_distinct_spans() -> None:
    pool = SpanPool(batch=4)
    children = [pool.child_of(PARENT) for _ in range(50)]  # the pool refills many times
    parsed = [parse_traceparent(c) for c in children]
    assert all(p is not None and p.trace_id == PARENT[3:35].decode() for p in parsed)
    assert all(p is not None and p.sampled for p in parsed)
    spans = {p.span_id for p in parsed if p is not None}
    assert len(spans) == 50
    assert "b7ad6b7169203331" not in spans
    unsampled = parse_traceparent(pool.child_of(PARENT[:-2] + b"00"))
    assert unsampled is not None
    assert not unsampled.sampled


def test_a_child_of_the_pools_own_value_skips_the_check_but_not_the_new_span() -> None:
    pool = SpanPool()
    own = pool.child_of(PARENT)
    children = {pool.child_of_own(own) for _ in range(20)}
    assert len(children) == 20
    for child in children:
        parsed = parse_traceparent(child)
        assert parsed is not None
        assert parsed.trace_id == "0af7651916cd43dd8448eb211c80319c"
        assert parsed.sampled
        assert child[36:52] != own[36:52]


def test_a_later_version_is_continued_as_version_00() -> None:
    later = b"cc" + PARENT[2:] + b"-what-follows"
    child = SpanPool().child_of(later)
    assert child.startswith(b"00-0af7651916cd43dd8448eb211c80319c-")
    assert len(child) == 55


@pytest.mark.parametrize(
    "parent",
    [
        None,
        b"",
        b"garbage",
        PARENT.upper(),
        PARENT.replace(b"-b7", b"xb7"),
        b"00-" + b"0" * 32 + PARENT[35:],  # an all-zero trace id
        PARENT[:10] + b"-" + PARENT[11:],  # a dash inside the trace id
        b"ff" + PARENT[2:],
        PARENT + b"0",
    ],
)
def test_anything_but_a_trace_context_starts_a_new_trace(parent: bytes | None) -> None:
    child = parse_traceparent(SpanPool().child_of(parent))
    assert child is not None
    assert child.sampled
    assert child.trace_id != "0af7651916cd43dd8448eb211c80319c"


def test_traceparent_in_finds_the_header_among_others() -> None:
    assert traceparent_in(None) is None
    assert traceparent_in([("cityhub-privacy", b"x")]) is None
    assert traceparent_in([("cityhub-privacy", b"x"), (TRACEPARENT, PARENT)]) == PARENT


# -- the normaliser -----------------------------------------------------------------------------


async def test_every_observation_continues_its_uplinks_trace_and_every_copy_is_a_child() -> None:
    registry = await registry_of(20)
    router = SubscriptionRouter(PREFIX)
    router.refresh([match_all("all")])
    agent = NormaliserAgent(SETTINGS, registry.view, router)
    agent.assign(0, [])
    uplinks = raw_batch(40, 20)
    traces = [new_trace() for _ in uplinks]
    batch = [
        Rec(r.offset, r.value, r.key, headers=[(TRACEPARENT, t.header())])
        for r, t in zip(uplinks, traces, strict=True)
    ]
    writes = agent.step(0, batch, now=1_795_914_100.0)
    bridge_spans = {t.span_id for t in traces}
    observations = to(writes, f"{PREFIX}.observations")
    copies = to(writes, f"{PREFIX}.sub.{TENANT}.all")
    assert observations
    assert copies
    by_trace = Counter(trace_of(w)[0] for w in observations)
    # every observation is in the trace of an uplink, and the uplinks' traces stay apart
    assert set(by_trace) <= {t.trace_id for t in traces}
    # one span per uplink (the normalising), shared by its observations, not the bridge's
    spans_by_trace: dict[str, set[str]] = {}
    for w in observations:
        trace, span = trace_of(w)
        spans_by_trace.setdefault(trace, set()).add(span)
    assert all(len(spans) == 1 for spans in spans_by_trace.values())
    normaliser_spans = {span for spans in spans_by_trace.values() for span in spans}
    assert not normaliser_spans & bridge_spans
    # a routed copy: the same trace as its observation, a span of its own
    for w in copies:
        trace, span = trace_of(w)
        assert trace in spans_by_trace
        assert span not in spans_by_trace[trace]
    assert len({trace_of(w)[1] for w in copies}) == len(copies)


async def test_a_dead_letter_continues_the_refused_records_trace_and_is_logged_with_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = await registry_of(2)
    agent = NormaliserAgent(SETTINGS, registry.view)
    agent.assign(0, [])
    seen: list[log_context.MessageContext | None] = []

    class Spy:
        def filter(self, record: object) -> bool:
            seen.append(log_context.current())
            return True

    logger = caplog.handler
    logger.addFilter(Spy())
    with caplog.at_level("INFO", logger="cityhub.normaliser"):
        bad = [
            Rec(i, b"not an envelope", b"dev-1", headers=[(TRACEPARENT, PARENT)]) for i in (1, 2)
        ]
        writes = agent.step(0, bad, now=1_795_914_100.0)
        later = agent.step(0, [Rec(3, b"{", b"dev-1")], now=1_795_914_102.0)
    letters = to(writes, f"{PREFIX}.deadletter")
    assert [trace_of(w)[0] for w in letters] == ["0af7651916cd43dd8448eb211c80319c"] * 2
    # the first is logged with its trace and device; the second, within the second, is not
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "went to the dead letters (malformed_json)" in lines[0]
    assert "(1 more since the last line)" in lines[1]
    first = seen[0]
    assert first is not None
    assert first.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert first.device == "dev-1"
    # a record without a traceparent: its dead letter starts a new trace
    (letter,) = to(later, f"{PREFIX}.deadletter")
    assert trace_of(letter)[0] != "0af7651916cd43dd8448eb211c80319c"
    assert log_context.current() is None


# -- the aggregator -----------------------------------------------------------------------------


def test_each_aggregate_starts_a_trace_and_each_routed_copy_is_its_child() -> None:
    router = SubscriptionRouter(PREFIX)
    everything = match_all("agg").model_copy(update={"source": "aggregates", "tenant": "city"})
    router.refresh([everything])
    agent = AggregatorAgent(Settings(), "device", router)
    agent.assign(0, [])
    batch = [
        ObservationRec(i, observation(f"e{i}", 5 * i), headers=[(TRACEPARENT, PARENT)])
        for i in range(3)
    ] + [ObservationRec(3, observation("e3", 61))]
    writes = agent.step(0, batch, now=T0 / US + 3600)
    aggregates = to(writes, f"{PREFIX}.aggregates")
    copies = to(writes, f"{PREFIX}.sub.city.agg")
    assert aggregates
    assert len(copies) == len(aggregates)
    traces = [trace_of(w)[0] for w in aggregates]
    assert len(set(traces)) == len(traces)
    assert "0af7651916cd43dd8448eb211c80319c" not in traces
    for aggregate, copy in zip(aggregates, copies, strict=True):
        assert aggregate.value == copy.value
        assert trace_of(copy)[0] == trace_of(aggregate)[0]
        assert trace_of(copy)[1] != trace_of(aggregate)[1]


# -- deliveries ---------------------------------------------------------------------------------


def item(offset: int, traceparent: bytes | None, key: bytes = b"dev-1") -> Item:
    headers = () if traceparent is None else ((TRACEPARENT, traceparent),)
    return Item(0, offset, 0, key, b"{}", headers)


def test_a_batch_is_one_span_in_its_first_items_trace_named_by_its_log_lines() -> None:
    other = new_trace().header()
    batch = [item(1, PARENT), item(2, other)]
    span = delivery_span(batch)
    assert span.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span.span_id != "b7ad6b7169203331"
    with delivering(batch, "observations") as delivery:
        about = log_context.current()
        assert about is not None
        assert about.trace == delivery
        assert about.device == "dev-1"
        # the webhook's header is that span, on every attempt made within the block
        assert batch_traceparent(batch) == delivery.header().decode()
        assert batch_traceparent(batch) == delivery.header().decode()
    assert log_context.current() is None
    # outside a delivery task (a sink used alone): a new child of the first item
    alone = parse_traceparent(batch_traceparent(batch))
    assert alone is not None
    assert alone.trace_id == span.trace_id
    # without a traceparent on the first item: a new trace, still a valid header
    fresh = parse_traceparent(batch_traceparent([item(1, None)]))
    assert fresh is not None
    assert fresh.sampled


def test_an_aggregate_item_names_no_device() -> None:
    assert item_device(item(1, PARENT, key=b"area/city/centrum"), "aggregates") is None
    assert item_device(item(1, PARENT), "observations") == "dev-1"
    assert item_device(Item(0, 1, 0, None, b"{}"), "observations") is None


def test_an_mqtt_message_carries_a_child_of_its_items_trace_unless_the_encoding_set_one() -> None:
    first, second = item(1, PARENT), item(2, new_trace().header())
    own = _traced((), first)
    assert [name for name, _ in own] == [TRACEPARENT]
    parsed = parse_traceparent(own[0][1])
    assert parsed is not None
    assert parsed.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert parsed.span_id != "b7ad6b7169203331"
    assert parse_traceparent(item_traceparent(second)) is not None
    binary = (("ce_id", "x"), (TRACEPARENT, PARENT.decode()))
    assert _traced(binary, first) == binary


def test_delivery_dead_letters_continue_each_items_trace() -> None:
    other = new_trace()
    letters = delivery_dead_letters(
        [item(1, PARENT), item(2, other.header()), item(3, None)],
        detail="gave up",
        topic="t",
        settings=SETTINGS,
    )
    traces = []
    for value, _key, headers in letters:
        assert orjson.loads(value)["reason"] == "delivery_failed"
        (header,) = headers
        context = parse_traceparent(header[1])
        assert header[0] == TRACEPARENT
        assert context is not None
        traces.append(context.trace_id)
    assert traces[:2] == ["0af7651916cd43dd8448eb211c80319c", other.trace_id]
    assert traces[2] not in traces[:2]


async def test_concurrent_deliveries_never_see_each_others_context() -> None:
    async def deliver(parent: bytes) -> str | None:
        with delivering([item(1, parent)], "observations"):
            await asyncio.sleep(0.01)
            about = log_context.current()
            return None if about is None else about.trace_id

    other = new_trace()
    got = await asyncio.gather(deliver(PARENT), deliver(other.header()))
    assert got == ["0af7651916cd43dd8448eb211c80319c", other.trace_id]


def test_a_writers_dead_letter_continues_the_record_and_its_line_names_it() -> None:
    route = DeadLetterRoute("dl", "test", 4096)
    seen: list[log_context.MessageContext | None] = []

    class Spy(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(log_context.current())

    logger = logging.getLogger("cityhub.kafka")
    spy = Spy()
    logger.addHandler(spy)
    try:
        value, key = route.letter(
            Reason.OVERSIZE,
            "too big",
            "t",
            b"dev-1",
            b"x",
            max_record_bytes=2048,
            headers=[(TRACEPARENT, PARENT)],
        )
    finally:
        logger.removeHandler(spy)
    assert len(value) + len(key) < 2048
    (about,) = seen
    assert about is not None
    assert about.trace_id == "0af7651916cd43dd8448eb211c80319c"
    (header,) = traceparent_of([(TRACEPARENT, PARENT)])
    child = parse_traceparent(header[1])
    assert header[0] == TRACEPARENT
    assert child is not None
    assert child.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert child.span_id != "b7ad6b7169203331"


async def test_a_personal_readings_dead_letter_line_names_no_error_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = await registry_of(2)
    agent = NormaliserAgent(SETTINGS, registry.view)
    secret = MessageError("heart rate 187 bpm out of range", reason=Reason.SCHEMA_MISMATCH)
    record = Rec(7, b"{}", b"wearable-1", headers=[(TRACEPARENT, PARENT)])
    with caplog.at_level("INFO", logger="cityhub.normaliser"):
        agent._dead_letter(record, secret, 1_795_914_100.0, withhold_payload=True)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == f"{PREFIX}.raw[0]@7 went to the dead letters"


async def test_a_personal_uplinks_copies_keep_its_span_for_one_processing_log_record() -> None:
    c = await city()
    raw = uplink("alice-air", 21.5, 1)
    writes = privacy_normaliser(c).step(0, [raw], now=START + 10)
    (stored,) = to(writes, f"{PREFIX}.observations")
    copies = to(writes, privacy_topic_of("care"))
    assert copies
    assert all(trace_of(w) == trace_of(stored) for w in copies)
    bridge = parse_traceparent(traceparent_in(raw.headers))
    assert bridge is not None
    assert trace_of(stored)[0] == bridge.trace_id
    assert trace_of(stored)[1] != bridge.span_id
