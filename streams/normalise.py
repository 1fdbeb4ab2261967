"""Normalisation: a raw envelope in, canonical observations out. Pure: no broker, no clock.

The faust agent in ``cityhub.streams.agents.normaliser`` is a thin shell around
:func:`parse_envelope` (which finds the format and parses), the duplicate filter, and
:func:`observations_from_uplink` (which decodes the payload and builds one observation per
measured quantity).
"""

from __future__ import annotations

from collections.abc import Callable

from cityhub.connectors.decoders import get_decoder
from cityhub.connectors.decoders.base import PayloadDecoder
from cityhub.connectors.formats import get_format
from cityhub.connectors.formats.base import IngestFormat, Measurement, Uplink
from cityhub.connectors.measurements import measurements_from_fields
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import InvalidEnvelope, NoMeasurements
from cityhub.schemas.observation import NetworkMeta, Observation, event_id
from cityhub.schemas.timefmt import parse_rfc3339

DEFAULT_DECODER = "cayenne-lpp"


def received_seconds(envelope: RawEnvelope) -> float:
    """The envelope's receive time in seconds since the epoch; raises InvalidEnvelope if it is
    not an RFC 3339 time."""
    try:
        return parse_rfc3339(envelope.received_at).timestamp()
    except ValueError:
        raise InvalidEnvelope(
            f"raw envelope received_at {envelope.received_at!r} is not an RFC 3339 time"
        ) from None


def parse_envelope(
    envelope: RawEnvelope,
    received: float,
    *,
    formats: Callable[[str], IngestFormat] = get_format,
) -> Uplink:
    """Parse the envelope's payload with its format (``received`` from
    :func:`received_seconds`); raises a ``MessageError`` saying why not."""
    return formats(envelope.format).parse(envelope.topic, envelope.payload, received)


def duplicate_key(uplink: Uplink) -> str | None:
    """What makes two uplinks of one device the same uplink, or None when nothing does.

    LoRaWAN: the frame counter (the same frame heard by several gateways or network servers).
    Plain MQTT: the time the payload itself carries (a redelivered message); a payload without a
    time of its own is never taken for a duplicate, since a sensor may send the same reading twice.
    """
    if uplink.f_cnt is not None:
        return f"f{uplink.f_cnt}"
    if uplink.observed_at is not None:
        return f"t{uplink.observed_at}"
    return None


def identity(uplink: Uplink) -> str:
    """The device identity that keys duplicates and event ids: the DevEUI where there is one,
    so that one frame heard through two network servers is recognised as one."""
    return uplink.dev_eui or uplink.device_id


def measurements_of(
    uplink: Uplink,
    *,
    decoder: str = DEFAULT_DECODER,
    decoders: Callable[[str], PayloadDecoder] = get_decoder,
) -> list[Measurement]:
    """What the uplink measured: its structured records, the network server's decoded fields,
    or the binary payload decoded with ``decoder``. Raises ``NoMeasurements`` when none."""
    if uplink.measurements:
        return list(uplink.measurements)
    if uplink.decoded:
        found = measurements_from_fields(uplink.decoded)
        if found:
            return found
    if uplink.frm_payload:
        found = measurements_from_fields(
            decoders(decoder).decode(uplink.frm_payload, uplink.f_port)
        )
        if found:
            return found
    raise NoMeasurements(
        f"{uplink.network} message from device {uplink.device_id!r} carries no measurable "
        "value (no decoded fields, no payload, or only non-numeric fields)"
    )


def observations_from_uplink(
    uplink: Uplink,
    envelope: RawEnvelope,
    *,
    decoder: str = DEFAULT_DECODER,
    decoders: Callable[[str], PayloadDecoder] = get_decoder,
) -> list[Observation]:
    """One canonical observation per measured quantity, with deterministic event ids."""
    measurements = measurements_of(uplink, decoder=decoder, decoders=decoders)
    observed_at = uplink.observed_at or envelope.received_at
    who = identity(uplink)
    frame = f"{uplink.f_cnt if uplink.f_cnt is not None else '-'}@{observed_at}"
    network = NetworkMeta(
        name=uplink.network,
        application=uplink.application,
        tenant=uplink.tenant,
        f_cnt=uplink.f_cnt,
        f_port=uplink.f_port,
        gateways=uplink.gateways,
    )
    observations = []
    for m in measurements:
        field_id = m.field if m.observed_at is None else f"{m.field}@{m.observed_at}"
        observations.append(
            Observation(
                event_id=event_id(who, frame, field_id),
                device_id=uplink.device_id,
                dev_eui=uplink.dev_eui,
                quantity=m.quantity,
                field=m.field,
                value=m.value,
                unit=m.unit,
                observed_at=m.observed_at or observed_at,
                received_at=envelope.received_at,
                format=envelope.format,
                network=network,
            )
        )
    return observations
