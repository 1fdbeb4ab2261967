"""A subscription paused or deleted while its delivery's Kafka consumer is still starting: the
cancelled start must close the consumer (a review saw asyncio log ``Unclosed AIOKafkaConsumer``
after pausing a subscription at once). No broker: the bootstrap is a loopback port that takes
connections and never answers, so the start does not end by itself."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from cityhub.connectors.sinks import validate_spec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.subscription import build_subscription
from cityhub.streams.delivery import task as task_module
from cityhub.streams.delivery.task import DeliveryTask


class NeverStarted:
    async def start(self) -> None:
        raise AssertionError("the sink starts only after the consumer")

    async def stop(self) -> None:
        return None


async def test_a_start_cancelled_midway_closes_the_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the request, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    made: list[AIOKafkaConsumer] = []
    real = task_module.kafka_consumer  # type: ignore[attr-defined]

    def keep(*args: Any, **kwargs: Any) -> AIOKafkaConsumer:
        consumer = real(*args, **kwargs)
        made.append(consumer)
        return consumer

    monkeypatch.setattr(task_module, "kafka_consumer", keep)
    spec = validate_spec(
        {
            "id": "hook",
            "name": "hook",
            "delivery": {"kind": "webhook", "url": "https://r.example/h"},
        }
    )
    record, _ = build_subscription(spec, tenant="city", now="2026-12-01T00:00:00Z")
    settings = Settings().model_copy(
        update={"kafka": KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}")}
    )
    task = DeliveryTask(record, NeverStarted(), settings, dead_letters=None)  # type: ignore[arg-type]
    running = asyncio.create_task(task._deliver_until_cancelled())
    await asyncio.sleep(0.5)  # the consumer is still waiting for the broker's metadata
    assert made
    assert not running.done()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert made[0]._closed
    server.close()
