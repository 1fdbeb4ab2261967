"""The broker's $SYS figures as metrics, on the real local Mosquitto: the exporter's own
connection shows among the clients, the stored messages and the store's bytes are exported as
the broker says, the stack's persistence file is sized, and the exporter leaves no session. On a
Mosquitto of the test's own (free loopback port, temporary folder, stopped at the end): figures
come back after the broker restarts, and an ACL that hides $SYS leaves the exporter idle."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from cityhub.connectors.mqtt.broker_stats_exporter import BrokerStatsExporter
from cityhub.connectors.mqtt.session import MqttSession
from cityhub.schemas.settings import MqttSettings, Settings
from cityhub.streams.devtools.stack.layout import StackLayout

from .hub import MQTT_HOST, MQTT_PORT, free_port
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


@contextlib.contextmanager
def own_mosquitto(folder: Path, port: int, acl: str | None = None) -> Iterator[None]:
    """A Mosquitto on 127.0.0.1:``port`` publishing $SYS every second, stopped on exit."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    folder.mkdir(parents=True, exist_ok=True)
    # `user`: a root mosquitto would otherwise run as `mosquitto`, who cannot read the folder.
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "sys_interval 1",
        f"user {getpass.getuser()}",
    ]
    if acl is not None:
        (folder / "acl").write_text(acl)
        lines.append(f"acl_file {folder / 'acl'}")
    (folder / "mosquitto.conf").write_text("\n".join(lines) + "\n")
    log = (folder / "mosquitto.log").open("ab")
    proc = subprocess.Popen(
        [binary, "-c", str(folder / "mosquitto.conf")], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, (folder / "mosquitto.log").read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            assert time.monotonic() < deadline, "mosquitto did not listen within 10 s"
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def test_the_figures_come_back_after_the_broker_restarts(tmp_path: Path) -> None:
    port = free_port()
    exporter = BrokerStatsExporter(MqttSettings(host=MQTT_HOST, port=port, client_id="t-restart"))
    with own_mosquitto(tmp_path / "first", port):
        run = asyncio.create_task(exporter.run())
        try:
            assert await wait_for(lambda: exporter.figures_received > 0, 10)
        except BaseException:
            run.cancel()
            raise
    try:
        before = exporter.figures_received
        await asyncio.sleep(1.5)  # the broker is gone: the exporter waits, it does not fail
        assert not run.done()
        with own_mosquitto(tmp_path / "second", port):
            assert await wait_for(lambda: exporter.figures_received > before, 20)
            assert gauge("uptime_seconds", exporter.broker) is not None
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run


async def test_a_broker_that_hides_its_figures_leaves_the_exporter_idle(tmp_path: Path) -> None:
    """Mosquitto 2.0 grants a subscription that its ACL denies and then sends nothing: the
    exporter stays connected and idle, exports nothing, and never fails the process."""
    port = free_port()
    exporter = BrokerStatsExporter(MqttSettings(host=MQTT_HOST, port=port, client_id="t-hidden"))
    # Anonymous clients may read their own topics only: not $SYS.
    with own_mosquitto(tmp_path, port, acl="topic read cityhub/#\n"):
        run = asyncio.create_task(exporter.run())
        try:
            await asyncio.sleep(3)  # three of this broker's $SYS intervals
            assert not run.done()
            assert exporter.figures_received == 0
            assert gauge("uptime_seconds", exporter.broker) is None
        finally:
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
