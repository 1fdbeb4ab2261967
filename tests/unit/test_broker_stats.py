"""Mosquitto's $SYS figures read as metric values (cityhub.connectors.mqtt.broker_stats)."""

from __future__ import annotations

import pytest

from cityhub.connectors.mqtt.broker_stats import FIGURES, METRIC_PREFIX, parse_figure

# What Mosquitto 2.0.11 published on the local stack (payloads as they came).
SAMPLE = {
    "$SYS/broker/clients/connected": (b"3", "clients_connected", 3.0),
    "$SYS/broker/clients/disconnected": (b"2", "clients_disconnected", 2.0),
    "$SYS/broker/clients/total": (b"5", "sessions", 5.0),
    "$SYS/broker/messages/stored": (b"16214", "messages_stored", 16214.0),
    "$SYS/broker/store/messages/count": (b"16214", "store_messages", 16214.0),
    "$SYS/broker/store/messages/bytes": (b"21965192", "store_messages_bytes", 21965192.0),
    "$SYS/broker/retained messages/count": (b"45", "retained_messages", 45.0),
    "$SYS/broker/subscriptions/count": (b"6", "subscriptions", 6.0),
    "$SYS/broker/heap/current": (b"27661912", "heap_current_bytes", 27661912.0),
    "$SYS/broker/heap/maximum": (b"27728720", "heap_maximum_bytes", 27728720.0),
    "$SYS/broker/load/messages/received/1min": (
        b"2089.16",
        "load_messages_received_1min",
        2089.16,
    ),
    "$SYS/broker/load/messages/sent/1min": (b"2078.90", "load_messages_sent_1min", 2078.9),
    "$SYS/broker/load/publish/dropped/1min": (b"0.00", "load_publish_dropped_1min", 0.0),
    "$SYS/broker/uptime": (b"99 seconds", "uptime_seconds", 99.0),
}


def test_every_exported_figure_is_read_from_a_real_payload() -> None:
    assert set(SAMPLE) == set(FIGURES)
    for topic, (payload, name, value) in SAMPLE.items():
        assert parse_figure(topic, payload) == (METRIC_PREFIX + name, value)


@pytest.mark.parametrize(
    "topic",
    [
        "$SYS/broker/version",  # text, and not exported
        "$SYS/broker/load/messages/received/5min",  # the 1-minute average is enough
        "$SYS/broker/clients/connected/extra",
        "cityhub/ingest/x",
    ],
)
def test_a_topic_we_do_not_export_gives_nothing(topic: str) -> None:
    assert parse_figure(topic, b"1") is None


@pytest.mark.parametrize(
    "payload", [b"", b"many", b"nan", b"inf", b"1e400", b"12 minutes", b"\xff\xfe", b"1,5"]
)
def test_a_payload_that_is_not_a_plain_number_gives_nothing(payload: bytes) -> None:
    assert parse_figure("$SYS/broker/messages/stored", payload) is None


def test_signs_and_whitespace_are_read() -> None:
    assert parse_figure("$SYS/broker/clients/connected", b" 7\n") == (
        "cityhub_mqtt_broker_clients_connected",
        7.0,
    )
    assert parse_figure("$SYS/broker/uptime", b"0 seconds") == (
        "cityhub_mqtt_broker_uptime_seconds",
        0.0,
    )
