"""W3C Trace Context (level 1) ``traceparent`` values, as cityhub carries them in a Kafka header.

The bridge starts a new trace for every raw record it writes (``TraceparentPool``), each stage
that acts on the record continues it (``SpanPool.child_of``, or ``child`` on a parsed context:
same trace, a new span) in the header of what it writes, and a processing-log record names the
trace and span it belongs to (Logboek Dataverwerkingen asks for W3C trace context). The hops and
their spans: ``docs/logging.md``.

The header is ``version "-" trace-id "-" parent-id "-" trace-flags`` in lower-case hex
(https://www.w3.org/TR/trace-context/#traceparent-header). ``parse_traceparent`` follows the
specification's rules for a receiver:

- version ``00``: exactly 55 characters; trace-id 32 and parent-id 16 lower-case hex digits, not
  all zero; flags 2 lower-case hex digits (only the ``sampled`` bit, 0x01, is read);
- a later version (``01`` to ``fe``): parsed by its first four fields, which must have the
  version-00 shape; what follows them, if anything, must start with ``-`` and is ignored;
- version ``ff``, upper-case hex, a wrong length, a missing dash, non-ASCII bytes, ``None``:
  not a trace context (``None``), so the receiver starts a new trace. It never raises.

Pure: ``os.urandom`` is the only call outside the module (ids must be unpredictable and
unique, which the standard asks for, and a CSPRNG gives both without state).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

TRACEPARENT: Final = "traceparent"
"""The header name (W3C, and cityhub's Kafka header)."""

VERSION: Final = "00"
"""The version cityhub writes."""
SAMPLED: Final = 0x01
"""The ``sampled`` bit of trace-flags. cityhub sets it on every trace it starts: the processing
log must not be sampled (Logboek Dataverwerkingen), so every trace is recorded."""

TRACE_ID_HEX: Final = 32
SPAN_ID_HEX: Final = 16
HEADER_LENGTH: Final = 55
"""Length of a version-00 value: 2 + 1 + 32 + 1 + 16 + 1 + 2."""
MAX_HEADER_LENGTH: Final = 512
"""Longer values are refused unread: a later version may add fields, but nothing legitimate
needs more than this, and a hostile header should cost nothing."""

_HEX_LOWER: Final = frozenset("0123456789abcdef")
_ZERO_TRACE: Final = "0" * TRACE_ID_HEX
_ZERO_SPAN: Final = "0" * SPAN_ID_HEX
_ID_BYTES: Final = (TRACE_ID_HEX + SPAN_ID_HEX) // 2


@dataclass(frozen=True, slots=True)
class TraceContext:
    """One position in a trace: the trace, the span (an action in it) and whether it is sampled.

    ``trace_id`` is 32 and ``span_id`` 16 lower-case hex digits, neither all zero; construct one
    through ``new_trace``, ``child`` or ``parse_traceparent``, which guarantee that."""

    trace_id: str
    span_id: str
    sampled: bool

    def header(self) -> bytes:
        """The ``traceparent`` value for this context, version 00 (55 ASCII bytes)."""
        flags = "01" if self.sampled else "00"
        return f"{VERSION}-{self.trace_id}-{self.span_id}-{flags}".encode("ascii")


def _is_hex_lower(value: str) -> bool:
    return all(ch in _HEX_LOWER for ch in value)


def parse_traceparent(value: bytes | str | None) -> TraceContext | None:
    """The trace context in a ``traceparent`` value, or ``None`` if it is not a valid one by the
    rules of W3C Trace Context level 1 (see the module docstring). Never raises."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        if len(value) > MAX_HEADER_LENGTH:
            return None
        try:
            text = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    elif isinstance(value, str):
        text = value
    else:  # a caller outside the types (a header value of another kind): not a context
        return None  # type: ignore[unreachable]
    if len(text) < HEADER_LENGTH or len(text) > MAX_HEADER_LENGTH:
        return None
    version = text[0:2]
    if not _is_hex_lower(version) or version == "ff":
        return None
    if version == VERSION and len(text) != HEADER_LENGTH:
        return None
    if len(text) > HEADER_LENGTH and text[HEADER_LENGTH] != "-":
        return None
    if text[2] != "-" or text[35] != "-" or text[52] != "-":
        return None
    trace_id, span_id, flags = text[3:35], text[36:52], text[53:55]
    if not (_is_hex_lower(trace_id) and _is_hex_lower(span_id) and _is_hex_lower(flags)):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, sampled=bool(int(flags, 16) & SAMPLED))


def _span_ids(random: bytes) -> list[str]:
    """Non-zero span ids from ``random`` (8 bytes each); an all-zero draw (chance 2**-64) is
    replaced by a fresh one, since the standard forbids it."""
    ids = []
    for start in range(0, len(random), 8):
        span = random[start : start + 8].hex()
        while span == _ZERO_SPAN:
            span = os.urandom(8).hex()
        ids.append(span)
    return ids


def new_traces(count: int) -> list[TraceContext]:
    """``count`` new, sampled traces (each with its first span), from one ``os.urandom`` call:
    the bridge starts one per raw record and writes records in batches."""
    if count <= 0:
        return []
    random = os.urandom(_ID_BYTES * count)
    traces = []
    for start in range(0, len(random), _ID_BYTES):
        trace_id = random[start : start + 16].hex()
        while trace_id == _ZERO_TRACE:
            trace_id = os.urandom(16).hex()
        (span_id,) = _span_ids(random[start + 16 : start + _ID_BYTES])
        traces.append(TraceContext(trace_id, span_id, sampled=True))
    return traces


def new_traceparents(count: int) -> list[bytes]:
    """``count`` ``traceparent`` values of new, sampled traces, from one ``os.urandom`` call and
    without a ``TraceContext`` each: the bridge's hot path, one per raw record."""
    if count <= 0:
        return []
    digits = os.urandom(_ID_BYTES * count).hex().encode("ascii")
    width = _ID_BYTES * 2
    values = []
    for start in range(0, len(digits), width):
        trace_id = digits[start : start + TRACE_ID_HEX]
        span_id = digits[start + TRACE_ID_HEX : start + width]
        if trace_id.strip(b"0") and span_id.strip(b"0"):
            values.append(b"00-" + trace_id + b"-" + span_id + b"-01")
        else:  # an all-zero id (chance 2**-64 or less) is invalid: draw that one again
            values.append(new_trace().header())
    return values


class TraceparentPool:
    """Hands out ``traceparent`` values of new, sampled traces, drawing the randomness for
    ``batch`` of them at a time (one system call per batch instead of one per record)."""

    __slots__ = ("_batch", "_values")

    def __init__(self, batch: int = 256) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._batch = batch
        self._values: list[bytes] = []

    def next(self) -> bytes:
        """A new trace's ``traceparent`` value (version 00, sampled), never handed out before."""
        if not self._values:
            self._values = new_traceparents(self._batch)
        return self._values.pop()


def new_trace() -> TraceContext:
    """A new, sampled trace with its first span."""
    return new_traces(1)[0]


def child(ctx: TraceContext) -> TraceContext:
    """The next action in ``ctx``'s trace: the same trace id and sampling, a new span id (the
    caller records ``ctx.span_id`` as the new span's parent)."""
    (span_id,) = _span_ids(os.urandom(8))
    return TraceContext(ctx.trace_id, span_id, ctx.sampled)


_HEX_DIGITS: Final = b"0123456789abcdef"
_ZERO_TRACE_BYTES: Final = _ZERO_TRACE.encode("ascii")
_ZERO_SPAN_BYTES: Final = _ZERO_SPAN.encode("ascii")


def _is_plain_v00(value: bytes) -> bool:
    """Whether ``value`` is a valid version-00 ``traceparent`` (what cityhub writes), checked
    at C speed: 55 bytes, ``00-``, lower-case hex with exactly three dashes, at 2, 35 and 52,
    and a trace id that is not all zero (the parent's span id is not looked at: a child
    replaces it)."""
    return (
        len(value) == HEADER_LENGTH
        and value.startswith(b"00-")
        and value[35] == 0x2D
        and value[52] == 0x2D
        and value.translate(None, _HEX_DIGITS) == b"---"
        and value[3:35] != _ZERO_TRACE_BYTES
    )


class SpanPool:
    """Makes ``traceparent`` values of child spans (the next hop of a record's trace), drawing
    the random span ids ``batch`` at a time: the normaliser makes one per observation, more
    than 10 000 a second, so neither a system call nor a parse per value.

    ``child_of(parent)`` continues ``parent``'s trace; when ``parent`` is missing or not a
    valid ``traceparent`` (a record another producer wrote), it starts a new trace instead, as
    the standard tells a receiver to."""

    __slots__ = ("_batch", "_spans", "_traces")

    def __init__(self, batch: int = 256) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._batch = batch
        self._spans: list[bytes] = []
        self._traces = TraceparentPool(batch)

    def span_id(self) -> bytes:
        """A new span id: 16 lower-case hex digits (ASCII), not all zero."""
        if not self._spans:
            digits = os.urandom(8 * self._batch).hex().encode("ascii")
            self._spans = [
                span
                for span in (digits[i : i + SPAN_ID_HEX] for i in range(0, len(digits), 16))
                if span != _ZERO_SPAN_BYTES
            ] or [_span_ids(os.urandom(8))[0].encode("ascii")]
        return self._spans.pop()

    def child_of(self, parent: bytes | None) -> bytes:
        """A version-00 ``traceparent``: ``parent``'s trace id and sampled flag, a new span id;
        a new sampled trace when ``parent`` is None or not a valid ``traceparent``."""
        if parent is not None and _is_plain_v00(parent):
            return parent[:36] + self.span_id() + parent[52:]
        ctx = parse_traceparent(parent)  # a later version, or not a trace context at all
        if ctx is None:
            return self._traces.next()
        flags = b"-01" if ctx.sampled else b"-00"
        return b"00-" + ctx.trace_id.encode("ascii") + b"-" + self.span_id() + flags

    def child_of_own(self, parent: bytes) -> bytes:
        """``child_of`` for a ``parent`` this pool made (valid by construction, so not checked
        again): the routing's span of each copy of an observation, several per uplink."""
        return parent[:36] + self.span_id() + parent[52:]

    def new_trace(self) -> bytes:
        """A new, sampled trace's ``traceparent`` (a record that continues no other)."""
        return self._traces.next()


def traceparent_in(headers: Iterable[tuple[str, bytes]] | None) -> bytes | None:
    """The value of the first ``traceparent`` header of a Kafka record's ``headers``, unparsed
    (None when there is none)."""
    if headers:
        for name, value in headers:
            if name == TRACEPARENT:
                return value
    return None
