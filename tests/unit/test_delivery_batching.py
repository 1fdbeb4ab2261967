"""How delivery cuts batches: by items, by bytes and by linger (``DeliveryQueue.take`` and the
pure ``batch_length``), a webhook's own options (``webhook_batch_limits``, its timeout), the
options a subscription could not act on refused, and the replay generation read from ASCII
digits only."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cityhub.connectors.sinks import subscription_models
from cityhub.connectors.sinks.kinds.mqtt import MqttTarget
from cityhub.connectors.sinks.kinds.webhook import (
    WebhookDelivery,
    WebhookDeliveryOut,
    WebhookTarget,
    webhook_batch_limits,
)
from cityhub.schemas.settings import DeliverySettings, Settings
from cityhub.schemas.subscription import Subscription, build_subscription
from cityhub.streams.delivery.batch import webhook_body
from cityhub.streams.delivery.consumer_group import applied_generation
from cityhub.streams.delivery.queue import BatchLimits, DeliveryQueue, Item, batch_length

SPEC = subscription_models().spec
"""The subscription spec model of the registered delivery kinds."""

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
NOW = "2026-12-01T10:00:00.000Z"


def item(offset: int, size: int = 10) -> Item:
    return Item(0, offset, 1_000 * offset, b"dev-1", b"x" * size)


def offsets(batch: list[Item]) -> list[int]:
    return [i.offset for i in batch]


def webhook_record(**delivery: Any) -> Subscription:
    spec = SPEC.model_validate(
        {
            "id": "hook",
            "name": "hook",
            "delivery": {"kind": "webhook", "url": "https://hooks.example.com/in", **delivery},
        }
    )
    record, _ = build_subscription(spec, tenant="acme", now=NOW, new_secret=lambda: SECRET)
    return record


# --- batch_length (pure) -----------------------------------------------------------------------


def test_batch_length_by_items() -> None:
    items = [item(n) for n in range(5)]
    assert batch_length(items, 3) == (3, True)
    assert batch_length(items, 5) == (5, True)
    assert batch_length(items, 8) == (5, False)  # more may come
    assert batch_length([], 3) == (0, False)


def test_batch_length_by_bytes() -> None:
    items = [item(n, size=10) for n in range(5)]
    # 11 bytes each with one of overhead: three fit in 33, not in 32.
    assert batch_length(items, 100, max_bytes=33, item_overhead=1) == (3, True)
    assert batch_length(items, 100, max_bytes=32, item_overhead=1) == (2, True)
    # Two queued, room for a third: not full, waiting may fill it.
    assert batch_length(items[:2], 100, max_bytes=40, item_overhead=1) == (2, False)
    # Exactly full: not even a one-byte item would fit any more.
    assert batch_length(items[:2], 100, max_bytes=22, item_overhead=1) == (2, True)
    # The item bound still applies under the byte bound.
    assert batch_length(items, 2, max_bytes=1000) == (2, True)


def test_a_first_item_larger_than_the_byte_bound_goes_alone() -> None:
    items = [item(0, size=500), item(1, size=5)]
    assert batch_length(items, 10, max_bytes=100) == (1, True)
    assert batch_length(items[1:], 10, max_bytes=100) == (1, False)


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=60),
    max_items=st.integers(min_value=1, max_value=20),
    max_bytes=st.integers(min_value=1, max_value=5000),
    overhead=st.integers(min_value=0, max_value=3),
)
@settings(max_examples=300, deadline=None)
def test_batches_cover_the_queue_in_order_within_both_bounds(
    sizes: list[int], max_items: int, max_bytes: int, overhead: int
) -> None:
    items = [item(n, size) for n, size in enumerate(sizes)]
    rest = items
    while rest:
        n, _ = batch_length(rest, max_items, max_bytes, overhead)
        assert 1 <= n <= max_items
        used = sum(len(i.value) + overhead for i in rest[:n])
        assert used <= max_bytes or n == 1
        if n < len(rest) and n < max_items:  # cut by bytes: the next one did not fit
            assert used + len(rest[n].value) + overhead > max_bytes
        rest = rest[n:]


# --- take --------------------------------------------------------------------------------------


async def test_take_cuts_by_bytes_and_sends_a_large_item_alone() -> None:
    q = DeliveryQueue(20)
    for n, size in enumerate([10, 10, 10, 500, 10]):
        q.put(item(n, size))
    assert offsets(await q.take(10, max_bytes=25, item_overhead=1)) == [0, 1]
    assert offsets(await q.take(10, max_bytes=25, item_overhead=1)) == [2]
    assert offsets(await q.take(10, max_bytes=25, item_overhead=1)) == [3]  # alone
    assert offsets(await q.take(10, max_bytes=25, item_overhead=1)) == [4]


async def test_take_stops_lingering_once_the_bytes_are_full() -> None:
    q = DeliveryQueue(20)
    q.put(item(0, 10))

    async def later() -> None:
        await asyncio.sleep(0.02)
        q.put(item(1, 10))

    feeder = asyncio.create_task(later())
    loop = asyncio.get_running_loop()
    started = loop.time()
    batch = await q.take(100, max_bytes=22, item_overhead=1, linger=5.0)
    await feeder
    assert offsets(batch) == [0, 1]
    assert loop.time() - started < 2.0  # full by bytes: it did not wait out the linger


async def test_take_lingers_for_more_bytes_until_its_deadline() -> None:
    q = DeliveryQueue(20)
    q.put(item(0, 10))
    loop = asyncio.get_running_loop()
    started = loop.time()
    batch = await q.take(100, max_bytes=1000, linger=0.15)
    waited = loop.time() - started
    assert offsets(batch) == [0]
    assert 0.1 <= waited < 2.0


async def test_take_refuses_an_empty_item_bound() -> None:
    with pytest.raises(ValueError, match="max_items"):
        await DeliveryQueue(2).take(0)


# --- a webhook's own options -------------------------------------------------------------------


def test_webhook_limits_keep_every_body_within_max_batch_bytes() -> None:
    record = webhook_record(max_batch_size=50, max_batch_bytes=1024, max_wait_ms=250)
    limits = webhook_batch_limits(record, record.delivery)  # type: ignore[arg-type]
    assert (limits.max_items, limits.linger_s) == (50, 0.25)
    items = [item(n, size) for n, size in enumerate([100] * 30 + [1500] + [10] * 200 + [1024])]
    bodies = []
    rest = items
    while rest:
        n, _ = batch_length(rest, limits.max_items, limits.max_bytes, limits.item_overhead)
        bodies.append((n, webhook_body("observations", "acme", "hook", rest[:n])))
        rest = rest[n:]
    assert all(len(body) <= 1024 for n, body in bodies if n > 1)
    assert max(len(body) for n, body in bodies if n > 1) > 1024 - 110  # bodies are filled
    assert [len(body) > 1024 for _, body in bodies].count(True) == 2  # the two large items
    assert max(n for n, _ in bodies) == 50


def test_the_webhook_target_takes_the_subscriptions_timeout_and_limits() -> None:
    settings = Settings(delivery=DeliverySettings(batch_max_items=7, batch_linger_seconds=0.5))
    record = webhook_record(max_batch_size=3, max_batch_bytes=2048, max_wait_ms=0, timeout_s=1.5)
    target = WebhookTarget(record, settings)
    assert "timeout=1.5" in repr(target._sink)
    assert target.batch_limits.max_items == 3
    assert target.batch_limits.linger_s == 0.0
    assert target.batch_limits.max_bytes is not None
    assert 1900 < target.batch_limits.max_bytes < 2048  # less the envelope


def test_mqtt_deliveries_keep_the_global_batch_settings() -> None:
    settings = Settings(delivery=DeliverySettings(batch_max_items=7, batch_linger_seconds=0.5))
    spec = SPEC.model_validate(
        {"id": "m", "name": "m", "delivery": {"kind": "mqtt", "topic": "air"}}
    )
    record, _ = build_subscription(spec, tenant="acme", now=NOW)
    assert MqttTarget(record, settings).batch_limits == BatchLimits(7, linger_s=0.5)


def test_the_api_model_of_a_webhook_has_the_same_options() -> None:
    options = set(WebhookDelivery.model_fields) - {"secret", "secret_fingerprint"}
    shown = set(WebhookDeliveryOut.model_fields) - {"has_secret", "secret_fingerprint"}
    assert shown == options
    public = webhook_record(max_batch_size=3, timeout_s=2.5).public()["delivery"]
    assert WebhookDeliveryOut.model_validate(public).timeout_s == 2.5


# --- options no subscription could act on are refused ------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"), [("queue_size", 5), ("queue_size", 10_000), ("on_full", "drop_oldest")]
)
def test_a_kafka_subscription_refuses_queue_options(field: str, value: Any) -> None:
    doc = {"id": "k", "name": "k", "delivery": {"kind": "kafka"}, field: value}
    with pytest.raises(ValidationError, match="no delivery queue") as caught:
        SPEC.model_validate(doc)
    assert caught.value.errors()[0]["loc"] == (field,)


def test_queue_options_are_kept_where_a_queue_exists() -> None:
    for kind in ({"kind": "sse"}, {"kind": "mqtt", "topic": "x"}):
        doc = {"id": "s", "name": "s", "delivery": kind, "queue_size": 5, "on_full": "drop_oldest"}
        assert SPEC.model_validate(doc).queue_size == 5
    # The defaults said out loud are no option: a client that always sends them still works.
    doc = {"id": "k", "name": "k", "delivery": {"kind": "kafka"}, "queue_size": 1000}
    assert SPEC.model_validate({**doc, "on_full": "pause"}).queue_size == 1000


@pytest.mark.parametrize(
    "criterion",
    [{"tags": ["a"]}, {"bbox": {"min_lat": 1, "max_lat": 2, "min_lon": 1, "max_lon": 2}}],
)
def test_an_aggregates_subscription_refuses_criteria_aggregates_lack(
    criterion: dict[str, Any],
) -> None:
    doc = {"id": "a", "name": "a", "source": "aggregates", "delivery": {"kind": "sse"}}
    with pytest.raises(ValidationError, match="aggregates carry no"):
        SPEC.model_validate({**doc, "filter": criterion})
    kept = SPEC.model_validate({**doc, "source": "observations", "filter": criterion})
    assert kept.filter.criteria == 1
    agg = SPEC.model_validate({**doc, "filter": {"areas": ["centre"]}})
    assert agg.filter.areas == ["centre"]


# --- replay generation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "generation"),
    [
        ("replay=12", 12),
        ("replay=0", 0),
        (None, 0),
        ("", 0),
        ("replay=", 0),
        ("replay=²", 0),  # isdigit() is True, int() refuses it
        ("replay=٣", 0),  # an Arabic-Indic three: int() would read it
        ("replay=1x", 0),
        ("other=3", 0),
    ],
)
def test_applied_generation_reads_ascii_digits_only(metadata: str | None, generation: int) -> None:
    assert applied_generation(metadata) == generation
