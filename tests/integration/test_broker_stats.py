"""The broker's $SYS figures as metrics, on the real local Mosquitto: the exporter's own
connection shows among the clients, the stored messages and the store's bytes are exported as
the broker says, the stack's persistence file is sized, and the exporter leaves no session."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from prometheus_client import REGISTRY

from cityhub.connectors.mqtt.broker_stats_exporter import BrokerStatsExporter
from cityhub.connectors.mqtt.session import MqttSession
from cityhub.schemas.settings import MqttSettings, Settings
from cityhub.streams.devtools.stack.layout import StackLayout

from .hub import MQTT_HOST, MQTT_PORT
from .subscribers import wait_for

pytestmark = pytest.mark.integration


def gauge(name: str, broker: str) -> float | None:
    return REGISTRY.get_sample_value(f"cityhub_mqtt_broker_{name}", {"broker": broker})


async def test_the_exporter_reads_the_figures_and_leaves_no_session() -> None:
    settings = MqttSettings(host=MQTT_HOST, port=MQTT_PORT, client_id=f"t{uuid.uuid4().hex[:10]}")
    store_file = (
        StackLayout.under(Settings().stack.state_dir).mosquitto_persistence / "mosquitto.db"
    )
    assert store_file.exists(), f"the local stack's Mosquitto store is not at {store_file}"
    exporter = BrokerStatsExporter(settings, store_file=store_file)
    broker = exporter.broker
    run = asyncio.create_task(exporter.run())
    try:
        # $SYS figures are retained: all of them arrive on subscribing, not a sys_interval later.
        assert await wait_for(lambda: exporter.figures_received >= 10, 10)
        for name in ("messages_stored", "store_messages_bytes", "subscriptions", "uptime_seconds"):
            value = gauge(name, broker)
            assert value is not None, name
            assert value >= 0, name
        assert gauge("stats_updated_timestamp_seconds", broker) is not None
        # The broker saves once a second: wait for a look that saw the size the file has now.
        assert await wait_for(
            lambda: gauge("store_file_bytes", broker) == store_file.stat().st_size, 12
        )
        # At least one client is connected: ours, from the next publication on (sys_interval,
        # 10 s by default) if nobody else was at the last one.
        assert await wait_for(lambda: (gauge("clients_connected", broker) or 0) >= 1, 25)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    # Clean start and no expiry: the broker kept nothing for "<client id>-sys".
    async with MqttSession(
        settings, client_id=f"{settings.client_id}-sys", clean_start=False, session_expiry_seconds=0
    ) as again:
        assert again.connack is not None
        assert again.connack.session_present is False
