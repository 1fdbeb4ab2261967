"""Where data requests live: the compacted ``<prefix>.data-requests`` topic, through the generic
store (``streams/compacted.py``). ``DataRequestStore`` tails it into a ``DataRequestView``;
``InMemoryDataRequestStore`` is its double for tests without Kafka."""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter, Gauge

from cityhub.schemas.data_request import DataRequest, record_key
from cityhub.streams.compacted_stores import InMemorySpecStore, SpecStore, TopicSpec, gauges
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


REQUESTS_TOPIC: TopicSpec[DataRequestView, DataRequest] = TopicSpec(
    topic=lambda topics: topics.data_requests,
    new_view=DataRequestView,
    key_of=record_key,
    what="data requests",
    client_id="cityhub-data-requests",
    on_applied=gauges(
        MALFORMED, (REQUESTS, DataRequestView.count), (OPEN, DataRequestView.open_count)
    ),
    describe=lambda view: f"{view.count()} data request(s), {view.open_count()} open",
)


class DataRequestStore(SpecStore[DataRequestView, DataRequest]):
    """The data requests on Kafka."""

    spec = REQUESTS_TOPIC


class InMemoryDataRequestStore(InMemorySpecStore[DataRequestView, DataRequest]):
    """A ``DataRequestRecordStore`` without Kafka, for tests of the service and the API."""

    spec = REQUESTS_TOPIC


__all__ = ["DataRequestRecordStore", "DataRequestStore", "InMemoryDataRequestStore"]
