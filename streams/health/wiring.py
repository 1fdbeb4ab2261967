"""The health stage in a worker process (``cityhub.streams.wiring_worker`` adds it when
``health.enabled``): its two agents on a runtime and a consumer group of their own
(``health_group``), writing through a writer of their own."""

from __future__ import annotations

from cityhub.connectors.batching_writer import BatchingWriter
from cityhub.connectors.dead_letter_route import DeadLetterRoute
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics, health_group
from cityhub.streams import metrics
from cityhub.streams.health.agent import DeadLetterHealthAgent, DeviceActivityAgent
from cityhub.streams.health.lookups import device_locator, interval_lookup
from cityhub.streams.http import HealthCheck
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.runtime.host import Part
from cityhub.streams.runtime.worker import Worker
from cityhub.streams.wiring_adapters import flag

WRITER_STAGE = "worker"


def health_worker_part(
    settings: Settings, registry: RegistryStore, checks: dict[str, HealthCheck]
) -> Part:
    """The health stage's part of a worker process (the module docstring)."""
    group = health_group(settings.worker.app_id)
    writer = BatchingWriter.for_kafka(
        settings.kafka,
        client_id=f"{group}-out",
        dead_letters=DeadLetterRoute(
            Topics.for_prefix(settings.kafka.topic_prefix).deadletter,
            WRITER_STAGE,
            settings.bridge.max_payload_bytes,
            count=lambda reason: metrics.DEADLETTERS.labels(WRITER_STAGE, reason.value).inc(),
        ),
    )
    # The agents name their changelogs after the worker's app id; only the group is another.
    in_group = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"app_id": group})}
    )
    view = registry.view
    default = settings.health.default_expected_interval_seconds
    worker = Worker(
        in_group,
        [
            DeviceActivityAgent(settings, interval_lookup(view, default)),
            DeadLetterHealthAgent(settings, device_locator(view)),
        ],
        writer,
        client_id=f"{group}-worker",
        # A dead letter's device is found in the registry, and a device's interval too.
        ready=lambda: registry.ready,
    )
    checks["health_worker"] = flag(worker, "running")

    async def run() -> None:
        await writer.start()
        try:
            await worker.run()
        finally:
            await writer.stop()

    return Part("health stage", run)
