"""Quality flags through the normaliser agent, without a broker: flagged observations are
written (never dropped), with the right flags; the series goes to the changelog once per batch
and device, and a worker restored from it, replaying the batch after a crash, writes the same
observations, flags included; the flags are counted."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
import pytest

from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.validation import errors
from cityhub.streams import metrics
from cityhub.streams.normaliser.agent import NormaliserAgent
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.runtime.agent import StoredEntry, Write

SETTINGS = Settings.model_validate({"worker": {"allow_unknown_devices": True}})
PREFIX = SETTINGS.kafka.topic_prefix
START = 1_795_914_000.0


@dataclass(frozen=True)
class Rec:
    offset: int
    value: bytes | None
    key: bytes | None = b"k"
    partition: int = 0
    topic: str = f"{PREFIX}.raw"
    timestamp: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def uplink(offset: int, at: float, device: str = "street-1", **fields: object) -> Rec:
    topic = f"cityhub/ingest/{device}"
    payload = orjson.dumps({"time": rfc3339(at), **fields})
    envelope = RawEnvelope("mqtt", "cityhub-json", topic, device, rfc3339(at + 1), payload)
    return Rec(offset, envelope.to_json(), device.encode())


def observations(writes: list[Write]) -> list[dict[str, object]]:
    return [orjson.loads(w.value or b"") for w in writes if w.topic == f"{PREFIX}.observations"]


def flags(writes: list[Write], quantity: str) -> list[list[str]]:
    return [o["quality"] for o in observations(writes) if o["quantity"] == quantity]  # type: ignore[misc]


def stored(writes: list[Write], changelog: str) -> list[StoredEntry]:
    return [StoredEntry(w.key, w.value) for w in writes if w.topic == changelog and w.value]


@pytest.fixture
def agent() -> NormaliserAgent:
    directory = Registry(InMemoryRegistryStore()).view
    agent = NormaliserAgent(SETTINGS, directory)
    agent.assign(0, [])
    return agent


def sample() -> list[Rec]:
    """A street sensor over an hour and a half: a wild reading, a spike, a fault report, and
    a noise level stuck at one value."""
    records = []
    for i in range(10):
        at = START + i * 600
        fields: dict[str, object] = {"temperature": 10.0 + i * 0.1, "laeq": 55.0}
        if i == 2:
            fields["temperature"] = -80.0  # out of range (and no reference for the next)
        if i == 5:
            fields["temperature"] = 45.0  # 34.5 degC in 10 minutes: a spike
        if i == 7:
            fields["error"] = True
        records.append(uplink(i, at, **fields))
    return records


def test_flagged_observations_are_written_with_their_flags(agent: NormaliserAgent) -> None:
    settings = Settings.model_validate(
        {
            "worker": {"allow_unknown_devices": True},
            "quality": {"limits": {"sound_level": {"flat_line_seconds": 3000}}},
        }
    )
    agent = NormaliserAgent(settings, agent._directory)
    agent.assign(0, [])
    writes = agent.step(0, sample(), now=START + 7200)
    docs = observations(writes)
    assert len(docs) == 10 * 2 + 1  # every one, the error field's own included
    assert all(errors("observation", d) == [] for d in docs)
    assert flags(writes, "temperature") == [
        [],
        [],
        ["out_of_range", "spike"],
        [],
        [],
        ["spike"],
        [],
        ["device_fault"],
        [],
        [],
    ]
    # 55 dB since START: 3000 s is not longer, from 3600 s on it is stuck
    noise = flags(writes, "sound_level")
    assert noise[:6] == [[], [], [], [], [], []]
    assert noise[6] == ["flat_line"]
    assert noise[7] == ["flat_line", "device_fault"]
    assert flags(writes, "error") == [["device_fault"]]


def test_a_replayed_batch_gets_the_same_flags_from_the_restored_state(
    agent: NormaliserAgent,
) -> None:
    batch = sample()
    first = agent.step(0, batch[:6], now=START + 3600)
    second = agent.step(0, batch[6:], now=START + 7200)
    state = stored(first + second, agent.changelog or "")
    assert any(isinstance(orjson.loads(e.key), list) for e in state)
    # a crash before the second batch's offsets were committed: a new worker, the whole state
    # (the changelog compacted to the newest record per key), the second batch again
    newest = {e.key: e for e in state}
    restored = NormaliserAgent(SETTINGS, agent._directory)
    assert restored.assign(0, list(newest.values())) == []
    again = restored.step(0, batch[6:], now=START + 7300)
    assert observations(again) == observations(second)


def test_the_flags_are_counted(agent: NormaliserAgent) -> None:
    counter = metrics.QUALITY_FLAGS.labels("out_of_range", "temperature")
    before = counter._value.get()
    agent.step(
        0, [uplink(0, START, temperature=99.0), uplink(1, START + 60, temperature=-99.0)], now=START
    )
    assert counter._value.get() == before + 2
    other = metrics.QUALITY_FLAGS.labels("device_fault", "other")
    before = other._value.get()
    agent.step(0, [uplink(2, START + 120, fault=1, mystery_field=3)], now=START)
    assert other._value.get() == before + 2  # the fault field and the uncatalogued one


def test_checks_switched_off_flag_nothing_and_keep_no_series() -> None:
    settings = Settings.model_validate(
        {"worker": {"allow_unknown_devices": True}, "quality": {"enabled": False}}
    )
    agent = NormaliserAgent(settings, Registry(InMemoryRegistryStore()).view)
    agent.assign(0, [])
    writes = agent.step(0, sample(), now=START + 7200)
    assert all(o["quality"] == [] for o in observations(writes))
    keys = [orjson.loads(w.key) for w in writes if w.topic == agent.changelog]
    assert keys
    assert all(isinstance(k, str) for k in keys)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b'["quality", "street-1"]', b'{"temperature": "hot"}'),
        (b'["quality", "street-1"]', b'{"temperature": [1, 2]}'),
        (b'["quality", 7]', b'{"temperature": [1.0, 2.0, 1.0]}'),
        (b'["other", "street-1"]', b"{}"),
        (b'["quality", "street-1"]', b"[]"),
        (b"\xff", b"{}"),
    ],
)
def test_a_stored_record_of_another_shape_is_skipped(key: bytes, value: bytes) -> None:
    agent = NormaliserAgent(SETTINGS, Registry(InMemoryRegistryStore()).view)
    assert agent.assign(0, [StoredEntry(key, value)]) == []
    writes = agent.step(0, [uplink(0, START, temperature=12.0)], now=START)
    assert flags(writes, "temperature") == [[]]
