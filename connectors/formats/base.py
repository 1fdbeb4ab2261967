"""What an ingest format is: the contract between the MQTT bridge, the normaliser and a format.

A format does two things, both pure: the bridge asks it for a message's partition key (cheap,
never raises: a device's messages must stay in order even when they are malformed), and the
normaliser asks it to parse the payload into a format-neutral ``Uplink``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from cityhub.schemas.observation import Gateway, Value

MAX_GATEWAYS = 16
"""Gateways kept per uplink: every observation of the uplink carries them, so a message
listing thousands would multiply into every record (the fuzzer found tens of MB from one)."""
MAX_GATEWAYS_READ = 256
"""Gateway entries read per uplink: the strongest are chosen among the first this many (a dense
network hears a device on tens; reading 5 000 entries cost 17 ms a message)."""
MAX_GATEWAY_ID_LENGTH = 128
"""Longer gateway ids (TTS allows 36 characters, EUIs are 16 hex digits) are not kept."""


def strongest_gateways(gateways: Iterable[Gateway]) -> tuple[Gateway, ...]:
    """At most ``MAX_GATEWAYS`` of ``gateways``, the strongest first (highest RSSI, those
    without one last; equal ones in the order given), without ids longer than
    ``MAX_GATEWAY_ID_LENGTH``."""
    usable = [g for g in gateways if len(g.id) <= MAX_GATEWAY_ID_LENGTH]
    if len(usable) <= 1:
        return tuple(usable)
    usable.sort(key=lambda g: -g.rssi if g.rssi is not None else float("inf"))
    return tuple(usable[:MAX_GATEWAYS])


MAX_MEASUREMENTS: Final = 512
"""Values taken from one message at most, whatever its format."""
MAX_FIELD_NAME_LENGTH: Final = 128
"""The longest field name (it becomes the quantity that aggregates, filters and topics carry),
as a device type's field mapping names a field (``FieldMapping.field``)."""
MAX_UNIT_LENGTH: Final = 32
"""The longest unit a message may give its value."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One value a message carried, before it becomes an Observation."""

    field: str
    """The field as the message named it (``temperature_1``, a SenML name, ``pm2_5``)."""
    quantity: str
    """Canonical quantity from the catalogue, or the field itself when it is not catalogued."""
    value: Value
    unit: str | None
    observed_at: str | None = None
    """Its own time (SenML records carry one each); None: the uplink's time."""


@dataclass(frozen=True, slots=True)
class Uplink:
    """A parsed message, whatever network server or sensor format it came from."""

    network: str
    """``tts``, ``chirpstack`` or ``mqtt``."""
    device_id: str
    dev_eui: str | None = None
    """Lower-case hex, 16 digits, when the message is a LoRaWAN uplink."""
    dev_addr: str | None = None
    """The LoRaWAN session's device address, lower-case hex, 8 digits, when the network server
    names it: a rejoin (OTAA) gives a new one, and the frame counter starts again at 0."""
    application: str | None = None
    tenant: str | None = None
    f_cnt: int | None = None
    f_port: int | None = None
    observed_at: str | None = None
    """RFC 3339 UTC from the network server or the payload; None: use the receive time."""
    gateways: tuple[Gateway, ...] = ()
    decoded: Mapping[str, Any] | None = None
    """Fields the network server (or a JSON sensor) already decoded."""
    frm_payload: bytes | None = None
    """The LoRaWAN application payload, whenever the message carries it."""
    measurements: tuple[Measurement, ...] = ()
    """Already-structured values (SenML records)."""
    payload_encrypted: bool = False
    """The network server forwarded ``frm_payload`` still encrypted (end-to-end encryption: it
    came with the wrapped application session key), so no decoder may read its bytes."""


@runtime_checkable
class IngestFormat(Protocol):
    """A message format the bridge can take in. Register one in ``cityhub.connectors.formats``."""

    name: str

    def partition_key(self, topic: str, payload: bytes) -> str:
        """The device identity to key the raw record by. Cheap; never raises."""
        ...

    def parse(self, topic: str, payload: bytes, received_at: float) -> Uplink:
        """Parse one message; raise a ``MessageError`` subclass saying what is wrong.

        ``received_at`` (seconds since the epoch) resolves times that a format gives relative
        to now, such as SenML's relative ``t``.
        """
        ...
