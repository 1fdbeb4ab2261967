"""faust's aiokafka transport with a durable producer.

faust asks its producer for ``acks`` from ``producer_acks`` but turns idempotence on only inside
transactions. cityhub does not use faust's transactions (``exactly_once`` has open bug reports
around rebalances), so this transport's producer always sets ``acks=all`` and idempotence: a
retried batch is then neither duplicated nor reordered within its partition. It is registered as
the faust transport ``cityhub`` through the ``faust.transports`` entry point (pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from faust.transport.drivers import aiokafka as faust_aiokafka


class IdempotentProducer(faust_aiokafka.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class Transport(faust_aiokafka.Transport):
    Producer: ClassVar[type[Any]] = IdempotentProducer


def broker_url(bootstrap_servers: str) -> str:
    """faust's broker URL for a comma-separated ``host:port`` list, on this transport."""
    return ";".join(f"cityhub://{server.strip()}" for server in bootstrap_servers.split(","))
