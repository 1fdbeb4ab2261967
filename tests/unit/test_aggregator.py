"""The aggregator's pure helpers: table keys, rebuilding states from table entries, and the
watermark header that carries a device partition's watermark across the repartition."""

import orjson

from cityhub.schemas.settings import Settings
from cityhub.streams.agents.aggregator import (
    WATERMARK_HEADER,
    read_watermark,
    state_from_entries,
    table_key,
    watermark_header,
    window_config,
)
from cityhub.streams.windows import US, Point, WindowConfig, WindowState, epoch_us

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
