"""Console sign-outs where every API process sees them: the record, its view and its store.

A console session lives in a sealed cookie (``cityhub.streams.console.session``); deleting the
cookie in the browser that signs out leaves any copy of it (a stolen cookie, a shared computer's
cookie jar, a proxy's log) valid until it expires. So a sign-out also writes the session's id to
the compacted topic ``<prefix>.console-signouts`` (one partition, key = the session id, value =
``{"expires_at": <Unix seconds>}``: nothing personal, no key, tenant or user), and every API
process follows that topic whole into a ``SignOutView``; a cookie whose session id the view holds
opens no session (``cityhub.streams.console.app``).

An entry is needed only until its session expires (a cookie past its expiry does not open
anyway): the view forgets it then, and the topic is ``compact,delete`` with a retention of the
longest session a setting allows plus a margin (``cityhub.streams.topic_admin``), so it never
grows without bound. A record the view cannot use is counted and skipped, never applied and
never raised; a tombstone is one of those (cityhub never writes one: deleting a sign-out would
bring a copied cookie back to life).
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from collections.abc import Callable
from typing import Protocol

from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field

from cityhub.streams.compacted import InMemoryTopic
from cityhub.streams.compacted_stores import InMemorySpecStore, SpecStore, TopicSpec, gauges
from cityhub.streams.compacted_view import CompactedView
from cityhub.streams.console.session import SESSION_ID_PATTERN
from cityhub.streams.service_errors import Unavailable

log = logging.getLogger("cityhub.console.signouts")

WRITE_ERRORS: tuple[type[Exception], ...] = (Unavailable, KafkaError, OSError)
"""What a failed sign-out write raises: Kafka did not confirm it in time (``Unavailable``), or
refused or lost it."""

SIGNED_OUT = Gauge(
    "cityhub_console_signed_out_sessions",
    "Signed-out console sessions this API process refuses (until each would have expired), "
    "counted at each sign-out record it reads.",
)
MALFORMED = Counter(
    "cityhub_console_signouts_malformed",
    "Console sign-out topic records skipped because they were malformed.",
)


class SignOut(BaseModel):
    """One signed-out session: its id (the record's key, not in its value) and its expiry."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    session_id: str = Field(exclude=True, pattern=SESSION_ID_PATTERN)
    expires_at: float = Field(gt=0, allow_inf_nan=False)
    """When the session would have expired (Unix seconds): the view forgets it then."""


def record_key(record: SignOut) -> str:
    """The topic's key of a sign-out: the session id."""
    return record.session_id


class MalformedSignOut(ValueError):
    """A record on the topic the view cannot use (logged and counted, never applied)."""


class SignOutView(CompactedView):
    """The signed-out sessions that have not expired yet, after applying the topic's records
    up to ``offset``. ``apply`` never raises on a bad record: it logs the offset, counts it and
    moves on. ``clock`` is the wall clock (the sessions' expiries are Unix times)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        # Neither the key nor the value in the log: a session id stays out of it.
        super().__init__(log, "console sign-out", key_chars=None)
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._by_expiry: list[tuple[float, str]] = []
        """(expiry, session id), a heap: the next to forget first."""

    def _apply(self, key: str, value: bytes | None) -> None:
        record = _parse(key, value)
        now = self._clock()
        self._forget_expired(now)
        if record.expires_at <= now:
            return  # its cookie no longer opens: nothing to refuse
        known = self._expiry.get(record.session_id)
        if known is None or known < record.expires_at:
            self._expiry[record.session_id] = record.expires_at
            heapq.heappush(self._by_expiry, (record.expires_at, record.session_id))

    def signed_out(self, session_id: str) -> bool:
        """Whether the session was signed out (and has not expired since)."""
        self._forget_expired(self._clock())
        return session_id in self._expiry

    def count(self) -> int:
        """The signed-out sessions held (forgetting the expired ones first)."""
        self._forget_expired(self._clock())
        return len(self._expiry)

    def _forget_expired(self, now: float) -> None:
        heap = self._by_expiry
        while heap and heap[0][0] <= now:
            expiry, session_id = heapq.heappop(heap)
            # A later record may have moved the expiry on; only the current one is forgotten.
            if self._expiry.get(session_id) == expiry:
                del self._expiry[session_id]


def _parse(key: str, value: bytes | None) -> SignOut:
    if value is None:
        raise MalformedSignOut("a tombstone (cityhub never deletes a sign-out)")
    doc = json.loads(value)
    if not isinstance(doc, dict) or "session_id" in doc:
        raise MalformedSignOut("not a sign-out record")
    return SignOut.model_validate({**doc, "session_id": key})


MAX_STALENESS_S = 5.0
"""How long ago the view may last have been caught up with its topic and still be trusted: its
tail polls every second, so longer means this process cannot read the topic (a sign-out made
in another process since would be missed)."""


class SignOutRecords(Protocol):
    """What the console needs of a sign-out store (Kafka's or the in-memory one)."""

    @property
    def ready(self) -> bool:
        """Whether the view holds every sign-out the topic held when the store started."""
        ...

    @property
    def caught_up_at(self) -> float:
        """When the view was last seen caught up with the topic (seconds since the epoch)."""
        ...

    @property
    def view(self) -> SignOutView: ...

    async def put(self, record: SignOut) -> int:
        """Write ``record``; return once Kafka confirmed it and the local view applied it."""
        ...


def current(records: SignOutRecords, now: float) -> bool:
    """Whether ``records`` can tell a signed-out session: ready, and caught up with its topic
    within ``MAX_STALENESS_S``."""
    return records.ready and now - records.caught_up_at <= MAX_STALENESS_S


SIGN_OUTS: TopicSpec[SignOutView, SignOut] = TopicSpec(
    topic=lambda topics: topics.console_signouts,
    new_view=SignOutView,
    key_of=record_key,
    what="console sign-outs",
    client_id="cityhub-console-signouts",
    on_applied=gauges(MALFORMED, (SIGNED_OUT, SignOutView.count)),
    describe=lambda view: f"{view.count()} signed-out session(s)",
)


class SignOutStore(SpecStore[SignOutView, SignOut]):
    """The console's sign-outs on Kafka: every API process follows the whole topic."""

    spec = SIGN_OUTS


class InMemorySignOutStore(InMemorySpecStore[SignOutView, SignOut]):
    """The same without Kafka, for tests: two stores on one ``InMemoryTopic`` are two API
    processes."""

    spec = SIGN_OUTS

    def __init__(
        self, *, topic: InMemoryTopic | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(view=SignOutView(clock), topic=topic)


__all__ = [
    "WRITE_ERRORS",
    "InMemorySignOutStore",
    "SignOut",
    "SignOutRecords",
    "SignOutStore",
    "SignOutView",
    "record_key",
]
