"""The last dead letters of each tenant, bounded, and who may see what of them. Pure: no I/O.

The reader (``reader.py``) hands every dead-letter record to ``DeadLetterView.add``, which
parses it (never raising: a malformed record is counted), attributes it to a tenant by the
device it names (``attribute``) and keeps it in that tenant's ring of the last ``per_tenant``
letters; letters of no registered device go to the ring of unattributed letters, which only
admins see. One tenant's flood of dead letters therefore never pushes another's out.

Each kept letter holds at most ``preview_bytes`` of the original payload (the record itself
holds up to the bridge's payload limit), shown as text when it is UTF-8 without control
characters and as hex otherwise (``preview``). Memory: about ``per_tenant`` times (``preview_bytes``
+ 3 KiB) per tenant with dead letters.

Who sees what (``visible``, ``payload_visible``):
- an admin key sees every letter, including those of unknown devices;
- an operator key sees the letters of its own tenant's devices and of its tenant's
  subscriptions' deliveries, never another's;
- a subscriber key sees the letters of its tenant's subscriptions' deliveries only;
- a delivery's letter is its subscription's tenant's (the subscriber's concern, not the device's
  owner's); under a sharing agreement the device is another tenant's, and then the payload (the
  provider's data) shows to admins only: what was shared is read through the subscription, while
  the agreement lasts;
- the payload of a letter of a device whose type is ``personal`` is shown to nobody: the raw
  payload holds a resident's values in clear (docs/privacy.md, "What is erased, where, how
  fast"), and showing them is a use of personal data that no processing activity declares (a
  dead letter names none), so it could not be logged in the processing log under a purpose. Its
  size and digest are shown; the operator finds the fault from the reason and detail.
"""

from __future__ import annotations

import base64
import json
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from cityhub.schemas.registry import Classification, Role
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.view import DeviceEntry, RegistryView

DEFAULT_PER_TENANT = 200
DEFAULT_PREVIEW_BYTES = 4096
MAX_FIELD_CHARS = 2048
"""Every string taken from a record is cut to this (the writers cut theirs already)."""

DELIVER = "deliver"
"""The stage of a delivery's letters (``cityhub.streams.delivery.dead_letters.STAGE``)."""
_EUI = re.compile(r"^[0-9A-Fa-f]{16}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
UNATTRIBUTED = ""
"""The ring of letters that name no registered device (admins only)."""


@dataclass(frozen=True, slots=True)
class Attribution:
    """Whose letter it is: the tenant (None: nobody's), the registered device (None: none)."""

    tenant: str | None
    device_id: str | None


def attribute(device: str | None, registry: RegistryView) -> Attribution:
    """The tenant and device a dead letter's ``device`` names: a device id, a DevEUI (the
    bridge keys by either), a record key ``device/<id>`` or ``area/<tenant>/<area>`` (the
    worker's and the delivery's letters). Unknown or absent: nobody's."""
    if not device:
        return Attribution(None, None)
    name = device
    if name.startswith("area/"):
        tenant = name.split("/", 2)[1]
        return Attribution(tenant, None) if registry.tenant(tenant) is not None else _NOBODY
    name = name.removeprefix("device/")
    entry: DeviceEntry | None = registry.device_by_id(name)
    if entry is None and _EUI.match(name):
        entry = registry.device_by_eui(name.lower())
    if entry is None:
        return _NOBODY
    return Attribution(entry.tenant, entry.id)


_NOBODY = Attribution(None, None)


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter as the console keeps it."""

    id: str
    """``<partition>-<offset>`` of the record on the dead-letter topic."""
    tenant: str | None
    device_id: str | None
    """The registered device it concerns (None: none is)."""
    device: str | None
    """What the letter names, as it names it (an id, a DevEUI, a key)."""
    stage: str
    reason: str
    detail: str
    failed_at: str
    size: int
    sha256: str
    truncated: bool
    preview: bytes
    """The first bytes of the original payload."""
    format: str | None = None
    source_topic: str | None = None
    kafka_topic: str | None = None
    target_topic: str | None = None
    kafka_partition: int | None = None
    kafka_offset: int | None = None
    """Where the failed record sits in ``kafka_topic`` (a subscription replays from there)."""
    subscription: str | None = None
    """The subscription whose delivery gave up on it (a ``deliver`` letter), of ``tenant``."""
    foreign: bool = False
    """The letter is ``tenant``'s (its subscription's) but its device another tenant's, of a type
    that is not public (its data were shared under an agreement)."""

    @property
    def preview_cut(self) -> bool:
        """Whether the preview is less than the original payload."""
        return self.truncated or len(self.preview) < self.size


def _text(doc: dict[str, object], name: str) -> str | None:
    value = doc.get(name)
    return value[:MAX_FIELD_CHARS] if isinstance(value, str) else None


def subscription_of_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """``(tenant, subscription id)`` of a topic ``cityhub.schemas.subscription.
    subscription_topic`` makes (``<prefix>.sub.<tenant>.<id>``; ids have no dot); None for any
    other topic."""
    head = f"{prefix}.sub."
    if not topic.startswith(head):
        return None
    tenant, dot, subscription_id = topic[len(head) :].rpartition(".")
    return (tenant, subscription_id) if dot and tenant and subscription_id else None


def _offset(doc: dict[str, object], name: str) -> int | None:
    value = doc.get(name)
    return value if type(value) is int and 0 <= value < 2**63 else None


def parse_letter(
    value: bytes,
    *,
    partition: int,
    offset: int,
    registry: RegistryView,
    preview_bytes: int,
    topic_prefix: str = "cityhub",
) -> Letter | None:
    """The letter of one record of the dead-letter topic; None when it is not one. A
    delivery's letter (stage ``deliver``, read from a subscription's topic of ``topic_prefix``)
    is its subscription's tenant's."""
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    reason, stage, failed_at = _text(doc, "reason"), _text(doc, "stage"), _text(doc, "failed_at")
    if reason is None or stage is None or failed_at is None:
        return None
    payload = doc.get("payload")
    raw = b""
    if isinstance(payload, str):
        if doc.get("payload_encoding") == "base64":
            # Only what the preview needs: 4 characters per 3 bytes.
            chunk = payload[: (preview_bytes // 3 + 1) * 4]
            try:
                raw = base64.b64decode(chunk, validate=True)
            except ValueError:
                raw = b""
        else:
            raw = payload[:preview_bytes].encode("utf-8", errors="replace")
    size = doc.get("size")
    device = _text(doc, "device")
    who = attribute(device, registry)
    kafka_topic = _text(doc, "kafka_topic")
    subscription, foreign = None, False
    of = subscription_of_topic(topic_prefix, kafka_topic or "") if stage == DELIVER else None
    if of is not None and registry.tenant(of[0]) is not None:
        subscription = of[1]
        if who.tenant != of[0]:
            # Another tenant's device: shared under an agreement, unless its data are public
            # (every tenant may subscribe to those without one).
            foreign = who.tenant is not None and (
                who.device_id is None or not _public(who.device_id, registry)
            )
            who = Attribution(of[0], None)
    return Letter(
        id=f"{partition}-{offset}",
        tenant=who.tenant,
        device_id=who.device_id,
        device=device,
        stage=stage,
        reason=reason,
        detail=_text(doc, "detail") or "",
        failed_at=failed_at,
        size=size if isinstance(size, int) and size >= 0 else len(raw),
        sha256=_text(doc, "sha256") or "",
        truncated=doc.get("truncated") is True,
        preview=raw[:preview_bytes],
        format=_text(doc, "format"),
        source_topic=_text(doc, "source_topic"),
        kafka_topic=kafka_topic,
        target_topic=_text(doc, "target_topic"),
        kafka_partition=_offset(doc, "kafka_partition"),
        kafka_offset=_offset(doc, "kafka_offset"),
        subscription=subscription,
        foreign=foreign,
    )


def preview(data: bytes) -> tuple[str, str]:
    """``("text", text)`` when ``data`` is UTF-8 without control characters (a character cut at
    the end is dropped), else ``("hex", lines of 16 bytes in hex)``. Plain text either way: the
    page escapes it and never renders it as HTML."""
    for cut in range(4):
        try:
            text = data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not _CONTROL.search(text):
            return "text", text
        break
    lines = (data[i : i + 16].hex(" ") for i in range(0, len(data), 16))
    return "hex", "\n".join(lines)


def visible(who: Principal, letter: Letter) -> bool:
    """Whether ``who`` may see ``letter`` at all."""
    if who.role is Role.ADMIN:
        return True
    if letter.tenant is None or letter.tenant != who.tenant:
        return False
    return who.role is Role.OPERATOR or letter.subscription is not None


def payload_visible(who: Principal, letter: Letter, personal: bool) -> bool:
    """Whether ``who`` may see the letter's payload; ``personal``: its device's type is (then
    nobody may: no declared purpose covers reading it). Another tenant's device's (a delivery
    under an agreement): admins only."""
    if not visible(who, letter) or personal:
        return False
    return not letter.foreign or who.role is Role.ADMIN


def is_personal(letter: Letter, registry: RegistryView) -> bool:
    """Whether the letter's device is of a ``personal`` type now. A letter of an unknown
    device is not: nothing says it is (its payload shows to admins only)."""
    return letter.device_id is not None and device_is_personal(letter.device_id, registry)


def _public(device_id: str, registry: RegistryView) -> bool:
    """Whether the registered device ``device_id`` is of a ``public`` type now."""
    entry = registry.device_by_id(device_id)
    kind = registry.device_type(entry.tenant, entry.type) if entry is not None else None
    return kind is not None and kind.classification is Classification.PUBLIC


def device_is_personal(device_id: str, registry: RegistryView) -> bool:
    """Whether the registered device ``device_id`` is of a ``personal`` type now."""
    entry = registry.device_by_id(device_id)
    if entry is None:
        return False
    kind = registry.device_type(entry.tenant, entry.type)
    return kind is not None and kind.classification is Classification.PERSONAL


class DeadLetterView:
    """The last ``per_tenant`` dead letters of each tenant, and of no tenant."""

    def __init__(
        self,
        registry: RegistryView,
        *,
        per_tenant: int = DEFAULT_PER_TENANT,
        preview_bytes: int = DEFAULT_PREVIEW_BYTES,
        topic_prefix: str = "cityhub",
    ) -> None:
        self._registry = registry
        self._topic_prefix = topic_prefix
        self.per_tenant = per_tenant
        self.preview_bytes = preview_bytes
        self._rings: dict[str, deque[Letter]] = {}
        self.malformed = 0
        self.seen = 0

    def add(self, value: bytes | None, *, partition: int, offset: int) -> None:
        """Keep one record of the dead-letter topic. Never raises."""
        self.seen += 1
        letter = (
            parse_letter(
                value,
                partition=partition,
                offset=offset,
                registry=self._registry,
                preview_bytes=self.preview_bytes,
                topic_prefix=self._topic_prefix,
            )
            if value
            else None
        )
        if letter is None:
            self.malformed += 1
            return
        ring = self._rings.get(letter.tenant or UNATTRIBUTED)
        if ring is None:
            ring = self._rings[letter.tenant or UNATTRIBUTED] = deque(maxlen=self.per_tenant)
        ring.append(letter)

    def _candidates(self, who: Principal) -> Iterator[Letter]:
        if who.role is Role.ADMIN:
            for ring in self._rings.values():
                yield from ring
        else:  # an operator's or a subscriber's (``visible`` decides which of them)
            yield from self._rings.get(who.tenant, ())

    def letters(
        self, who: Principal, *, reason: str | None = None, tenant: str | None = None
    ) -> list[Letter]:
        """What ``who`` may see, newest first (by failure time), optionally of one reason and
        (for an admin) one tenant (``""``: of no tenant)."""
        out = [
            letter
            for letter in self._candidates(who)
            if visible(who, letter)
            and (reason is None or letter.reason == reason)
            and (tenant is None or (letter.tenant or UNATTRIBUTED) == tenant)
        ]
        out.sort(key=lambda letter: letter.failed_at, reverse=True)
        return out

    def reasons(self, who: Principal) -> dict[str, int]:
        """How many letters ``who`` may see, by reason."""
        counts: dict[str, int] = {}
        for letter in self._candidates(who):
            if visible(who, letter):
                counts[letter.reason] = counts.get(letter.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def get(self, who: Principal, letter_id: str) -> Letter | None:
        """One letter ``who`` may see; None for any other (another tenant's letter is as
        absent as one that never was)."""
        for letter in self._candidates(who):
            if letter.id == letter_id and visible(who, letter):
                return letter
        return None

    def personal(self, letter: Letter) -> bool:
        return is_personal(letter, self._registry)


__all__ = [
    "DEFAULT_PER_TENANT",
    "DEFAULT_PREVIEW_BYTES",
    "DELIVER",
    "Attribution",
    "DeadLetterView",
    "Letter",
    "attribute",
    "is_personal",
    "parse_letter",
    "payload_visible",
    "preview",
    "subscription_of_topic",
    "visible",
]
