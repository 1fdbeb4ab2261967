"""A new subscription's first delivery: its creation through the API → the first signed webhook
POST it receives, on a running ``cityhub run`` while uplinks flow. Target: within 1 second.

Each run starts its own hub (``bench.delivery_latency.HubProcess``: a fresh topic prefix and
delivery group prefix, loopback, 127.0.0.1 allowed as a webhook host) against a Mosquitto of
its own with an empty store (``bench.private_broker``), seeds its registry
(tenant ``bench``, device type ``counter``, ``--devices`` plain-MQTT devices, a subscriber key)
and publishes uplinks at ``--rate`` per second from its own MQTT client (clean session) for the
whole run. A warm-up subscription must receive a POST first (the worker is up and routing; it
is not counted). Then ``--subscriptions`` webhook subscriptions of the ``counter`` devices are
created one after another, ``--gap`` seconds apart, each to its own path of an aiohttp receiver
in this process that verifies every POST with the independent ``standardwebhooks`` package,
with a secret the bench chose (so that the first POST can be verified even if it arrives
before the API's answer is read).

For each subscription, from the moment its POST to the API is sent:

- ``api``: the API's answer (the record is written and read back by the API's view);
- ``routed``: the Kafka timestamp of the first record in the subscription's topic (the worker
  routed an observation to it);
- ``first``: the first verified POST received.

Prints each run (median and max of each, with the 1-minute load average before and after) and,
over ``--runs`` (default 3), the median of the runs' medians and the worst ``first`` of all.
Everything is loopback; each run stops its hub, ends the bridge's persistent MQTT session and
deletes its topics.

Run: ``.venv/bin/python -m bench.subscription_latency`` with the stack up (``--wait-quiet 0.5``
waits before each run for a low load).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import aiomqtt
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from standardwebhooks.webhooks import Webhook

from bench.delivery_latency import (
    BOOTSTRAP,
    DEVICE_TYPE,
    TENANT,
    HubProcess,
    delete_topics,
    device_id,
    free_port,
    seed,
    wait_quiet,
)
from bench.private_broker import private_mosquitto
from bench.stats import machine, median, today
from cityhub.connectors.mqtt.session import end_session
from cityhub.schemas.settings import MqttSettings

TARGET_S = 1.0
WARM_UP = "warm-up"


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")


@dataclass
class Receiver:
    """The webhook: one path per subscription; the first verified POST of each, timed."""

    port: int = field(default_factory=free_port)
    secrets: dict[str, str] = field(default_factory=dict)
    first: dict[str, float] = field(default_factory=dict)
    bad_signatures: int = 0
    _arrived: dict[str, asyncio.Event] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    def arrived(self, name: str) -> asyncio.Event:
        """Set once ``name`` received its first verified POST."""
        return self._arrived.setdefault(name, asyncio.Event())

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{name}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        now = time.time()
        name = request.match_info["name"]
        secret = self.secrets.get(name)
        try:
            if secret is None:
                raise ValueError(f"no secret for {name}")
            Webhook(secret).verify(body, dict(request.headers))
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=401)
        self.first.setdefault(name, now)
        self.arrived(name).set()
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook/{name}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def flow(rate: float, devices: int, stop: asyncio.Event, mqtt: MqttSettings) -> int:
    """Publish uplinks (``{"count": n}`` of device ``n % devices``) at ``rate`` per second, QoS 1,
    until ``stop``; how many."""
    sent = 0
    async with aiomqtt.Client(
        mqtt.host, mqtt.port, identifier=f"slat-pub-{uuid.uuid4().hex[:8]}"
    ) as client:
        started = time.monotonic()
        while not stop.is_set():
            payload = orjson.dumps({"count": sent})
            await client.publish(f"cityhub/ingest/{device_id(sent % devices)}", payload, qos=1)
            sent += 1
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
    return sent


async def subscribe(
    session: aiohttp.ClientSession, hub: HubProcess, key: str, receiver: Receiver, name: str
) -> None:
    secret = new_secret()
    receiver.secrets[name] = secret
    spec = {
        "id": name,
        "name": f"First delivery {name}",
        "filter": {"device_types": [DEVICE_TYPE]},
        "delivery": {"kind": "webhook", "url": receiver.url(name), "secret": secret},
    }
    url = f"http://127.0.0.1:{hub.port}/api/v1/tenants/{TENANT}/subscriptions"
    headers = {"Authorization": f"Bearer {key}"}
    async with session.post(url, json=spec, headers=headers) as response:
        if response.status != 201:
            raise SystemExit(f"creating {name} failed: {response.status} {await response.text()}")


async def first_routed(prefix: str, names: list[str]) -> dict[str, float]:
    """The Kafka timestamp (s) of the first record of each subscription's topic (one partition
    each, ``SUBSCRIPTION_PARTITIONS``): when the worker's writer appended it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, float] = {}
    try:
        for name in names:
            tp = TopicPartition(f"{prefix}.sub.{TENANT}.{name}", 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            fetched = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
            records = fetched.get(tp)
            if records:
                found[name] = records[0].timestamp / 1000
    finally:
        await consumer.stop()
    return found


async def wait_first(receiver: Receiver, name: str, timeout: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(receiver.arrived(name).wait(), timeout)
    return name in receiver.first


async def one_run(
    args: argparse.Namespace, workdir: Path, index: int, mqtt: MqttSettings
) -> dict[str, float]:
    prefix = f"slat{uuid.uuid4().hex[:8]}"
    hub = HubProcess(prefix, workdir, mqtt=mqtt)
    receiver = Receiver()
    await receiver.start()
    stop = asyncio.Event()
    publisher: asyncio.Task[int] | None = None
    created: dict[str, float] = {}
    answered: dict[str, float] = {}
    try:
        key = await seed(prefix, args.devices)
        await asyncio.to_thread(hub.start)
        publisher = asyncio.create_task(flow(args.rate, args.devices, stop, mqtt))
        load_before = os.getloadavg()[0]
        async with aiohttp.ClientSession() as session:
            await subscribe(session, hub, key, receiver, WARM_UP)
            if not await wait_first(receiver, WARM_UP, 120):
                raise SystemExit(f"the warm-up subscription got nothing: {hub.log_tail()}")
            names = [f"s{i}" for i in range(args.subscriptions)]
            for name in names:
                await asyncio.sleep(args.gap)
                created[name] = time.time()
                await subscribe(session, hub, key, receiver, name)
                answered[name] = time.time()
                if not await wait_first(receiver, name, 60):
                    raise SystemExit(f"{name} got nothing within 60 s: {hub.log_tail()}")
        load_after = os.getloadavg()[0]
        if receiver.bad_signatures:
            raise SystemExit(f"{receiver.bad_signatures} POST(s) failed verification")
        routed = await first_routed(prefix, names)
        api = [answered[n] - created[n] for n in names]
        first = [receiver.first[n] - created[n] for n in names]
        route = [routed[n] - created[n] for n in names if n in routed]
        result = {
            "api_median": median(api),
            "routed_median": median(route) if route else float("nan"),
            "first_median": median(first),
            "first_max": max(first),
            "load_before": load_before,
            "load_after": load_after,
        }
        print(
            f"  run {index + 1}: {len(names)} subscriptions, first delivery median"
            f" {ms(result['first_median'])}, max {ms(result['first_max'])} (each:"
            f" {', '.join(ms(f) for f in first)}) | API answered {ms(result['api_median'])},"
            f" first routed record {ms(result['routed_median'])} (medians) | uplinks"
            f" {args.rate:.0f}/s | load {load_before:.2f} → {load_after:.2f}",
            flush=True,
        )
        return result
    finally:
        stop.set()
        if publisher is not None:
            with contextlib.suppress(Exception):
                await publisher
        await asyncio.to_thread(hub.stop)
        await end_session(mqtt.model_copy(update={"client_id": hub.client_id}))
        await receiver.stop()
        with contextlib.suppress(Exception):
            await delete_topics(prefix)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


async def main(args: argparse.Namespace) -> None:
    print(f"subscription first delivery, {today()}, {machine()}", flush=True)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    # "Topic ... not found in cluster metadata" (an error to aiokafka) while a topic is created.
    logging.getLogger("aiokafka.cluster").setLevel(logging.CRITICAL)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.runs):
            if args.wait_quiet is not None:
                await asyncio.to_thread(wait_quiet, args.wait_quiet)
            # A Mosquitto of its own per run: no session of an earlier run queues anything.
            async with private_mosquitto() as mqtt:
                results.append(await one_run(args, Path(tmp), index, mqtt))
    worst = max(r["first_max"] for r in results)
    first = median([r["first_median"] for r in results])
    print(f"  median of {args.runs} runs:")
    print(
        f"  creation → first signed POST: median {ms(first)}, worst {ms(worst)};"
        f" API answered {ms(median([r['api_median'] for r in results]))}, first routed record"
        f" {ms(median([r['routed_median'] for r in results]))}"
    )
    verdict = "met" if worst <= TARGET_S else "NOT met"
    print(f"  target: first delivery within {ms(TARGET_S)} of creation: {verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--subscriptions", type=int, default=5, help="timed, per run")
    parser.add_argument("--rate", type=float, default=100.0, help="uplinks per second")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between subscriptions")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        metavar="LOAD",
        help="before each run, wait (up to 15 min) until the 1-minute load average is below LOAD",
    )
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
