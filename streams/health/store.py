"""The device-health topic followed by an API process: the generic compacted store
(``streams/compacted.py``) over a ``DeviceHealthView``. The API only reads it (the health
stage writes), so its writes are never used; ``InMemoryDeviceHealthStore`` is its double."""

from __future__ import annotations

from prometheus_client import Counter, Gauge
from pydantic import BaseModel

from cityhub.streams.compacted_stores import InMemorySpecStore, SpecStore, TopicSpec, gauges
from cityhub.streams.health.view import DeviceHealthView

DEVICES_TRACKED = Gauge(
    "cityhub_device_health_devices", "Devices with a health record in this API process's view."
)
MALFORMED = Counter(
    "cityhub_device_health_malformed", "Device-health records skipped because they were malformed."
)


def _never(record: BaseModel) -> str:
    raise TypeError("the device-health topic is written by the health stage only")


HEALTH_TOPIC: TopicSpec[DeviceHealthView, BaseModel] = TopicSpec(
    topic=lambda topics: topics.device_health,
    new_view=DeviceHealthView,
    key_of=_never,
    what="device health",
    client_id="cityhub-device-health",
    on_applied=gauges(MALFORMED, (DEVICES_TRACKED, DeviceHealthView.devices)),
    describe=lambda view: f"{view.devices()} device(s)",
)


class DeviceHealthStore(SpecStore[DeviceHealthView, BaseModel]):
    """The device-health topic on Kafka, read into a view."""

    spec = HEALTH_TOPIC


class InMemoryDeviceHealthStore(InMemorySpecStore[DeviceHealthView, BaseModel]):
    """The same over an ``InMemoryTopic``, for tests without Kafka."""

    spec = HEALTH_TOPIC
