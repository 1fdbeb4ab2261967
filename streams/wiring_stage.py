"""A worker process's stages: agents on the batch runtime (``cityhub.streams.runtime``) writing
through one ``BatchingWriter``, started and stopped as one ``Part``. The worker's own agents run
on its consumer group; a side stage (the open-data publisher, device health) on a group of its
own, so that its pace never holds back the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cityhub.connectors.batching_writer import BatchingWriter
from cityhub.connectors.dead_letter_route import DeadLetterRoute
from cityhub.schemas.kafka_settings import background_fetch
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams import metrics
from cityhub.streams.http import HealthCheck
from cityhub.streams.runtime.agent import Agent
from cityhub.streams.runtime.host import Part
from cityhub.streams.runtime.worker import Worker
from cityhub.streams.wiring_adapters import flag

WRITER_STAGE = "worker"
"""The stage of the dead letters a stage's writer makes itself (a record too large once made,
or refused by Kafka): the agents' own dead letters name their stage."""


def stage_writer(settings: Settings, client_id: str) -> BatchingWriter:
    """The writer of a stage: its dead letters go to the dead-letter topic as ``WRITER_STAGE``."""
    return BatchingWriter.for_kafka(
        settings.kafka,
        client_id=client_id,
        dead_letters=DeadLetterRoute(
            Topics.for_prefix(settings.kafka.topic_prefix).deadletter,
            WRITER_STAGE,
            settings.bridge.max_payload_bytes,
            count=lambda reason: metrics.DEADLETTERS.labels(WRITER_STAGE, reason.value).inc(),
        ),
    )


def stage_part(name: str, worker: Worker, writer: BatchingWriter) -> Part:
    """The part that runs ``worker`` with its ``writer`` started around it."""

    async def run() -> None:
        await writer.start()
        try:
            await worker.run()
        finally:
            await writer.stop()

    return Part(name, run)


def side_stage_part(
    name: str,
    settings: Settings,
    group: str,
    agents: Sequence[Agent],
    *,
    ready: Callable[[], bool],
    check: str,
    checks: dict[str, HealthCheck],
) -> Part:
    """A stage on the consumer group ``group`` with a writer of its own; its agents name their
    changelogs after the worker's app id as ever, only the group is another. ``checks[check]``
    says whether it runs."""
    writer = stage_writer(settings, f"{group}-out")
    in_group = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"app_id": group})}
    )
    worker = Worker(
        in_group,
        list(agents),
        writer,
        client_id=f"{group}-worker",
        ready=ready,
        # It may lag: fewer, larger fetches leave the broker's CPU to the pipeline.
        fetch=background_fetch(settings.kafka),
    )
    checks[check] = flag(worker, "healthy")
    return stage_part(name, worker, writer)
