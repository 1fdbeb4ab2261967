"""Publish a simulated fleet's uplinks to the MQTT broker, open loop at a fixed rate.

The thin I/O shell around ``Traffic``: message k is due at ``start + k / rate`` (absolute
deadlines, so the rate does not drift with the time each publish takes), published with QoS 1,
and up to ``max_in_flight`` publishes wait for their PUBACK at once. When the broker acks more
slowly than the rate asks, the window fills and the achieved rate, which the report gives,
falls below the target: the simulator never queues without bound.

Each run is a session of its own, as if every device had just joined (OTAA): frame counters from
0 and DevAddrs of the run's session (``session_dev_addr``), so that a hub that still remembers
the previous run's frames (its duplicate window, 5 minutes) does not drop this run's as copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import aiomqtt

from cityhub.schemas.errors import StackError
from cityhub.schemas.settings import MqttSettings, Settings
from cityhub.streams.devtools.simulator.fleet import build_fleet
from cityhub.streams.devtools.simulator.traffic import Outgoing, Traffic

log = logging.getLogger("cityhub.simulator")


@dataclass(frozen=True, slots=True)
class SimulationReport:
    """What one ``simulate`` run published."""

    sent: int
    """Messages the broker acknowledged (PUBACK), duplicates included."""
    uplinks: int
    """Distinct uplinks among them (``sent - duplicates``)."""
    duplicates: int
    by_format: Mapping[str, int]
    """Messages sent per format: ``tts``, ``chirpstack``, ``senml``, ``json``."""
    elapsed: float
    """Seconds from the first publish until the last acknowledgement."""
    rate: float
    """Achieved messages per second (``sent / elapsed``)."""
    target_rate: float
    devices: int


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def require_broker(mqtt: MqttSettings, timeout: float = 5.0) -> None:
    """Return once an MQTT broker answers at the broker's address: a CONNECT (clean session, a
    client id of its own) gets a CONNACK, whatever its code; StackError (the one line
    ``_connected`` gives) otherwise: before the fleet is registered, not after. Something else
    listening there (another service, a TLS port) is no broker."""
    broker = f"{mqtt.host}:{mqtt.port}"
    connect = _connect_packet(mqtt)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(mqtt.host, mqtt.port), timeout
        )
    except (OSError, TimeoutError) as exc:
        raise _unreachable(broker, str(exc) or "timed out") from None
    try:
        writer.write(connect)
        answer = await asyncio.wait_for(reader.readexactly(4), timeout)
        if answer[0] != 0x20:  # CONNACK
            raise _unreachable(broker, "it does not answer as an MQTT broker")
        if answer[3] != 0:
            raise StackError(
                f"the MQTT broker at {broker} refused the simulator's login (CONNACK code "
                f"{answer[3]}{': not authorised' if answer[3] in (4, 5) else ''}); check "
                "CITYHUB_MQTT__USERNAME and CITYHUB_MQTT__PASSWORD"
            )
        writer.write(b"\xe0\x00")  # DISCONNECT: the clean session ends with it
        await writer.drain()
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise _unreachable(broker, f"no MQTT answer: {exc or 'timed out'}") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _connect_packet(mqtt: MqttSettings) -> bytes:
    """An MQTT 3.1.1 CONNECT: clean session, keep-alive 10 s, a client id of its own, and the
    simulator's own user and password when it has them (what it will log in with)."""

    def field(data: bytes) -> bytes:
        return len(data).to_bytes(2, "big") + data

    flags = 0x02
    payload = field(f"cityhub-probe-{uuid.uuid4().hex[:12]}".encode())
    if mqtt.username is not None:
        flags |= 0x80
        payload += field(mqtt.username.encode())
        if mqtt.password is not None:
            flags |= 0x40
            payload += field(mqtt.password.get_secret_value().encode())
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x0a" + payload
    length, size = b"", len(body)
    while True:  # the remaining length: 7 bits a byte, the high bit says another follows
        size, digit = size >> 7, size & 0x7F
        length += bytes([digit | (0x80 if size else 0)])
        if not size:
            return b"\x10" + length + body


def _unreachable(broker: str, why: str) -> StackError:
    return StackError(
        f"the MQTT broker at {broker} is not reachable ({why}); is the stack up "
        "(`cityhub stack up`)?"
    )


@contextlib.asynccontextmanager
async def _connected(client: aiomqtt.Client, broker: str) -> AsyncIterator[aiomqtt.Client]:
    """``client`` connected; StackError (one line in the CLI, not a traceback) when no broker
    answers at ``broker``."""
    try:
        await client.__aenter__()
    except aiomqtt.MqttError as exc:
        raise StackError(
            f"the MQTT broker at {broker} is not reachable ({exc}); is the stack up "
            "(`cityhub stack up`)?"
        ) from None
    try:
        yield client
    finally:
        await client.__aexit__(None, None, None)


async def simulate(
    settings: Settings,
    devices: int,
    rate: float,
    *,
    duration: float | None = None,
    count: int | None = None,
    seed: int = 1,
    session: int | None = None,
    duplicate_ratio: float = 0.0,
    fault_ratio: float = 0.0,
    formats: frozenset[str] | None = None,
    max_in_flight: int = 64,
    progress_interval: float = 5.0,
    allow_remote: bool = False,
) -> SimulationReport:
    """Publish the uplinks of ``devices`` simulated devices to ``settings.mqtt`` at ``rate``.

    Args:
        settings: the broker is ``settings.mqtt.host``/``port`` (with its username and
            password, if set); the client id is ``cityhub-sim-<random>``, clean session.
        devices: fleet size (>= 1); the fleet is ``build_fleet(devices, seed, formats)``.
        rate: messages per second in total (> 0), duplicates included, scheduled by absolute
            deadlines from the start.
        duration: stop scheduling after this many seconds.
        count: stop after this many messages (duplicates included).
            With neither ``duration`` nor ``count`` the run lasts until it is cancelled; the
            cancellation then propagates (no report) once in-flight publishes are dropped.
        seed: makes the fleet, the readings and the duplicates reproducible.
        session: the devices' session number, which fixes their DevAddrs (``FleetSimulator``);
            None: the second the run starts, so that runs started in different seconds less
            than 18 hours apart (65 536 s) never give a device the same DevAddr. Give it (the
            start line logs it) to reproduce a run's messages exactly.
        duplicate_ratio: share (0..1) of uplinks published a second time: from the other
            network server for devices registered on both, else as a second gateway path.
        fault_ratio: share (0..1) of temperature readings that are a sensor fault (127 degC),
            which the hub flags ``out_of_range``: a demo of its quality flags.
        formats: restrict devices to these formats (``tts``, ``chirpstack``, ``senml``,
            ``json``); None: a mix of all.
        max_in_flight: publishes awaiting their PUBACK at once. More is not faster here:
            aiomqtt 2.x and paho do bookkeeping linear in the in-flight count on every
            publish; on loopback 64 gave the best rate (about 6 000 msg/s on 2 vCPUs).
        progress_interval: seconds between progress lines on the ``cityhub.simulator`` logger.
        allow_remote: the simulator refuses a broker that is not on loopback unless this is
            True, so that a test flood cannot reach a production broker by mistake.

    Returns the report once every scheduled message is acknowledged. Raises ValueError for
    bad arguments (before connecting) and ``aiomqtt.MqttError`` if the connection or a
    publish fails.
    """
    if rate <= 0:
        raise ValueError(f"rate must be > 0 messages per second, got {rate}")
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if duration is not None and duration < 0:
        raise ValueError(f"duration must be >= 0, got {duration}")
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
    mqtt = settings.mqtt
    if not allow_remote and not _is_loopback(mqtt.host):
        raise ValueError(
            f"refusing to flood the non-loopback broker {mqtt.host!r}; pass allow_remote=True"
        )
    fleet = build_fleet(devices, seed, formats)
    if session is None:
        session = int(time.time())
    traffic = Traffic(
        fleet,
        seed=seed,
        duplicate_ratio=duplicate_ratio,
        session=session,
        fault_ratio=fault_ratio,
    )

    client = aiomqtt.Client(
        mqtt.host,
        mqtt.port,
        identifier=f"cityhub-sim-{uuid.uuid4().hex[:12]}",
        username=mqtt.username,
        password=mqtt.password.get_secret_value() if mqtt.password else None,
        protocol=aiomqtt.ProtocolVersion.V5,
        keepalive=mqtt.keepalive,
        max_inflight_messages=max_in_flight,
        logger=logging.getLogger("cityhub.simulator.mqtt"),
    )
    # A full window is the design, not a problem worth a warning per publish.
    client.pending_calls_threshold = max_in_flight + 1
    window = asyncio.Semaphore(max_in_flight)
    in_flight: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []
    by_format: Counter[str] = Counter()
    duplicates = 0

    async def publish(msg: Outgoing) -> None:
        nonlocal duplicates
        try:
            # No timeout: aiomqtt would wrap each wait in asyncio.wait_for, a task per publish.
            # A broker that stops acking still ends the run: the window fills, then keepalive
            # fails and the connection error fails every pending publish.
            await client.publish(msg.topic, msg.payload, qos=1, timeout=math.inf)
        except aiomqtt.MqttError as exc:
            failures.append(exc)
            return
        finally:
            window.release()
        by_format[msg.format.value] += 1
        duplicates += msg.duplicate

    def done(task: asyncio.Task[None]) -> None:
        in_flight.discard(task)

    log.info(
        "simulating %d devices at %.0f msg/s to %s:%d (count=%s, duration=%s, seed=%d, "
        "session=%d, duplicates=%.0f%%)",
        devices,
        rate,
        mqtt.host,
        mqtt.port,
        count,
        duration,
        seed,
        session,
        duplicate_ratio * 100,
    )
    async with _connected(client, f"{mqtt.host}:{mqtt.port}"):
        loop = asyncio.get_running_loop()
        start = loop.time()
        next_log = start + progress_interval
        logged_at, logged_sent = start, 0
        k = 0
        try:
            while count is None or k < count:
                deadline = start + k / rate
                # Duration is wall time: a broker slower than the rate ends the run on time.
                if duration is not None and max(deadline, loop.time()) - start >= duration:
                    break
                now = loop.time()
                if deadline > now:
                    await asyncio.sleep(deadline - now)
                elif k % 64 == 0:
                    await asyncio.sleep(0)  # behind schedule: still let acks be processed
                if failures:
                    raise failures[0]
                msg = traffic.next_message(time.time())
                await window.acquire()
                task = asyncio.create_task(publish(msg))
                in_flight.add(task)
                task.add_done_callback(done)
                k += 1
                if loop.time() >= next_log:
                    sent = sum(by_format.values())
                    t = loop.time()
                    log.info(
                        "sent %d (%.0f msg/s over the last %.1f s, target %.0f), "
                        "%d in flight, %d duplicates",
                        sent,
                        (sent - logged_sent) / (t - logged_at),
                        t - logged_at,
                        rate,
                        len(in_flight),
                        duplicates,
                    )
                    logged_at, logged_sent = t, sent
                    next_log = t + progress_interval
            if in_flight:
                await asyncio.gather(*in_flight)
            if failures:
                raise failures[0]
        except BaseException:
            for task in in_flight:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*in_flight, return_exceptions=True)
            raise
        elapsed = loop.time() - start

    sent = sum(by_format.values())
    report = SimulationReport(
        sent=sent,
        uplinks=sent - duplicates,
        duplicates=duplicates,
        by_format=MappingProxyType(dict(sorted(by_format.items()))),
        elapsed=elapsed,
        rate=sent / elapsed if elapsed > 0 else 0.0,
        target_rate=rate,
        devices=devices,
    )
    log.info(
        "done: %d messages (%d duplicates) in %.2f s, %.0f msg/s (target %.0f); %s",
        report.sent,
        report.duplicates,
        report.elapsed,
        report.rate,
        rate,
        ", ".join(f"{name} {n}" for name, n in report.by_format.items()),
    )
    return report
