"""The console's device pages: the list's search and filters, the device page's edit form
(validation errors beside their fields, the registry's own rules), the map's points, the live
observations (Server-Sent Events from one shared reader), and the chart."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from cityhub.schemas.console_settings import ConsoleSettings
from cityhub.schemas.device_health import DeviceActivity, activity_key
from cityhub.schemas.health_settings import HealthSettings
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.console.chart import build_chart, quantities
from cityhub.streams.console.live import Batch, LiveObservations, LiveRefused
from cityhub.streams.health.queries import DeviceHealthQueries
from cityhub.streams.health.store import InMemoryDeviceHealthStore
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.store import InMemoryRegistryStore

from .console_support import running_console


async def test_search_and_filters() -> None:
    async with running_console() as browser:
        await browser.sign_in("op_a")
        page = await browser.get("/console/devices?q=canal")
        assert "a-2" in page.text
        assert "a-1" not in page.text
        page = await browser.get("/console/devices?active=no")
        assert "a-1" not in page.text
        page = await browser.get("/console/devices?area=centrum&tag=air&type=th&health=unknown")
        assert "a-1" in page.text
        assert "a-2" in page.text
        page = await browser.get("/console/devices?health=silent")
        assert "a-1" not in page.text
        # Hostile input is cut and escaped, never a 500.
        page = await browser.get("/console/devices?q=%3Cscript%3E" + "x" * 5000)
        assert page.status == 200
        assert "<script>x" not in page.text


async def test_editing_a_device_shows_errors_beside_their_fields_and_saves() -> None:
    async with running_console() as browser:
        await browser.sign_in("op_a")
        await browser.get("/console/devices/a-1")
        form = {
            "name": "Dam square north",
            "type": "th",
            "area": "centrum",
            "tags": "air, pm",
            "dev_eui": "not-hex",
            "latitude": "abc",
            "longitude": "4.9",
            "active": "on",
        }
        page = await browser.post("/console/devices/a-1", form)
        assert page.status == 400
        assert 'id="f-latitude-error"' in page.text
        form["latitude"] = "52.4"
        page = await browser.post("/console/devices/a-1", form)
        assert page.status == 400
        assert 'id="f-dev_eui-error"' in page.text
        assert 'aria-invalid="true"' in page.text
        form["dev_eui"] = ""
        form["type"] = "nope"  # a type the tenant does not have: the registry's own rule
        page = await browser.post("/console/devices/a-1", form)
        assert page.status == 400
        form["type"] = "th"
        page = await browser.post("/console/devices/a-1", form)
        assert page.status == 303
        assert page.location == "/console/devices/a-1?saved=1"
        device = browser.registry.get_device(Principal.system(), "acme", "a-1")
        assert device.name == "Dam square north"
        assert device.tags == ["air", "pm"]
        assert device.location is not None
        assert device.location.latitude == 52.4


async def test_a_subscriber_reads_but_cannot_edit_and_nobody_edits_another_tenants() -> None:
    async with running_console() as browser:
        await browser.sign_in("sub_a")
        page = await browser.get("/console/devices/a-1")
        assert page.status == 200
        # The registration is shown, not offered for editing (saving would be refused).
        assert 'method="post" action="/console/devices/a-1"' not in page.text
        assert 'id="f-name"' not in page.text
        assert "<dd>Dam square</dd>" in page.text
        # Pages of the other roles, asked for by their address: a 403 page, not the form.
        for path in ("/console/imports", "/console/dead-letters"):
            refused = await browser.get(path)
            assert refused.status == 403, path
            assert "met de rol admin / operator" in refused.text
            assert 'type="file"' not in refused.text
        form = {"name": "x", "type": "th", "area": "", "tags": "", "dev_eui": ""}
        form |= {"latitude": "", "longitude": ""}
        assert (await browser.post("/console/devices/a-1", form)).status == 403
        await browser.post("/console/sign-out")
        await browser.sign_in("op_a")
        assert (await browser.post("/console/devices/b-1", form)).status == 404
        assert (await browser.get("/console/devices/b-1/live")).status == 404


async def test_the_map_points_are_the_tenants_located_devices() -> None:
    async with running_console() as browser:
        await browser.sign_in("op_a")
        page = await browser.get("/console/map")
        assert page.status == 200
        assert 'data-points="/console/map/points"' in page.text
        async with browser.client.get("/console/map/points") as response:
            doc = await response.json()
        assert sorted(p["id"] for p in doc["points"]) == ["a-1", "a-2"]
        assert all(p["state"] == "unknown" for p in doc["points"])


def _record(device: str, tenant: str, value: float, **extra: Any) -> tuple[bytes, bytes]:
    doc = {
        "device_id": device,
        "tenant": tenant,
        "quantity": "temperature",
        "value": value,
        "unit": "Cel",
        "observed_at": "2026-12-04T10:00:00Z",
        **extra,
    }
    return device.encode(), orjson.dumps(doc)


async def test_live_observations_arrive_as_server_sent_events() -> None:
    deliver_to: list[Any] = []

    async def read(deliver: Any, positioned: asyncio.Event) -> None:
        deliver_to.append(deliver)
        positioned.set()
        await asyncio.Event().wait()

    async with running_console(read=read) as browser:
        await browser.sign_in("op_a")
        async with browser.client.get("/console/devices/a-1/live") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            first = await response.content.readline()
            assert first.startswith(b"event: status")
            await response.content.readline()
            await response.content.readline()
            deliver_to[0](
                [
                    _record("b-1", "beta", 1.0),  # another tenant's: never shown
                    _record("a-2", "acme", 2.0),  # another device's
                    _record("a-1", "beta", 3.0),  # the id, but not this tenant's
                    _record("a-1", "acme", 21.5, quality=["spike"]),
                    _record("a-1", "acme", 0.0, sealed="v1.x.y", classification="personal"),
                ]
            )
            lines = [await response.content.readline() for _ in range(6)]
        text = b"".join(lines).decode()
        assert "temperature = 21.5 Cel" in text
        assert "spike" in text
        assert "1.0" not in text
        assert "3.0" not in text
        assert "persoonlijke waarde niet getoond" in text


async def test_live_streams_are_bounded_per_session_and_the_reader_stops_when_idle() -> None:
    started: list[int] = []

    async def read(deliver: Any, positioned: asyncio.Event) -> None:
        started.append(1)
        positioned.set()
        await asyncio.Event().wait()

    live = LiveObservations(read, per_session=2, total=3, buffer=2, idle_stop_seconds=0.01)
    async with live.watch("acme", "a-1", "s1") as w1, live.watch("acme", "a-1", "s1"):
        assert live.running
        with pytest.raises(LiveRefused, match="live_streams_per_session"):
            async with live.watch("acme", "a-2", "s1"):
                pass
        async with live.watch("acme", "a-2", "s2"):
            with pytest.raises(LiveRefused, match=r"^live_streams$"):
                async with live.watch("acme", "a-2", "s3"):
                    pass
        batch: Batch = [_record("a-1", "acme", float(v)) for v in range(5)]
        live.deliver(batch)
        assert w1.dropped == 3  # a slow watcher loses its oldest
        assert w1.queue.qsize() == 2
    assert live.watching == 0
    await asyncio.sleep(0.05)
    assert not live.running
    assert started == [1]
    await live.close()


async def test_too_many_live_streams_is_a_429_page() -> None:
    async with running_console(ConsoleSettings(live_streams=1)) as browser:
        await browser.sign_in("op_a")
        async with browser.client.get("/console/devices/a-1/live") as first:
            assert first.status == 200
            second = await browser.get("/console/devices/a-2/live")
            assert second.status == 429


def test_the_chart_draws_the_smallest_windows_and_skips_ones_without_a_mean() -> None:
    def window(end: str, mean: float | None, size: int = 60) -> dict[str, Any]:
        return {
            "quantity": "temperature",
            "unit": "Cel",
            "window_size": size,
            "window_end": end,
            "mean": mean,
            "min": None if mean is None else mean - 1,
            "max": None if mean is None else mean + 1,
            "count": 3,
        }

    items = [
        window("2026-12-04T10:01:00Z", 20.0),
        window("2026-12-04T10:02:00Z", None),
        window("2026-12-04T10:03:00Z", 22.0),
        window("2026-12-04T11:00:00Z", 21.0, size=3600),
        {**window("2026-12-04T10:03:00Z", 5.0), "quantity": "pm25"},
    ]
    assert quantities(items) == ["pm25", "temperature"]
    chart = build_chart(items, "temperature")
    assert chart is not None
    assert [p.mean for p in chart.points] == [20.0, 22.0]
    assert chart.lowest == 19.0
    assert chart.highest == 23.0
    assert chart.path.startswith("M ")
    assert build_chart(items, "noise") is None
    flat = build_chart([window("2026-12-04T10:01:00Z", 5.0)], "temperature")
    assert flat is not None
    assert len(flat.points) == 1
    covered = {**window("2026-12-04T10:04:00Z", 21.0), "readings": 4, "flagged": 2}
    covered["coverage"] = 0.5
    point = build_chart([covered], "temperature").points[0]  # type: ignore[union-attr]
    assert (point.readings, point.flagged, point.coverage) == (4, 2, 0.5)
    assert build_chart([window("2026-12-04T10:01:00Z", 5.0)], "temperature").points[0].readings == 3  # type: ignore[union-attr]


NOW = 1_796_371_200.0  # 2026-12-04T00:00:00Z


def _health(store: InMemoryRegistryStore) -> DeviceHealthQueries:
    """a-1 seen ten minutes ago with a third of its readings flagged (degraded), a-2 quiet
    for a day (silent); b-1, another tenant's, seen just now."""
    health = InMemoryDeviceHealthStore()
    for tenant, device, seen, flagged in (
        ("acme", "a-1", NOW - 600, 3),
        ("acme", "a-2", NOW - 86_400, 0),
        ("beta", "b-1", NOW - 1, 0),
    ):
        doc = {
            "tenant": tenant,
            "device": device,
            "device_type": "th",
            "first_seen": rfc3339(seen - 3600),
            "last_seen": rfc3339(seen),
            "last_observed": rfc3339(seen),
            "readings": 10,
            "readings_24h": 9,
            "flagged_24h": flagged,
            "flags_24h": {"spike": flagged} if flagged else {},
        }
        record = DeviceActivity.model_validate(doc)
        health.append(activity_key(tenant, device), orjson.dumps(record.model_dump(mode="json")))
    return DeviceHealthQueries(store.view, health.view, HealthSettings(), clock=lambda: NOW)


async def test_health_in_the_list_the_filter_the_map_and_the_device_page() -> None:
    async with running_console(health=_health) as browser:
        await browser.sign_in("op_a")
        page = await browser.get("/console/devices?health=silent")
        assert "a-2" in page.text
        assert "a-1" not in page.text
        page = await browser.get("/console/devices?health=degraded")
        assert "a-1" in page.text
        assert "a-2" not in page.text
        async with browser.client.get("/console/map/points") as response:
            doc = await response.json()
        states = {point["id"]: point["state"] for point in doc["points"]}
        assert states == {"a-1": "degraded", "a-2": "silent"}
        page = await browser.get("/console/devices/a-1")
        assert "spike (3)" in page.text
        assert "33.3 %" in page.text


async def test_a_revoked_key_ends_its_live_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cityhub.streams.delivery.guarded_stream.KEEPALIVE_S", 0.05)
    async with running_console() as browser:
        await browser.sign_in("op_a")
        async with browser.client.get("/console/devices/a-1/live") as response:
            assert response.status == 200
            assert (await response.content.readline()).startswith(b"event: status")
            assert browser.live.watching == 1
            key_id = browser.keys["op_a"].removeprefix("chk_").split("_")[0]
            await browser.registry.revoke_key(Principal.system(), key_id)
            rest = await asyncio.wait_for(response.content.read(), 5)  # the server ends it
        assert b"observation" not in rest
        await asyncio.sleep(0.05)
        assert browser.live.watching == 0


async def test_the_device_page_charts_its_recent_windows_but_no_personal_one() -> None:
    from cityhub.streams.aggregation.memory import InMemoryAggregates
    from cityhub.streams.aggregation.query import QueryLimits

    from .test_api_aggregates import aggregate

    limits = QueryLimits(
        grace_seconds=60,
        largest_window_seconds=3600,
        max_range_seconds=86400,
        max_scanned_records=10_000,
        max_items=1000,
        timeout_seconds=5.0,
        concurrency=2,
    )
    topic = InMemoryAggregates(limits, partitions=4)
    start = (int(time.time()) // 60 - 30) * 60_000
    for minute in range(5):
        topic.add(
            aggregate(
                "a-1",
                tenant="acme",
                classification="public",
                start_ms=start + minute * 60_000,
                count=minute + 1,
            )
        )
    topic.add(
        aggregate(
            "a-1", tenant="acme", classification="personal", quantity="heart_rate", start_ms=start
        )
    )
    async with running_console(aggregates=topic) as browser:
        await browser.sign_in("op_a")
        page = await browser.get("/console/devices/a-1?hours=1")
        assert page.status == 200
        assert '<svg viewBox="0 0 640 240"' in page.text
        assert page.text.count('<circle class="dot"') == 5
        assert "heart_rate" not in page.text
        assert "Persoonlijke vensters worden hier niet getoond." in page.text
