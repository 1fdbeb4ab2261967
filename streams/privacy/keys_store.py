"""Where the data subjects' keys live: the compacted ``<prefix>.subject-keys`` topic, through
the generic store (``streams/compacted.py``), wrapped with the key-encryption key (KEK).

``SubjectKeyStore`` tails the topic into a ``SubjectKeyView``; ``InMemorySubjectKeyStore`` is
its double. Both offer ``ensure`` (a subject's current key, made first if it has none: called
before a device is linked to the subject) and ``shred`` (a tombstone for every key of the
subject: crypto-shredding, the heart of erasure).

The KEK comes from ``privacy.key_encryption_key`` or the file ``privacy.key_encryption_key_file``
(by default ``<stack.state_dir>/key-encryption-key``, which ``cityhub stack up`` makes); a
process that needs it and has none refuses to start (``load_kek``). It never reaches a log, a
response or an exception's message.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from prometheus_client import Counter, Gauge

from cityhub.schemas.errors import ConfigurationError
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.compacted import DEFAULT_WRITE_TIMEOUT, InMemoryTopic
from cityhub.streams.compacted_stores import InMemorySpecStore, SpecStore, TopicSpec, gauges
from cityhub.streams.privacy.keys_view import (
    SubjectKeyRecord,
    SubjectKeyView,
    record_key,
)
from cityhub.streams.privacy.sealing import SubjectKey, decode_kek, new_subject_key, wrap

log = logging.getLogger("cityhub.privacy.keys")

KEK_FILE_NAME = "key-encryption-key"
"""The file in the stack's state dir that ``cityhub stack up`` makes and the default finds."""
MAX_KEK_FILE_BYTES = 4096

KEYS = Gauge("cityhub_subject_keys", "Data subjects' keys in this process's view.")
MALFORMED = Counter(
    "cityhub_subject_keys_malformed",
    "Subject-key topic records skipped: malformed, or not unwrapped by this KEK.",
)


def kek_file(settings: Settings) -> Path:
    """Where the KEK file is looked for: the setting, else the local stack's own."""
    configured = settings.privacy.key_encryption_key_file
    if configured is not None:
        return Path(configured).expanduser()
    return Path(settings.stack.state_dir).expanduser() / KEK_FILE_NAME


def load_kek(settings: Settings) -> bytes:
    """The key-encryption key: ``privacy.key_encryption_key``, else the KEK file's content.
    ``ConfigurationError`` saying what to set when there is none or it is not base64 of 32
    bytes; the message never holds the key. A file others may read is used, with a warning."""
    given = settings.privacy.key_encryption_key
    if given is not None:
        if settings.privacy.key_encryption_key_file is not None:
            raise ConfigurationError(
                "set CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY or "
                "CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY_FILE, not both"
            )
        return decode_kek(given.get_secret_value())
    path = kek_file(settings)
    try:
        with path.open("rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            text = file.read(MAX_KEK_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigurationError(
            f"no key-encryption key: set CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY (base64 of 32 random "
            f"bytes) or CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY_FILE, or run `cityhub stack up`, "
            f"which makes one at {path}"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the key-encryption key file {path}: {exc.strerror}"
        ) from None
    if len(text) > MAX_KEK_FILE_BYTES:
        raise ConfigurationError(f"{path} is not a key-encryption key (too long)")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the key-encryption key file %s may be read by others; chmod 600 it", path)
    try:
        return decode_kek(text.decode("ascii"))
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path} is not a key-encryption key (not base64)") from None
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from None


def write_kek_file(path: Path) -> bool:
    """Make a KEK file at ``path`` (mode 0600, 32 random bytes in base64) unless one exists;
    whether it made one. Never overwrites: a new KEK would make every stored key unusable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as file:
        file.write(base64.b64encode(os.urandom(32)) + b"\n")
    return True


def ensure_local_kek(settings: Settings) -> Path | None:
    """For the local stack: make the KEK file where the default looks for it
    (``<stack.state_dir>/key-encryption-key``) when no KEK is configured and none is there;
    the path made, None when nothing was to be made."""
    privacy = settings.privacy
    if privacy.key_encryption_key is not None or privacy.key_encryption_key_file is not None:
        return None
    path = kek_file(settings)
    return path if write_kek_file(path) else None


class SubjectKeyStoreLike(Protocol):
    """What ``ensure_key`` and ``shred_keys`` need from a store (either one below)."""

    @property
    def view(self) -> SubjectKeyView: ...

    async def put(self, record: SubjectKeyRecord) -> int: ...

    async def delete(self, key: str) -> int: ...


async def ensure_key(
    store: SubjectKeyStoreLike,
    kek: bytes,
    clock: Callable[[], float],
    tenant: str,
    subject: str,
) -> SubjectKey:
    """The subject's current key in ``store``, made (and written, wrapped with ``kek``) first if
    it has none; returns once the store's view shows it."""
    key = store.view.current(tenant, subject)
    if key is not None:
        return key
    made = new_subject_key(tenant, subject)
    record = SubjectKeyRecord(
        tenant=tenant,
        subject=subject,
        key_id=made.key_id,
        wrapped_key=base64.b64encode(wrap(kek, made.secret)).decode("ascii"),
        created_at=rfc3339(clock()),
    )
    await store.put(record)
    current = store.view.current(tenant, subject)
    # None only if an erasure tombstoned the key between the write and now: ours is still good
    # for this one caller, and gone for everyone after.
    return made if current is None else current


async def shred_keys(store: SubjectKeyStoreLike, tenant: str, subject: str) -> int:
    """A tombstone for every key record of the subject in ``store`` (those this KEK cannot
    unwrap too); how many, once the store's view applied them."""
    record_keys = store.view.record_keys_of(tenant, subject)
    for key in record_keys:
        await store.delete(key)
    return len(record_keys)


def _view_needs_the_kek() -> SubjectKeyView:
    raise TypeError("a subject-key store makes its view with its KEK")


KEYS_TOPIC: TopicSpec[SubjectKeyView, SubjectKeyRecord] = TopicSpec(
    topic=lambda topics: topics.subject_keys,
    new_view=_view_needs_the_kek,
    key_of=record_key,
    what="subject keys",
    client_id="cityhub-subject-keys",
    on_applied=gauges(MALFORMED, (KEYS, SubjectKeyView.count)),
    describe=lambda view: f"{view.count()} key(s), {view.malformed} unusable",
)


class _HoldsTheKek(SubjectKeyStoreLike, Protocol):
    _kek: bytes
    _clock: Callable[[], float]


class _KeyOperations:
    """``ensure`` and ``shred`` of a store that holds the KEK (either store below)."""

    async def ensure(self: _HoldsTheKek, tenant: str, subject: str) -> SubjectKey:
        """The subject's current key, made first if it has none; returns once the local view
        shows it. Two processes that race may both make one: both keys stay usable by id until
        shredded, and ``current`` settles on the same one everywhere."""
        return await ensure_key(self, self._kek, self._clock, tenant, subject)

    async def shred(self: _HoldsTheKek, tenant: str, subject: str) -> int:
        """A tombstone for every key record of the subject (those this KEK cannot unwrap too);
        returns how many, once the local view applied them. From then on no token sealed with
        those keys opens in any process that follows the topic."""
        return await shred_keys(self, tenant, subject)


class SubjectKeyStore(_KeyOperations, SpecStore[SubjectKeyView, SubjectKeyRecord]):
    """The keys on Kafka. Raises ``ConfigurationError`` when made without a KEK."""

    spec = KEYS_TOPIC

    def __init__(
        self,
        settings: Settings,
        *,
        kek: bytes | None = None,
        client_id: str | None = None,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kek = load_kek(settings) if kek is None else decode_kek_bytes(kek)
        self._clock = clock
        super().__init__(
            settings,
            view=SubjectKeyView(self._kek),
            client_id=client_id,
            write_timeout=write_timeout,
        )


class InMemorySubjectKeyStore(_KeyOperations, InMemorySpecStore[SubjectKeyView, SubjectKeyRecord]):
    """The same without Kafka, for tests; a random KEK unless one is given (stores that share
    a ``topic`` must share the KEK too, as processes do)."""

    spec = KEYS_TOPIC

    def __init__(
        self,
        *,
        kek: bytes | None = None,
        topic: InMemoryTopic | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kek = os.urandom(32) if kek is None else decode_kek_bytes(kek)
        self._clock = clock
        super().__init__(view=SubjectKeyView(self._kek), topic=topic)


def decode_kek_bytes(kek: bytes) -> bytes:
    """``kek`` if it is 32 bytes; ConfigurationError otherwise."""
    if len(kek) != 32:
        raise ConfigurationError("the key-encryption key must be 32 bytes")
    return kek


__all__ = [
    "KEK_FILE_NAME",
    "InMemorySubjectKeyStore",
    "SubjectKeyStore",
    "SubjectKeyStoreLike",
    "ensure_key",
    "ensure_local_kek",
    "kek_file",
    "load_kek",
    "shred_keys",
    "write_kek_file",
]
