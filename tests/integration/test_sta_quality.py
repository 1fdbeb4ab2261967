"""SensorThings Observations show their quality flags as ``resultQuality``, read from the
history store's documents (PostgreSQL, a schema of this module's own); unflagged ones have none."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from cityhub.schemas.settings import Settings
from cityhub.streams.sensorthings.ids import entity_id
from tests.integration.sta_data import READINGS, seed_history, seed_registry, serve

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seeded(history_settings: Settings) -> Settings:
    asyncio.run(seed_history(history_settings))
    return history_settings


async def test_flagged_observations_carry_result_quality(seeded: Settings) -> None:
    registry, keys = await seed_registry()
    stream = entity_id("Datastream", "air-1:pm2_5")
    async with serve(registry, seeded) as root, aiohttp.ClientSession() as session:
        url = f"{root}/Datastreams({stream})/Observations?$orderby=phenomenonTime%20asc"
        async with session.get(url, headers={"X-API-Key": keys.city}) as response:
            assert response.status == 200
            page: dict[str, Any] = await response.json(content_type=None)
    values = page["value"]
    assert len(values) == READINGS
    assert [o.get("resultQuality") for o in values[:5]] == [None, None, None, ["spike"], None]
    flagged = values[3]["@iot.id"]
    async with aiohttp.ClientSession() as session, serve(registry, seeded) as root:
        url = f"{root}/Observations({flagged})?$select=result,resultQuality"
        async with session.get(url, headers={"X-API-Key": keys.city}) as response:
            doc = await response.json(content_type=None)
    assert response.status == 200, doc
    assert {k: v for k, v in doc.items() if not k.startswith("@")} == {
        "result": 4.0,
        "resultQuality": ["spike"],
    }
    # not a property the store can filter on: a 400 that says so, never a 500
    async with aiohttp.ClientSession() as session, serve(registry, seeded) as root:
        url = f"{root}/Observations?$filter=resultQuality%20eq%20'spike'"
        async with session.get(url, headers={"X-API-Key": keys.city}) as response:
            refused = await response.json(content_type=None)
    assert response.status == 400, refused
