"""What the views of the compacted topics share: the offset, the counts and the skipped record.

A view (``cityhub.streams.compacted.View``) applies its topic's records in offset order and
never raises on a bad record: it logs it, counts it in ``malformed`` and moves on, so that one
bad record cannot stop every instance from starting. ``CompactedView`` holds that once: a view
writes ``_apply`` (raise ``ValueError`` or ``TypeError`` for a record it cannot use: pydantic's
``ValidationError`` is one) and the lookups it offers. The log line names the offset, the key
(cut to ``key_chars``, or left out where it names a person) and the reason
(``cityhub.streams.malformed``), never the value.

Some views keep a shape of their own: the registry's and the device-health view (``malformed``
a plain attribute, ``KeyError`` a skipped record too), the open data's (it counts ignored
windows apart and logs nothing), the consents' (a count per rejection reason) and the subject
keys' (a skipped record is still held, for the erasure to tombstone; a sealing error is named
by its type).

Pure: no I/O.
"""

from __future__ import annotations

import logging
import sys
from abc import ABC, abstractmethod
from typing import ClassVar, Final

from cityhub.streams.malformed import malformed_reason

KEY_CHARS: Final = 200
"""How much of a skipped record's key the log line shows, by default."""
WHOLE_KEY: Final = sys.maxsize
"""``key_chars`` for a view whose keys are short by construction: the whole key."""


class CompactedView(ABC):
    """The offset, the counts and the handling of a bad record, for a view that ``_apply``s.

    ``log`` and ``what`` word the warning of a skipped record (``skipping malformed <what> at
    offset 7 (key 'a/b'): 2 invalid field(s)``); ``key_chars`` None leaves the key out of it.
    """

    SKIPPED: ClassVar[tuple[type[Exception], ...]] = (ValueError, TypeError)
    """What ``_apply`` raises for a record the view cannot use."""

    def __init__(self, log: logging.Logger, what: str, *, key_chars: int | None = KEY_CHARS):
        self._log = log
        self._what = what
        self._key_chars = key_chars
        self._offset = -1
        self._malformed = 0
        self.applied = 0
        """Records applied (tombstones and malformed records included)."""

    @property
    def offset(self) -> int:
        """The offset of the last record applied; -1 before the first."""
        return self._offset

    @property
    def malformed(self) -> int:
        """Records that could not be used."""
        return self._malformed

    def apply(self, key: str, value: bytes | None, offset: int) -> None:
        """Apply one record (``value`` None: a tombstone for ``key``). Never raises."""
        self._offset = offset
        self.applied += 1
        try:
            self._apply(key, value)
        except self.SKIPPED as exc:
            self._skip(offset, key, malformed_reason(exc))

    @abstractmethod
    def _apply(self, key: str, value: bytes | None) -> None:
        """Apply one record; ``ValueError`` or ``TypeError`` if the view cannot use it."""

    def _skip(self, offset: int, key: str, reason: str) -> None:
        self._malformed += 1
        if self._key_chars is None:
            self._log.warning("skipping malformed %s at offset %d: %s", self._what, offset, reason)
        else:
            self._log.warning(
                "skipping malformed %s at offset %d (key %r): %s",
                self._what,
                offset,
                key[: self._key_chars],
                reason,
            )


__all__ = ["KEY_CHARS", "WHOLE_KEY", "CompactedView"]
