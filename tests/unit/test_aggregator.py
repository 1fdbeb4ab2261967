"""The aggregator: its pure helpers (table keys, rebuilding states from table entries, the
watermark header that carries a device partition's watermark across the repartition) and the
agents as the runtime drives them (assign, step, tick), without a broker."""

from dataclasses import dataclass, field

import orjson

from cityhub.schemas.settings import Settings
from cityhub.streams.aggregation.agent import (
    WATERMARK_HEADER,
    AggregatorAgent,
    read_watermark,
    state_from_entries,
    table_key,
    watermark_header,
    window_config,
)
from cityhub.streams.aggregation.points import US, Point, epoch_us, format_us
from cityhub.streams.aggregation.window_config import WindowConfig
from cityhub.streams.aggregation.windows import WindowState
from cityhub.streams.runtime.agent import StoredEntry, Write

T0 = epoch_us("2026-11-29T10:00:00Z")
CONFIG = WindowConfig(sizes=(60, 900), grace=30, groupings=("device",))


def point(eid: str, at_s: float, device: str = "d1") -> Point:
    return Point(eid, device, None, "temperature", 1.5, "Cel", T0 + round(at_s * US), "city")


def table_of(states: dict[int, WindowState]) -> dict[str, object]:
    """What the agent leaves in a table: every change of every partition, as JSON."""
    table: dict[str, object] = {}
    for partition, state in states.items():
        meta, entries = state.take_changes()
        for key, value in entries.items():
            if value is None:
                table.pop(table_key(partition, key), None)
            else:
                table[table_key(partition, key)] = orjson.loads(orjson.dumps(value))
        table[table_key(partition, "meta")] = orjson.loads(orjson.dumps(meta))
    return table


def canonical(state: WindowState) -> tuple[object, ...]:
    data = state.to_json()
    return data["watermark"], data["counters"], sorted(orjson.dumps(e) for e in data["entries"])


def test_states_are_rebuilt_per_partition_from_one_pass_over_the_table() -> None:
    states = {p: WindowState(CONFIG) for p in (0, 1, 10)}
    for p, state in states.items():
        for i in range(5):
            state.add(point(f"{p}-{i}", 20 * i + p, device=f"d{p}"))
    table = table_of(states)
    table["unrelated"] = {"x": 1}  # other keys of the table are left alone
    items = list(reversed(list(table.items())))  # a table gives them back in any order
    rebuilt = state_from_entries(items, [0, 1, 10, 7], CONFIG)
    for p in (0, 1, 10):
        assert canonical(rebuilt[p]) == canonical(states[p])
    assert len(rebuilt[7]) == 0  # nothing stored yet
    assert rebuilt[7].watermark is None
    # Partition 1's entries are not partition 10's, though "10/" starts with "1".
    assert len(rebuilt[1]) == len(states[1])


def test_a_rebuilt_state_writes_again_what_it_had_emitted() -> None:
    state = WindowState(CONFIG)
    state.add(point("a", 10))
    (closed,) = [a for a in state.add(point("b", 65)) if a.window_size == 60]
    rebuilt = state_from_entries(table_of({3: state}).items(), [3], CONFIG)[3]
    assert rebuilt.emitted() == [closed]


def test_watermark_header_round_trip_and_malformed_ones() -> None:
    name, value = watermark_header(3, -5)
    assert name == WATERMARK_HEADER
    assert read_watermark([("other", b"1:2"), (name, value)]) == (3, -5)
    assert read_watermark({name: b"12:1795946400000000"}) == (12, 1795946400000000)
    for bad in (None, [], [(name, b"garbage")], [(name, b"1:x")], [(name, None)]):
        assert read_watermark(bad) is None


def test_window_config_follows_the_settings_and_areas_follow_upstream() -> None:
    settings = Settings()
    device = window_config(settings, "device")
    area = window_config(settings, "area")
    assert device.sizes == tuple(settings.aggregation.window_sizes_seconds)
    assert device.grace == settings.aggregation.grace_seconds
    assert (device.groupings, device.own_watermark) == (("device",), True)
    assert (area.groupings, area.own_watermark) == (("area",), False)


# -- the agents ---------------------------------------------------------------------------------

SETTINGS = Settings()
PREFIX = SETTINGS.kafka.topic_prefix


@dataclass(frozen=True)
class Rec:
    """An input record as the runtime hands it over."""

    offset: int
    value: bytes | None
    partition: int = 0
    topic: str = f"{PREFIX}.observations"
    key: bytes | None = b"d1"
    timestamp: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def observation(
    eid: str, at_s: float, *, device: str = "d1", area: str | None = "centrum"
) -> bytes:
    return orjson.dumps(
        {
            "event_id": eid,
            "device_id": device,
            "quantity": "temperature",
            "value": 20.0,
            "unit": "Cel",
            "observed_at": format_us(T0 + round(at_s * US)),
            "tenant": "city",
            "area": area,
            "classification": "public",
        }
    )


def to(writes: list[Write], topic: str) -> list[Write]:
    return [w for w in writes if w.topic == topic]


def test_a_batch_writes_its_state_once_and_closed_windows_and_forwards_area_observations() -> None:
    agent = AggregatorAgent(SETTINGS, "device")
    assert agent.assign(0, []) == []
    # three observations of one series within one minute, then one that closes it
    batch = [Rec(i, observation(f"e{i}", 5 * i)) for i in range(3)] + [
        Rec(3, observation("e3", 61))
    ]
    writes = agent.step(0, batch, now=T0 / US + 3600)
    changelog = to(writes, agent.changelog or "")
    keys = [orjson.loads(w.key) for w in changelog]
    # once per batch: the one series entry and the meta last, not one write per observation
    assert len(keys) == len(set(keys)) == 2
    assert keys[-1] == "0/meta"
    assert all(w.partition == 0 for w in changelog)
    (closed,) = [
        orjson.loads(w.value or b"")
        for w in to(writes, f"{PREFIX}.aggregates")
        if orjson.loads(w.value or b"")["window_size"] == 60
    ]
    assert closed["count"] == 3
    forwarded = to(writes, f"{PREFIX}.observations-by-area")
    assert [w.key for w in forwarded] == [b"city/centrum"] * 4
    assert all(read_watermark(w.headers) is not None for w in forwarded)


def test_a_state_restored_from_its_writes_equals_the_live_one() -> None:
    live = AggregatorAgent(SETTINGS, "device")
    live.assign(2, [])
    stored: dict[bytes, bytes] = {}
    for batch in ([Rec(0, observation("a", 10), 2)], [Rec(1, observation("b", 70), 2)]):
        for w in to(live.step(2, batch, now=T0 / US + 3600), live.changelog or ""):
            if w.value is None:
                stored.pop(w.key, None)
            else:
                stored[w.key] = w.value
    restored = AggregatorAgent(SETTINGS, "device")
    again = restored.assign(2, [StoredEntry(k, v) for k, v in stored.items()])
    assert canonical(restored.states[2]) == canonical(live.states[2])
    # the closed minute is written again, in case a crash lost its emission
    assert [orjson.loads(w.value or b"")["window_size"] for w in again] == [60]
    # a record seen before the crash is a duplicate for the restored state
    assert to(restored.step(2, [Rec(1, observation("b", 70), 2)], now=T0 / US + 3600), "x") == []
    assert restored.states[2].counters["duplicates"] == 1


def test_a_quiet_caught_up_partition_closes_its_windows_on_the_clock_and_tells_the_areas() -> None:
    agent = AggregatorAgent(SETTINGS, "device")
    agent.assign(0, [])
    at = T0 / US
    agent.step(0, [Rec(0, observation("a", 10))], now=at + 20)
    idle = SETTINGS.aggregation.idle_close_seconds
    assert agent.tick(at + 20 + idle / 2, lambda p: True) == [
        w for w in agent.tick(at + 20 + idle / 2, lambda p: True) if w.value is None
    ]  # not quiet long enough: only the watermark markers
    assert not to(agent.tick(at + 20 + idle + 1, lambda p: False), f"{PREFIX}.aggregates")
    writes = agent.tick(at + 3 * 3600, lambda p: True)  # quiet and caught up: closed
    assert {
        orjson.loads(w.value or b"")["window_size"] for w in to(writes, f"{PREFIX}.aggregates")
    } == {
        60,
        900,
        3600,
    }
    markers = [w for w in writes if w.topic == f"{PREFIX}.observations-by-area"]
    assert sorted(w.partition for w in markers) == list(range(SETTINGS.kafka.partitions))
    assert all(
        w.value is None and read_watermark(w.headers) == (0, agent.states[0].watermark)
        for w in markers
    )


def test_area_windows_follow_the_least_device_watermark_and_skip_what_is_not_an_observation() -> (
    None
):
    agent = AggregatorAgent(SETTINGS, "area")
    agent.assign(1, [])
    n = SETTINGS.kafka.partitions
    late = T0 + 30 * US
    obs = Rec(
        0,
        observation("a", 10),
        1,
        f"{PREFIX}.observations-by-area",
        b"city/centrum",
        headers=[watermark_header(0, late)],
    )
    assert agent.step(1, [obs, Rec(1, b"not json", 1)], now=T0 / US) != []
    assert agent.states[1].watermark is None  # one device partition of n reported
    markers = [
        Rec(
            2 + s,
            None,
            1,
            f"{PREFIX}.observations-by-area",
            headers=[watermark_header(s, T0 + 120 * US)],
        )
        for s in range(1, n)
    ]
    agent.step(1, markers, now=T0 / US)
    assert agent.states[1].watermark == late  # the least of all, partition 0's
