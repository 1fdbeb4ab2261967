"""faust's aiokafka transport with a durable producer.

faust asks its producer for ``acks`` from ``producer_acks`` but turns idempotence on only inside
transactions. cityhub does not use faust's transactions (``exactly_once`` has open bug reports
around rebalances), so this transport's producer always sets ``acks=all`` and idempotence: a
retried batch is then neither duplicated nor reordered within its partition. It is registered as
the faust transport ``cityhub`` through the ``faust.transports`` entry point (pyproject.toml).

The topics faust creates itself (table changelogs, the assignor's leader topic) get the same
``min.insync.replicas`` as cityhub's own (``topic_admin.durability_config``): faust passes only
per-topic configs, and the tables are declared by the agents, so the transport, through which
every faust topic creation goes, adds it (``use_kafka_settings``).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, ClassVar

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import AppT
from mode import Service

from cityhub.schemas.settings import KafkaSettings
from cityhub.streams.topic_admin import durability_config

_KAFKA_SETTINGS: weakref.WeakKeyDictionary[AppT, KafkaSettings] = weakref.WeakKeyDictionary()


def use_kafka_settings(app: AppT, kafka: KafkaSettings) -> None:
    """Create the topics that faust declares for ``app`` with ``durability_config(kafka)``."""
    _KAFKA_SETTINGS[app] = kafka


def faust_topic_config(
    app: AppT, replication: int, config: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The config of a topic faust creates for ``app`` with ``replication`` replicas: its own
    ``config`` over cityhub's durability config (none unless ``use_kafka_settings``)."""
    kafka = _KAFKA_SETTINGS.get(app)
    durability = durability_config(kafka, replication) if kafka is not None else {}
    return {**durability, **(config or {})}


class IdempotentProducer(faust_aiokafka.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class Transport(faust_aiokafka.Transport):
    Producer: ClassVar[type[Any]] = IdempotentProducer

    async def _create_topic(
        self,
        owner: Service,
        client: Any,
        topic: str,
        partitions: int,
        replication: int,
        **kwargs: Any,
    ) -> None:
        # The one place both faust's producer and its consumer create topics through.
        kwargs["config"] = faust_topic_config(self.app, replication, kwargs.get("config"))
        await super()._create_topic(owner, client, topic, partitions, replication, **kwargs)


def broker_url(bootstrap_servers: str) -> str:
    """faust's broker URL for a comma-separated ``host:port`` list, on this transport."""
    return ";".join(f"cityhub://{server.strip()}" for server in bootstrap_servers.split(","))
