"""Where the register of processing activities lives: the compacted
``<prefix>.processing-activities`` topic, through the generic store (``streams/compacted.py``).
``RegisterStore`` tails it into a ``RegisterView``; ``InMemoryRegisterStore`` is its double."""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter, Gauge

from cityhub.schemas.processing import ProcessingActivity, record_key
from cityhub.streams.compacted_stores import InMemorySpecStore, SpecStore, TopicSpec, gauges
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


REGISTER_TOPIC: TopicSpec[RegisterView, ProcessingActivity] = TopicSpec(
    topic=lambda topics: topics.processing_activities,
    new_view=RegisterView,
    key_of=record_key,
    what="processing register",
    client_id="cityhub-processing-register",
    on_applied=gauges(MALFORMED, (ACTIVITIES, RegisterView.count)),
    describe=lambda view: f"{view.count()} processing activit(ies)",
)


class RegisterStore(SpecStore[RegisterView, ProcessingActivity]):
    """The register on Kafka."""

    spec = REGISTER_TOPIC


class InMemoryRegisterStore(InMemorySpecStore[RegisterView, ProcessingActivity]):
    """A ``RegisterRecordStore`` without Kafka, for tests of the service and the API."""

    spec = REGISTER_TOPIC


__all__ = ["InMemoryRegisterStore", "RegisterRecordStore", "RegisterStore"]
