"""Normalisation: a raw envelope in, canonical observations out. Pure: no broker, no clock.

The agent in ``cityhub.streams.normaliser.agent`` is a thin shell around
:func:`parse_envelope` (which finds the format and parses), :func:`resolve_device` (the device
registry's verdict), the duplicate filter, and :func:`observations_from_uplink` (which decodes
the payload with the device type's decoder, applies its field mappings and builds one
observation per measured quantity, with the device's location, area, tags and classification).

Duplicates are recognised per device identity (:func:`identity`: the DevEUI, else the device
id) by :func:`duplicate_key`: a LoRaWAN frame by its session's DevAddr and its frame counter, so
that the frames of a new session (a rejoin starts the counter at 0 again) are not taken for the
old session's; a plain MQTT message by the time its payload carries. Two records under one key
are copies only if :func:`frame_digest` (what the frame says) agrees.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Protocol

from cityhub.connectors.decoders import get_decoder
from cityhub.connectors.decoders.base import PayloadDecoder
from cityhub.connectors.formats import get_format
from cityhub.connectors.formats.base import IngestFormat, Measurement, Uplink
from cityhub.connectors.formats.jsondoc import shown
from cityhub.connectors.measurements import measurements_from_fields
from cityhub.connectors.record_size import record_size
from cityhub.schemas.deadletter import DeadLetter
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import (
    IdentityMismatch,
    InactiveDevice,
    InvalidEnvelope,
    InvalidTimestamp,
    MessageError,
    NoMeasurements,
    NotAnUplink,
    Oversize,
    UndecodablePayload,
    UnknownDevice,
)
from cityhub.schemas.observation import (
    Location,
    NetworkMeta,
    Observation,
    encode_uplink,
    event_id,
)
from cityhub.schemas.quantities import unit_of
from cityhub.schemas.registry import NETWORK_DECODER, DeviceType, NetworkBinding, NetworkServer
from cityhub.schemas.timefmt import parse_rfc3339, rfc3339_from_datetime
from cityhub.streams.normaliser.dedup import DeviceFrames, check_duplicate
from cityhub.streams.registry.view import DeviceEntry

DEFAULT_DECODER = "cayenne-lpp"
"""What decodes a raw LoRaWAN payload when the network server did not and no type says."""

QualityCheck = Callable[[list[Observation], DeviceType | None], None]
"""Sets the quality flags of one uplink's observations (all of one device, of that type)."""


class DeviceDirectory(Protocol):
    """The registry lookups normalisation needs (``RegistryView`` provides them)."""

    def device_by_eui(self, dev_eui: str) -> DeviceEntry | None: ...

    def device_by_id(self, device_id: str) -> DeviceEntry | None: ...

    def device_type(self, tenant: str, type_id: str) -> DeviceType | None: ...


@dataclass(frozen=True, slots=True)
class Registration:
    """A message's registered device and its type (None if the type was deleted under it)."""

    device: DeviceEntry
    device_type: DeviceType | None


def received_seconds(envelope: RawEnvelope) -> float:
    """The envelope's receive time in seconds since the epoch, inside the range of
    ``cityhub.schemas.timefmt`` (1970 up to 2100); raises InvalidEnvelope, with the value cut
    short, if it is not an RFC 3339 time in that range."""
    try:
        return parse_rfc3339(envelope.received_at).timestamp()
    except InvalidTimestamp as exc:
        raise InvalidEnvelope(f"raw envelope received_at {exc.detail}") from None


def raw_dead_letter(
    value: bytes,
    key: bytes | None,
    error: MessageError,
    *,
    stage: str,
    failed_at: str,
    max_payload_bytes: int,
    topic: str,
    partition: int,
    offset: int,
) -> DeadLetter:
    """The dead letter of a raw record that could not be normalised: the original payload (the
    whole record when it is no envelope), where it came from when the envelope says, and the
    record's place in Kafka. Only what holds goes in: an envelope's ``received_at`` that is no
    RFC 3339 time is left out (the detail says what was wrong)."""
    envelope: RawEnvelope | None = None
    with contextlib.suppress(MessageError):
        envelope = RawEnvelope.from_json(value)
    received_at = None
    if envelope is not None:
        with contextlib.suppress(InvalidTimestamp):
            received_at = rfc3339_from_datetime(parse_rfc3339(envelope.received_at))
    return DeadLetter.of(
        stage=stage,
        reason=error.reason,
        detail=error.detail,
        failed_at=failed_at,
        payload=envelope.payload if envelope else value,
        max_payload_bytes=max_payload_bytes,
        format=envelope.format if envelope else None,
        source_topic=envelope.topic if envelope else None,
        device=envelope.device if envelope else (key.decode(errors="replace") if key else None),
        received_at=received_at,
        kafka_topic=topic,
        kafka_partition=partition,
        kafka_offset=offset,
    )


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

    LoRaWAN: the session's DevAddr and the frame counter, ``f{dev_addr}:{f_cnt}`` (the same frame
    heard by several gateways or network servers, or delivered twice). A rejoined device has a
    new DevAddr and counts from 0 again: its frames are new, not the old session's. Without a
    DevAddr in the message, the frame counter alone, ``f{f_cnt}``. An ABP device keeps its
    DevAddr, so after a counter reset within the window its frames share their keys with the old
    ones: :func:`frame_digest` tells them apart. Plain MQTT: the time the payload itself carries
    (a redelivered message); a payload without a time of its own is never taken for a duplicate,
    since a sensor may send the same reading twice.
    """
    if uplink.f_cnt is not None:
        if uplink.dev_addr is not None:
            return f"f{uplink.dev_addr}:{uplink.f_cnt}"
        return f"f{uplink.f_cnt}"
    if uplink.observed_at is not None:
        return f"t{uplink.observed_at}"
    return None


def frame_digest(uplink: Uplink, payload: bytes) -> int | None:
    """What tells two frames under one :func:`duplicate_key` apart (``dedup.check_duplicate``):
    a CRC-32 of the LoRaWAN application payload, the same bytes through every gateway and
    network server; of a plain MQTT message's own bytes, which a redelivery repeats. None for a
    LoRaWAN message that carries only decoded fields: two network servers may word those
    differently, so such a copy matches any frame of its key, as before."""
    if uplink.frm_payload is not None:
        return zlib.crc32(uplink.frm_payload)
    if uplink.f_cnt is None:
        return zlib.crc32(payload)
    return None


def identity(uplink: Uplink) -> str:
    """The device identity that keys duplicates and event ids: the DevEUI where there is one,
    so that the duplicate filter recognises one frame heard through two network servers."""
    return uplink.dev_eui or uplink.device_id


def registered_device(uplink: Uplink, directory: DeviceDirectory) -> DeviceEntry | None:
    """The registered device whose identity the uplink carries, or None when it names none.

    The rule: a device found by the uplink's DevEUI is that device (a DevEUI is the LoRaWAN
    identity, unique across tenants). A device found only by the uplink's device id is that
    device only when its registered DevEUI is the uplink's: both absent (a plain MQTT sensor, an
    ABP device whose network server sends none), or both the same. A registered DevEUI and an
    uplink without one, or an uplink with a DevEUI the device does not have, raise
    ``IdentityMismatch``: a device id is a name anyone can write, so it must not let one
    device's messages be credited to another (of any tenant).
    """
    if uplink.dev_eui is not None:
        entry = directory.device_by_eui(uplink.dev_eui)
        if entry is not None:
            return entry
    entry = directory.device_by_id(uplink.device_id)
    if entry is None or entry.dev_eui == uplink.dev_eui:
        return entry
    carried = f"DevEUI {uplink.dev_eui}" if uplink.dev_eui else "no DevEUI"
    if entry.dev_eui is None:
        registered = "no DevEUI"
    else:
        registered = "another DevEUI" if uplink.dev_eui else "a DevEUI"
    raise IdentityMismatch(
        f"{uplink.network} uplink names device id {shown(uplink.device_id)} with {carried}, but "
        f"that device is registered with {registered}: refused, so that a device id cannot "
        "stand in for another device"
    )


def binding_mismatch(binding: NetworkBinding, uplink: Uplink) -> str | None:
    """Why ``uplink`` cannot be from a device bound to ``binding``, or None when it can: it must
    come through the bound server, from the bound application and (The Things Stack) the bound
    tenant, which is None for a single-tenant deployment, whose topics carry no ``@tenant``."""
    bound = binding.describe()
    if uplink.network != binding.server.value:
        return f"the device is bound to {bound}, the uplink came through {shown(uplink.network)}"
    if uplink.application != binding.application:
        return (
            f"the device is bound to {bound}, the uplink came from application "
            f"{shown(uplink.application)}"
        )
    if binding.server is NetworkServer.TTS and uplink.tenant != binding.tenant:
        tenant = "no tenant" if uplink.tenant is None else f"tenant {shown(uplink.tenant)}"
        return f"the device is bound to {bound}, the uplink came from {tenant}"
    return None


def resolve_device(
    uplink: Uplink, directory: DeviceDirectory, *, allow_unknown: bool
) -> Registration | None:
    """The registered device of an uplink (see :func:`registered_device` for the identity rule),
    checked against the device's network-server binding and its ``active`` flag.

    Raises ``IdentityMismatch`` when the uplink's identifiers disagree with the registry (also
    when ``allow_unknown``: such an uplink names a registered device, it is not unknown),
    ``UnknownDevice`` when no device is registered under its identifiers (or returns None when
    ``allow_unknown``), and ``InactiveDevice`` when the device is switched off."""
    entry = registered_device(uplink, directory)
    if entry is None:
        if allow_unknown:
            return None
        eui = f"DevEUI {uplink.dev_eui} or " if uplink.dev_eui else ""
        raise UnknownDevice(
            f"no registered device has {eui}id {shown(uplink.device_id)}: register it "
            "(`cityhub devices create` or POST /api/v1/tenants/{tenant}/devices), or let "
            "unknown devices through with CITYHUB_WORKER__ALLOW_UNKNOWN_DEVICES=true"
        )
    if entry.network is not None:
        why = binding_mismatch(entry.network, uplink)
        if why is not None:
            raise IdentityMismatch(f"device {entry.id!r} of tenant {entry.tenant!r}: {why}")
    if not entry.active:
        raise InactiveDevice(
            f"device {entry.id!r} of tenant {entry.tenant!r} is registered but inactive"
        )
    return Registration(entry, directory.device_type(entry.tenant, entry.type))


def measurements_of(
    uplink: Uplink,
    *,
    decoder: str = NETWORK_DECODER,
    decoders: Callable[[str], PayloadDecoder] = get_decoder,
) -> list[Measurement]:
    """What the uplink measured. Structured records (SenML) as they are. With ``decoder``
    ``network``: the network server's decoded fields, else the raw payload through Cayenne LPP.
    With a named decoder: the raw payload through it (the network server's fields only when the
    message has no raw payload). Raises ``NoMeasurements`` when nothing measurable is found, and
    ``UndecodablePayload`` for a payload still encrypted end to end without decoded fields (its
    bytes would decode to values nobody measured)."""
    if uplink.measurements:
        return list(uplink.measurements)
    if uplink.payload_encrypted:
        found = measurements_from_fields(uplink.decoded) if uplink.decoded else []
        if found:
            return found
        raise UndecodablePayload(
            f"{uplink.network} message from device {uplink.device_id!r}: the payload is "
            "encrypted end to end (it came with the wrapped application session key), so "
            "neither the network server nor cityhub can read it; give the network server the "
            "key, or decode it where the key is"
        )
    raw_decoder = DEFAULT_DECODER if decoder == NETWORK_DECODER else decoder
    prefer_decoded = decoder == NETWORK_DECODER or not uplink.frm_payload
    if prefer_decoded and uplink.decoded:
        found = measurements_from_fields(uplink.decoded)
        if found:
            return found
    if uplink.frm_payload:
        fields = decoders(raw_decoder).decode(uplink.frm_payload, uplink.f_port)
        found = measurements_from_fields(fields)
        if found:
            return found
    raise NoMeasurements(
        f"{uplink.network} message from device {uplink.device_id!r} carries no measurable "
        "value (no decoded fields, no payload, or only non-numeric fields)"
    )


def apply_field_mappings(
    measurements: list[Measurement], device_type: DeviceType
) -> list[Measurement]:
    """Apply a device type's field mappings: the mapped quantity and unit, ``value * scale +
    offset`` for numbers; unmapped fields stay as the catalogue named them, or are dropped when
    the type keeps ``only_mapped``. A value that scaling takes beyond the range of a float
    (``1e308 * 1000``) is dropped, as measurements drop infinities. Raises ``NoMeasurements``
    if nothing is left."""
    if not device_type.fields and not device_type.only_mapped:
        return measurements
    mappings = {f.field: f for f in device_type.fields}
    out: list[Measurement] = []
    overflowed: list[str] = []
    for m in measurements:
        mapping = mappings.get(m.field)
        if mapping is None:
            if not device_type.only_mapped:
                out.append(m)
            continue
        value = m.value
        scaled = mapping.scale != 1.0 or mapping.offset != 0.0
        if scaled and isinstance(value, int | float) and not isinstance(value, bool):
            value = value * mapping.scale + mapping.offset
            if not math.isfinite(value):
                overflowed.append(m.field)
                continue
        unit = mapping.unit or unit_of(mapping.quantity) or m.unit
        out.append(Measurement(m.field, mapping.quantity, value, unit, m.observed_at))
    if not out:
        fields = [shown(x.field) for x in measurements[:20]]
        if overflowed:
            why = "every mapped value was beyond the range of a number once scaled"
        else:
            why = "none of them is mapped by the type, which keeps only mapped fields"
        raise NoMeasurements(
            f"nothing measurable in fields {', '.join(fields)} of device type "
            f"{device_type.id!r}: {why}"
        )
    return out


def observations_from_uplink(
    uplink: Uplink,
    envelope: RawEnvelope,
    registration: Registration | None = None,
    *,
    decoders: Callable[[str], PayloadDecoder] = get_decoder,
) -> list[Observation]:
    """One canonical observation per measured quantity, with deterministic event ids; with a
    registration, decoded and mapped as its type says and enriched with the device's location,
    area, tags and classification. Without one the device is marked unregistered."""
    device_type = registration.device_type if registration else None
    decoder = device_type.decoder if device_type else NETWORK_DECODER
    measurements = measurements_of(uplink, decoder=decoder, decoders=decoders)
    if device_type is not None:
        measurements = apply_field_mappings(measurements, device_type)
    device = registration.device if registration else None
    location = (
        Location(device.latitude, device.longitude, device.altitude)
        if device is not None and device.latitude is not None and device.longitude is not None
        else None
    )
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
                device_id=device.id if device else uplink.device_id,
                dev_eui=uplink.dev_eui,
                quantity=m.quantity,
                field=m.field,
                value=m.value,
                unit=m.unit,
                observed_at=m.observed_at or observed_at,
                received_at=envelope.received_at,
                format=envelope.format,
                network=network,
                tenant=device.tenant if device else None,
                device_type=device.type if device else None,
                location=location,
                area=device.area if device else None,
                tags=device.tags if device else (),
                classification=device_type.classification.value if device_type else None,
                registered=device is not None,
            )
        )
    return observations


@dataclass(frozen=True, slots=True)
class Normalised:
    """What one raw envelope became (:func:`normalise_envelope`)."""

    received: float
    """The envelope's receive time, seconds since the epoch."""
    network: str
    """The uplink's network (``tts``, ``chirpstack``, ``mqtt``)."""
    duplicate: bool
    """Another record already brought this uplink: nothing to write."""
    ignored: str | None = None
    """The kind of a network server's message that is no measurement (``NotAnUplink``): a join,
    a downlink's event, a simulated uplink...; nothing to write."""
    observations: tuple[tuple[Observation, bytes, bytes], ...] = ()
    """Each observation with its JSON and its Kafka key (the device id), in order."""
    remembered: str | None = None
    """The device whose duplicate frames changed (its state must be stored), if any."""


def normalise_envelope(
    envelope: RawEnvelope,
    *,
    offset: int,
    directory: DeviceDirectory,
    frames: MutableMapping[str, DeviceFrames],
    window: float,
    allow_unknown: bool,
    max_record_bytes: int | None = None,
    header_allowance: int = 0,
    quality: QualityCheck | None = None,
) -> Normalised:
    """The whole normalisation of one raw envelope read at ``offset``, in order: parse it with
    its format, find its registered device (the identity rules of :func:`resolve_device`),
    drop it if another record brought the same uplink within ``window`` seconds (``frames``,
    the duplicate state of the envelope's input partition, keyed by :func:`identity`), and build
    its canonical observations, each flagged by ``quality`` (never dropped for it) and encoded.

    Raises a ``MessageError`` saying why when the envelope cannot be normalised, ``Oversize``
    included when an observation's record (key, JSON and ``header_allowance``) would exceed
    ``max_record_bytes``. ``frames`` changes only when observations were made: a copy that
    cannot be decoded (raw bytes for an unknown decoder) must not stop a decodable copy
    through another network server. Pure otherwise: no clock (the envelope's receive time is
    the dedup clock), no I/O."""
    received = received_seconds(envelope)
    try:
        uplink = parse_envelope(envelope, received)
    except NotAnUplink as passed_by:
        network = envelope.format.split("-", 1)[0]
        return Normalised(received, network, duplicate=False, ignored=passed_by.kind)
    registration = resolve_device(uplink, directory, allow_unknown=allow_unknown)
    frame = duplicate_key(uplink)
    device = identity(uplink)
    state: DeviceFrames | None = None
    if frame is not None:
        duplicate, state = check_duplicate(
            frames.get(device),
            frame,
            now=received,
            offset=offset,
            window=window,
            digest=frame_digest(uplink, envelope.payload),
        )
        if duplicate:
            return Normalised(received, uplink.network, duplicate=True)
    encoded = []
    observations = observations_from_uplink(uplink, envelope, registration)
    if quality is not None and observations:
        quality(observations, registration.device_type if registration else None)
    for observation, doc in zip(observations, encode_uplink(observations), strict=True):
        key = observation.device_id.encode()
        size = record_size(key, doc) + header_allowance
        if max_record_bytes is not None and size > max_record_bytes:
            raise Oversize(
                f"the observation of field {shown(observation.field)} would take {size} bytes "
                f"once encoded, more than Kafka's record limit of {max_record_bytes} bytes "
                "(CITYHUB_KAFKA__MAX_MESSAGE_BYTES)"
            )
        encoded.append((observation, doc, key))
    if state is not None:
        frames[device] = state
    return Normalised(
        received,
        uplink.network,
        duplicate=False,
        observations=tuple(encoded),
        remembered=device if state is not None else None,
    )
