"""The normaliser's side of personal data: seal it, mark it, and route it only where its
purpose allows (issue 10, points 3 and 7).

An observation of a device whose type is classified ``personal``:

- is *sealed* when the device is linked to a data subject: ``value``, ``location`` and
  ``extra`` are encrypted under the subject's current data key (``cityhub.streams.privacy
  .sealing``) into ``sealed``, the fields themselves become ``null``/``{}``, and
  ``data_subject`` names the subject. Every topic the hub writes then holds only ciphertext of
  it, and an erasure (the key shredded) makes every copy unreadable. A device without a subject
  is not sealed: there is nobody whose key could be shredded.
- carries the ``cityhub-privacy`` header (``PersonalMark``: tenant, subject, category), so that a
  delivery can check it without decoding it;
- goes to a subscription's topic only when the privacy gate admits it there.

A linked subject whose key the worker's view does not hold (the key is written before the link,
so this is an erasure under way or a view that lags) cannot be sealed: the uplink is
dead-lettered (``subject_key_missing``), never written in clear.

Pure apart from the random nonces sealing draws: the views are read, never written.
"""

from __future__ import annotations

from typing import Protocol

import orjson

from cityhub.schemas.errors import MessageError, Oversize, Reason, SealingError
from cityhub.schemas.observation import Observation
from cityhub.schemas.registry import Classification, DeviceType
from cityhub.streams.privacy.gate import KeyLookup
from cityhub.streams.privacy.purpose import PersonalMark
from cityhub.streams.privacy.sealing import seal
from cityhub.streams.registry.view import DeviceEntry

SEALED_FIELDS = ("value", "location", "extra")


class SubjectKeyMissing(MessageError):
    """The device's data subject has no key in this worker's view: the item cannot be sealed."""

    reason = Reason.SUBJECT_KEY_MISSING


class PersonalDirectory(Protocol):
    """The registry lookups sealing needs (``RegistryView`` provides them)."""

    def device_by_id(self, device_id: str) -> DeviceEntry | None: ...

    def device_type(self, tenant: str, type_id: str) -> DeviceType | None: ...


class KeyDirectory(PersonalDirectory, Protocol):
    """And by DevEUI, as the bridge keys a raw record."""

    def device_by_eui(self, dev_eui: str) -> DeviceEntry | None: ...


def withheld_detail(detail: str) -> str:
    """A dead letter's detail for a personal device's message: what was wrong and where,
    without the value it quotes (every quoted value starts with a quote: ``repr``), which is
    the resident's (a review found a name and an address in one)."""
    cut = min((i for i in (detail.find("'"), detail.find('"')) if i >= 0), default=-1)
    if cut < 0:
        return detail
    return f"{detail[:cut].rstrip()} (the value is withheld: a personal device's message)"


def keyed_by_personal_device(directory: KeyDirectory, key: bytes | None) -> bool:
    """Whether a raw record's key (the bridge's partition key: a DevEUI or a device id) names
    a registered device of a ``personal`` type. Its dead letters then carry no payload: whatever
    was wrong with the message (the device switched off by an erasure, a time out of range),
    the payload holds a resident's readings in clear."""
    if not key:
        return False
    name = key.decode(errors="replace")
    entry = directory.device_by_id(name)
    if entry is None and len(name) == 16:
        entry = directory.device_by_eui(name.lower())
    if entry is None:
        return False
    device_type = directory.device_type(entry.tenant, entry.type)
    return device_type is not None and device_type.classification is Classification.PERSONAL


def category_of(directory: PersonalDirectory, tenant: str, type_id: str | None) -> str:
    """The personal-data category of a device type (its declared one, else its id)."""
    device_type = directory.device_type(tenant, type_id) if type_id is not None else None
    if device_type is not None:
        return device_type.data_category
    return type_id or "unknown"


class PersonalSealer:
    """Seals and marks personal observations for one worker."""

    def __init__(self, directory: PersonalDirectory, keys: KeyLookup) -> None:
        self._directory = directory
        self._keys = keys

    def prepare(self, observation: Observation, doc: bytes) -> tuple[bytes, PersonalMark]:
        """The JSON to write for personal ``observation`` (encoded as ``doc``) and its mark.
        Raises ``SubjectKeyMissing`` when it must be sealed and cannot be."""
        tenant = observation.tenant or ""
        entry = self._directory.device_by_id(observation.device_id)
        subject = entry.data_subject if entry is not None and entry.tenant == tenant else None
        mark = PersonalMark(
            tenant, subject, category_of(self._directory, tenant, observation.device_type)
        )
        if subject is None:
            return doc, mark
        key = self._keys.current(tenant, subject)
        if key is None:
            raise SubjectKeyMissing(
                f"device {observation.device_id!r} is linked to a data subject whose key this "
                "worker does not hold (an erasure under way, or a view that lags): not written "
                "in clear"
            )
        fields = orjson.loads(doc)
        try:
            sealed = seal(
                key,
                {name: fields.get(name) for name in SEALED_FIELDS},
                event_id=observation.event_id,
            )
        except SealingError as exc:  # too large to seal: a dead letter, never a crash
            raise Oversize(str(exc)) from None
        fields.update(value=None, location=None, extra={}, data_subject=subject, sealed=sealed)
        return orjson.dumps(fields), mark
