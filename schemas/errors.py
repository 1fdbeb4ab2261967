"""Errors of cityhub.

Every error that can hit a message carries a dead-letter reason, so that a worker can turn it
into a ``cityhub.deadletter`` record instead of crashing; ``retriable`` says whether trying the
same thing again may succeed (a broker hiccup) or never will (a malformed payload).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a message went to the dead-letter topic. The values are stable label values."""

    MALFORMED_JSON = "malformed_json"
    """The payload (or envelope) is not valid JSON or not valid UTF-8."""
    INVALID_ENVELOPE = "invalid_envelope"
    """The raw envelope on ``cityhub.raw`` does not match its schema."""
    UNKNOWN_FORMAT = "unknown_format"
    """No ingest format of that name is registered."""
    SCHEMA_MISMATCH = "schema_mismatch"
    """Valid JSON, but a required field is missing or has the wrong type."""
    UNDECODABLE_PAYLOAD = "undecodable_payload"
    """The binary LoRaWAN payload could not be decoded by the chosen decoder."""
    UNKNOWN_DECODER = "unknown_decoder"
    """The decoder named for a device is not registered."""
    NO_MEASUREMENTS = "no_measurements"
    """The message was well formed but carried nothing that could be measured."""
    UNKNOWN_DEVICE = "unknown_device"
    """No registered device has the message's DevEUI or device id."""
    INACTIVE_DEVICE = "inactive_device"
    """The device is registered but switched off (``active: false``)."""
    IDENTITY_MISMATCH = "identity_mismatch"
    """The identifiers a message carries disagree: with each other (a network server's topic and
    payload name different devices or applications) or with the registry (a registered device
    id with another DevEUI, an uplink from an application the device is not bound to)."""
    OVERSIZE = "oversize"
    """The message exceeds the configured maximum size, or a record made from it would exceed
    Kafka's record limit once encoded (``kafka.max_message_bytes``)."""
    KAFKA_REFUSED = "kafka_refused"
    """Kafka refused a record as invalid for what it is (too large for the topic's own limit,
    a timestamp outside the broker's bounds); the detail carries Kafka's error. Never a Kafka
    outage: those are retried."""
    INTERNAL_ERROR = "internal_error"
    """A bug: an unexpected exception while handling this message. Never crashes the worker."""
    DELIVERY_FAILED = "delivery_failed"
    """A subscription's sink kept failing (retries exhausted) or refused the batch for good;
    the batch is kept here and delivery moved on."""
    SUBJECT_KEY_MISSING = "subject_key_missing"
    """A device of a personal type is linked to a data subject whose data key the worker does
    not hold (an erasure under way): its values cannot be sealed and are never written in
    clear."""


class CityhubError(Exception):
    """Root of cityhub's errors."""

    retriable: bool = False


class MessageError(CityhubError):
    """A message that can never be processed as it is; it goes to the dead-letter topic."""

    reason: Reason = Reason.INTERNAL_ERROR

    def __init__(self, detail: str, *, reason: Reason | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if reason is not None:
            self.reason = reason


class NotAnUplink(CityhubError):
    """A network server's message that is no measurement: another event of the device (a join,
    a downlink's acknowledgement, a status), an uplink its console simulated, a frame with MAC
    commands only. It is passed by and counted by ``kind``, a value of ``IGNORED_KINDS`` (a
    Prometheus label: never a text from the message), and is no dead letter."""

    def __init__(self, kind: str) -> None:
        if kind not in IGNORED_KINDS:
            raise ValueError(f"unknown kind of ignored message {kind!r}")
        super().__init__(kind)
        self.kind = kind


IGNORED_KINDS = frozenset(
    {
        "join",
        "downlink",
        "status",
        "location",
        "log",
        "service",
        "integration",
        "simulated",
        "mac_only",
    }
)
"""Why a network server's message was passed by (``NotAnUplink.kind``)."""


class MalformedJSON(MessageError):
    reason = Reason.MALFORMED_JSON


class InvalidEnvelope(MessageError):
    reason = Reason.INVALID_ENVELOPE


class UnknownFormat(MessageError):
    reason = Reason.UNKNOWN_FORMAT


class SchemaMismatch(MessageError):
    reason = Reason.SCHEMA_MISMATCH


class InvalidTimestamp(SchemaMismatch, ValueError):
    """A time from outside that cityhub does not take (``cityhub.schemas.timefmt``): not RFC 3339
    with ASCII digits, not a date of the calendar, or an instant outside the accepted range.

    A ``SchemaMismatch`` (dead letter ``schema_mismatch``) and a ``ValueError``, so that callers
    that catch ValueError keep working. ``detail`` shows the value given (cut short) and what was
    expected; ``why`` says the same without the value, for answers that must not echo input."""

    def __init__(self, detail: str, *, why: str | None = None) -> None:
        super().__init__(detail)
        self.why = detail if why is None else why

    def at(self, path: str) -> InvalidTimestamp:
        """The same error with the field's path (``uplink_message.received_at``) in front."""
        return InvalidTimestamp(f"{path}: {self.detail}", why=self.why)


class UndecodablePayload(MessageError):
    reason = Reason.UNDECODABLE_PAYLOAD


class UnknownDecoder(MessageError):
    reason = Reason.UNKNOWN_DECODER


class NoMeasurements(MessageError):
    reason = Reason.NO_MEASUREMENTS


class UnknownDevice(MessageError):
    reason = Reason.UNKNOWN_DEVICE


class InactiveDevice(MessageError):
    reason = Reason.INACTIVE_DEVICE


class IdentityMismatch(MessageError):
    reason = Reason.IDENTITY_MISMATCH


class Oversize(MessageError):
    reason = Reason.OVERSIZE


class ConfigurationError(CityhubError):
    """Settings that cannot work; raised at start-up with what to change."""


class StackError(CityhubError):
    """The local Kafka or Mosquitto could not be installed, started or reached."""

    retriable = True


class SealingError(CityhubError):
    """A sealed personal value (``cityhub.streams.privacy.sealing``) could not be opened. The
    message never carries the token, a key or a value."""


class KeyErased(SealingError):
    """The data key a sealed value names is not there: its subject was erased (the key
    shredded), or it never existed. Final: the value can never be read again."""


class Unsealable(SealingError):
    """A sealed value that is not one: malformed, too large, tampered with, or sealed for
    another tenant, subject or event than the one it is read as."""
