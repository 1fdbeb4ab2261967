"""Why a session with the MQTT broker failed, as a bounded metric label and a sentence that says
what to look at: an untrusted certificate, a refused login and a broker that is down need
different fixes, and ``[SSL: CERTIFICATE_VERIFY_FAILED]`` alone does not say which file or name
was checked.

No I/O: ``ssl`` is imported for its exception classes only.
"""

from __future__ import annotations

import ssl
from typing import Final, Literal

from cityhub.connectors.mqtt.packets import reason_name
from cityhub.connectors.mqtt.session import MqttConnectionLost, MqttConnectRefused
from cityhub.schemas.settings import MqttSettings

FailureReason = Literal[
    "tls_untrusted",
    "tls",
    "login_refused",
    "refused",
    "unreachable",
    "timeout",
    "lost",
    "kafka",
    "other",
]
"""The ``reason`` label of ``cityhub_bridge_session_failures_total``: a closed set."""

LOGIN_REFUSALS: Final = frozenset({4, 5, 0x86, 0x87})
"""CONNACK codes of a refused login: MQTT 3.1.1's bad credentials (4) and not authorised (5),
MQTT 5's Bad user name or password (0x86) and Not authorized (0x87)."""


def _trust(settings: MqttSettings) -> str:
    anchor = f"CA file {settings.tls_ca_file}" if settings.tls_ca_file else "the system's CAs"
    return (
        f"it was checked against {anchor} (mqtt.tls_ca_file) for the name {settings.host!r} "
        "(mqtt.host)"
    )


def session_failure(exc: BaseException, settings: MqttSettings) -> tuple[FailureReason, str]:
    """``(reason, message)`` for the exception that ended (or prevented) a session with the
    broker of ``settings``. The message names the setting to look at and never a password."""
    broker = f"mqtt{'s' if settings.tls else ''}://{settings.host}:{settings.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        # Only errors raised by OpenSSL carry verify_message and reason: read them with care.
        why = getattr(exc, "verify_message", None) or str(exc)
        return "tls_untrusted", f"{broker}: the broker's certificate is not trusted ({why}); " + (
            _trust(settings)
        )
    if isinstance(exc, ssl.SSLError):
        why = getattr(exc, "reason", None) or str(exc)
        return "tls", f"{broker}: TLS failed ({why}); is the port a TLS listener?"
    if isinstance(exc, MqttConnectRefused):
        if exc.reason_code in LOGIN_REFUSALS:
            who = f"user {settings.username!r}" if settings.username else "an anonymous client"
            return "login_refused", (
                f"{broker}: the broker refused {who}: {reason_name(exc.reason_code)} "
                "(check mqtt.username and mqtt.password against the broker's password file)"
            )
        return "refused", f"{broker}: the broker refused the connection: {exc}"
    if isinstance(exc, MqttConnectionLost):
        return "lost", str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout", f"{broker}: no answer in time ({exc or 'timed out'})"
    if isinstance(exc, ConnectionRefusedError | ConnectionResetError) or (
        isinstance(exc, OSError) and exc.errno is not None
    ):
        return "unreachable", f"{broker}: cannot connect: {exc}"
    return "other", str(exc) or type(exc).__name__


def session_lost(settings: MqttSettings) -> str:
    """Why a reconnection found no session of the bridge's at the broker, which then queued
    what was published meanwhile for no one (those messages are lost)."""
    return (
        f"the broker at mqtt://{settings.host}:{settings.port} had no session for client id "
        f"{settings.client_id!r}: what was published while the bridge was away was not queued "
        "for it (a broker restarted without persistence, a session older than "
        "mqtt.session_expiry_seconds, or another client that connected with this client id and "
        "a clean start: on a broker shared with others, see docs/security.md)"
    )


TAKEN_OVER_WITHIN_S = 5.0
"""A session the broker closes this soon after it subscribed looks taken over."""


def taken_over_hint(reason: str, subscribed_for_s: float | None, settings: MqttSettings) -> str:
    """What to add to the log line of a session the broker closed soon after it subscribed:
    Mosquitto closes the older connection of a client id when another client connects with it,
    and two hubs with one ``mqtt.client_id`` take it from each other over and over."""
    if reason != "lost" or subscribed_for_s is None or subscribed_for_s >= TAKEN_OVER_WITHIN_S:
        return ""
    return (
        f" (closed {subscribed_for_s:.1f} s after subscribing: does another client use client id "
        f"{settings.client_id!r}? Each hub needs its own mqtt.client_id)"
    )
