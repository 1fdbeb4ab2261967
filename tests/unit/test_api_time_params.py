"""Times the API takes from outside: ``from``/``to`` of the aggregates, ``fromTime`` and
``Last-Event-ID`` of a live stream, ``from_time`` (a body field) of a replay. Edge-of-calendar
years (0001 with a positive offset, 9999 with a negative one), non-ASCII digits, times past
2100 and values of thousands of characters are answered 400 problems naming the parameter,
without echoing it; never a 500. Over an in-memory registry, subscriptions and aggregates (no
broker)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.registry import DeviceSpec
from cityhub.schemas.timefmt import RANGE
from cityhub.streams.aggregation.memory import InMemoryAggregates
from cityhub.streams.aggregation.query import QueryLimits
from cityhub.streams.api.aggregates import AGGREGATES_KEY
from cityhub.streams.api.app import build_api
from cityhub.streams.delivery.batch import parse_event_id
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore

from .test_api_support import Api, public_resolver, seed

SUBS = "/api/v1/tenants/acme/subscriptions"
AGGREGATES = "/api/v1/tenants/acme/aggregates"
LONG = "2026-11-29T10:00:00." + "1" * 7_000 + "Z"
"""Valid, and long: the request line stays under aiohttp's 8 190-byte limit."""
LONG_JUNK = "9" * 7_000

BAD_TIMES = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "2100-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "\uff12\uff10\uff12\uff16-11-29T10:00:00Z",
    "2026-11-29T10:00:0\u00b2Z",
    "\u0662\u0660\u0662\u0666-11-29T10:00:00Z",
    "2023-02-29T00:00:00Z",
    "2016-12-31T23:59:60Z",
    "2026-11-29T10:00:00",
    "1764410400",
    LONG_JUNK,
]


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    store = InMemoryRegistryStore()
    await store.start()
    registry = Registry(store)
    keys = await seed(registry)
    await registry.create_device(
        Principal.system(), "acme", DeviceSpec(id="a-1", name="A 1", type="th", area="north")
    )
    subscriptions = Subscriptions(
        InMemorySubscriptionStore(), registry.view, resolver=public_resolver
    )
    app = build_api(registry, subscriptions=subscriptions)
    app[AGGREGATES_KEY] = InMemoryAggregates(
        QueryLimits(60, 3600, 86400, 10_000, 1000, 5.0, 2), partitions=2
    )
    async with TestClient(TestServer(app)) as client:
        yield Api(client, registry, store, keys, subscriptions)
    await store.stop()


def assert_problem(status: int, doc: Any, field: str, value: str) -> None:
    assert status == 400, doc
    assert doc["type"].endswith("/invalid-input")
    assert [e["field"] for e in doc["errors"]] == [field], doc
    assert all(e["message"] for e in doc["errors"])
    if len(value) > 3 and value not in RANGE:  # the range's own bounds are in every answer
        assert value not in str(doc), "a problem echoed the value it refused"


@pytest.mark.parametrize("name", ["from", "to"])
@pytest.mark.parametrize("value", BAD_TIMES)
async def test_aggregate_ranges_outside_the_calendar_are_400(
    api: Api, name: str, value: str
) -> None:
    params = {"deviceId": "a-1", "from": "2026-11-29T10:00:00Z", "to": "2026-11-29T11:00:00Z"}
    params[name] = value
    status, doc, _ = await api.call("GET", AGGREGATES, "op_a", params=params)
    assert_problem(status, doc, name, value)


async def test_aggregate_times_at_the_edges_of_the_range_are_taken(api: Api) -> None:
    for start, end in (
        ("1970-01-01T00:00:00Z", "1970-01-01T01:00:00Z"),
        ("2099-12-31T23:00:00Z", "2099-12-31T23:59:59.999Z"),
        ("2099-12-31T23:00:00Z", "2100-01-01T00:59:59.999+01:00"),
        ("2026-11-29T10:00:00Z", LONG),
    ):
        params = {"deviceId": "a-1", "from": start, "to": end}
        status, doc, _ = await api.call("GET", AGGREGATES, "op_a", params=params)
        assert (status, doc) == (200, {"items": [], "source": "kafka"}), (start, end[:40])


@pytest.mark.parametrize("value", ["\u0661\u0662", "6_0", " 60", "\uff16\uff10", "9" * 5000])
async def test_window_size_takes_ascii_digits_only(api: Api, value: str) -> None:
    params = {"deviceId": "a-1", "from": "2026-11-29T10:00:00Z", "to": "2026-11-29T11:00:00Z"}
    status, doc, _ = await api.call(
        "GET", AGGREGATES, "op_a", params={**params, "windowSize": value}
    )
    assert_problem(status, doc, "windowSize", value)


async def test_a_request_line_too_long_is_a_400_never_a_500(api: Api) -> None:
    # Past aiohttp's limit the request is refused before it reaches the API (a plain 400).
    params = {"deviceId": "a-1", "from": "9" * 10_000, "to": "2026-11-29T11:00:00Z"}
    status, _, _ = await api.call("GET", AGGREGATES, "op_a", params=params)
    assert status == 400


async def sse_subscription(api: Api) -> str:
    body = {"id": "live", "name": "Live", "delivery": {"kind": "sse"}}
    status, doc, _ = await api.call("POST", SUBS, "sub_a", json=body)
    assert status == 201, doc
    return f"{SUBS}/live/events"


@pytest.mark.parametrize("value", BAD_TIMES)
async def test_live_stream_from_time_outside_the_calendar_is_400(api: Api, value: str) -> None:
    events = await sse_subscription(api)
    status, doc, _ = await api.call("GET", events, "sub_a", params={"fromTime": value})
    assert_problem(status, doc, "fromTime", value)


@pytest.mark.parametrize(
    "value",
    [
        *("0:\u00b2", "\u00b2:1", "\u0661:\u0662", "\uff10:\uff14\uff12", "0:-1", "0:1:2"),
        *("x" * 7_000, "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0:" + "9" * 20),
        # A partition the stream's topic does not have (it has one): never sent by it.
        *("1:5", "7:0", "99999:0"),
    ],
)
async def test_a_foreign_last_event_id_is_400(api: Api, value: str) -> None:
    events = await sse_subscription(api)
    # Header values travel as Latin-1: a non-Latin-1 digit arrives as its UTF-8 bytes' letters.
    header = value.encode().decode("latin-1")
    status, doc, _ = await api.call("GET", events, "sub_a", headers={"Last-Event-ID": header})
    assert_problem(status, doc, "Last-Event-ID", header)


async def test_a_last_event_id_too_long_for_a_header_is_a_400_never_a_500(api: Api) -> None:
    events = await sse_subscription(api)
    headers = {"Last-Event-ID": "0:" + "1" * 10_000}
    status, _, _ = await api.call("GET", events, "sub_a", headers=headers)
    assert status == 400


async def test_good_live_parameters_pass_validation(api: Api) -> None:
    # This API runs without live streams: a request that passed validation is a 503.
    events = await sse_subscription(api)
    for params, headers in (
        ({"fromTime": "2026-11-29T10:00:00+01:00"}, {}),
        ({"fromTime": "2026-11-29T10:00:00 01:00"}, {}),  # an unencoded '+' arrives as ' '
        ({"fromTime": LONG}, {}),
        ({}, {"Last-Event-ID": "0:42"}),
        ({}, {"Last-Event-ID": " "}),
    ):
        status, doc, _ = await api.call("GET", events, "sub_a", params=params, headers=headers)
        assert status == 503, (params, headers, doc)


async def webhook_subscription(api: Api) -> str:
    body = {
        "id": "hook",
        "name": "Hook",
        "delivery": {"kind": "webhook", "url": "https://h.example/in"},
    }
    status, doc, _ = await api.call("POST", SUBS, "sub_a", json=body)
    assert status == 201, doc
    return f"{SUBS}/hook/replay"


@pytest.mark.parametrize("value", [*BAD_TIMES, "x" * 10_000, 1764410400, 1e300, True])
async def test_replay_from_outside_the_calendar_is_400(api: Api, value: Any) -> None:
    replay = await webhook_subscription(api)
    status, doc, _ = await api.call("POST", replay, "sub_a", json={"from_time": value})
    assert_problem(status, doc, "from_time", value if isinstance(value, str) else "")


async def test_a_live_streams_replay_is_refused_with_the_parameters_that_work(api: Api) -> None:
    events = await sse_subscription(api)
    replay = events.removesuffix("/events") + "/replay"
    status, doc, _ = await api.call("POST", replay, "sub_a", json={"from_offset": 0})
    assert status == 409
    assert "Last-Event-ID or ?fromTime=" in doc["detail"]
    # ... and fromTime is what the stream takes (this API serves no live streams: 503).
    status, _, _ = await api.call(
        "GET", events, "sub_a", params={"fromTime": "2026-11-29T10:00:00Z"}
    )
    assert status == 503


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("2026-11-29T10:00:00+01:00", "2026-11-29T09:00:00.000Z"),
        ("1970-01-01T01:00:00+01:00", "1970-01-01T00:00:00.000Z"),
        ("2100-01-01T00:59:59.999+01:00", "2099-12-31T23:59:59.999Z"),
        (LONG, "2026-11-29T10:00:00.111Z"),
    ],
)
async def test_replay_at_the_edges_of_the_range_is_taken(api: Api, value: str, stored: str) -> None:
    replay = await webhook_subscription(api)
    status, doc, _ = await api.call("POST", replay, "sub_a", json={"from_time": value})
    assert status == 202, doc
    assert doc["replay"]["from_time"] == stored


@pytest.mark.parametrize("text", ["0:\u00b2", "\u0663:\u0664", "\uff10:1", "\u00b9:1", "0:1\u00b2"])
def test_event_ids_take_ascii_digits_only(text: str) -> None:
    # isdigit() takes all of these; int() raises on some ('²') and reads the others ('٣' is 3).
    assert parse_event_id(text) is None
