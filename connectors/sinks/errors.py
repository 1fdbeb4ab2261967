"""How a sink says that one delivery attempt failed, and whether trying again can help.

A sink (``WebhookSink.send``, ``MqttSink.publish``) makes one attempt per call and raises
:class:`DeliveryFailed` when it did not succeed. The delivery task decides what happens next:
``retriable`` False sends the batch to the dead letters at once (the same request would fail
again); True waits (``backoff.RetryPolicy.next_delay(..., retry_after=err.retry_after)``) and
tries again. ``kind`` is a stable, low-cardinality label for metrics and dead-letter details.

Messages are short, name the receiver only by its origin (``https://host:port``: a webhook
URL's path or query may carry the subscriber's own token) and hold at most
``EXCERPT_CHARS`` characters of a response body; a signing secret or broker password never
appears in them.
"""

from __future__ import annotations

from enum import StrEnum

from cityhub.schemas.errors import CityhubError

EXCERPT_CHARS = 200
"""The most characters of a receiver's response body (or reason phrase) quoted in a message."""


class FailureKind(StrEnum):
    """Why an attempt failed, as a metrics label. The values are stable."""

    TIMEOUT = "timeout"
    """No complete answer within the sink's total timeout. Retriable."""
    CONNECTION = "connection"
    """Connecting failed or the connection broke (refused, reset, TLS, broker gone). Retriable."""
    DNS = "dns"
    """The webhook's host name did not resolve. Retriable."""
    UNSAFE_URL = "unsafe_url"
    """The webhook URL is refused by the SSRF checks; no connection was made. Not retriable."""
    REDIRECT = "redirect"
    """The receiver answered 3xx; redirects are not followed. Not retriable."""
    HTTP_STATUS = "http_status"
    """The receiver answered 4xx or 5xx; ``status`` says which and ``retriable`` whether it is
    worth another attempt (408, 429 and 5xx are)."""
    GONE = "gone"
    """The receiver answered 410 Gone: it takes no deliveries at all, whatever is sent. Not the
    batch's fault, so nothing is dead-lettered: the delivery holds its place and asks again
    every backoff cap (``webhook_backoff_cap_seconds``) until the receiver takes deliveries
    again or the subscription is paused or deleted."""
    REFUSED = "refused"
    """The MQTT broker refused the connection or the message (a CONNACK or PUBACK reason code
    of 0x80 or more); retriable only for the broker's transient reasons."""
    INVALID = "invalid"
    """The message cannot be sent as it is (e.g. an MQTT topic with wildcards). Not retriable."""


class DeliveryFailed(CityhubError):
    """One delivery attempt failed.

    Attributes:
        retriable: False when the same request will fail again (a 4xx other than 408 and 429,
            a redirect, a URL refused by the SSRF checks, a broker refusal that is not
            transient); True for timeouts, connection and DNS failures, 408, 429 and 5xx.
        retry_after: seconds the receiver asked to wait (its ``Retry-After`` header, in
            delta-seconds or as an HTTP date), or None.
        status: the HTTP status, when there was a response; None otherwise.
        kind: the :class:`FailureKind`.
    """

    def __init__(
        self,
        message: str,
        *,
        retriable: bool,
        kind: FailureKind,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


def without_excerpt(failure: DeliveryFailed) -> DeliveryFailed:
    """The same failure, said without anything the receiver sent (its body may echo what it
    received): its kind and status only."""
    status = f" {failure.status}" if failure.status is not None else ""
    return DeliveryFailed(
        f"{failure.kind.value}{status} (the receiver's answer is not quoted: the batch held "
        "personal items)",
        retriable=failure.retriable,
        kind=failure.kind,
        status=failure.status,
        retry_after=failure.retry_after,
    )


def excerpt(raw: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """At most ``limit`` characters of ``raw`` for an error message: UTF-8 decoded with
    replacement characters, control characters and runs of white space folded into one space,
    and ``…`` appended when something was cut."""
    window = limit * 4  # no character takes more than 4 bytes: enough, and bounded work
    cut = len(raw) > window
    head = raw[:window]
    text = head.decode("utf-8", errors="replace") if isinstance(head, bytes) else head
    folded = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(folded) > limit:
        return folded[: limit - 1] + "…"
    return folded + "…" if cut else folded


class UnknownSinkKind(CityhubError, LookupError):
    """No delivery kind of that name is registered (a subscription record written by a hub
    that had a plugin this one lacks)."""


class UnknownEncoding(CityhubError, LookupError):
    """No body encoding of that name is registered (``cityhub.connectors.sinks.encodings``):
    a subscription names one this hub lacks (a plugin not installed here)."""
