"""Metrics and health on the management endpoint only: the API's application answers 404
problems for ``/metrics`` and ``/healthz`` (they name tenants and subscriptions and ask for no
key), the management application serves them and nothing of the API; the settings put it on
loopback, on a port apart from the API's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.settings import ManagementSettings, Settings
from cityhub.streams.http import build_management_app
from cityhub.streams.runtime.host import management_part

from .test_api_support import running_api


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/metrics/", "/healthz?x=1"])
async def test_the_api_answers_404_problems_for_metrics_and_health(path: str) -> None:
    async with running_api() as api:
        for who in (None, "admin"):  # not even an admin's key reaches them there
            status, doc, headers = await api.call("GET", path, who)
            assert status == 404
            assert headers["Content-Type"].startswith("application/problem+json")
            assert doc["status"] == 404
        # The OpenAPI document is documentation: it stays public.
        status, doc, _ = await api.call("GET", "/api/v1/openapi.json", None)
        assert status == 200
        assert doc["openapi"]


async def test_the_management_app_serves_metrics_and_health_and_nothing_else() -> None:
    checks = {"registry": lambda: True, "bridge": lambda: False}
    async with TestClient(TestServer(build_management_app(checks))) as client:
        async with client.get("/metrics") as response:
            assert response.status == 200
            assert "# HELP" in await response.text()
        async with client.get("/healthz") as response:
            assert response.status == 503
            doc = await response.json()
            assert doc == {
                "status": "unavailable",
                "components": {"registry": True, "bridge": False},
            }
        for path in ("/api/v1/openapi.json", "/api/v1/tenants", "/"):
            async with client.get(path) as response:
                assert response.status == 404


def test_management_defaults_to_loopback_on_its_own_port() -> None:
    settings = Settings()
    assert settings.management == ManagementSettings(host="127.0.0.1", port=9464)
    assert settings.management.port != settings.http.port


async def test_the_management_part_listens_and_says_where(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    part = management_part("127.0.0.1", port, {"x": lambda: True})
    with caplog.at_level(logging.INFO, logger="cityhub"):
        task = asyncio.create_task(part.run())
        try:
            for _ in range(100):
                if f"http://127.0.0.1:{port}" in caplog.text:
                    break
                await asyncio.sleep(0.02)
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/healthz") as response,
            ):
                assert response.status == 200
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert f"metrics and health on http://127.0.0.1:{port}" in caplog.text
