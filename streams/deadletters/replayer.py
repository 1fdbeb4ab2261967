"""``cityhub deadletters replay``'s I/O: read the letters, fetch their raw records, write them.

Three passes, each with a consumer without a group (nobody's offsets move):

1. every record of the dead-letter topic up to its end as it was at the start, planned by
   ``replay_plan.plan`` (a letter written meanwhile waits for the next run);
2. the raw records the chosen letters point at, partition by partition in offset order, from
   what the raw topic still holds;
3. unless it is a dry run, one record per letter to the raw topic's same partition, by an
   idempotent producer with ``acks=all``; the command returns once Kafka confirmed them all.

The normaliser then takes them as any other record (``replay_plan`` says what a replay
guarantees). What was replayed and what was not, with why, comes back as a ``ReplayReport``.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from cityhub.connectors.kafka_clients import kafka_consumer, kafka_producer
from cityhub.schemas.errors import ConfigurationError
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.deadletters.replay_plan import (
    Planned,
    RawRecord,
    Replay,
    ReplayFilter,
    Skipped,
    last_of_each_uplink,
    plan,
    replay_record,
)
from cityhub.streams.registry.view import RegistryView

FETCH_TIMEOUT_S = 30.0
"""How long a partition's reading may stay at one offset before the command gives up."""
RUN_GAP = 1000
"""Raw records at most this many offsets apart are read through rather than sought."""


@dataclass
class ReplayReport:
    """What a replay did (or, in a dry run, would do)."""

    replays: list[Replay] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    written: int = 0

    @property
    def from_raw(self) -> int:
        return sum(1 for r in self.replays if r.from_raw)

    def skipped_by_why(self) -> Counter[str]:
        return Counter(s.why for s in self.skipped)


async def replay(
    settings: Settings,
    registry: RegistryView,
    selection: ReplayFilter,
    *,
    dry_run: bool = False,
    limit: int | None = None,
) -> ReplayReport:
    """Replay the letters ``selection`` chooses (at most ``limit``); see the module."""
    topics = Topics.for_prefix(settings.kafka.topic_prefix)
    consumer = kafka_consumer(
        settings.kafka,
        group_id=None,
        enable_auto_commit=False,
        client_id="cityhub-deadletters-replay",
        max_partition_fetch_bytes=settings.kafka.max_message_bytes + 64 * 1024,
    )
    await consumer.start()
    try:
        plans, skipped = await _read_letters(consumer, topics, registry, selection)
        chosen, earlier = last_of_each_uplink(plans)
        skipped.extend(earlier)
        if limit is not None:
            chosen = chosen[:limit]
        raws = await _read_raw(consumer, chosen)
    finally:
        await consumer.stop()
    report = ReplayReport(skipped=skipped)
    for item in chosen:
        made = replay_record(item, raws.get((item.raw_partition, item.raw_offset)))
        if isinstance(made, Replay):
            report.replays.append(made)
        else:
            report.skipped.append(made)
    if not dry_run and report.replays:
        report.written = await _write(settings, topics.raw, report.replays)
    return report


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    # A consumer without subscriptions has no topic's metadata; aiokafka's public topics()
    # keeps only the names, so ask its client for the whole map (as ``cityhub tail`` does).
    cluster = await consumer._client.fetch_all_metadata()
    partitions = cluster.partitions_for_topic(topic)
    if not partitions:
        raise ConfigurationError(
            f"topic {topic!r} does not exist (yet); is the hub running with this prefix?"
        )
    return [TopicPartition(topic, p) for p in sorted(partitions)]


async def _read_letters(
    consumer: AIOKafkaConsumer, topics: Topics, registry: RegistryView, selection: ReplayFilter
) -> tuple[list[Planned], list[Skipped]]:
    tps = await _partitions(consumer, topics.deadletter)
    begins = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    plans: list[Planned] = []
    skipped: list[Skipped] = []
    for tp in tps:
        async for record in _scan(consumer, tp, begins[tp], ends[tp]):
            made = plan(
                record.value,
                partition=tp.partition,
                offset=record.offset,
                raw_topic=topics.raw,
                registry=registry,
                selection=selection,
            )
            if isinstance(made, Planned):
                plans.append(made)
            elif made is not None:
                skipped.append(made)
    return plans, skipped


async def _read_raw(
    consumer: AIOKafkaConsumer, chosen: list[Planned]
) -> dict[tuple[int, int], RawRecord]:
    """The raw records of ``chosen`` that the raw topic still holds, by (partition, offset)."""
    wanted: dict[int, set[int]] = defaultdict(set)
    for item in chosen:
        wanted[item.raw_partition].add(item.raw_offset)
    if not wanted:
        return {}
    topic = chosen[0].raw_topic
    known = {tp.partition for tp in await _partitions(consumer, topic)}
    tps = [TopicPartition(topic, p) for p in sorted(wanted) if p in known]
    begins = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    found: dict[tuple[int, int], RawRecord] = {}
    for tp in tps:
        held = sorted(o for o in wanted[tp.partition] if begins[tp] <= o < ends[tp])
        for first, last in _runs(held):
            async for record in _scan(consumer, tp, first, last + 1):
                if record.offset in wanted[tp.partition]:
                    found[tp.partition, record.offset] = RawRecord(
                        record.key, record.value or b"", list(record.headers)
                    )
    return found


def _runs(offsets: list[int], gap: int = RUN_GAP) -> list[tuple[int, int]]:
    """Ascending ``offsets`` as ranges (first, last) read in one pass each: a new range starts
    where the next offset is more than ``gap`` records on (seeking beats reading through)."""
    runs: list[tuple[int, int]] = []
    for offset in offsets:
        if runs and offset - runs[-1][1] <= gap:
            runs[-1] = (runs[-1][0], offset)
        else:
            runs.append((offset, offset))
    return runs


async def _scan(
    consumer: AIOKafkaConsumer, tp: TopicPartition, begin: int, end: int
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record Kafka holds of ``tp`` from offset ``begin`` up to ``end`` (exclusive)."""
    consumer.assign([tp])
    consumer.seek(tp, begin)
    loop = asyncio.get_running_loop()
    position, moved_at = begin, loop.time()
    while position < end:
        batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1000)
        for record in batch.get(tp, []):
            if record.offset < end:
                yield record
        now = await consumer.position(tp)
        if now > position:
            position, moved_at = now, loop.time()
        elif loop.time() - moved_at > FETCH_TIMEOUT_S:
            raise ConfigurationError(
                f"{tp.topic}[{tp.partition}] brought nothing from offset {position} "
                f"in {FETCH_TIMEOUT_S:.0f} s"
            )


async def _write(settings: Settings, topic: str, replays: list[Replay]) -> int:
    producer = kafka_producer(
        settings.kafka,
        acks="all",
        enable_idempotence=True,
        client_id="cityhub-deadletters-replay",
        max_request_size=settings.kafka.max_message_bytes + 64 * 1024,
    )
    await producer.start()
    try:
        sent = [
            await producer.send(topic, r.value, key=r.key, partition=r.partition, headers=r.headers)
            for r in replays
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return len(sent)
