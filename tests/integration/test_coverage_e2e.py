"""Coverage and quality in the aggregates on the real stack: two street sensors publish over
MQTT in real time and `cityhub run` aggregates them in 20-second windows. Sensor A promises a
reading a second and sends one every two seconds, a few of them implausible (-80 °C): its
windows have coverage 0.5, count the flagged readings, and (with
``CITYHUB_AGGREGATION__EXCLUDE_FLAGGED``) leave them out of the mean. Sensor B promises one
every two seconds and keeps that for one window, then falls silent: the area's coverage drops
from 2/3 to 1/3 although every reading that did arrive was on time. The API answers the same
fields."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec, Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .hub import BOOTSTRAP, Hub, publish, read_topic
from .subscribers import Api

pytestmark = pytest.mark.integration

WINDOW = 20
STEP = 2  # seconds between two readings of either sensor
ENV = {
    "CITYHUB_AGGREGATION__WINDOW_SIZES_SECONDS": f"[{WINDOW}]",
    "CITYHUB_AGGREGATION__IDLE_CLOSE_SECONDS": "2",
    "CITYHUB_AGGREGATION__EXCLUDE_FLAGGED": "true",
    # Read from Kafka (a recent range): no history store, and so no schema of its own to drop.
    "CITYHUB_HISTORY__ENABLED": "false",
    "CITYHUB_HISTORY__DB_SCHEMA": "coverage_e2e_unused",
    "PYTHONUNBUFFERED": "1",
}


async def seed(prefix: str) -> dict[str, str]:
    """Tenant ``city``: a street-sensor type promising a reading every 2 s, sensor A overriding
    it to 1 s, both in area ``centrum``; and a key to read aggregates with."""
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    store = RegistryStore(settings)
    await store.start()
    try:
        registry = Registry(store)
        system = Principal.system()
        await registry.create_tenant(system, TenantSpec(id="city", name="City"))
        await registry.create_type(
            system,
            "city",
            DeviceTypeSpec(id="street", name="Street sensor", expected_interval_seconds=STEP),
        )
        for device, interval in (("street-a", 1), ("street-b", None)):
            await registry.create_device(
                system,
                "city",
                DeviceSpec(
                    id=device,
                    name=device,
                    type="street",
                    area="centrum",
                    expected_interval_seconds=interval,
                ),
            )
        return {"city": (await registry.create_key(system, "city", Role.SUBSCRIBER, "city"))[1]}
    finally:
        await store.stop()


def a_value(i: int) -> float:
    return -80.0 if i % 5 == 3 else 10.0 + i * 0.1


def current(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The highest revision of each window, by (group key, window start)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        key = (r["key"], r["window_start"])
        if key not in out or r["revision"] > out[key]["revision"]:
            out[key] = r
    return out


async def test_coverage_counts_against_the_promise_and_flagged_values_stay_out_of_the_mean(
    tmp_path: Path,
) -> None:
    hub = Hub(tmp_path, command="run", extra_env=ENV)
    keys = await seed(hub.prefix)
    await asyncio.to_thread(hub.start)
    try:
        # The first window starts at the next multiple of 20 s, a few seconds from now.
        start = (math.floor(time.time()) // WINDOW + 1) * WINDOW
        await asyncio.sleep(max(0.0, start - time.time()))
        for i in range(3 * WINDOW // STEP):
            at = start + i * STEP
            messages = [
                (
                    "cityhub/ingest/street-a",
                    json.dumps({"time": rfc3339(at), "temperature": a_value(i)}).encode(),
                )
            ]
            if at < start + WINDOW:  # B keeps its promise for one window, then falls silent
                messages.append(
                    (
                        "cityhub/ingest/street-b",
                        json.dumps({"time": rfc3339(at), "temperature": 12.0}).encode(),
                    )
                )
            await publish(messages)
            await asyncio.sleep(max(0.0, at + STEP - time.time()))

        first, second = rfc3339(start), rfc3339(start + WINDOW)
        wanted = {(key, w) for key in ("street-a", "centrum") for w in (first, second)}

        def done(records: list[dict[str, Any]]) -> bool:
            return wanted <= set(current([r for r in records if r["quantity"] == "temperature"]))

        records = await read_topic(f"{hub.prefix}.aggregates", until=done, timeout=90)
        got = current([r for r in records if r["quantity"] == "temperature"])
        assert done(records), (sorted(got), hub.log_tail())

        for window, offset in ((first, 0), (second, WINDOW // STEP)):
            a = got[("street-a", window)]
            values = [a_value(offset + i) for i in range(WINDOW // STEP)]
            kept = [v for v in values if v != -80.0]
            assert (a["readings"], a["expected"], a["coverage"]) == (10, 20.0, 0.5)
            assert a["flagged"] == len(values) - len(kept) == 2
            assert a["count"] == len(kept)
            assert a["mean"] == pytest.approx(sum(kept) / len(kept))
            assert a["min"] == min(kept)
        area_first, area_second = got[("centrum", first)], got[("centrum", second)]
        # A promises 20 readings a window, B 10: 30 expected in both windows.
        assert (area_first["readings"], area_first["expected"]) == (20, 30.0)
        assert area_first["coverage"] == pytest.approx(2 / 3, abs=1e-6)
        assert (area_second["readings"], area_second["expected"]) == (10, 30.0)
        assert area_second["coverage"] == pytest.approx(1 / 3, abs=1e-6)
        assert area_second["flagged"] == 2

        # The API answers the same fields.
        api = Api(hub, keys)
        query = (
            f"/tenants/city/aggregates?deviceId=street-a&quantity=temperature"
            f"&windowSize={WINDOW}&from={first}&to={rfc3339(start + 2 * WINDOW)}"
        )
        status, body = await api.call("GET", query, "city")
        assert status == 200, body
        items = {item["window_start"]: item for item in body["items"]}
        for window in (first, second):
            item = items[window]
            assert (item["readings"], item["flagged"], item["coverage"]) == (10, 2, 0.5)
            assert item["count"] == 8
    finally:
        await asyncio.to_thread(hub.stop)
