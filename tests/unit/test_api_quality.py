"""Quality in the API: a device type's quality limits and a subscription's quality filter are
stored and returned as given; what they cannot mean is a 400 problem naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from .test_api_support import Api, running_api

V1 = "/api/v1"
TYPES = f"{V1}/tenants/acme/device-types"
SUBS = f"{V1}/tenants/acme/subscriptions"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running_api() as running:
        yield running


def device_type(quality: Any) -> dict[str, Any]:
    return {"id": "air", "name": "Air", "quality": quality}


async def test_a_device_types_quality_is_kept(api: Api) -> None:
    quality = {
        "limits": {"pm2_5": {"max": 500, "flat_line_seconds": None}},
        "fault_fields": ["status"],
    }
    status, doc, _ = await api.call("POST", TYPES, "op_a", json=device_type(quality))
    assert status == 201, doc
    status, doc, _ = await api.call("GET", f"{TYPES}/air", "op_a")
    assert status == 200
    assert doc["quality"]["fault_fields"] == ["status"]
    assert doc["quality"]["limits"]["pm2_5"]["max"] == 500
    assert doc["quality"]["limits"]["pm2_5"]["flat_line_seconds"] is None
    assert "min" not in doc["quality"]["limits"]["pm2_5"]  # left out: the hub's still holds
    # what GET returned, sent back with PUT, means the same
    body = {k: doc[k] for k in ("id", "name", "quality")}
    status, doc, _ = await api.call("PUT", f"{TYPES}/air", "op_a", json=body)
    assert status == 200, doc
    assert doc["quality"]["limits"] == {"pm2_5": {"max": 500.0, "flat_line_seconds": None}}


@pytest.mark.parametrize(
    "quality",
    [
        {"limits": {"pm2_5": {"min": 10, "max": 1}}},
        {"limits": {"pm2_5": {"flat_line_seconds": 5}}},
        {"limits": {"PM2.5": {"max": 1}}},
        {"limits": {"pm2_5": {"max": "lots"}}},
        {"fault_fields": ["no spaces please"]},
        {"colour": "red"},
        "strict",
    ],
    ids=repr,
)
async def test_a_device_types_bad_quality_is_400(api: Api, quality: Any) -> None:
    status, doc, _ = await api.call("POST", TYPES, "op_a", json=device_type(quality))
    assert status == 400, doc
    assert doc["type"].endswith("/invalid-input")
    assert all(e["field"].startswith("quality") for e in doc["errors"]), doc["errors"]


async def test_a_subscription_filters_on_quality(api: Api) -> None:
    for sub_id, quality in (("clean", "unflagged"), ("nospike", {"exclude": ["spike"]})):
        body = {
            "id": sub_id,
            "name": sub_id,
            "filter": {"quality": quality},
            "delivery": {"kind": "kafka"},
        }
        status, doc, _ = await api.call("POST", SUBS, "sub_a", json=body)
        assert status == 201, doc
        assert doc["filter"]["quality"] == quality


@pytest.mark.parametrize(
    "quality", ["flagged", {"exclude": []}, {"exclude": ["hot"]}, ["spike"]], ids=repr
)
async def test_a_bad_quality_filter_is_400(api: Api, quality: Any) -> None:
    body = {"id": "q", "name": "q", "filter": {"quality": quality}, "delivery": {"kind": "kafka"}}
    status, doc, _ = await api.call("POST", SUBS, "sub_a", json=body)
    assert status == 400, doc
    assert doc["type"].endswith("/invalid-input")
    assert all(e["field"].startswith("filter.quality") for e in doc["errors"]), doc["errors"]
