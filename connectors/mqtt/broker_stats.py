"""Pure: Mosquitto's ``$SYS/broker/...`` topics read as figures for metrics.

Mosquitto publishes its own state under ``$SYS/broker/`` every ``sys_interval`` seconds (10 by
default), retained, so a client that subscribes gets the latest at once. The ones an operator
alerts on are the queue the broker holds (messages stored, the store's bytes), who is connected
or away with a persistent session, and its load. A persistent session that is away collects a
copy of every message it subscribed to, and Mosquitto rewrites its whole store on every
autosave: the stored figures are how that shows before the disk does.

:data:`FIGURES` maps each topic we read to the metric it becomes; :func:`parse_figure` turns one
PUBLISH into a ``(metric, value)`` pair or None. No I/O here: the session that subscribes and
the gauges are :mod:`cityhub.connectors.mqtt.broker_stats_exporter`'s.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import MappingProxyType

SYS_FILTER = "$SYS/broker/#"
"""The topic filter of every figure we read."""
METRIC_PREFIX = "cityhub_mqtt_broker_"


@dataclass(frozen=True, slots=True)
class Figure:
    """One ``$SYS`` figure as a metric: its name (without the prefix) and what it says."""

    name: str
    help: str


FIGURES = MappingProxyType(
    {
        "$SYS/broker/clients/connected": Figure(
            "clients_connected", "Clients connected to the broker now."
        ),
        "$SYS/broker/clients/disconnected": Figure(
            "clients_disconnected",
            "Clients away whose persistent session the broker keeps (and queues messages for).",
        ),
        "$SYS/broker/clients/total": Figure(
            "sessions", "Sessions the broker holds: connected clients and persistent ones away."
        ),
        "$SYS/broker/messages/stored": Figure(
            "messages_stored",
            "Messages the broker holds: retained ones and those queued for sessions.",
        ),
        "$SYS/broker/store/messages/count": Figure(
            "store_messages", "Messages in the broker's message store."
        ),
        "$SYS/broker/store/messages/bytes": Figure(
            "store_messages_bytes", "Payload bytes of the messages in the broker's message store."
        ),
        "$SYS/broker/retained messages/count": Figure(
            "retained_messages", "Retained messages the broker holds."
        ),
        "$SYS/broker/subscriptions/count": Figure(
            "subscriptions", "Subscriptions the broker holds, of all sessions."
        ),
        "$SYS/broker/heap/current": Figure(
            "heap_current_bytes", "Heap memory the broker uses now (when built to track it)."
        ),
        "$SYS/broker/heap/maximum": Figure(
            "heap_maximum_bytes", "The most heap memory the broker used since it started."
        ),
        "$SYS/broker/load/messages/received/1min": Figure(
            "load_messages_received_1min",
            "MQTT packets the broker received per minute, averaged over the last minute.",
        ),
        "$SYS/broker/load/messages/sent/1min": Figure(
            "load_messages_sent_1min",
            "MQTT packets the broker sent per minute, averaged over the last minute.",
        ),
        "$SYS/broker/load/publish/dropped/1min": Figure(
            "load_publish_dropped_1min",
            "PUBLISH packets the broker dropped per minute (queues full), averaged over a minute.",
        ),
        "$SYS/broker/uptime": Figure("uptime_seconds", "Seconds since the broker started."),
    }
)

_NUMBER = re.compile(r"\s*([-+]?\d+(?:\.\d+)?)(?:\s+seconds)?\s*")
"""A figure's payload: a number, the uptime with its unit (``"99 seconds"``)."""


def metric_name(figure: Figure) -> str:
    """The full metric name of ``figure``."""
    return METRIC_PREFIX + figure.name


def parse_figure(topic: str, payload: bytes) -> tuple[str, float] | None:
    """The metric name and value that a ``$SYS`` PUBLISH on ``topic`` carries; None for a topic
    we do not export or a payload that is not a finite number (a figure is never guessed)."""
    figure = FIGURES.get(topic)
    if figure is None:
        return None
    try:
        match = _NUMBER.fullmatch(payload.decode("ascii"))
    except UnicodeDecodeError:
        return None
    if match is None:
        return None
    value = float(match.group(1))
    if not math.isfinite(value):
        return None
    return metric_name(figure), value
