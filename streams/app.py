"""The faust app factory. Building the app has no side effects beyond the app object itself;
``cityhub.streams.faust_app`` exposes one for ``faust -A``."""

from __future__ import annotations

import logging

import faust

from cityhub.schemas.settings import Settings
from cityhub.streams import metrics
from cityhub.streams.aggregation.agent import register_aggregator
from cityhub.streams.faust_transport import broker_url, use_kafka_settings
from cityhub.streams.normaliser.agent import register_normaliser
from cityhub.streams.registry.store import RecordStore
from cityhub.streams.subscriptions.routing import Routing

log = logging.getLogger("cityhub.worker")

LAG_INTERVAL_SECONDS = 5.0


def create_app(
    settings: Settings, registry: RecordStore, routing: Routing | None = None
) -> faust.App:
    """A faust app with cityhub's agents, configured for at-least-once delivery:
    ``acks=all`` and idempotence (see ``faust_transport``), outputs published before the input
    offset is committed, and new consumer groups reading from the earliest offset.

    ``registry`` is the device registry the normaliser consults; the caller starts and stops it
    (one store can serve the API and the agents of a process). ``routing``, when given, routes
    what the agents write to the subscriptions' topics; the caller runs its ``run()`` loop."""
    app = faust.App(
        settings.worker.app_id,
        broker=broker_url(settings.kafka.bootstrap_servers),
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        producer_acks=-1,
        producer_linger=settings.kafka.linger_ms / 1000,
        producer_max_request_size=settings.kafka.max_message_bytes + 64 * 1024,
        # faust's default is aiokafka's 16 KiB: with one request in flight per broker, that
        # bounded how much each commit's publishing could send per round trip.
        producer_max_batch_size=settings.kafka.max_batch_bytes,
        broker_commit_interval=settings.worker.commit_interval_seconds,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.worker.session_timeout_seconds,
        broker_heartbeat_interval=settings.worker.session_timeout_seconds / 4,
        processing_guarantee="at_least_once",
        datadir=str(settings.worker.data_dir),
    )
    # faust's own topics (changelogs, the leader topic) get min.insync.replicas as cityhub's.
    use_kafka_settings(app, settings.kafka)
    register_normaliser(app, settings, registry, routing)
    register_aggregator(app, settings, routing)

    async def record_consumer_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            try:
                highwater = consumer.highwater(tp)
                position = await consumer.position(tp)
            except Exception as exc:  # a partition moving away mid-rebalance
                log.debug("no lag for %s: %r", tp, exc)
                continue
            if highwater is None or position is None:
                continue
            metrics.CONSUMER_LAG.labels(settings.worker.app_id, tp.topic, str(tp.partition)).set(
                max(0, highwater - position)
            )

    app.timer(LAG_INTERVAL_SECONDS, name="consumer-lag")(record_consumer_lag)
    return app
