"""The MQTT republish client: publishes deliveries to cityhub's own MQTT broker.

Contract with its caller (the ``mqtt`` delivery kind, ``cityhub.connectors.sinks.kinds.mqtt``),
which leaves batching, queues, retries, dead letters and metrics to the delivery task::

    sink = MqttSink(settings.mqtt, client_id=f"cityhub-delivery-{worker_id}")
    await sink.start()                                # connects; raises DeliveryFailed
    await sink.publish(topic, payload, qos=1)         # returns once the broker's PUBACK came
    await sink.stop()                                 # DISCONNECT: the broker forgets the session

``publish`` makes one attempt. With QoS 1 it returns when the broker acknowledged the message
with a successful PUBACK; with QoS 0 when the message was handed to the connection. Otherwise it
raises :class:`~cityhub.connectors.sinks.errors.DeliveryFailed`:

=======================================================  ==========================  ============
outcome                                                  retriable                   kind
=======================================================  ==========================  ============
cannot connect; connection lost before the PUBACK        yes                         connection
no PUBACK within ``timeout`` (the connection is dropped) yes                         timeout
CONNACK or PUBACK reason code >= 0x80                    only 0x80, 0x83, 0x88,      refused
                                                         0x89, 0x97, 0x9F
topic with wildcards/NUL/empty, packet over the broker's no                          invalid
Maximum Packet Size
=======================================================  ==========================  ============

Built on cityhub's own MQTT 5 session (:class:`~cityhub.connectors.mqtt.session.MqttSession`
over the sans-I/O codec), the one the bridge uses: it reads each PUBACK's reason code (a broker
that refuses a message, e.g. 0x87 Not authorized for a topic its ACL denies, is a refusal, not a
success), fails every waiting publish the moment the connection ends, and honours the broker's
Receive Maximum and Maximum Packet Size (exceeding either makes a broker drop the connection).
TLS (the broker's certificate and host name verified against ``tls_ca_file``, else the system's
CAs), user name and password come from the ``MqttSettings`` given; a certificate that is not
trusted, or a refused login, fails the connection with a message that says which CA file, host
name or user was used (never the password).

Reconnecting: after a lost connection the next ``publish`` connects again at once (nothing runs
in the background). A connection *attempt* that fails makes the next one wait an exponential
backoff with full jitter (``RECONNECT_BASE_S`` doubling up to ``RECONNECT_CAP_S``, reset by a
successful connection), so a broker that is down is not hammered by every waiting publish;
publishes that queued behind a failing attempt fail with its error instead of each trying again.
Several ``publish`` calls may wait at once on the one connection; up to ``max_inflight`` QoS 1
messages (never more than the broker's Receive Maximum) are on the wire, the others wait for
room within their ``timeout``. Callers bound how many they start.

Sessions: every connection starts clean (Clean Start) with Session Expiry Interval 0, so the
broker keeps nothing for this client id once the connection ends, whether by ``stop`` or by a
failure: no persistent session collects messages (the README's warning about Mosquitto
queueing for stale sessions). A client id is one connection at a time on the broker: two
sinks with the same id take the connection from each other; give each process its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
from collections.abc import Sequence

from cityhub.connectors.mqtt.codec import (
    TRANSIENT_REASONS,
    ProtocolError,
    publish_properties,
    reason_name,
)
from cityhub.connectors.mqtt.failures import session_failure
from cityhub.connectors.mqtt.session import (
    MqttConnectionLost,
    MqttConnectRefused,
    MqttPacketTooLarge,
    MqttSession,
)
from cityhub.connectors.sinks.backoff import ceiling
from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind, excerpt
from cityhub.schemas.settings import MqttSettings

log = logging.getLogger("cityhub.sinks.mqtt")

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_INFLIGHT = 100
RECONNECT_BASE_S = 0.2
RECONNECT_CAP_S = 5.0
MAX_TOPIC_BYTES = 65535


class _Link:
    """One connection: its session and the window of QoS 1 messages on the wire."""

    def __init__(self, session: MqttSession, window: int) -> None:
        self.session = session
        self.window = asyncio.Semaphore(window)

    @property
    def alive(self) -> bool:
        return self.session.connected


class MqttSink:
    """Publishes to cityhub's MQTT broker; see the module docstring."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        rng: random.Random | None = None,
    ) -> None:
        """Nothing connects until :meth:`start` (or the first :meth:`publish`).

        Args:
            settings: the broker (host, port, username, password, TLS, keepalive); its
                ``client_id`` and session expiry are not used.
            client_id: this sink's MQTT client id; unique among the broker's clients.
            timeout: seconds to connect (CONNACK) and, per message, to wait for the PUBACK.
            max_inflight: QoS 1 messages on the wire at once (lowered to the broker's Receive
                Maximum).
            rng: draws the reconnection backoff's jitter (tests pass a seeded one).
        """
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be at least 1, got {max_inflight}")
        self._settings = settings
        self._client_id = client_id
        self._timeout = timeout
        self._max_inflight = max_inflight
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._broker = f"mqtt{'s' if settings.tls else ''}://{settings.host}:{settings.port}"
        self._link: _Link | None = None
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._failed_attempts = 0
        self._attempts = 0
        """Connection attempts finished: a publish that saw fewer waited behind one."""
        self._next_attempt_at = 0.0
        self._last_failure: DeliveryFailed | None = None

    def __repr__(self) -> str:
        return f"MqttSink({self._broker!r}, client_id={self._client_id!r})"

    @property
    def connected(self) -> bool:
        """Whether a connection is up (a publish now would not have to connect first)."""
        return self._link is not None and self._link.alive

    async def start(self) -> None:
        """Connect now rather than on the first publish. Raises :class:`DeliveryFailed`
        (``connection`` or ``refused``) when the broker cannot be reached or refuses."""
        await self._connected()

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        content_type: str | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Publish once, with the MQTT 5 Content Type and User Properties given (none by
        default); with QoS 1 return after a successful PUBACK. Raises :class:`DeliveryFailed`
        as the module docstring says (``invalid`` too for a property the protocol cannot
        carry), ValueError for a QoS other than 0 or 1, RuntimeError after :meth:`stop`."""
        if qos not in (0, 1):
            raise ValueError(f"the MQTT sink publishes with QoS 0 or 1, got {qos}")
        _check_topic(topic)
        try:
            properties = publish_properties(
                content_type=content_type, user_properties=user_properties
            )
        except ValueError as exc:
            raise DeliveryFailed(
                f"MQTT properties for {excerpt(topic, 80)!r}: {exc}",
                retriable=False,
                kind=FailureKind.INVALID,
            ) from None
        link = await self._connected()
        sent = False
        try:
            async with asyncio.timeout(self._timeout):
                if qos == 0:
                    sent = True
                    await link.session.publish(topic, payload, qos=0, properties=properties)
                    return
                async with link.window:
                    sent = True
                    code = await link.session.publish(topic, payload, qos=1, properties=properties)
        except TimeoutError:
            if not sent:  # still waiting for room in the window: nothing was sent
                raise DeliveryFailed(
                    f"{self._broker}: no room among the messages in flight for "
                    f"{self._timeout:g} s; this one was not sent",
                    retriable=True,
                    kind=FailureKind.TIMEOUT,
                ) from None
            # A connection that leaves a PUBACK out this long is not healthy; the next publish
            # starts a new one. The message may still arrive (at least once).
            self._drop(link)
            raise DeliveryFailed(
                f"{self._broker}: no PUBACK within {self._timeout:g} s",
                retriable=True,
                kind=FailureKind.TIMEOUT,
            ) from None
        except MqttPacketTooLarge as exc:
            raise DeliveryFailed(
                f"{self._broker}: a {exc.size}-byte PUBLISH exceeds the broker's Maximum "
                f"Packet Size of {exc.limit} bytes",
                retriable=False,
                kind=FailureKind.INVALID,
            ) from None
        except (MqttConnectionLost, OSError) as exc:
            self._drop(link)
            raise DeliveryFailed(
                f"{self._broker}: connection lost ({_why(exc)}); the message may not have arrived",
                retriable=True,
                kind=FailureKind.CONNECTION,
            ) from None
        if code >= 0x80:
            raise DeliveryFailed(
                f"{self._broker} refused the message to {excerpt(topic, 80)!r}: "
                f"{reason_name(code)}",
                retriable=code in TRANSIENT_REASONS,
                kind=FailureKind.REFUSED,
            )

    async def stop(self) -> None:
        """Disconnect normally (the broker discards the session) and fail publishes still
        waiting (retriable). Idempotent; ``publish`` raises RuntimeError afterwards."""
        self._stopped = True
        async with self._lock:
            link, self._link = self._link, None
        if link is not None:
            await _close(link)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _drop(self, link: _Link) -> None:
        """Forget ``link`` (the next publish connects anew) and close it in the background."""
        link.session.abort()
        if self._link is link:
            self._link = None
            task = asyncio.create_task(_close(link), name="cityhub-mqtt-sink-close")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _connected(self) -> _Link:
        if self._stopped:
            raise RuntimeError("the MQTT sink is stopped")
        link = self._link
        if link is not None and link.alive:
            return link
        attempts_seen = self._attempts
        async with self._lock:
            if self._stopped:
                raise RuntimeError("the MQTT sink is stopped")
            link = self._link
            if link is not None and link.alive:
                return link
            failure = self._last_failure
            if failure is not None and self._attempts != attempts_seen:
                # An attempt made while this publish waited failed: share its outcome.
                raise DeliveryFailed(str(failure), retriable=failure.retriable, kind=failure.kind)
            if link is not None:
                self._link = None
                await _close(link)
            loop = asyncio.get_running_loop()
            wait = self._next_attempt_at - loop.time()
            if wait > self._timeout:
                raise DeliveryFailed(
                    f"{self._broker}: the last connection attempt failed; the next is due in "
                    f"{wait:.1f} s",
                    retriable=True,
                    kind=FailureKind.CONNECTION,
                )
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                self._link = await self._connect()
            except DeliveryFailed as exc:
                self._attempts += 1
                self._failed_attempts += 1
                self._last_failure = exc
                backoff = ceiling(self._failed_attempts - 1, RECONNECT_BASE_S, RECONNECT_CAP_S)
                self._next_attempt_at = loop.time() + self._rng.uniform(0.0, backoff)
                raise
            self._attempts += 1
            self._failed_attempts = 0
            self._last_failure = None
            self._next_attempt_at = 0.0
            return self._link

    async def _connect(self) -> _Link:
        session = MqttSession(
            self._settings,
            client_id=self._client_id,
            # Clean Start and Session Expiry Interval 0 (left out of CONNECT, which MQTT 5 reads
            # as 0): the broker ends the session with the connection.
            clean_start=True,
            session_expiry_seconds=0,
            connect_timeout=self._timeout,
        )
        try:
            await session.__aenter__()
        except MqttConnectRefused as exc:
            raise DeliveryFailed(
                f"{self._broker} refused the connection of {self._client_id!r}"
                f"{_as_user(self._settings)}: {reason_name(exc.reason_code)}",
                retriable=exc.retriable,
                kind=FailureKind.REFUSED,
            ) from None
        except (OSError, TimeoutError, ProtocolError) as exc:
            with contextlib.suppress(Exception):
                await session.__aexit__(None, None, None)
            why = (
                session_failure(exc, self._settings)[1]
                if isinstance(exc, ssl.SSLError)
                else _why(exc)
            )
            raise DeliveryFailed(
                f"{self._broker}: cannot connect: {excerpt(why)}",
                retriable=True,
                kind=FailureKind.CONNECTION,
            ) from None
        assert session.connack is not None
        window = min(self._max_inflight, session.connack.receive_maximum)
        log.debug("connected to %s as %r", self._broker, self._client_id)
        return _Link(session, window)


async def _close(link: _Link) -> None:
    """Disconnect (a normal DISCONNECT if still connected); never raises."""
    with contextlib.suppress(Exception):
        await link.session.__aexit__(None, None, None)


def _as_user(settings: MqttSettings) -> str:
    return f" as user {settings.username!r}" if settings.username else " (anonymous)"


def _why(exc: BaseException) -> str:
    return excerpt(str(exc) or type(exc).__name__)


def _check_topic(topic: str) -> None:
    """Refuse (not retriable) what the broker would answer by dropping the connection."""
    why = None
    if not topic:
        why = "is empty"
    elif "+" in topic or "#" in topic:
        why = "has wildcards (+ or #); a PUBLISH names one topic"
    elif "\x00" in topic:
        why = "contains NUL"
    elif len(topic.encode("utf-8", errors="surrogatepass")) > MAX_TOPIC_BYTES:
        why = f"is longer than {MAX_TOPIC_BYTES} bytes"
    else:
        try:
            topic.encode("utf-8")
        except UnicodeEncodeError:
            why = "is not valid UTF-8"
    if why is not None:
        raise DeliveryFailed(
            f"MQTT topic {excerpt(topic, 80)!r} {why}", retriable=False, kind=FailureKind.INVALID
        )
