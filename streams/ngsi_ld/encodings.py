"""The registry's part in the NGSI-LD body encodings: which Smart Data Model a device is shown
as is its type's, so a process that delivers and keeps the registry hands the encodings its
view's lookup (``cityhub.connectors.ngsi_ld.encoding``)."""

from __future__ import annotations

from typing import Protocol

from cityhub.connectors.ngsi_ld.encoding import NgsiLdEncodingBase
from cityhub.connectors.sinks.encodings import UnknownEncoding, get_encoding
from cityhub.schemas.registry import DeviceType
from cityhub.streams.registry.view import RegistryView

NGSI_LD_ENCODINGS = ("ngsi-ld", "ngsi-ld-upsert")


class HasRegistryView(Protocol):
    """A registry store: its ``view`` is the registry as last read."""

    @property
    def view(self) -> RegistryView: ...


class _ViewLookup:
    """``device_type(tenant, type id)`` on the view the store holds at the time of the call."""

    def __init__(self, store: HasRegistryView) -> None:
        self._store = store

    def __call__(self, tenant: str, type_id: str) -> DeviceType | None:
        return self._store.view.device_type(tenant, type_id)


def use_registry(store: HasRegistryView) -> None:
    """Make the registered NGSI-LD encodings name each device's model by its type in
    ``store``'s view (a ``RegistryStore``)."""
    for name in NGSI_LD_ENCODINGS:
        try:
            encoding = get_encoding(name)
        except UnknownEncoding:
            continue
        if isinstance(encoding, NgsiLdEncodingBase):
            encoding.use_device_types(_ViewLookup(store))
