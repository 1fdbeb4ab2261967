"""Helpers for integration tests on the real local stack: a hub process, MQTT publishing and
Kafka reading. Everything talks to loopback only."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import sql

from cityhub.connectors.mqtt.session import end_session
from cityhub.schemas.settings import HistorySettings, KafkaSettings, MqttSettings, Settings
from cityhub.streams.history.connection import read_password
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

BOOTSTRAP = os.environ.get("CITYHUB_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
MQTT_HOST = "127.0.0.1"
MQTT_PORT = int(os.environ.get("CITYHUB_MQTT__PORT", "1883"))


def random_kek() -> str:
    """A fresh key-encryption key (base64 of 32 random bytes): each test its own, as each
    test has its own topics."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drop_history_schema(env: dict[str, str]) -> None:
    """Drop the history schema a hub process wrote to (the one its environment names)."""
    schema = env.get("CITYHUB_HISTORY__DB_SCHEMA")
    if schema is None:
        return
    settings = Settings(history=HistorySettings(db_schema=schema))
    with psycopg.connect(
        host=settings.history.host,
        port=settings.history.port,
        dbname=settings.history.database,
        user=settings.history.user,
        password=read_password(settings),
        autocommit=True,
    ) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@dataclass
class Hub:
    """A `cityhub run|bridge|worker` process with its own topic prefix, consumer group and MQTT
    session, so that tests do not see each other's records. ``cityhub run`` supervises one
    process per part; tests run it with one worker process unless ``args`` says otherwise."""

    workdir: Path
    command: str = "run"
    extra_env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] | None = None
    """Arguments after the command; None: ``--workers 1`` for ``run``, none otherwise."""
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    port: int = field(default_factory=free_port)
    """The operator API's port (``/api/v1`` only)."""
    management_port: int = field(default_factory=free_port)
    """``/metrics`` and ``/healthz``."""
    proc: subprocess.Popen[bytes] | None = None
    kek: str = field(default_factory=random_kek, repr=False)
    """The hub's key-encryption key (``CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY``)."""

    def command_args(self) -> tuple[str, ...]:
        if self.args is not None:
            return self.args
        return ("--workers", "1") if self.command == "run" else ()

    @property
    def topics(self) -> dict[str, str]:
        return {name: f"{self.prefix}.{name}" for name in ("raw", "observations", "deadletter")}

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY_FILE", None)  # the test's own KEK instead
        env.update(
            {
                "CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY": self.kek,
                "CITYHUB_KAFKA__TOPIC_PREFIX": self.prefix,
                "CITYHUB_KAFKA__PARTITIONS": "4",
                "CITYHUB_WORKER__APP_ID": f"{self.prefix}-app",
                "CITYHUB_MQTT__CLIENT_ID": f"{self.prefix}-bridge",
                "CITYHUB_HTTP__PORT": str(self.port),
                "CITYHUB_MANAGEMENT__PORT": str(self.management_port),
                # The history writer of `cityhub run` writes to a schema of the hub's own.
                "CITYHUB_HISTORY__DB_SCHEMA": self.prefix,
                # The daily open-data files go to the hub's own folder, not the checkout's.
                "CITYHUB_OPEN_DATA__FILES_DIR": str(self.workdir / "open-data"),
                "CITYHUB_LOG_LEVEL": "info",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, *, wait: float = 90.0) -> None:
        log = open(self.workdir / f"{self.command}-{time.time():.0f}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cityhub.streams", self.command, *self.command_args()],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            self.wait_healthy(wait)
        except BaseException:
            # A fixture whose start fails never reaches its stop: without this the hub ran on
            # (seen: two `cityhub run` trees left behind, their bridges' sessions queueing).
            self.stop()
            raise

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.management_port}/healthz", timeout=2
                ) as r:
                    if r.status == 200:
                        return
            except Exception as exc:
                last = repr(exc)
            time.sleep(0.3)
        raise AssertionError(f"hub not healthy after {timeout}s ({last}):\n{self.log_tail()}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``cityhub <args>`` as the hub's administrator runs it: on Kafka, with its settings."""
        return subprocess.run(
            [sys.executable, "-m", "cityhub.streams", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def create_key(self, tenant: str, role: str, *, name: str = "test", wait: float = 60.0) -> str:
        """A new API key's secret (``cityhub keys create``), once ``tenant`` exists (a simulator
        may still be registering it)."""
        deadline = time.monotonic() + wait
        while True:
            args = ("keys", "create", "--tenant", tenant, "--role", role, "--name", name)
            done = self.cli(*args, "--json")
            if done.returncode == 0:
                return str(json.loads(done.stdout)["secret"])
            assert time.monotonic() < deadline, done.stderr
            time.sleep(1)

    def get(self, path: str) -> str:
        """GET ``path`` from the API's port."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return str(r.read().decode())

    def management(self, path: str) -> str:
        """GET ``path`` (``/metrics``, ``/healthz``) from the management port."""
        url = f"http://127.0.0.1:{self.management_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())

    def health(self) -> dict[str, Any]:
        """The ``/healthz`` document."""
        return dict(json.loads(self.management("/healthz")))

    def metrics(self) -> str:
        return self.management("/metrics")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def log_tail(self, lines: int = 60) -> str:
        logs = sorted(self.workdir.glob(f"{self.command}-*.log"))
        if not logs:
            return ""
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no clean-up, no flush, no goodbye."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """Stop the process, and end its MQTT session so the broker stops queueing for it."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.command == "run" and self.env().get("CITYHUB_HISTORY__DB_SCHEMA") == self.prefix:
            drop_history_schema(self.env())  # its own; a test's own schema is the test's to drop
        if self.command in {"run", "bridge"}:
            settings = MqttSettings(
                host=MQTT_HOST, port=MQTT_PORT, client_id=self.env()["CITYHUB_MQTT__CLIENT_ID"]
            )
            # stop() is called from sync fixtures and from async tests alike: a thread of its own.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, end_session(settings)).result(timeout=30)


@asynccontextmanager
async def registry_of(hub: Hub) -> AsyncIterator[Registry]:
    """A registry on ``hub``'s topics (its prefix), for a test to register what it sends."""
    base = Settings()
    kafka = KafkaSettings(**{**base.kafka.model_dump(), "topic_prefix": hub.prefix})
    store = RegistryStore(base.model_copy(update={"kafka": kafka}))
    await store.start()
    try:
        yield Registry(store)
    finally:
        await store.stop()


async def publish(
    messages: Iterable[tuple[str, bytes]], *, qos: int = 1, rate: float | None = None
) -> int:
    """Publish (topic, payload) pairs at QoS 1, each confirmed by the broker; optionally paced."""
    sent = 0
    async with aiomqtt.Client(
        MQTT_HOST, MQTT_PORT, identifier=f"pub-{uuid.uuid4().hex[:8]}"
    ) as client:
        start = time.monotonic()
        for topic, payload in messages:
            await client.publish(topic, payload, qos=qos)
            sent += 1
            if rate:
                ahead = start + sent / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
    return sent


async def read_topic(
    topic: str,
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning (JSON values, with ``_key`` and the record's timestamp
    in seconds as ``_ts``) until ``until(records)``
    holds or ``timeout`` passes; returns what was read either way."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    records: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        assigned = False
        while time.monotonic() < deadline:
            if not assigned:
                parts = consumer.partitions_for_topic(topic)
                if not parts:
                    await consumer._client.force_metadata_update()
                    await asyncio.sleep(0.5)
                    continue
                tps = [TopicPartition(topic, p) for p in parts]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                assigned = True
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                for record in batch:
                    doc = json.loads(record.value)
                    doc["_key"] = record.key.decode() if record.key else None
                    doc["_ts"] = record.timestamp / 1000
                    records.append(doc)
            if until(records):
                break
    finally:
        await consumer.stop()
    return records
