"""aiokafka's log lines, held to one line of each kind every 10 s while Kafka is away.

While a broker is unreachable, aiokafka logs the same few errors ("Unable connect to node with
id %s: %s", "Unable to update cluster metadata", the fetcher's "NodeNotReady"...) for every
retry of every connection of every client: a 35 s outage under load wrote about 68 000 lines,
some 2 000 a second, in each process, burying everything else.

:class:`RepeatedLineFilter` lets the first line of each *kind* through, then at most one line of
that kind every ``interval`` seconds, which says how many were held back since the last one ("...
(and 1 234 more like it in the last 10 s)"). A kind is the record's logger name plus its
unformatted message template (``record.msg``), so different errors, and the same error from
another module, still show. ``cityhub_log_lines_suppressed_total{logger}`` counts every line held
back (``cityhub.streams.log_throttle``, which the aiohttp filter of
``cityhub.streams.http_refusals`` uses as well). Records of every other logger (cityhub's own,
aiohttp's) pass untouched, whatever their level, and so do aiokafka's CRITICAL ones.

aiokafka logs through a tree of loggers (``aiokafka``, ``aiokafka.conn``,
``aiokafka.consumer.fetcher``...), and a logger's filters do not see the records of its children,
so :func:`install` puts the filter on the root logger's handlers (those of
``cityhub.streams.logsetup``), where every record arrives. The filter changes no argument and
formats nothing: the summary is text without ``%`` added to the template, and the handler's
formatter escapes and bounds the message as for any other record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Counter

from cityhub.streams.log_throttle import LineThrottle

AIOKAFKA_LOGGER = "aiokafka"
INTERVAL_S = 10.0
MAX_KINDS = 512
"""Most kinds remembered at once. aiokafka's templates are literals in its code, so there are a
few dozen; a template built per call would be a new kind each time, so past this bound the
kinds whose interval is over are forgotten, and then a new kind shares its logger's."""

SUPPRESSED = Counter(
    "cityhub_log_lines_suppressed",
    "Log lines of a library (aiokafka) held back because the same kind of line (logger and "
    "message template) was written less than 10 s before, by logger.",
    ("logger",),
)


def _grouped(n: int) -> str:
    return f"{n:,}".replace(",", " ")


class RepeatedLineFilter(logging.Filter):
    """Holds back repeated aiokafka records (see the module docstring)."""

    def __init__(
        self,
        interval: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        *,
        prefix: str = AIOKAFKA_LOGGER,
        max_kinds: int = MAX_KINDS,
    ) -> None:
        super().__init__()
        self._throttle = LineThrottle(interval, clock, max_kinds=max_kinds)
        self._prefix = prefix
        self._child_prefix = prefix + "."
        # The same record reaches every handler of the root logger: each gets the same answer.
        self._last: logging.LogRecord | None = None
        self._last_answer = True

    def _governs(self, record: logging.LogRecord) -> bool:
        name = record.name
        return (
            name == self._prefix or name.startswith(self._child_prefix)
        ) and record.levelno < logging.CRITICAL

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._governs(record):
            return True
        if record is self._last:
            return self._last_answer
        answer = self._decide(record)
        self._last, self._last_answer = record, answer
        return answer

    def _decide(self, record: logging.LogRecord) -> bool:
        template = record.msg if isinstance(record.msg, str) else str(record.msg)
        admitted = self._throttle.admit((record.name, template), fallback=(record.name, None))
        if admitted is None:
            SUPPRESSED.labels(record.name).inc()
            return False
        if admitted.held:
            # Plain text without '%': the template still takes the record's own arguments.
            record.msg = (
                f"{template} (and {_grouped(admitted.held)} more like it in the last "
                f"{admitted.elapsed:.0f} s)"
            )
        return True


def install() -> None:
    """Put one :class:`RepeatedLineFilter` on every handler of the root logger (again: no
    change). Call it after ``cityhub.streams.logsetup.install``, which replaces them."""
    handlers = logging.getLogger().handlers
    existing = next(
        (f for h in handlers for f in h.filters if isinstance(f, RepeatedLineFilter)), None
    )
    shared = existing or RepeatedLineFilter()
    for handler in handlers:
        if shared not in handler.filters:
            handler.addFilter(shared)
