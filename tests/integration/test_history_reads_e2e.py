"""History end to end on the real stack: MQTT readings → bridge → normaliser → aggregator →
history writer → PostgreSQL → the aggregates API (``source: history``), and the privacy rules
on the way: a resident's sealed readings are stored without a clear value or location anywhere
in their rows, never come out of the history reads, and an erasure deletes them.

A ``cityhub run`` hub (its own topic prefix; it runs the history writer too) with this module's
history schema and ``kafka_window_hours=0`` (every aggregates query from the store). Readings
are timestamped two days back in one burst, and one more reading of the street sensor two
hours after them moves its windows' watermark past their ends (grace 0), so they close at
once (the idle timer, set long, does not move the watermark past the readings before they
arrive)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cityhub.schemas.registry import Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.streams.aggregation.query import _order as kafka_order
from cityhub.streams.aggregation.query import format_ms
from cityhub.streams.history.connection import connect, password_path
from cityhub.streams.history.reads import ObservationFilter, Viewer, latest_observations
from cityhub.streams.history.reads import observations as read_observations
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .hub import BOOTSTRAP, Hub, publish, read_topic
from .subscribers import Api

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TENANT = "city"
SUBJECT = "res-carol-0003"
READINGS = 40
STEP_S = 15
"""A reading every 15 s over 10 minutes: ten 60 s windows of four readings each."""
START_S = (int(time.time()) // 3600 - 48) * 3600
"""Two days back, on the hour."""
# Clear values nobody else sends: if they show anywhere in a sealed row, they leaked.
PERSONAL_VALUES = [1234.5 + i / 8 for i in range(READINGS)]
HOME = {"latitude": 52.0917, "longitude": 5.1214}


def reading(device: str, i: int, value: float) -> tuple[str, bytes]:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START_S + i * STEP_S))
    return f"cityhub/ingest/{device}", json.dumps({"time": at, "temperature": value}).encode()


async def seed(prefix: str) -> dict[str, str]:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    store = RegistryStore(settings, client_id=f"{prefix}-seed")
    await store.start()
    try:
        registry, system = Registry(store), Principal.system()
        await registry.create_tenant(system, TenantSpec(id=TENANT, name="City"))
        await registry.create_tenant(system, TenantSpec(id="other", name="Other"))
        return {
            "op": (await registry.create_key(system, TENANT, Role.OPERATOR, "op"))[1],
            "other": (await registry.create_key(system, "other", Role.ADMIN, "other"))[1],
        }
    finally:
        await store.stop()


async def ok(api: Api, method: str, path: str, body: Any = None) -> Any:
    status, doc = await api.call(method, path, "op", body)
    assert 200 <= status < 300, (method, path, status, doc)
    return doc


async def wait_rows(settings: Settings, sql: str, want: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    got = -1
    async with await connect(settings, autocommit=True) as conn:
        while time.monotonic() < deadline:
            cursor = await conn.execute(sql)
            row = await cursor.fetchone()
            got = int(row[0]) if row else 0
            if got >= want:
                return got
            await asyncio.sleep(0.5)
    raise AssertionError(f"{sql!r}: {got} rows after {timeout} s, wanted {want}")


async def test_readings_to_history_to_the_api_and_personal_rows_sealed_then_erased(
    tmp_path: Path, history_settings: Settings
) -> None:
    schema = history_settings.history.db_schema
    hub = Hub(
        tmp_path,
        command="run",
        extra_env={
            "CITYHUB_HISTORY__ENABLED": "true",
            "CITYHUB_HISTORY__DB_SCHEMA": schema,
            "CITYHUB_HISTORY__PASSWORD_FILE": str(password_path(history_settings).resolve()),
            "CITYHUB_HISTORY__KAFKA_WINDOW_HOURS": "0",
            "CITYHUB_AGGREGATION__WINDOW_SIZES_SECONDS": "[60]",
            "CITYHUB_AGGREGATION__GRACE_SECONDS": "0",
            "CITYHUB_AGGREGATION__IDLE_CLOSE_SECONDS": "600",
        },
    )
    keys = await seed(hub.prefix)
    await asyncio.to_thread(hub.start)
    settings = history_settings.model_copy(
        update={
            "kafka": KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=hub.prefix),
            "worker": history_settings.worker.model_copy(update={"app_id": f"{hub.prefix}-app"}),
        }
    )
    api = Api(hub, keys)
    try:
        await ok(api, "POST", f"/tenants/{TENANT}/device-types", {"id": "air", "name": "Air"})
        await ok(
            api,
            "POST",
            f"/tenants/{TENANT}/device-types",
            {
                "id": "home-air",
                "name": "Air at home",
                "classification": "personal",
                "personal_data_category": "indoor climate",
            },
        )
        await ok(
            api,
            "POST",
            f"/tenants/{TENANT}/devices",
            {"id": "street-1", "name": "Street", "type": "air", "location": HOME},
        )
        await ok(
            api,
            "POST",
            f"/tenants/{TENANT}/devices",
            {"id": "carol-air", "name": "Carol", "type": "home-air", "location": HOME},
        )
        await ok(
            api,
            "PUT",
            f"/tenants/{TENANT}/devices/carol-air/data-subject",
            {"data_subject": SUBJECT},
        )
        await asyncio.sleep(2)  # the worker's registry view follows the API's within a second
        messages = []
        for i in range(READINGS):
            messages.append(reading("street-1", i, 10.0 + i))
            messages.append(reading("carol-air", i, PERSONAL_VALUES[i]))
        messages.append(reading("street-1", 2 * 3600 // STEP_S, 99.0))  # closes the ten
        await publish(messages)
        await wait_rows(settings, "SELECT count(*) FROM observations", 2 * READINGS + 1, 90)
        # Ten 60 s windows of street-1 (carol's sealed readings are never aggregated).
        await wait_rows(settings, "SELECT count(*) FROM aggregates", 10, 90)

        # 1. The aggregates API serves them from history: the current revisions the worker
        # wrote to Kafka, in the same order.
        topic = await read_topic(
            f"{hub.prefix}.aggregates",
            until=lambda docs: len({d["aggregate_id"] for d in docs}) >= 10,
            timeout=30,
        )
        current: dict[str, dict[str, Any]] = {}
        for doc in topic:
            known = current.get(doc["aggregate_id"])
            if known is None or known["revision"] < doc["revision"]:
                current[doc["aggregate_id"]] = doc
        on_kafka = sorted(
            (d for d in current.values() if d["grouping"] == "device"), key=kafka_order
        )
        assert [d["device_id"] for d in on_kafka] == ["street-1"] * 10
        query = {
            "deviceId": "street-1",
            "from": format_ms(START_S * 1000),
            "to": format_ms((START_S + READINGS * STEP_S) * 1000),
        }
        path = f"/tenants/{TENANT}/aggregates?" + "&".join(f"{k}={v}" for k, v in query.items())
        status, doc = await api.call("GET", path, "op")
        assert status == 200, doc
        assert doc["source"] == "history"
        assert [(i["window_start"], i["count"], i["revision"]) for i in doc["items"]] == [
            (d["window_start"], d["count"], d["revision"]) for d in on_kafka
        ]
        assert [i["count"] for i in doc["items"]] == [4] * 10
        status, doc = await api.call("GET", path.replace(TENANT, "other", 1), "other")
        assert status == 404  # another tenant's admin: the device is not found

        # 2. Carol's readings are in the store sealed: no clear value or location anywhere.
        async with await connect(settings, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT value_number, value_text, value_boolean, location, altitude, "
                "data_subject, classification, doc::text FROM observations "
                "WHERE device_id = 'carol-air'"
            )
            sealed_rows = await cursor.fetchall()
            assert len(sealed_rows) == READINGS
            for (
                number,
                text,
                boolean,
                location,
                altitude,
                subject,
                classification,
                raw,
            ) in sealed_rows:
                assert (number, text, boolean, location, altitude) == (None,) * 5
                assert (subject, classification) == (SUBJECT, "personal")
                stored = json.loads(raw)
                assert "sealed" in stored
                assert "value" not in stored or stored["value"] is None
                assert "location" not in stored or stored["location"] is None
                for value in PERSONAL_VALUES:
                    assert str(value) not in raw
                assert str(HOME["latitude"]) not in raw
                assert str(HOME["longitude"]) not in raw
            # The reads never return them, to an admin either; the street sensor's they do.
            page = await read_observations(
                conn, Viewer.admin(), ObservationFilter(device_ids=["carol-air", "street-1"])
            )
            assert {row.device_id for row in page.items} == {"street-1"}
            assert len(page.items) == READINGS + 1
            assert page.items[0].latitude == pytest.approx(HOME["latitude"])
            latest = await latest_observations(conn, Viewer.admin(), ["carol-air", "street-1"])
            assert [(r.device_id, r.value) for r in latest] == [("street-1", 99.0)]

        # 3. Erasure reaches the store: the subject's rows are deleted, the street's stay.
        report = await ok(api, "POST", f"/tenants/{TENANT}/data-subjects/{SUBJECT}/erasure")
        assert report["history_rows_deleted"] == READINGS
        async with await connect(settings, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT device_id, count(*) FROM observations GROUP BY device_id"
            )
            assert dict(await cursor.fetchall()) == {"street-1": READINGS + 1}
        again = await ok(api, "POST", f"/tenants/{TENANT}/data-subjects/{SUBJECT}/erasure")
        assert (again["history_rows_deleted"], again["nothing_left"]) == (0, True)
    finally:
        await asyncio.to_thread(hub.stop)
