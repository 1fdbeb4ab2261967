"""The local single-node stack behind ``cityhub stack up|down|status``.

Apache Kafka (KRaft, from Maven Central through ``deploy/kafka/pom.xml``) and Mosquitto, both on
loopback, both with their data, configs, logs and pid files in ``StackSettings.state_dir``.
"""

from __future__ import annotations

from cityhub.streams.devtools.stack.lifecycle import (
    purge_state,
    stack_client_settings,
    stack_down,
    stack_status,
    stack_up,
)
from cityhub.streams.devtools.stack.probes import HEALTH_TOPIC
from cityhub.streams.devtools.stack.status import ServiceStatus, StackStatus

__all__ = [
    "HEALTH_TOPIC",
    "ServiceStatus",
    "StackStatus",
    "purge_state",
    "stack_client_settings",
    "stack_down",
    "stack_status",
    "stack_up",
]
