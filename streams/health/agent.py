"""The health stage's agents: ``cityhub.observations`` and ``cityhub.deadletter`` →
``<prefix>.device-health``.

Two agents on the worker's runtime (``cityhub.streams.runtime``), in a consumer group of their
own (``health_group``), so that the health stage reads the observations beside the aggregator
and never holds the pipeline back:

* ``health-activity`` keeps each device's activity (``activity.py``) in its changelog
  (``<app_id>-health-activity-changelog``) and writes ``device/<tenant>/<id>``;
* ``health-deadletters`` keeps each device's dead letters (``dead_letters.py``) in its changelog
  (``<app_id>-health-deadletters-changelog``) and writes ``deadletters/<tenant>/<id>/<p>``,
  one record per dead-letter partition ``p`` holding some of the device's.

Each key has one writer: the agent holding the input partition of the device's records. A
record is written at once when the device's state changed (first seen, back after a silence, a
quality flag or dead-letter reason new within the day), else at most once per
``health.write_interval_seconds`` per device: a batch writes what is due, a tick what became
due since. The changelog entry of every state a batch changed is written with the batch, marked
whether its record was written too; a state restored unwritten is written at the first tick.
So at least once, and idempotent: a record is a function of its state, the state of the input
(replayed records are skipped by offset), and the topic is compacted.

Silence is never written: readers compute it from ``last_seen`` and the expected interval.

A device deleted from the registry loses its records: every ``SWEEP_SECONDS`` a tick writes a
tombstone for each record and state of a device the registry no longer has (``Registered``), so
the compacted topic forgets it. A late observation of it in the backlog makes a state again,
which the next sweep removes.

Pure: no I/O, no clock (the runtime passes ``now``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any, Generic, Protocol, TypeVar

import orjson
from pydantic import BaseModel

from cityhub.schemas.device_health import activity_key, dead_letters_key
from cityhub.schemas.json_object import json_object
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import HEALTH_ACTIVITY, HEALTH_DEAD_LETTERS, Topics, changelog
from cityhub.streams.health import metrics
from cityhub.streams.health.activity import ActivityState, Change
from cityhub.streams.health.dead_letters import DeadLetterState, Locate, device_of_dead_letter
from cityhub.streams.runtime.agent import CaughtUp, Record, StoredEntry, Write

log = logging.getLogger("cityhub.health")

TICK_SECONDS = 5.0
SWEEP_SECONDS = 60.0
"""How often a tick looks for states of devices deleted from the registry."""
HEALTH_PARTITION = 0
"""The device-health topic has one partition: every API process reads all of it."""

IntervalOf = Callable[[str, str], int]
"""(tenant, device id) -> the device's expected interval in seconds (registry and setting)."""
Registered = Callable[[str, str], bool]
"""(tenant, device id) -> whether the registry has that device in that tenant."""


class _State(Protocol):
    tenant: str
    device: str
    written: bool

    def to_json(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=_State)


class _HealthAgent(Generic[S]):
    """What both agents share: states per input partition, the throttle, the writes."""

    name: str
    kind: str
    """``device`` or ``deadletters``: the record kind (metrics)."""

    def __init__(
        self, settings: Settings, topic: str, state: str, registered: Registered | None
    ) -> None:
        self.topic = topic
        self._registered = registered
        self._swept_at = float("-inf")
        self.changelog: str | None = changelog(settings.worker.app_id, state)
        self._health = Topics.for_prefix(settings.kafka.topic_prefix).device_health
        self._every = settings.health.write_interval_seconds
        self.states: dict[int, dict[str, S]] = {}
        self._pending: dict[int, set[str]] = {}
        self._written_at: dict[str, float] = {}

    @property
    def partitions(self) -> Collection[int]:
        return self.states.keys()

    @property
    def tick_interval(self) -> float | None:
        return TICK_SECONDS

    def _restore(self, doc: dict[str, Any]) -> S:
        raise NotImplementedError

    def _record_key(self, state: S, partition: int) -> str:
        raise NotImplementedError

    def _record(self, state: S, partition: int) -> BaseModel:
        raise NotImplementedError

    def _write_every(self, state: S) -> float:
        """How long a state's record may wait for its next write when nothing changed."""
        return self._every

    def assign(self, partition: int, stored: Sequence[StoredEntry]) -> list[Write]:
        states: dict[str, S] = {}
        unwritten: set[str] = set()
        for entry in stored:
            try:
                state = self._restore(orjson.loads(entry.value))
                key = entry.key.decode()
            except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError):
                log.warning("skipping a malformed %s changelog entry", self.name)
                continue
            states[key] = state
            if not state.written:
                unwritten.add(key)
        self.states[partition] = states
        self._pending[partition] = unwritten
        log.info(
            "%s: partition %d restored, %d device(s), %d to write",
            self.name,
            partition,
            len(states),
            len(unwritten),
        )
        return []

    def revoke(self, partition: int) -> None:
        for key in self.states.pop(partition, {}):
            self._written_at.pop(key, None)
        self._pending.pop(partition, None)

    def _finish(self, partition: int, touched: dict[str, Change | None], now: float) -> list[Write]:
        """The writes of the states a batch changed: each record that is due, every state."""
        states = self.states[partition]
        pending = self._pending.setdefault(partition, set())
        writes: list[Write] = []
        for key, change in touched.items():
            state = states[key]
            due = now - self._written_at.get(key, float("-inf")) >= self._write_every(state)
            if change is not None or due:
                why = "changed" if change else "due"
                writes.append(self._record_write(partition, key, state, now, why))
                pending.discard(key)
            else:
                state.written = False
                pending.add(key)
            writes.append(self._state_write(partition, key, state))
        return writes

    def tick(self, now: float, caught_up: CaughtUp) -> list[Write]:
        """Write the records that became due since their states changed, and (every
        ``SWEEP_SECONDS``) the tombstones of devices deleted from the registry."""
        writes: list[Write] = []
        if self._registered is not None and now - self._swept_at >= SWEEP_SECONDS:
            self._swept_at = now
            writes += self._forget_deleted(self._registered)
        for partition, pending in self._pending.items():
            states = self.states[partition]
            due = [
                k
                for k in pending
                if now - self._written_at.get(k, float("-inf")) >= self._write_every(states[k])
            ]
            for key in sorted(due):
                state = self.states[partition][key]
                writes.append(self._record_write(partition, key, state, now, "due"))
                writes.append(self._state_write(partition, key, state))
                pending.discard(key)
        return writes

    def _forget_deleted(self, registered: Registered) -> list[Write]:
        """Tombstones for the record and the state of every device the registry no longer has
        in its tenant; their states are dropped."""
        writes: list[Write] = []
        for partition, states in self.states.items():
            pending = self._pending.get(partition, set())
            for key in [k for k, s in states.items() if not registered(s.tenant, s.device)]:
                state = states.pop(key)
                pending.discard(key)
                self._written_at.pop(key, None)
                metrics.HEALTH_WRITTEN.labels(self.kind, "deleted").inc()
                record_key = self._record_key(state, partition).encode()
                writes.append(Write(self._health, record_key, None, partition=HEALTH_PARTITION))
                writes.append(Write(self.changelog or "", key.encode(), None, partition=partition))
        return writes

    def _record_write(self, partition: int, key: str, state: S, now: float, why: str) -> Write:
        state.written = True
        self._written_at[key] = now
        metrics.HEALTH_WRITTEN.labels(self.kind, why).inc()
        record = self._record(state, partition)
        return Write(
            self._health,
            self._record_key(state, partition).encode(),
            orjson.dumps(record.model_dump(mode="json")),
            partition=HEALTH_PARTITION,
        )

    def _state_write(self, partition: int, key: str, state: S) -> Write:
        return Write(
            self.changelog or "",
            key.encode(),
            orjson.dumps(state.to_json()),
            partition=partition,
        )


class DeviceActivityAgent(_HealthAgent[ActivityState]):
    """Observations → ``device/<tenant>/<id>`` (the module docstring)."""

    name = "health-activity"
    kind = "device"

    def __init__(
        self, settings: Settings, interval_of: IntervalOf, registered: Registered | None = None
    ) -> None:
        topics = Topics.for_prefix(settings.kafka.topic_prefix)
        super().__init__(settings, topics.observations, HEALTH_ACTIVITY, registered)
        self._interval_of = interval_of
        self._grace = settings.health.silent_grace

    def _restore(self, doc: dict[str, Any]) -> ActivityState:
        return ActivityState.from_json(doc)

    def _record_key(self, state: ActivityState, partition: int) -> str:
        return activity_key(state.tenant, state.device)

    def _record(self, state: ActivityState, partition: int) -> BaseModel:
        return state.record()

    def _write_every(self, state: ActivityState) -> float:
        """Readers call a device silent once its record's last reading is ``grace`` intervals
        old: a record may wait at most half the margin beyond one interval, so a device that
        keeps its interval is never taken for silent between two writes (a 3 s interval with
        grace 3: every 3 s, not every minute)."""
        interval = self._interval_of(state.tenant, state.device)
        return min(self._every, max(1.0, interval * (self._grace - 1) / 2))

    def step(self, partition: int, records: Sequence[Record], now: float) -> list[Write]:
        """Count a batch of one partition's observations; write what is due."""
        states = self.states.setdefault(partition, {})
        touched: dict[str, Change | None] = {}
        skipped = {"invalid": 0, "unregistered": 0}
        for record in records:
            doc = json_object(record.value)
            if doc is None:
                skipped["invalid"] += 1
                continue
            tenant, device = doc.get("tenant"), doc.get("device_id")
            if not isinstance(tenant, str) or not isinstance(device, str):
                skipped["unregistered"] += 1  # an unregistered device let through: no tenant
                continue
            key = f"{tenant}/{device}"
            state = states.get(key)
            if state is None:
                state = states[key] = ActivityState(tenant=tenant, device=device)
            silent_after = self._interval_of(tenant, device) * self._grace
            change = state.add(doc, record.offset, silent_after)
            if key not in touched or touched[key] is None:
                touched[key] = change
        for reason, count in skipped.items():
            if count:
                metrics.HEALTH_SKIPPED.labels("observations", reason).inc(count)
        return self._finish(partition, touched, now)


class DeadLetterHealthAgent(_HealthAgent[DeadLetterState]):
    """Dead letters → ``deadletters/<tenant>/<id>/<partition>`` (the module docstring)."""

    name = "health-deadletters"
    kind = "deadletters"

    def __init__(
        self, settings: Settings, locate: Locate, registered: Registered | None = None
    ) -> None:
        topics = Topics.for_prefix(settings.kafka.topic_prefix)
        super().__init__(settings, topics.deadletter, HEALTH_DEAD_LETTERS, registered)
        self._locate = locate

    def _restore(self, doc: dict[str, Any]) -> DeadLetterState:
        return DeadLetterState.from_json(doc)

    def _record_key(self, state: DeadLetterState, partition: int) -> str:
        return dead_letters_key(state.tenant, state.device, partition)

    def _record(self, state: DeadLetterState, partition: int) -> BaseModel:
        return state.record(partition)

    def step(self, partition: int, records: Sequence[Record], now: float) -> list[Write]:
        """Count a batch of one partition's dead letters; write what is due."""
        states = self.states.setdefault(partition, {})
        touched: dict[str, Change | None] = {}
        skipped = {"invalid": 0, "unregistered": 0}
        for record in records:
            doc = json_object(record.value)
            if doc is None:
                skipped["invalid"] += 1
                continue
            found = device_of_dead_letter(doc, self._locate)
            if found is None:
                skipped["unregistered"] += 1
                continue
            tenant, device = found
            key = f"{tenant}/{device}"
            state = states.get(key)
            if state is None:
                state = states[key] = DeadLetterState(tenant=tenant, device=device)
            change = state.add(doc, record.offset)
            if key not in touched or touched[key] is None:
                touched[key] = change
        for reason, count in skipped.items():
            if count:
                metrics.HEALTH_SKIPPED.labels("deadletters", reason).inc(count)
        return self._finish(partition, touched, now)
