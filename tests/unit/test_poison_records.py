"""No record stalls a partition: records are sized before they are written, the ones that cannot
fit are dead-lettered, and a record Kafka refuses is found, dead-lettered, and the producer it
left unusable replaced (a stand-in broker behaves as aiokafka's idempotent producer does against
Kafka: after a refused batch, every later batch of that partition fails with
OutOfOrderSequenceNumber)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from typing import Any

import orjson
import pytest
from aiokafka.errors import MessageSizeTooLargeError, OutOfOrderSequenceNumber
from hypothesis import given, settings
from hypothesis import strategies as st

from cityhub.connectors.batching_writer import BatchingWriter
from cityhub.connectors.dead_letter_route import DeadLetterRoute, RecordTooLarge
from cityhub.connectors.record_size import record_size
from cityhub.schemas.deadletter import MIN_DEADLETTER_BYTES, DeadLetter
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import Reason
from cityhub.schemas.validation import errors as schema_errors

pytestmark = pytest.mark.timeout(20)

ESCAPED = '\x01\x1f"\\\n\u2028\U0001f600'
"""Characters that JSON escapes (as 6 or 2 bytes) or that take 3 or 4 bytes in UTF-8."""


# --- bounded dead letters and envelopes ---------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    payload=st.binary(max_size=4096)
    | st.text(alphabet=ESCAPED + "ab", max_size=70_000).map(str.encode),
    detail=st.text(max_size=5000),
    topic=st.text(alphabet=ESCAPED + "a/", max_size=3000),
)
def test_a_dead_letter_always_fits_its_limit(payload: bytes, detail: str, topic: str) -> None:
    letter = DeadLetter.of(
        stage="bridge",
        reason=Reason.OVERSIZE,
        detail=detail,
        failed_at="2026-12-03T10:00:00.000Z",
        payload=payload,
        max_payload_bytes=1_000_000,
        source_topic=topic,
        device=topic,
    )
    data = letter.to_json(MIN_DEADLETTER_BYTES)
    assert len(data) <= MIN_DEADLETTER_BYTES
    doc = orjson.loads(data)
    assert schema_errors("deadletter", doc) == []
    assert doc["size"] == len(payload)
    assert doc["sha256"] == hashlib.sha256(payload).hexdigest()
    kept = doc["payload"].encode() if doc["payload_encoding"] == "utf-8" else None
    if kept is not None:
        assert payload.startswith(kept)
    assert doc["truncated"] == (len(data) < len(letter.to_json()) or len(payload) > 1_000_000)


def test_a_dead_letter_of_escaped_characters_falls_back_to_base64_and_is_cut() -> None:
    payload = b"\x01" * 200_000  # 1.2 MB as JSON text, 267 KB as base64
    letter = DeadLetter.of(
        stage="bridge",
        reason=Reason.OVERSIZE,
        detail="x",
        failed_at="2026-12-03T10:00:00.000Z",
        payload=payload,
        max_payload_bytes=262_144,
    )
    assert len(letter.to_json()) > 1_000_000
    doc = orjson.loads(letter.to_json(300_000))
    assert doc["payload_encoding"] == "base64"
    assert not doc["truncated"]
    small = orjson.loads(letter.to_json(MIN_DEADLETTER_BYTES))
    assert small["payload_encoding"] == "base64"
    assert small["truncated"]
    assert small["size"] == 200_000


def test_a_dead_letter_limit_below_the_minimum_is_a_bug() -> None:
    letter = DeadLetter.of(
        stage="s",
        reason=Reason.OVERSIZE,
        detail="d",
        failed_at="2026-12-03T10:00:00.000Z",
        payload=b"\x00" * 100_000,
        max_payload_bytes=100_000,
    )
    with pytest.raises(ValueError, match="at least"):
        letter.to_json(1000)


def test_an_envelope_falls_back_to_base64_when_its_text_would_not_fit() -> None:
    envelope = RawEnvelope(
        source="mqtt",
        format="cityhub-json",
        topic="cityhub/ingest/d1",
        device="d1",
        received_at="2026-12-03T10:00:00.000Z",
        payload=b"\x02" * 100_000,
    )
    text = envelope.to_json()
    assert orjson.loads(text)["payload_encoding"] == "utf-8"
    assert len(text) > 600_000
    packed = envelope.to_json(max_bytes=200_000)
    assert orjson.loads(packed)["payload_encoding"] == "base64"
    assert len(packed) < 200_000
    assert RawEnvelope.from_json(packed) == envelope
    ordinary = dataclasses.replace(envelope, payload=b'{"temperature": 21.5}')
    readable = ordinary.to_json(max_bytes=200_000)
    assert orjson.loads(readable)["payload_encoding"] == "utf-8"


# --- the writer ---------------------------------------------------------------------------------


class Batch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes, bytes | None]] = []

    def append(self, *, key: bytes, value: bytes | None, timestamp: Any, **_: Any) -> object | None:
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value))
        return object()


class Broker:
    """What the stand-in producers write to: a log per (topic, partition), a record limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.log: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
        self.producers: list[Producer] = []


class Producer:
    """An idempotent producer as aiokafka behaves: a refused batch breaks its partition for good."""

    def __init__(self, broker: Broker, capacity: int = 4) -> None:
        self.broker = broker
        self.capacity = capacity
        self.broken: set[tuple[str, int]] = set()
        self.stopped = False
        broker.producers.append(self)

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    def create_batch(self) -> Batch:
        return Batch(self.capacity)

    def _write(self, tp: tuple[str, int], records: list[tuple[bytes, bytes | None]]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if tp in self.broken:
            future.set_exception(OutOfOrderSequenceNumber())
        elif any(record_size(k, v) > self.broker.limit for k, v in records):
            self.broken.add(tp)
            future.set_exception(MessageSizeTooLargeError())
        else:
            self.broker.log.setdefault(tp, []).extend(records)
            future.set_result(None)
        return future

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        assert not self.stopped
        return self._write((topic, partition), batch.records)

    async def send(
        self, topic: str, value: bytes | None, key: bytes, *, partition: int = 0, **_: Any
    ) -> Any:
        assert not self.stopped
        return self._write((topic, partition), [(key, value)])

    async def stop(self) -> None:
        self.stopped = True


def writer_for(
    broker: Broker, *, max_record: int | None, renew: bool = True
) -> tuple[BatchingWriter, list[Reason]]:
    counted: list[Reason] = []

    async def new_producer() -> Any:
        return Producer(broker)

    writer = BatchingWriter(
        Producer(broker),  # type: ignore[arg-type]
        linger=0.001,
        max_record_bytes=max_record,
        dead_letters=DeadLetterRoute("dl", "test", 4096, count=counted.append),
        renew=new_producer if renew else None,
    )
    return writer, counted


def values(broker: Broker, topic: str) -> list[bytes | None]:
    return [v for (t, _), records in sorted(broker.log.items()) if t == topic for _, v in records]


async def test_a_record_too_large_is_dead_lettered_before_it_reaches_kafka() -> None:
    broker = Broker(limit=10**9)
    writer, counted = writer_for(broker, max_record=80_000)
    futures = [
        await writer.send("t", b"small-1", b"k"),
        await writer.send("t", b"\x01" * 100_000, b"k"),
        await writer.send("t", b"small-2", b"k"),
    ]
    await writer.flush()
    await asyncio.gather(*futures)
    assert values(broker, "t") == [b"small-1", b"small-2"]
    (letter,) = [orjson.loads(v or b"") for v in values(broker, "dl")]
    assert letter["reason"] == "oversize"
    assert letter["target_topic"] == "t"
    assert letter["size"] == 100_000
    assert letter["stage"] == "test"
    assert counted == [Reason.OVERSIZE]
    assert len(broker.producers) == 1  # nothing was refused: no producer replaced


async def test_without_a_route_a_record_too_large_raises() -> None:
    writer = BatchingWriter(Producer(Broker(10**9)), linger=0.001, max_record_bytes=1000)  # type: ignore[arg-type]
    with pytest.raises(RecordTooLarge, match="more than the limit of 1000"):
        await writer.send("t", b"x" * 2000, b"k")


async def test_a_record_kafka_refuses_is_dead_lettered_and_nothing_after_it_stalls() -> None:
    # The broker's limit (a topic made elsewhere) is below the writer's: Kafka refuses.
    broker = Broker(limit=5_000)
    writer, counted = writer_for(broker, max_record=1_000_000)
    futures = []
    for i in range(30):
        value = b"y" * 20_000 if i in (3, 17) else f"ok-{i}".encode()
        futures.append(await writer.send("t", value, b"same-key"))
        if i % 5 == 0:
            await asyncio.sleep(0.005)  # let some batches go before the refused one
    await writer.flush()
    await asyncio.wait_for(asyncio.gather(*futures), 5)
    written = values(broker, "t")
    assert sorted(set(written), key=lambda v: int((v or b"0").split(b"-")[1])) == [
        f"ok-{i}".encode() for i in range(30) if i not in (3, 17)
    ]
    letters = [orjson.loads(v or b"") for v in values(broker, "dl")]
    assert [x["reason"] for x in letters] == ["kafka_refused", "kafka_refused"]
    assert all("MessageSizeTooLarge" in x["detail"] for x in letters)
    assert counted == [Reason.KAFKA_REFUSED] * 2
    assert len(broker.producers) >= 2
    assert broker.producers[0].stopped
    # a record after the recovery goes straight through the new producer
    more = await writer.send("t", b"ok-30", b"same-key")
    await writer.flush()
    await more
    assert values(broker, "t")[-1] == b"ok-30"


async def test_without_renew_a_refusal_fails_the_callers() -> None:
    broker = Broker(limit=5_000)
    writer, _ = writer_for(broker, max_record=None, renew=False)
    future = await writer.send("t", b"z" * 10_000, b"k")
    await writer.flush()
    with pytest.raises(MessageSizeTooLargeError):
        await future


async def test_a_kafka_failure_reaches_the_caller_and_the_producer_is_replaced() -> None:
    class Down(Producer):
        def _write(self, tp: tuple[str, int], records: list[tuple[bytes, bytes | None]]) -> Any:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(RuntimeError("NotEnoughReplicas"))
            return future

    broker = Broker(limit=10**9)

    async def new_producer() -> Any:
        return Producer(broker)

    writer = BatchingWriter(Down(broker), linger=0.001, renew=new_producer)  # type: ignore[arg-type]
    future = await writer.send("t", b"v", b"k")
    await writer.flush()
    with pytest.raises(RuntimeError, match="NotEnoughReplicas"):
        await future
    await writer.close()
    assert isinstance(writer.producer, Producer)
    assert not isinstance(writer.producer, Down)
