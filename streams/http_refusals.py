"""aiohttp's log line about a request it could not parse, without the request's own text.

aiohttp answers an HTTP request it cannot parse (a header line too long, a control character in
a header value, a space before a header's colon, a bad request line) with a 400 and logs "Error
handling request" at ERROR, with the parser's exception and its traceback. That exception's
message quotes the offending line: an ``Authorization: Bearer chk_...`` header, a session
cookie. Anyone can send such a request, as often as they like, so the log would both keep
secrets and fill with tracebacks.

:class:`MalformedRequestFilter`, on the ``aiohttp.server`` logger (:func:`install`), turns each
such record into one WARNING line naming the client's address and the kind of fault (the
exception's class), never its text; counts every one in
``cityhub_http_malformed_requests_total{kind}``; and lets at most one line through every
``interval`` seconds, the next one saying how many were left out meanwhile. Records about
anything else (a handler's own exception, a 500) pass unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import Counter

from cityhub.streams.log_throttle import LineThrottle

AIOHTTP_SERVER_LOGGER = "aiohttp.server"
INTERVAL_S = 10.0

MALFORMED_REQUESTS = Counter(
    "cityhub_http_malformed_requests",
    "HTTP requests refused before any handler because they could not be parsed, by kind "
    "(the parser's exception class: BadHttpMessage, LineTooLong, InvalidHeader...).",
    ("kind",),
)


class MalformedRequestFilter(logging.Filter):
    """Rewrites aiohttp's records about unparsable requests (see the module docstring)."""

    def __init__(
        self, interval: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._throttle = LineThrottle(interval, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        kind = type(exc).__name__
        MALFORMED_REQUESTS.labels(kind).inc()
        admitted = self._throttle.admit(AIOHTTP_SERVER_LOGGER)
        if admitted is None:
            return False
        args = record.args if isinstance(record.args, tuple) else ()
        remote = args[0] if args else None
        left_out = admitted.held
        record.msg = "refused an HTTP request that could not be parsed, from %s: %s (HTTP %s)%s"
        record.args = (
            str(remote),
            kind,
            exc.code,
            f"; {left_out} more since the last such line" if left_out else "",
        )
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.WARNING
        record.levelname = logging.getLevelName(logging.WARNING)
        return True


def install() -> None:
    """Put one :class:`MalformedRequestFilter` on aiohttp's server logger (again: no change)."""
    logger = logging.getLogger(AIOHTTP_SERVER_LOGGER)
    if not any(isinstance(f, MalformedRequestFilter) for f in logger.filters):
        logger.addFilter(MalformedRequestFilter())
