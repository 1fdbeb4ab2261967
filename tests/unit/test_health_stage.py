"""The health stage's pure cores and agents, without a broker: what a device's activity and dead
letters add up to, the records they make (the same bytes after a replay), the throttle, and the
restore from the changelog."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from cityhub.schemas.device_health import (
    DeviceActivity,
    DeviceDeadLetters,
    HealthState,
    device_state,
)
from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec, TenantSpec
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.topics import HEALTH_ACTIVITY, Topics, changelog
from cityhub.streams.health.activity import ActivityState, Change
from cityhub.streams.health.agent import DeadLetterHealthAgent, DeviceActivityAgent
from cityhub.streams.health.dead_letters import DeadLetterState
from cityhub.streams.health.lookups import device_locator, interval_lookup, registered_lookup
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.runtime.agent import StoredEntry, Write

T0 = 1_796_371_200.0  # 2026-12-04T00:00:00Z
TOPICS = Topics.for_prefix("cityhub")


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 0


def obs(at: float, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": f"e-{at}-{over.get('quantity', 'pm2_5')}",
        "device_id": "aq-1",
        "tenant": "city",
        "device_type": "air",
        "quantity": "pm2_5",
        "value": 7.5,
        "unit": "ug/m3",
        "observed_at": rfc3339(at - 2),
        "received_at": rfc3339(at),
        "network": {"name": "tts", "gateways": [{"id": "g1", "rssi": -110, "snr": -3.5}]},
        "quality": [],
    }
    doc.update(over)
    return doc


def letter(at: float, reason: str = "undecodable_payload", device: str = "aq-1") -> dict[str, Any]:
    return {
        "stage": "normalise",
        "reason": reason,
        "failed_at": rfc3339(at),
        "device": device,
        "kafka_topic": "cityhub.raw",
        "kafka_partition": 0,
        "kafka_offset": int(at * 10) + len(reason),
    }


# --- activity -------------------------------------------------------------------------------
def test_activity_counts_readings_flags_and_times() -> None:
    state = ActivityState(tenant="city", device="aq-1")
    assert state.add(obs(T0), 0, 2700) is Change.FIRST_SEEN
    assert state.add(obs(T0 + 60, quality=["spike"]), 1, 2700) is Change.NEW_FLAG
    assert state.add(obs(T0 + 120, quality=["spike", "out_of_range"]), 2, 2700) is Change.NEW_FLAG
    assert state.add(obs(T0 + 180, quality=["spike"]), 3, 2700) is None
    record = state.record()
    assert (record.readings, record.readings_24h, record.flagged_24h) == (4, 4, 3)
    assert record.flags_24h == {"out_of_range": 1, "spike": 3}
    assert record.flagged_share_24h == 0.75
    assert record.first_seen == rfc3339(T0)
    assert record.last_seen == rfc3339(T0 + 180)
    assert record.last_observed == rfc3339(T0 + 178)
    assert record.device_type == "air"


def test_a_replayed_observation_counts_nothing() -> None:
    state = ActivityState(tenant="city", device="aq-1")
    state.add(obs(T0), 5, 2700)
    before = state.record()
    assert state.add(obs(T0), 5, 2700) is None
    assert state.add(obs(T0 + 1), 4, 2700) is None
    assert state.record() == before


def test_an_observation_written_again_upstream_counts_nothing() -> None:
    state = ActivityState(tenant="city", device="aq-1")
    state.add(obs(T0), 0, 2700)
    state.add(obs(T0, quantity="temperature"), 1, 2700)
    before = state.record()
    # A normaliser that crashed wrote the uplink again: the same event ids at new offsets.
    assert state.add(obs(T0), 7, 2700) is None
    assert state.add(obs(T0, quantity="temperature"), 8, 2700) is None
    assert state.record() == before
    again = ActivityState.from_json(orjson.loads(orjson.dumps(state.to_json())))
    assert again.add(obs(T0), 9, 2700) is None, "the ids come back from the changelog"
    # Only the last RECENT_IDS are kept.
    for i in range(1, 70):
        state.add(obs(T0 + i), 10 + i, 2700)
    assert len(state.recent) == 64
    counted = state.readings
    state.add(obs(T0), 100, 2700)
    assert state.readings == counted + 1, "forgotten beyond the last 64"


def test_back_after_a_silence_is_a_change() -> None:
    state = ActivityState(tenant="city", device="aq-1")
    state.add(obs(T0), 0, 2700)
    assert state.add(obs(T0 + 2700), 1, 2700) is None
    assert state.add(obs(T0 + 2700 + 2701), 2, 2700) is Change.BACK


def test_battery_trend_prefers_charge_and_has_a_slope() -> None:
    state = ActivityState(tenant="city", device="aq-1")
    offset = 0
    for hour in range(5):
        for minute in (0, 30):
            at = T0 + hour * 3600 + minute * 60
            value = 3.6 - 0.01 * hour
            state.add(obs(at, quantity="battery_voltage", value=value, unit="V"), offset, 1e9)
            offset += 1
    battery = state.record().battery
    assert battery is not None
    assert (battery.quantity, battery.unit, battery.hours_from) == (
        "battery_voltage",
        "V",
        rfc3339(T0),
    )
    assert battery.hourly == [3.6, 3.59, 3.58, 3.57, 3.56]
    assert battery.slope_per_day == pytest.approx(-0.24)
    # A charge in % appears: the trend follows it from now on.
    state.add(obs(T0 + 5 * 3600, quantity="battery", value=80, unit="%"), offset, 1e9)
    state.add(obs(T0 + 5 * 3600 + 1, quantity="battery_voltage", value=3.5), offset + 1, 1e9)
    battery = state.record().battery
    assert battery is not None
    assert (battery.quantity, battery.last, battery.hourly) == ("battery", 80.0, [80.0])
    assert battery.slope_per_day is None


def test_signal_counts_the_best_gateway_once_per_uplink() -> None:
    state = ActivityState(tenant="city", device="aq-1")
    gateways = [{"id": "a", "rssi": -120, "snr": -8}, {"id": "b", "rssi": -100, "snr": 0}]
    uplink = {"name": "tts", "gateways": gateways}
    state.add(obs(T0, network=uplink, quantity="temperature"), 0, 1e9)
    state.add(obs(T0, network=uplink, quantity="pm2_5"), 1, 1e9)  # the same uplink
    other = {"name": "tts", "gateways": [{"id": "a", "rssi": -90, "snr": 2.5}, "junk"]}
    state.add(obs(T0 + 60, network=other), 2, 1e9)
    record = state.record()
    assert record.rssi is not None
    assert record.snr is not None
    assert (record.rssi.last, record.rssi.hourly) == (-90.0, [-95.0])
    assert (record.snr.last, record.snr.hourly) == (2.5, [1.25])
    state.add(obs(T0 + 120, network={"name": "mqtt"}), 3, 1e9)
    assert state.record().rssi == record.rssi


def test_the_day_kept_moves_with_the_device() -> None:
    state = ActivityState(tenant="city", device="aq-1")
    state.add(obs(T0, quality=["spike"]), 0, 1e9)
    state.add(obs(T0 + 30 * 3600), 1, 1e9)
    record = state.record()
    assert (record.readings, record.readings_24h, record.flagged_24h) == (2, 1, 0)
    assert record.flags_24h == {}
    assert state.add(obs(T0 + 31 * 3600, quality=["spike"]), 2, 1e9) is Change.NEW_FLAG


@pytest.mark.parametrize(
    "bad",
    [{"received_at": "yesterday"}, {"received_at": None}, {"quality": "spike"}, {"value": "x"}],
)
def test_odd_observations_do_not_break_the_state(bad: dict[str, Any]) -> None:
    state = ActivityState(tenant="city", device="aq-1")
    state.add(obs(T0, **bad), 0, 1e9)
    state.record()


def test_the_changelog_entry_restores_the_same_record() -> None:
    state = ActivityState(tenant="city", device="aq-1")
    for i in range(50):
        quantity = "battery" if i % 3 == 0 else "pm2_5"
        state.add(
            obs(T0 + i * 600, quantity=quantity, value=90 - i / 10, quality=["spike"] * (i % 2)),
            i,
            1e9,
        )
    again = ActivityState.from_json(orjson.loads(orjson.dumps(state.to_json())))
    assert again.record() == state.record()
    assert again.add(obs(T0 + 49 * 600), 49, 1e9) is None  # its offset came back too


# --- dead letters ---------------------------------------------------------------------------
def test_dead_letters_count_per_reason_within_a_day() -> None:
    state = DeadLetterState(tenant="city", device="aq-1")
    assert state.add(letter(T0), 0) is Change.NEW_FLAG
    assert state.add(letter(T0 + 60), 1) is None
    assert state.add(letter(T0 + 90, "identity_mismatch"), 2) is Change.NEW_FLAG
    assert state.add(letter(T0 + 90, "identity_mismatch"), 2) is None  # replayed
    record = state.record(3)
    assert record.partition == 3
    assert [(r.reason, r.count, r.last_at) for r in record.reasons] == [
        ("identity_mismatch", 1, rfc3339(T0 + 90)),
        ("undecodable_payload", 2, rfc3339(T0 + 60)),
    ]
    assert state.add(letter(T0 + 25 * 3600, "oversize"), 3) is Change.NEW_FLAG
    assert [r.reason for r in state.record().reasons] == ["oversize"]
    assert state.add({**letter(T0), "kafka_offset": 1}, 4) is None  # older than the day kept
    assert [r.reason for r in state.record().reasons] == ["oversize"]
    again = DeadLetterState.from_json(orjson.loads(orjson.dumps(state.to_json())))
    assert again.record() == state.record()


def test_a_dead_letter_written_again_counts_once() -> None:
    state = DeadLetterState(tenant="city", device="aq-1")
    state.add(letter(T0), 0)
    # The normaliser crashed and dead-lettered the same raw record again, later.
    assert state.add({**letter(T0 + 30), "kafka_offset": letter(T0)["kafka_offset"]}, 1) is None
    assert [r.count for r in state.record().reasons] == [1]
    bridge = {"stage": "bridge", "reason": "oversize", "failed_at": rfc3339(T0), "sha256": "ab"}
    state.add({**bridge, "device": "aq-1", "received_at": rfc3339(T0)}, 2)
    state.add({**bridge, "device": "aq-1", "received_at": rfc3339(T0 + 5)}, 3)  # sent again
    again = DeadLetterState.from_json(orjson.loads(orjson.dumps(state.to_json())))
    assert again.add({**bridge, "device": "aq-1", "received_at": rfc3339(T0 + 5)}, 4) is None
    assert [(r.reason, r.count) for r in again.record().reasons] == [
        ("oversize", 2),
        ("undecodable_payload", 1),
    ]


@pytest.mark.parametrize("bad", [{"reason": 5}, {"failed_at": "never"}, {"failed_at": None}])
def test_odd_dead_letters_are_not_counted(bad: dict[str, Any]) -> None:
    state = DeadLetterState(tenant="city", device="aq-1")
    assert state.add({**letter(T0), **bad}, 0) is None
    assert state.record().reasons == []


# --- who is silent --------------------------------------------------------------------------
def test_device_state() -> None:
    assert device_state(None, T0, 900, 3) is HealthState.NEVER_SEEN
    assert device_state(T0, T0 + 2700, 900, 3) is HealthState.OK
    assert device_state(T0, T0 + 2701, 900, 3) is HealthState.SILENT
    assert device_state(T0 + 60, T0, 900, 3) is HealthState.OK


# --- the agents -----------------------------------------------------------------------------
def settings(**health: Any) -> Settings:
    return Settings.model_validate({"health": health})


def rec(topic: str, offset: int, doc: dict[str, Any] | None, partition: int = 0) -> Rec:
    value = None if doc is None else orjson.dumps(doc)
    return Rec(topic, partition, offset, b"aq-1", value)


def health_writes(writes: list[Write]) -> list[Write]:
    return [w for w in writes if w.topic == TOPICS.device_health]


def test_the_activity_agent_writes_changes_at_once_and_the_rest_within_the_minute() -> None:
    agent = DeviceActivityAgent(settings(), lambda tenant, device: 900)
    agent.assign(0, [])
    writes = agent.step(0, [rec(agent.topic, 0, obs(T0))], now=T0)
    [first] = health_writes(writes)
    assert (first.key, first.partition) == (b"device/city/aq-1", 0)
    assert DeviceActivity.model_validate_json(first.value or b"").readings == 1
    state_writes = [w for w in writes if w.topic == changelog("cityhub", HEALTH_ACTIVITY)]
    assert [(w.key, w.partition) for w in state_writes] == [(b"city/aq-1", 0)]
    # Within the minute: the state is kept, the record waits.
    writes = agent.step(0, [rec(agent.topic, 1, obs(T0 + 10))], now=T0 + 10)
    assert health_writes(writes) == []
    assert orjson.loads(writes[0].value or b"")["w"] is False
    assert agent.tick(T0 + 30, lambda p: True) == []
    writes = agent.tick(T0 + 61, lambda p: True)
    [due] = health_writes(writes)
    assert DeviceActivity.model_validate_json(due.value or b"").readings == 2
    assert agent.tick(T0 + 200, lambda p: True) == []
    # A new flag is written at once, inside the minute.
    writes = agent.step(0, [rec(agent.topic, 2, obs(T0 + 70, quality=["flat_line"]))], T0 + 70)
    assert len(health_writes(writes)) == 1


def test_a_device_with_a_short_interval_is_written_often_enough_never_to_look_silent() -> None:
    """Readers call a device silent after grace (3) intervals: with a 3 s interval its record
    may not wait the minute, or a device that keeps its interval would look silent between
    writes. It waits (3 - 1) / 2 intervals at most: 3 s."""
    agent = DeviceActivityAgent(settings(), lambda tenant, device: 3)
    agent.assign(0, [])
    assert len(health_writes(agent.step(0, [rec(agent.topic, 0, obs(T0))], now=T0))) == 1
    assert health_writes(agent.step(0, [rec(agent.topic, 1, obs(T0 + 2))], now=T0 + 2)) == []
    [due] = health_writes(agent.tick(T0 + 3, lambda p: True))
    record = DeviceActivity.model_validate_json(due.value or b"")
    assert record.readings == 2
    # Within every 3 s the next reading's record goes out with its batch.
    assert len(health_writes(agent.step(0, [rec(agent.topic, 2, obs(T0 + 6))], now=T0 + 6))) == 1


def test_the_activity_agent_skips_unregistered_and_invalid_records() -> None:
    agent = DeviceActivityAgent(settings(), lambda tenant, device: 900)
    records = [
        rec(agent.topic, 0, obs(T0, tenant=None)),
        rec(agent.topic, 1, None),
        Rec(agent.topic, 0, 2, None, b"not json"),
        Rec(agent.topic, 0, 3, None, b"[1, 2]"),
    ]
    assert agent.step(0, records, now=T0) == []


def test_a_restored_unwritten_state_is_written_at_the_first_tick_and_replays_are_idempotent() -> (
    None
):
    agent = DeviceActivityAgent(settings(), lambda tenant, device: 900)
    agent.assign(0, [])
    agent.step(0, [rec(agent.topic, 0, obs(T0))], now=T0)
    writes = agent.step(0, [rec(agent.topic, 1, obs(T0 + 5))], now=T0 + 5)
    stored = [StoredEntry(w.key, w.value or b"") for w in writes if w.topic == agent.changelog]
    # A crash: another worker restores the partition and replays from the committed offset.
    fresh = DeviceActivityAgent(settings(), lambda tenant, device: 900)
    fresh.assign(0, stored)
    [written] = health_writes(fresh.tick(T0 + 6, lambda p: True))
    again = fresh.step(0, [rec(agent.topic, 1, obs(T0 + 5))], now=T0 + 400)
    [rewritten] = health_writes(again)
    assert rewritten.value == written.value
    assert DeviceActivity.model_validate_json(written.value or b"").readings == 2


def test_the_dead_letter_agent_finds_the_device_and_keys_by_partition() -> None:
    located = {"aq-1": ("city", "aq-1"), "70b3d57ed0000001": ("city", "aq-2")}
    agent = DeadLetterHealthAgent(settings(), located.get)
    records = [
        rec(agent.topic, 0, letter(T0), partition=2),
        rec(agent.topic, 1, letter(T0, device="70b3d57ed0000001"), partition=2),
        rec(agent.topic, 2, letter(T0, device="stranger"), partition=2),
        rec(agent.topic, 3, {"reason": "malformed_json", "failed_at": rfc3339(T0)}, partition=2),
    ]
    writes = health_writes(agent.step(2, records, now=T0))
    assert sorted(w.key for w in writes) == [b"deadletters/city/aq-1/2", b"deadletters/city/aq-2/2"]
    doc = DeviceDeadLetters.model_validate_json(writes[0].value or b"")
    assert (doc.partition, doc.reasons[0].reason) == (2, "undecodable_payload")


def test_a_deleted_device_loses_its_records_at_the_next_sweep() -> None:
    registered = {("city", "aq-1"), ("city", "aq-2")}
    agent = DeviceActivityAgent(
        settings(), lambda tenant, device: 900, lambda t, d: (t, d) in registered
    )
    agent.assign(0, [])
    agent.step(
        0, [rec(agent.topic, 0, obs(T0)), rec(agent.topic, 1, obs(T0, device_id="aq-2"))], T0
    )
    agent.tick(T0 + 1, lambda p: True)  # the first sweep: both still registered
    registered.discard(("city", "aq-2"))
    assert health_writes(agent.tick(T0 + 30, lambda p: True)) == []  # not yet time to sweep
    writes = agent.tick(T0 + 62, lambda p: True)
    tombstones = [(w.topic, w.key, w.value) for w in writes if w.value is None]
    assert tombstones == [
        (TOPICS.device_health, b"device/city/aq-2", None),
        (changelog("cityhub", HEALTH_ACTIVITY), b"city/aq-2", None),
    ]
    assert set(agent.states[0]) == {"city/aq-1"}
    # The dead-letter agent forgets it the same way, one record per dead-letter partition.
    letters = DeadLetterHealthAgent(
        settings(), {"aq-2": ("city", "aq-2")}.get, lambda t, d: (t, d) in registered
    )
    letters.step(3, [rec(letters.topic, 0, letter(T0, device="aq-2"), partition=3)], T0)
    swept = letters.tick(T0 + 1, lambda p: True)
    assert [(w.key, w.value) for w in swept if w.topic == TOPICS.device_health] == [
        (b"deadletters/city/aq-2/3", None)
    ]


# --- the registry lookups -------------------------------------------------------------------
async def test_lookups_read_the_registry() -> None:
    store = InMemoryRegistryStore()
    await store.start()
    registry = Registry(store)
    admin = Principal.system()
    await registry.create_tenant(admin, TenantSpec(id="city", name="City"))
    await registry.create_type(
        admin, "city", DeviceTypeSpec(id="air", name="Air", expected_interval_seconds=300)
    )
    await registry.create_type(admin, "city", DeviceTypeSpec(id="bin", name="Bin"))
    for spec in (
        {"id": "aq-1", "name": "A", "type": "air"},
        {"id": "aq-2", "name": "B", "type": "air", "expected_interval_seconds": 60},
        {"id": "bin-1", "name": "C", "type": "bin", "dev_eui": "70B3D57ED0000001"},
    ):
        await registry.create_device(admin, "city", DeviceSpec.model_validate(spec))
    interval_of = interval_lookup(store.view, 900)
    assert [interval_of("city", d) for d in ("aq-1", "aq-2", "bin-1")] == [300, 60, 900]
    assert interval_of("elsewhere", "aq-1") == 900
    assert interval_of("city", "gone") == 900
    locate = device_locator(store.view)
    assert locate("aq-1") == ("city", "aq-1")
    assert locate("70-B3-D5-7E-D0-00-00-01") == ("city", "bin-1")
    assert locate("nobody") is None
    registered = registered_lookup(store.view)
    assert registered("city", "aq-1")
    assert not registered("elsewhere", "aq-1")
    assert not registered("city", "gone")
