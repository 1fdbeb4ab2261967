"""The message a piece of code is handling now, for the log lines it writes about it.

A stage that handles one record (or one batch, named by its first record) enters
:func:`about_message` with the record's ``traceparent``; every log line written inside, by any
logger, in the same task or thread, names the message's trace, span and device:
``cityhub.streams.logsetup``'s formatter reads :func:`current` and adds ``trace_id``,
``span_id`` and ``device`` (JSON), or `` trace=<trace id>`` (text). Log lines written outside
name no message, so a line with a trace id is always about that message and nothing else.

The context is a ``contextvars.ContextVar``: asyncio tasks started inside inherit it, and
concurrent tasks (two subscriptions' deliveries) never see each other's.

Pure: ``contextvars`` and the trace-context parser, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from cityhub.schemas.trace_context import TraceContext, parse_traceparent


@dataclass(frozen=True, slots=True)
class MessageContext:
    """The message a log line is about: its trace and span, and its device where known."""

    trace: TraceContext
    device: str | None = None

    @property
    def trace_id(self) -> str:
        return self.trace.trace_id

    @property
    def span_id(self) -> str:
        return self.trace.span_id


_CURRENT: ContextVar[MessageContext | None] = ContextVar("cityhub_message", default=None)


def current() -> MessageContext | None:
    """The message being handled here (this task or thread), or None."""
    return _CURRENT.get()


@contextmanager
def about_message(
    traceparent: bytes | str | TraceContext | None, device: str | None = None
) -> Iterator[MessageContext | None]:
    """Within the block, log lines are about the message of ``traceparent`` (a header value or
    a parsed context) and ``device``. A missing or invalid ``traceparent`` names no trace: the
    block's lines then carry nothing (an id that does not lead anywhere would mislead).
    Yields the context set (None when there is none); the previous one is restored after."""
    trace = traceparent if isinstance(traceparent, TraceContext) else parse_traceparent(traceparent)
    context = None if trace is None else MessageContext(trace, device)
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)
