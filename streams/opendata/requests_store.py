"""Where data requests live: the compacted ``<prefix>.data-requests`` topic, through the generic
store (``streams/compacted.py``). ``DataRequestStore`` tails it into a ``DataRequestView``;
``InMemoryDataRequestStore`` is its double for tests without Kafka."""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter, Gauge

from cityhub.schemas.data_request import DataRequest, record_key
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.compacted import (
    DEFAULT_WRITE_TIMEOUT,
    CompactedTopicStore,
    InMemoryCompactedStore,
    InMemoryTopic,
)
from cityhub.streams.opendata.requests_view import DataRequestView

REQUESTS = Gauge("cityhub_data_requests", "Data requests in this process's view.")
OPEN = Gauge("cityhub_data_requests_open", "Data requests with status open in this view.")
MALFORMED = Counter(
    "cityhub_data_requests_malformed",
    "Data-request topic records skipped because they were malformed.",
)


class DataRequestRecordStore(Protocol):
    """What the data requests' service needs from a store."""

    @property
    def view(self) -> DataRequestView: ...

    @property
    def ready(self) -> bool: ...

    async def put(self, record: DataRequest) -> int:
        """Write a record; return its offset once the view has applied it."""
        ...


def _update_gauges(view: DataRequestView, applied: int, malformed: int) -> None:
    if malformed:
        MALFORMED.inc(malformed)
    REQUESTS.set(view.count())
    OPEN.set(view.open_count())


class DataRequestStore(CompactedTopicStore[DataRequestView, DataRequest]):
    """The data requests on Kafka."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str = "cityhub-data-requests",
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    ) -> None:
        super().__init__(
            settings,
            topic=Topics.for_prefix(settings.kafka.topic_prefix).data_requests,
            view=DataRequestView(),
            key_of=record_key,
            what="data requests",
            client_id=client_id,
            write_timeout=write_timeout,
            on_applied=_update_gauges,
            describe=lambda view: f"{view.count()} data request(s), {view.open_count()} open",
        )


class InMemoryDataRequestStore(InMemoryCompactedStore[DataRequestView, DataRequest]):
    """A ``DataRequestRecordStore`` without Kafka, for tests of the service and the API."""

    def __init__(self, *, topic: InMemoryTopic | None = None) -> None:
        super().__init__(DataRequestView(), record_key, topic=topic)


__all__ = ["DataRequestRecordStore", "DataRequestStore", "InMemoryDataRequestStore"]
