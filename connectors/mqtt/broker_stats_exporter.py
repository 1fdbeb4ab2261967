"""The MQTT broker's own figures as Prometheus gauges (``cityhub_mqtt_broker_*``).

The bridge process runs :meth:`BrokerStatsExporter.run` beside its ingest session (setting
``bridge.broker_stats``): a second connection to the same broker, client id
``<mqtt.client_id>-sys``, clean start and no session expiry (the broker keeps nothing for it
once it is gone), subscribed at QoS 0 to ``$SYS/broker/#``. Each figure
(:mod:`cityhub.connectors.mqtt.broker_stats`) sets its gauge, labelled with the broker's
``host:port``; ``cityhub_mqtt_broker_stats_updated_timestamp_seconds`` says when the last one
came, so that a silent broker is told from a quiet one. With ``bridge.broker_store_file`` the
size of the broker's persistence file is exported too, read every few seconds.

Never a reason for the bridge to stop: a lost connection is retried with a backoff; a broker
that refuses the subscription in its SUBACK is logged once and the figures stay off until the
process restarts. (Mosquitto 2.0 grants a subscription its ACL denies and sends nothing: the
exporter then stays connected and idle, and the series are absent.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from prometheus_client import Gauge

from cityhub.connectors.mqtt.broker_stats import (
    FIGURES,
    METRIC_PREFIX,
    SYS_FILTER,
    metric_name,
    parse_figure,
)
from cityhub.connectors.mqtt.session import MqttSession, MqttSubscribeFailed
from cityhub.schemas.settings import MqttSettings, MqttSubscription

log = logging.getLogger("cityhub.mqtt.broker_stats")

CLIENT_ID_SUFFIX = "-sys"
STORE_FILE_INTERVAL_S = 5.0
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0

GAUGES = {
    metric_name(figure): Gauge(metric_name(figure), figure.help, ["broker"])
    for figure in FIGURES.values()
}
STORE_FILE_BYTES = Gauge(
    f"{METRIC_PREFIX}store_file_bytes",
    "Size of the broker's persistence file (bridge.broker_store_file), when it is local.",
    ["broker"],
)
UPDATED = Gauge(
    f"{METRIC_PREFIX}stats_updated_timestamp_seconds",
    "When the bridge last received a $SYS figure from the broker (Unix time).",
    ["broker"],
)


class BrokerStatsExporter:
    """Keeps the ``cityhub_mqtt_broker_*`` gauges of one broker current until cancelled."""

    def __init__(self, settings: MqttSettings, *, store_file: Path | None = None) -> None:
        # $SYS is read whole by this one client: never through the bridges' share group.
        self._settings = settings.model_copy(update={"share_group": None})
        self._client_id = f"{settings.client_id}{CLIENT_ID_SUFFIX}"
        self._store_file = store_file
        self.broker = f"{settings.host}:{settings.port}"
        self.figures_received = 0
        """Figures taken since the start (for tests and logs)."""

    async def run(self) -> None:
        """Read the figures (and the store file's size) until cancelled."""
        tasks = [asyncio.create_task(self._read_figures(), name="broker $SYS figures")]
        if self._store_file is not None:
            tasks.append(asyncio.create_task(self._watch_store_file(self._store_file)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _read_figures(self) -> None:
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                async with MqttSession(
                    self._settings,
                    client_id=self._client_id,
                    clean_start=True,
                    session_expiry_seconds=0,
                ) as session:
                    await session.subscribe(
                        MqttSubscription(filter=SYS_FILTER, format="mosquitto-sys", qos=0)
                    )
                    log.info("reading the broker's figures from %s", self.broker)
                    backoff = FIRST_BACKOFF_S
                    async for message in session.messages():
                        self.take(message.topic, message.payload)
            except MqttSubscribeFailed as exc:
                log.warning("no broker figures: %s", exc)
                return
            except OSError as exc:  # lost, refused, timed out: the broker may come back
                log.info("broker figures: %r; again in %.0f s", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    def take(self, topic: str, payload: bytes) -> bool:
        """Set the gauge that the figure on ``topic`` feeds; False when it feeds none."""
        figure = parse_figure(topic, payload)
        if figure is None:
            return False
        name, value = figure
        GAUGES[name].labels(self.broker).set(value)
        UPDATED.labels(self.broker).set(time.time())
        self.figures_received += 1
        return True

    async def _watch_store_file(self, path: Path) -> None:
        while True:
            try:
                size = await asyncio.to_thread(lambda: path.stat().st_size)
            except OSError:
                # Not there (yet): the broker writes it on its first autosave.
                with contextlib.suppress(KeyError):
                    STORE_FILE_BYTES.remove(self.broker)
            else:
                STORE_FILE_BYTES.labels(self.broker).set(size)
            await asyncio.sleep(STORE_FILE_INTERVAL_S)
