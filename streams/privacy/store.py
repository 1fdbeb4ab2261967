"""Where the register of processing activities lives: the compacted
``<prefix>.processing-activities`` topic, through the generic store (``streams/compacted.py``).
``RegisterStore`` tails it into a ``RegisterView``; ``InMemoryRegisterStore`` is its double."""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter, Gauge

from cityhub.schemas.processing import ProcessingActivity, record_key
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.compacted import (
    DEFAULT_WRITE_TIMEOUT,
    CompactedTopicStore,
    InMemoryCompactedStore,
    InMemoryTopic,
)
from cityhub.streams.privacy.view import RegisterView

ACTIVITIES = Gauge("cityhub_processing_activities", "Processing activities in the register view.")
MALFORMED = Counter(
    "cityhub_processing_activities_malformed",
    "Processing-activity topic records skipped because they were malformed.",
)


class RegisterRecordStore(Protocol):
    """What the register's service needs from a store."""

    @property
    def view(self) -> RegisterView: ...

    @property
    def ready(self) -> bool: ...

    async def put(self, record: ProcessingActivity) -> int:
        """Write a record; return its offset once the view has applied it."""
        ...


def _update_gauges(view: RegisterView, applied: int, malformed: int) -> None:
    if malformed:
        MALFORMED.inc(malformed)
    ACTIVITIES.set(view.count())


class RegisterStore(CompactedTopicStore[RegisterView, ProcessingActivity]):
    """The register on Kafka."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str = "cityhub-processing-register",
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    ) -> None:
        super().__init__(
            settings,
            topic=Topics.for_prefix(settings.kafka.topic_prefix).processing_activities,
            view=RegisterView(),
            key_of=record_key,
            what="processing register",
            client_id=client_id,
            write_timeout=write_timeout,
            on_applied=_update_gauges,
            describe=lambda view: f"{view.count()} processing activit(ies)",
        )


class InMemoryRegisterStore(InMemoryCompactedStore[RegisterView, ProcessingActivity]):
    """A ``RegisterRecordStore`` without Kafka, for tests of the service and the API."""

    def __init__(self, *, topic: InMemoryTopic | None = None) -> None:
        super().__init__(RegisterView(), record_key, topic=topic)


__all__ = ["InMemoryRegisterStore", "RegisterRecordStore", "RegisterStore"]
