"""The device-health topic followed by an API process: the generic compacted store
(``streams/compacted.py``) over a ``DeviceHealthView``. The API only reads it (the health
stage writes), so its writes are never used; ``InMemoryDeviceHealthStore`` is its double."""

from __future__ import annotations

from prometheus_client import Counter, Gauge
from pydantic import BaseModel

from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.compacted import CompactedTopicStore, InMemoryCompactedStore, InMemoryTopic
from cityhub.streams.health.view import DeviceHealthView

DEVICES_TRACKED = Gauge(
    "cityhub_device_health_devices", "Devices with a health record in this API process's view."
)
MALFORMED = Counter(
    "cityhub_device_health_malformed", "Device-health records skipped because they were malformed."
)


def _never(record: BaseModel) -> str:
    raise TypeError("the device-health topic is written by the health stage only")


def _update_gauges(view: DeviceHealthView, applied: int, malformed: int) -> None:
    if malformed:
        MALFORMED.inc(malformed)
    DEVICES_TRACKED.set(view.devices())


class DeviceHealthStore(CompactedTopicStore[DeviceHealthView, BaseModel]):
    """The device-health topic on Kafka, read into a view."""

    def __init__(self, settings: Settings, *, client_id: str = "cityhub-device-health") -> None:
        super().__init__(
            settings,
            topic=Topics.for_prefix(settings.kafka.topic_prefix).device_health,
            view=DeviceHealthView(),
            key_of=_never,
            what="device health",
            client_id=client_id,
            on_applied=_update_gauges,
            describe=lambda view: f"{view.devices()} device(s)",
        )


class InMemoryDeviceHealthStore(InMemoryCompactedStore[DeviceHealthView, BaseModel]):
    """The same over an ``InMemoryTopic``, for tests without Kafka."""

    def __init__(self, *, topic: InMemoryTopic | None = None) -> None:
        super().__init__(DeviceHealthView(), _never, topic=topic)
