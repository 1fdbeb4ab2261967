"""Readiness checks: a broker counts as serving only once it has carried a message.

An open port proves little: Kafka accepts connections well before its controller has elected
itself and can create a topic, and a half-started Mosquitto may still refuse a session. So the
Kafka probe creates a small topic, produces to it with ``acks=all`` and reads the record back;
the MQTT probe subscribes, publishes at QoS 1 and waits for its own message (logged in, when the
broker asks for users: the ACL must then let that user read and write ``cityhub/_health/#``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterator

import aiomqtt
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from paho.mqtt.reasoncodes import ReasonCode

from cityhub.connectors.kafka_clients import kafka_admin, kafka_consumer, kafka_producer
from cityhub.schemas.settings import KafkaSettings

HEALTH_TOPIC = "__cityhub_health"
"""One partition, short retention: each probe appends a few bytes."""
HEALTH_TOPIC_CONFIG = {"retention.ms": str(24 * 3600 * 1000), "cleanup.policy": "delete"}
MQTT_HEALTH_PREFIX = "cityhub/_health"
_TOPIC_ALREADY_EXISTS = 36

log = logging.getLogger("cityhub.stack")


class NotServingError(Exception):
    """The broker did not (yet) serve; the message says how far the probe got."""


class AccessRefused(NotServingError):
    """The broker serves but refused the probe's login or its topic: waiting will not help."""


_MQTT_AUTH_REFUSALS = frozenset({4, 5, 0x86, 0x87})
"""CONNACK codes of a refused login: MQTT 3.1.1's bad credentials (4) and not authorised (5),
MQTT 5's Bad user name or password (0x86) and Not authorized (0x87)."""


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on ``host:port`` (a bind attempt, nothing sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # TIME_WAIT leftovers of a broker we just stopped must not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


_quiet_depth = 0
_saved_levels: dict[str, int] = {}
_CLIENT_LOGGERS = ("aiokafka", "aiomqtt")


@contextlib.contextmanager
def quiet_client_logs() -> Iterator[None]:
    """Silence the client libraries' connection errors while we poll brokers that are starting.

    Counted, so that overlapping uses (Kafka and MQTT polled concurrently) restore the levels
    only when the last one ends.
    """
    global _quiet_depth
    if _quiet_depth == 0:
        for name in _CLIENT_LOGGERS:
            logger = logging.getLogger(name)
            _saved_levels[name] = logger.level
            logger.setLevel(logging.CRITICAL)
    _quiet_depth += 1
    try:
        yield
    finally:
        _quiet_depth -= 1
        if _quiet_depth == 0:
            for name, level in _saved_levels.items():
                logging.getLogger(name).setLevel(level)
            _saved_levels.clear()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    # aiokafka's errors already start with their class name; do not say it twice.
    return text if text.startswith(name) else f"{name}: {text}"


async def probe_kafka(kafka: KafkaSettings, *, within_s: float) -> str:
    """Create the health topic if needed, produce one record and consume it back, as the
    client ``kafka`` describes (the secure stack's admin user: a super user).

    Returns a one-line description of what worked; raises ``NotServingError`` otherwise.
    """
    request_ms = max(1000, int(within_s * 1000))
    token = secrets.token_hex(8).encode()
    started = time.monotonic()
    try:
        async with asyncio.timeout(within_s):
            admin = kafka_admin(kafka, request_timeout_ms=request_ms)
            try:
                await admin.start()
                cluster = await admin.describe_cluster()
                brokers = cluster.get("brokers") or []
                if not brokers:
                    raise NotServingError("the metadata lists no broker yet")
                if cluster.get("controller_id", -1) < 0:
                    raise NotServingError("no active controller yet")
                if HEALTH_TOPIC not in await admin.list_topics():
                    response = await admin.create_topics(
                        [NewTopic(HEALTH_TOPIC, 1, 1, topic_configs=HEALTH_TOPIC_CONFIG)]
                    )
                    for error in response.to_object()["topic_errors"]:
                        if error["error_code"] not in (0, _TOPIC_ALREADY_EXISTS):
                            raise NotServingError(f"creating {HEALTH_TOPIC} failed: {error}")
            finally:
                await admin.close()

            producer = kafka_producer(
                kafka,
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=request_ms,
            )
            try:
                await producer.start()
                sent = await producer.send_and_wait(HEALTH_TOPIC, token, partition=0)
            finally:
                await producer.stop()

            partition = TopicPartition(HEALTH_TOPIC, 0)
            consumer = kafka_consumer(
                kafka,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=request_ms,
            )
            try:
                await consumer.start()
                consumer.assign([partition])
                consumer.seek(partition, sent.offset)
                record = await consumer.getone(partition)
            finally:
                await consumer.stop()
    except TimeoutError as exc:
        raise NotServingError(
            f"no round trip through {HEALTH_TOPIC} within {within_s:.0f} s"
        ) from exc
    except NotServingError:
        raise
    except Exception as exc:  # any client error means "not serving"; the message says which
        raise NotServingError(_describe(exc)) from exc
    if record.value != token:
        raise NotServingError(
            f"read back {record.value!r} at offset {sent.offset}, expected {token!r}"
        )
    elapsed_ms = (time.monotonic() - started) * 1000
    broker_ids = sorted(b["node_id"] for b in brokers)
    return f"broker {broker_ids}, produce+consume on {HEALTH_TOPIC} in {elapsed_ms:.0f} ms"


def _code(rc: int | ReasonCode | None) -> int:
    """A paho ``ReasonCode`` or a bare MQTT 3.1.1 return code as a number (-1 for none)."""
    if rc is None:
        return -1
    return rc.value if isinstance(rc, ReasonCode) else rc


async def probe_mqtt(
    host: str,
    port: int,
    *,
    within_s: float,
    username: str | None = None,
    password: str | None = None,
) -> str:
    """Subscribe to a fresh topic, publish to it at QoS 1 and receive the message back, logged
    in as ``username`` when given.

    Returns a one-line description of what worked; raises ``AccessRefused`` when the broker
    refuses the login or the topic, ``NotServingError`` when it does not serve (yet).
    """
    token = secrets.token_hex(8)
    topic = f"{MQTT_HEALTH_PREFIX}/{token}"
    payload = token.encode()
    started = time.monotonic()
    try:
        async with (
            asyncio.timeout(within_s),
            aiomqtt.Client(
                host,
                port,
                identifier=f"cityhub-health-{token}",
                clean_session=True,  # leave nothing behind in the persistent store
                timeout=within_s,
                username=username,
                password=password,
            ) as client,
        ):
            granted = await client.subscribe(topic, qos=1)
            if any(_code(q) >= 0x80 for q in granted):
                raise AccessRefused(
                    f"subscribing to {topic} was refused; let the probe's user "
                    f"({username or 'anonymous'}) read and write {MQTT_HEALTH_PREFIX}/# in the ACL"
                )
            await client.publish(topic, payload, qos=1)
            async for message in client.messages:
                if message.payload == payload:
                    if message.qos != 1:
                        raise NotServingError(f"message came back at QoS {message.qos}, not 1")
                    break
    except TimeoutError as exc:
        raise NotServingError(
            f"no QoS 1 round trip on {topic} within {within_s:.0f} s (with an ACL: may "
            f"{username or 'anonymous'} read and write {MQTT_HEALTH_PREFIX}/#?)"
        ) from exc
    except NotServingError:
        raise
    except aiomqtt.MqttCodeError as exc:
        if _code(exc.rc) in _MQTT_AUTH_REFUSALS:
            who = f"user {username!r}" if username else "an anonymous client"
            raise AccessRefused(
                f"the broker refused {who}: {exc} (set CITYHUB_MQTT__USERNAME and "
                "CITYHUB_MQTT__PASSWORD to a user of the password file)"
            ) from exc
        raise NotServingError(_describe(exc)) from exc
    except Exception as exc:  # aiomqtt.MqttError and socket errors alike mean "not serving"
        raise NotServingError(_describe(exc)) from exc
    elapsed_ms = (time.monotonic() - started) * 1000
    return f"QoS 1 publish+receive in {elapsed_ms:.0f} ms"


async def wait_until_serving(
    name: str,
    probe: Callable[[float], Awaitable[str]],
    *,
    within_s: float,
    still_running: Callable[[], bool],
    attempt_timeout: float = 10.0,
) -> str:
    """Run ``probe`` until it succeeds, the process dies, or ``within_s`` seconds pass.

    Returns the probe's description; raises ``NotServingError`` with the last failure.
    """
    deadline = time.monotonic() + within_s
    last = "not tried"
    attempts = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotServingError(f"not serving after {within_s:.0f} s ({attempts} tries): {last}")
        if not still_running():
            raise NotServingError(f"the process exited while starting; last probe: {last}")
        attempts += 1
        try:
            with quiet_client_logs():
                return await probe(min(attempt_timeout, max(remaining, 1.0)))
        except AccessRefused:
            raise  # a refused login stays refused: say so now, not after the timeout
        except NotServingError as exc:
            last = str(exc)
            log.debug("%s: not serving yet: %s", name, last)
        await asyncio.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
