"""The aggregator agents: ``cityhub.observations`` → ``cityhub.aggregates``.

Two agents, each a thin shell around :class:`cityhub.streams.aggregation.windows.WindowState`:

* ``aggregator-device`` reads ``cityhub.observations`` (keyed by device) and keeps the device
  windows; it also forwards every observation that has an area and a tenant, unchanged, to
  ``cityhub.observations-by-area`` keyed ``<tenant>/<area>``;
* ``aggregator-area`` reads that topic and keeps the (tenant, area) windows.

An area's observations come from many devices, hence from many partitions of the observations
topic: the repartition brings them to one partition, so that one state sees all of them.

Watermarks across the repartition. An area partition receives the interleaved output of every
device partition, and the interleaving depends on how fast each is processed: after a restart
or during a backlog one device partition may run an hour ahead of another. Were the area state
to take its watermark from the observations it sees (the greatest event time), the lagging
partition's observations would arrive "too late" and be dropped, and the area aggregates would
no longer equal the recomputation. So, as Flink does across input channels, the area watermark
is the least of the device partitions' watermarks: every forwarded observation carries its
device partition's watermark (header ``cityhub-watermark: <partition>:<µs>``, taken after the
observation was added), and every device partition broadcasts a marker record (no value, the
same header) to every area partition on each timer tick, so that a device partition without area
traffic (or an idle one, advanced by the idle timer) does not hold the areas back. The area state
runs with ``own_watermark`` off and is advanced to that minimum once every device partition has
reported. Then an observation is too late for an area window exactly when it was too late for
the device windows of its partition: the two stages drop the same observations.

State. One ``WindowState`` per input partition, kept in a faust table (``device-windows``,
``area-windows``; memory store, compacted changelog) with one entry per series (a device's
quantity: its windows and seen event ids; an area's quantity: its windows),
``"<partition>/<series key>"``, and the state's meta ``"<partition>/meta"``: only what changed
is written (``take_changes``), not the whole state; one observation of a device changes one
entry and the meta. The agent writes the entries itself
through the table's ``send_changelog`` with the input partition, and puts them in the store:

* it gets the changelog write's future, so an observation is acknowledged (and its offset may be
  committed) only once Kafka confirmed its state entries as well as its aggregates and its
  forwarded copy. With plain ``table[key] = value`` faust writes the changelog in the background,
  and its commit flushes that producer for at most 0.1 s: a crash could commit past an
  observation whose state never reached Kafka, and the restarted worker would miss it;
* the idle timer, which has no current event, can write too (``table[key] = value`` refuses to
  outside an event), so the windows it closes are recorded at once.

Restart and rebalance. Every rebalance drops the in-memory states (with faust's eager protocol
every partition is revoked first; one kept across the rebalance may have been another worker's
in between). After faust's recovery has rebuilt the table, the partition's state is rebuilt from
its entries on its first event or timer tick, and the last emission of every closed window still
held (within grace) is written again (``WindowState.emitted``): a crash between the state's write
and the aggregate's must not lose an emission. Consumers drop the copies by ``aggregate_id`` and
``revision``. An observation processed again after a crash is a duplicate for the restored state
(its event id was saved with it), or new if its state was never confirmed.

Input order. An observation is acknowledged only once it and every earlier record of its
partition were acknowledged (``InputOrder``): faust commits the offset after the first run of
consecutive acknowledged offsets, but lets that run start one past its committed offset (or
anywhere before its first commit), so an observation acknowledged out of order (its writes
confirmed before an earlier one's) could be committed over the earlier one. And the agent does
not trust faust to deliver every offset once: when a worker's recovery completes faust resumes
its flow control, which empties the agents' input buffers, and a record fetched into them just
before is gone (its offset already read, so it is not fetched again); a seek back to the
committed offsets at the same time delivers some records twice. So the agent knows the offset
due next in each partition (from the group's committed offset at its first record after an
assignment): a record below it is a copy, only acknowledged (in order); a record above it comes
after a hole, whose records the agent reads straight from Kafka and processes first
(acknowledging them to faust itself, so that the commit may pass them). Without this, a record
dropped from the buffer was lost for good: never processed, and committed over as soon as the
next one was acknowledged. (Across a restart, a record the saved meta covers is a duplicate for
the state, see ``WindowState.add``.)

Idle timer. A device partition whose devices go quiet would keep its last windows open forever:
every few seconds, one that has processed no event for ``idle_close_seconds`` and has read all
its records (its next offset is the high watermark) is advanced to ``wall clock -
idle_close_seconds``, as if an observation that old had arrived: windows close ``idle_close``
after their end; an observation delayed by up to ``idle_close + grace`` still counts (late ones
re-emit), beyond that it is dropped. Not ``- grace`` as well: grace already covers late data
through re-emission, and subtracting it would delay every first emission of a quiet partition by
another grace period. The lag check keeps the timer from overtaking a backlog (after a restart a
partition may hold an hour of observations; advancing past them would drop them all). The area
states follow through the markers.

Aggregates are written keyed by their group (``Aggregate.kafka_key``) with the window end as the
record timestamp, through an idempotent ``acks=all`` producer of the agent's own. If Kafka fails
a write, the worker stops (the observation stays unacknowledged and is processed again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import faust
import orjson

from cityhub.connectors.kafka import BatchingWriter, DeadLetterRoute
from cityhub.schemas.aggregate import Aggregate, Grouping
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import Source
from cityhub.schemas.topics import Topics
from cityhub.streams import metrics
from cityhub.streams.aggregation.windows import COUNTERS, Point, WindowConfig, WindowState
from cityhub.streams.runtime.intake import OrderedIntake
from cityhub.streams.subscriptions.router import SubscriptionRouter
from cityhub.streams.subscriptions.routing import Routing

log = logging.getLogger("cityhub.aggregator")

META = "meta"
WATERMARK_HEADER = "cityhub-watermark"


def window_config(settings: Settings, grouping: Grouping) -> WindowConfig:
    """The windowing of one grouping, from the ``aggregation`` settings."""
    agg = settings.aggregation
    return WindowConfig(
        sizes=tuple(agg.window_sizes_seconds),
        grace=agg.grace_seconds,
        groupings=(grouping,),
        max_future=agg.max_future_seconds,
        # The area states follow the device partitions' watermarks (see the module docstring).
        own_watermark=grouping == "device",
    )


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def table_key(partition: int, entry_key: str) -> str:
    """The table key of a state entry (``entry_key`` from ``take_changes``, or ``meta``)."""
    return f"{partition}/{entry_key}"


def state_from_entries(
    items: Iterable[tuple[Any, Any]], partitions: Iterable[int], config: WindowConfig
) -> dict[int, WindowState]:
    """The states of ``partitions`` rebuilt from table items (key, value), in one pass; a
    partition without a meta entry gets an empty state (entries without meta cannot occur: the
    meta is written with every change)."""
    wanted = {str(p): p for p in partitions}
    metas: dict[int, dict[str, Any]] = {}
    entries: dict[int, list[Any]] = {p: [] for p in wanted.values()}
    for key, value in items:
        if not isinstance(key, str) or value is None:
            continue
        prefix, _, rest = key.partition("/")
        partition = wanted.get(prefix)
        if partition is None:
            continue
        if rest == META:
            metas[partition] = value
        else:
            entries[partition].extend(value)  # a series: its windows and seen-id sets
    states: dict[int, WindowState] = {}
    for partition in wanted.values():
        meta = metas.get(partition)
        if meta is None:
            states[partition] = WindowState(config)
        else:
            states[partition] = WindowState.from_json(
                {**meta, "entries": entries[partition]}, config
            )
    return states


def watermark_header(partition: int, watermark: int) -> tuple[str, bytes]:
    """The header that carries a device partition's watermark (µs) across the repartition."""
    return (WATERMARK_HEADER, f"{partition}:{watermark}".encode())


def read_watermark(headers: Any) -> tuple[int, int] | None:
    """(device partition, watermark µs) from a record's headers (a list of pairs or a
    mapping), or None when there is none or it is malformed."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name == WATERMARK_HEADER and isinstance(value, bytes | bytearray):
            source, sep, wm = bytes(value).partition(b":")
            if sep:
                try:
                    return int(source), int(wm)
                except ValueError:
                    return None
    return None


class _Aggregator:
    """One grouping's agent state: the partitions' window states, the table, the writer."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        grouping: Grouping,
        topic: str,
        table: Any,
        on_failure: Callable[[BaseException], None],
        router: SubscriptionRouter | None = None,
    ) -> None:
        self.app = app
        self.router = router
        self.grouping = grouping
        self.topic = topic
        self.table = table
        self.config = window_config(settings, grouping)
        self.idle_close = settings.aggregation.idle_close_seconds
        topics = Topics.for_prefix(settings.kafka.topic_prefix)
        self.aggregates_topic = topics.aggregates
        self.area_topic = topics.area_observations
        self.observations_topic = topics.observations
        self.default_sources = settings.kafka.partitions
        stage = f"aggregate-{grouping}"
        self.writer = BatchingWriter.for_kafka(
            settings.kafka,
            client_id=f"{settings.worker.app_id}-{grouping}-agg",
            dead_letters=DeadLetterRoute(
                topics.deadletter,
                stage,
                settings.bridge.max_payload_bytes,
                count=lambda reason: metrics.DEADLETTERS.labels(stage, reason.value).inc(),
            ),
        )
        self.changelog: str = table.changelog_topic.get_topic_name()
        self.on_failure = on_failure
        self.states: dict[int, WindowState] = {}
        self.last_event: dict[int, float] = {}
        """Monotonic time of the partition's last event (or of its state's rebuild)."""
        self.next_offset: dict[int, int] = {}
        self.sources: dict[int, dict[int, int]] = {}
        """Area: by area partition, the last watermark (µs) each device partition reported."""
        self.exported: dict[int, dict[str, int]] = {}
        """The counters of each state as last added to the Prometheus counters."""
        self.lock = asyncio.Lock()
        """The agent and the timer both feed the states and write; one at a time, so that the
        revisions of a window are written in order."""
        self.intake = OrderedIntake(
            app,
            topic,
            group=settings.worker.app_id,
            bootstrap=settings.kafka.bootstrap_servers,
            client_id=f"{settings.worker.app_id}-{grouping}-agg-reader",
        )
        """Takes the input in offset order, each record once (see ``intake``)."""
        self._events = metrics.AGGREGATOR_EVENTS
        self._windows = metrics.AGGREGATOR_WINDOWS.labels(grouping)
        self._rewritten = metrics.AGGREGATOR_REWRITTEN.labels(grouping)

    # -- states --------------------------------------------------------------------------------

    async def states_for(self, partitions: Iterable[int]) -> list[asyncio.Future[Any]]:
        """Make sure ``partitions`` have a state, rebuilding missing ones from the table and
        writing again the last emission of their closed windows; the deliveries."""
        missing = [p for p in partitions if p not in self.states]
        if not missing:
            return []
        rebuilt = state_from_entries(self.table.data.items(), missing, self.config)
        # All states in place before the first await: a rebalance during the writes below
        # then drops them all, and no stale one is put back.
        again: list[Aggregate] = []
        now = time.monotonic()
        for partition, state in rebuilt.items():
            self.states[partition] = state
            self.exported[partition] = dict(state.counters)
            self.last_event[partition] = now
            emitted = state.emitted()
            log.info(
                "%s windows of partition %d restored: %d held, %d closed ones written again",
                self.grouping,
                partition,
                len(state),
                len(emitted),
            )
            self._rewritten.inc(len(emitted))
            again += emitted
        return await self.write_aggregates(again)

    def drop_states(self) -> None:
        """Forget every in-memory state (a rebalance): they are rebuilt from the table."""
        self.export_metrics()
        self.states.clear()
        self.exported.clear()
        self.last_event.clear()
        self.next_offset.clear()
        self.sources.clear()
        self.intake.reset()

    # -- writing -------------------------------------------------------------------------------

    async def write_aggregates(self, aggregates: list[Aggregate]) -> list[asyncio.Future[Any]]:
        """Write to ``cityhub.aggregates``, and to the topic of every subscription to aggregates
        whose filter takes the aggregate (its JSON, as the filter reads aggregates)."""
        topic = self.aggregates_topic
        send = self.writer.send
        router = self.router
        out = []
        for a in aggregates:
            doc, key, timestamp = a.to_json(), a.kafka_key(), a.timestamp_ms()
            out.append(await send(topic, doc, key, timestamp_ms=timestamp))
            if router is not None:
                for sub_topic in router.route(orjson.loads(doc), Source.AGGREGATES):
                    out.append(await send(sub_topic, doc, key, timestamp_ms=timestamp))
                    metrics.ROUTED.labels("aggregates").inc()
        return out

    async def persist(self, partition: int, state: WindowState) -> list[asyncio.Future[Any]]:
        """Write what changed in ``state`` to the table: its store, and its changelog partition
        ``partition`` in the order ``take_changes`` gives, the meta last; the deliveries.
        Nothing when only counters moved. Does not suspend (the writer's ``send`` with an
        explicit partition never waits), so no other task sees the state half written."""
        meta, entries = state.take_changes()
        data = self.table.data
        key = table_key(partition, META)
        if not entries:
            stored = data.get(key)
            if stored is not None and stored.get("watermark") == meta["watermark"]:
                return []  # a duplicate, a late drop: not worth a write
        # Through our batching writer, in faust's table format (JSON key and value): faust's
        # own changelog path (send_soon, one record at a time through a 100-record buffer
        # that throttles every stream) held both agents to about 1 000 observations/s.
        send = self.writer.send
        topic = self.changelog
        futures: list[asyncio.Future[Any]] = []
        for entry_key, value in entries.items():
            entry = table_key(partition, entry_key)
            if value is None:
                data.pop(entry, None)
                futures.append(await send(topic, None, _json(entry), partition=partition))
            else:
                data[entry] = value
                futures.append(await send(topic, _json(value), _json(entry), partition=partition))
        data[key] = meta
        futures.append(await send(topic, _json(meta), _json(key), partition=partition))
        return futures

    # -- feeding -------------------------------------------------------------------------------

    async def process(self, message: Any) -> list[asyncio.Future[Any]]:
        """Everything for one input record (a faust message or an aiokafka record: topic,
        partition, offset, headers, raw value); the deliveries of what it wrote."""
        partition: int = message.partition
        value: bytes | None = message.value
        doc: dict[str, Any] | None = None
        point: Point | None = None
        if value is not None or self.grouping == "device":
            try:
                doc = orjson.loads(value or b"")
                point = Point.from_observation(doc)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                # The normaliser writes only valid observations: this is somebody else's.
                log.warning(
                    "not an observation at %s[%d]@%d: %r",
                    message.topic,
                    partition,
                    message.offset,
                    exc,
                )
                self._events.labels(self.grouping, "invalid").inc()
                return []
        async with self.lock:
            deliveries: list[asyncio.Future[Any]] = []
            while partition not in self.states:  # a rebalance may come between
                deliveries += await self.states_for((partition,))
            # From here to the persist, no await: the state cannot be dropped in between.
            state = self.states[partition]
            self.last_event[partition] = time.monotonic()
            self.next_offset[partition] = message.offset + 1
            counters = state.counters
            dropped = counters["late_dropped"] + counters["future_dropped"]
            aggregates = (
                [] if point is None else state.add(point, now=time.time(), seq=message.offset)
            )
            # Forwarded unless the device windows dropped it as too late or from the future:
            # the area windows, whose watermark may trail this partition's, would take it.
            forward = dropped == counters["late_dropped"] + counters["future_dropped"]
            if self.grouping == "area":
                aggregates += self._follow_sources(partition, state, message.headers)
            deliveries += await self.persist(partition, state)
            if forward and self.grouping == "device" and doc is not None and value is not None:
                tenant, area = doc.get("tenant"), doc.get("area")
                if (
                    isinstance(tenant, str)
                    and isinstance(area, str)
                    and state.watermark is not None
                ):
                    deliveries.append(
                        await self.writer.send(
                            self.area_topic,
                            value,
                            f"{tenant}/{area}".encode(),
                            headers=[watermark_header(partition, state.watermark)],
                        )
                    )
            if aggregates:
                deliveries += await self.write_aggregates(aggregates)
            return deliveries

    def _follow_sources(self, partition: int, state: WindowState, headers: Any) -> list[Aggregate]:
        """Area: note the device partition's watermark that the record carries, and advance the
        state to the least of all device partitions' watermarks once each has reported."""
        reported = read_watermark(headers)
        if reported is None:
            return []
        source, watermark = reported
        sources = self.sources.setdefault(partition, {})
        if watermark <= sources.get(source, watermark - 1):
            return []
        sources[source] = watermark
        if len(sources) < self._source_count():
            return []
        return state.advance_us(min(sources.values()))

    def _source_count(self) -> int:
        try:
            count = self.app.consumer.topic_partitions(self.observations_topic)
        except Exception:  # no consumer metadata yet
            count = None
        return int(count) if count else self.default_sources

    async def tick(self) -> None:
        """Rebuild the states of assigned partitions that have none yet (so that a quiet
        partition re-emits after a restart too); device: advance the quiet, caught-up partitions
        to wall clock - ``idle_close`` and tell every area partition each one's watermark."""
        app = self.app
        if app.rebalancing or app.in_recovery or not app.tables.actives_ready:
            return
        assigned = sorted(
            {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == self.topic}
        )
        async with self.lock:
            deliveries = await self.states_for(assigned)
            if self.grouping == "device":
                deliveries += await self._idle(assigned)
                deliveries += await self._broadcast(assigned)
        self.watch(deliveries)
        self.export_metrics()

    async def _idle(self, partitions: list[int]) -> list[asyncio.Future[Any]]:
        deliveries: list[asyncio.Future[Any]] = []
        for partition in partitions:
            state = self.states.get(partition)
            mono = time.monotonic()
            if state is None or mono - self.last_event.get(partition, mono) < self.idle_close:
                continue
            if not await self._caught_up(partition):
                continue
            if self.states.get(partition) is not state:  # dropped by a rebalance meanwhile
                continue
            aggregates = state.advance(time.time() - self.idle_close)
            deliveries += await self.persist(partition, state)
            if aggregates:
                log.debug("device partition %d idle: %d windows closed", partition, len(aggregates))
                deliveries += await self.write_aggregates(aggregates)
        return deliveries

    async def _broadcast(self, partitions: list[int]) -> list[asyncio.Future[Any]]:
        """A watermark marker from each device partition to every area partition."""
        marks = [
            (p, state.watermark)
            for p in partitions
            if (state := self.states.get(p)) is not None and state.watermark is not None
        ]
        if not marks:
            return []
        deliveries: list[asyncio.Future[Any]] = []
        for target in await self.writer.partitions(self.area_topic):
            for source, watermark in marks:
                deliveries.append(
                    await self.writer.send(
                        self.area_topic,
                        None,
                        f"watermark/{source}".encode(),
                        partition=target,
                        headers=[watermark_header(source, watermark)],
                    )
                )
        return deliveries

    async def _caught_up(self, partition: int) -> bool:
        """Whether the partition has no records left to process (so that advancing by the wall
        clock cannot make a backlog late)."""
        consumer = self.app.consumer
        tp = next(
            (
                tp
                for tp in consumer.assignment()
                if tp.topic == self.topic and tp.partition == partition
            ),
            None,
        )
        if tp is None:
            return False
        try:
            highwater = consumer.highwater(tp)
            position = self.next_offset.get(partition)
            if position is None:
                position = await consumer.position(tp)
        except Exception as exc:  # a partition moving away mid-rebalance
            log.debug("no position for %s: %r", tp, exc)
            return False
        return highwater is not None and position is not None and position >= highwater

    def watch(self, deliveries: list[asyncio.Future[Any]]) -> None:
        """Stop the worker if one of these writes (not tied to an input record) fails."""

        def settled(delivery: asyncio.Future[Any]) -> None:
            if delivery.cancelled():
                self.on_failure(asyncio.CancelledError())
            elif (exc := delivery.exception()) is not None:
                self.on_failure(exc)

        for delivery in {id(d): d for d in deliveries}.values():
            delivery.add_done_callback(settled)

    # -- metrics -------------------------------------------------------------------------------

    def export_metrics(self) -> None:
        """Add what the states counted since the last call to the Prometheus counters."""
        held = 0
        for partition, state in self.states.items():
            held += len(state)
            before = self.exported.get(partition)
            now = state.counters
            for name in COUNTERS:
                delta = now[name] - (before[name] if before else 0)
                if delta > 0:
                    self._events.labels(self.grouping, name).inc(delta)
            self.exported[partition] = dict(now)
        self._windows.set(held)


def register_aggregator(
    app: faust.App, settings: Settings, routing: Routing | None = None
) -> tuple[Any, Any]:
    """Declare the aggregator's topics, tables, agents and timer on ``app``; the two agents.
    With ``routing``, every aggregate written is also written to the topic of each subscription
    to aggregates that receives it, and the agents wait until the routing is ready."""
    topics = Topics.for_prefix(settings.kafka.topic_prefix)
    stopping: set[asyncio.Future[Any]] = set()

    def crash(exc: BaseException) -> None:
        if stopping:
            return
        log.error("Kafka did not confirm the aggregator's output: %r; stopping the worker", exc)
        stopping.add(asyncio.ensure_future(app.crash(exc)))

    def table(name: str) -> Any:
        return app.Table(
            name,
            partitions=settings.kafka.partitions,
            # No key/value types: plain JSON (a value_type breaks recovery, see the normaliser).
            help=f"Window state of the aggregator, per input partition ({name}).",
        )

    def topic(name: str) -> Any:
        return app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    router = routing.router if routing is not None else None
    device = _Aggregator(
        app, settings, "device", topics.observations, table("device-windows"), crash, router
    )
    area = _Aggregator(
        app, settings, "area", topics.area_observations, table("area-windows"), crash, router
    )

    def make_agent(aggregator: _Aggregator) -> Any:
        async def run(stream: Any) -> None:
            while routing is not None and not routing.ready:  # noqa: ASYNC110 - a flag
                await asyncio.sleep(0.05)
            await aggregator.writer.start()
            pending = asyncio.Semaphore(settings.worker.max_unconfirmed_records)
            try:
                async for event in stream.noack().events():
                    await pending.acquire()
                    await aggregator.intake.take(event, aggregator.process, pending.release, crash)
            finally:
                await aggregator.writer.stop()
                await aggregator.intake.close()

        run.__name__ = f"aggregate_{aggregator.grouping}"
        return app.agent(topic(aggregator.topic), name=f"aggregator-{aggregator.grouping}")(run)

    device_agent = make_agent(device)
    area_agent = make_agent(area)

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # faust has waited for every event in progress to be acknowledged, so the state writes
        # of events are confirmed; the timer's may not be: confirm them before faust reads the
        # changelogs back, or the recovery would miss them.
        for aggregator in (device, area):
            aggregator.drop_states()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(aggregator.writer.flush(), 10.0)

    revoked_signal: Any = app.on_partitions_revoked  # mode's handler type takes no coroutine
    revoked_signal.connect(on_revoked)

    interval = max(0.2, min(5.0, settings.aggregation.idle_close_seconds / 4))

    async def tick() -> None:
        for aggregator in (device, area):
            if not aggregator.writer.attached:  # its agent has not started yet
                continue
            await aggregator.tick()

    app.timer(interval, name="aggregator-idle")(tick)
    return device_agent, area_agent
