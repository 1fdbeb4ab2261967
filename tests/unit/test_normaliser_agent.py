"""The normaliser agent as the runtime drives it, without a broker: a batch of raw envelopes of a
registered fleet in, observations, their routed copies, dead letters and the duplicate state
(once per batch) out; the state restored from what the agent wrote."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from prometheus_client import REGISTRY

from cityhub.connectors.formats import get_format
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import Subscription
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.validation import errors
from cityhub.streams.devtools.simulator import Traffic, build_fleet
from cityhub.streams.devtools.simulator.registration import TENANT, register_fleet
from cityhub.streams.normaliser.agent import NormaliserAgent
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.runtime.agent import StoredEntry, Write
from cityhub.streams.subscriptions.router import SubscriptionRouter

SETTINGS = Settings()
PREFIX = SETTINGS.kafka.topic_prefix
START = 1_795_914_000.0
FORMAT_OF = {"tts": "tts-v3", "chirpstack": "chirpstack-v4", "senml": "cityhub-json"}


@dataclass(frozen=True)
class Rec:
    offset: int
    value: bytes | None
    key: bytes | None = b"k"
    partition: int = 0
    topic: str = f"{PREFIX}.raw"
    timestamp: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


async def registry_of(devices: int) -> Registry:
    registry = Registry(InMemoryRegistryStore())
    await register_fleet(registry, build_fleet(devices, seed=3))
    return registry


def raw_batch(
    count: int, devices: int, *, session: int = 0, first_offset: int = 0, start: float = START
) -> list[Rec]:
    traffic = Traffic(build_fleet(devices, seed=3), seed=3, session=session)
    out = []
    for i in range(count):
        m = traffic.next_message(start + i)
        fmt = FORMAT_OF.get(m.format.value, "cityhub-json")
        key = get_format(fmt).partition_key(m.topic, m.payload)
        envelope = RawEnvelope("mqtt", fmt, m.topic, key, rfc3339(start + i), m.payload)
        out.append(Rec(first_offset + i, envelope.to_json(), key.encode()))
    return out


def to(writes: list[Write], topic: str) -> list[Write]:
    return [w for w in writes if w.topic == topic]


def match_all(subscription_id: str) -> Subscription:
    return Subscription.model_validate(
        {
            "tenant": TENANT,
            "id": subscription_id,
            "name": "everything",
            "source": "observations",
            "filter": {},
            "delivery": {"kind": "kafka"},
            "on_full": "pause",
            "queue_size": 1000,
            "created_at": "2026-12-01T00:00:00.000Z",
            "updated_at": "2026-12-01T00:00:00.000Z",
        }
    )


async def test_a_batch_becomes_observations_routed_copies_and_one_state_write_per_device() -> None:
    registry = await registry_of(20)
    router = SubscriptionRouter(PREFIX)
    router.refresh([match_all("all")])
    agent = NormaliserAgent(SETTINGS, registry.view, router)
    agent.assign(0, [])
    batch = [*raw_batch(60, 20), Rec(60, b"not an envelope")]
    writes = agent.step(0, batch, now=START + 100)
    observations = to(writes, f"{PREFIX}.observations")
    assert observations
    for w in observations:
        doc = orjson.loads(w.value or b"")
        assert errors("observation", doc) == []
        assert doc["registered"] is True
        assert w.key == doc["device_id"].encode()
    # the match-all subscription of the fleet's tenant gets a copy of each, but of a personal
    # device's (the fleet's parking sensors): it declares no processing activity
    copies = [w.value for w in to(writes, f"{PREFIX}.sub.{TENANT}.all")]
    personal = [w.value for w in observations if b'"classification":"personal"' in (w.value or b"")]
    assert personal
    assert copies == [w.value for w in observations if w.value not in personal]
    (letter,) = to(writes, f"{PREFIX}.deadletter")
    assert orjson.loads(letter.value or b"")["reason"] == "malformed_json"
    # the duplicate state: one write per device whose frames changed, in the input partition
    state = to(writes, agent.changelog or "")
    keys = [orjson.loads(w.key) for w in state]
    devices = [k for k in keys if isinstance(k, str)]
    assert len(devices) == len(set(devices)) > 0
    # and their quality series, one write per device under ["quality", device]
    series = [k[1] for k in keys if isinstance(k, list)]
    assert all(k[0] == "quality" for k in keys if isinstance(k, list))
    assert len(series) == len(set(series)) > 0
    assert all(w.partition == 0 for w in state)


async def test_the_state_restored_from_its_writes_drops_copies_but_not_a_replay() -> None:
    registry = await registry_of(10)
    first = NormaliserAgent(SETTINGS, registry.view)
    first.assign(3, [])
    batch = raw_batch(20, 10)
    written = first.step(3, batch, now=START + 50)
    stored = {w.key: w.value for w in to(written, first.changelog or "") if w.value is not None}
    restored = NormaliserAgent(SETTINGS, registry.view)
    assert restored.assign(3, [StoredEntry(k, v) for k, v in stored.items()]) == []
    # the same records again (a replay after a crash): the same observations, same event ids
    again = restored.step(3, batch, now=START + 60)
    assert [w.value for w in to(again, f"{PREFIX}.observations")] == [
        w.value for w in to(written, f"{PREFIX}.observations")
    ]
    # a copy of a LoRaWAN frame under another offset (a second gateway) is a duplicate
    lorawan = next(r for r in batch if b'"format":"tts-v3"' in (r.value or b""))
    copy = Rec(100, lorawan.value, lorawan.key, 3)
    assert to(restored.step(3, [copy], now=START + 61), f"{PREFIX}.observations") == []
    restored.revoke(3)
    assert 3 not in restored.partitions


async def test_a_simulator_run_again_within_the_window_is_not_taken_for_copies_of_the_last() -> (
    None
):
    # `cityhub simulate` stopped and started again a minute later: every device counts from
    # frame 0 again, in a session of its own (another DevAddr), as a device that rejoined does.
    registry = await registry_of(10)
    observations = f"{PREFIX}.observations"
    agent = NormaliserAgent(SETTINGS, registry.view)
    agent.assign(0, [])
    first = to(agent.step(0, raw_batch(20, 10, session=5), now=START + 30), observations)
    rerun = raw_batch(20, 10, session=6, first_offset=20, start=START + 60)
    again = to(agent.step(0, rerun, now=START + 90), observations)
    assert len(again) == len(first) > 0
    # in the same session (as every run was before runs had sessions of their own) the
    # LoRaWAN frames 0, 1, ... of the second run were dropped as copies of the first run's
    same = NormaliserAgent(SETTINGS, registry.view)
    same.assign(0, [])
    same.step(0, raw_batch(20, 10, session=5), now=START + 30)
    rerun = raw_batch(20, 10, session=5, first_offset=20, start=START + 60)
    assert len(to(same.step(0, rerun, now=START + 90), observations)) < len(first)


async def test_what_a_network_server_sends_besides_uplinks_is_counted_not_written() -> None:
    registry = await registry_of(5)
    agent = NormaliserAgent(SETTINGS, registry.view, None)
    agent.assign(0, [])
    device = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0004a30b001c0530"
    passed_by = [
        ("tts-v3", "v3/app/devices/dev-1/join", b"{}"),
        ("tts-v3", "v3/app/devices/dev-1/down/ack", b"{}"),
        ("chirpstack-v4", f"{device}/event/status", b"{}"),
    ]
    batch = [
        Rec(i, RawEnvelope("mqtt", fmt, topic, "k", rfc3339(START), payload).to_json())
        for i, (fmt, topic, payload) in enumerate(passed_by)
    ]

    def counted(network: str, kind: str) -> float:
        return (
            REGISTRY.get_sample_value(
                "cityhub_normaliser_ignored_total", {"network": network, "kind": kind}
            )
            or 0.0
        )

    before = [counted("tts", "join"), counted("tts", "downlink"), counted("chirpstack", "status")]
    assert agent.step(0, batch, now=START + 1) == []  # no observation, no dead letter, no state
    after = [counted("tts", "join"), counted("tts", "downlink"), counted("chirpstack", "status")]
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1]
