"""The open-data windows: the threshold, the merge, rounding, closing once, the changelog."""

from __future__ import annotations

import orjson

from cityhub.schemas.open_data import MERGED_AREA
from cityhub.streams.opendata.points import DEVICE_AS_SUBJECT, OpenPoint, device_key
from cityhub.streams.opendata.windows import (
    AreaWindow,
    GroupKey,
    PublisherConfig,
    PublisherState,
    publishable,
)
from tests.unit.opendata_support import HOUR_US

START = 1_764_756_000 * 1_000_000  # 2025-12-03T10:00:00Z, a whole hour
END = START + HOUR_US
GROUP = GroupKey("air", "pm2_5", "ug/m3", START)
GRACE = 120 * 1_000_000


def point(
    device: str,
    area: str = "centrum",
    value: float = 10.0,
    *,
    subject: str | None = None,
    personal: bool = False,
    at: int = START + 60_000_000,
) -> OpenPoint:
    return OpenPoint(
        "air",
        area,
        "pm2_5",
        "ug/m3",
        value,
        at,
        device,
        subject or DEVICE_AS_SUBJECT + device,
        personal,
    )


def window(area: str, *points: OpenPoint) -> AreaWindow:
    w = AreaWindow(area, END)
    for p in points:
        w.add(p)
    return w


def decide(*windows: AreaWindow, k: int = 3, merge: bool = True) -> list[tuple[str, int]]:
    decision = publishable(GROUP, windows, k=k, merge=merge, decimals=1, grace_us=GRACE)
    return [(w.area, w.readings) for w in decision.windows]


def test_an_area_with_k_devices_is_published_and_one_with_fewer_is_not() -> None:
    big = window("centrum", *(point(f"d{i}") for i in range(3)))
    small = window("noord", point("n1"), point("n2"))
    assert decide(big, small, merge=False) == [("centrum", 3)]
    decision = publishable(GROUP, [big, small], k=3, merge=False, decimals=1, grace_us=GRACE)
    assert (decision.withheld, decision.merged) == (1, 0)


def test_one_tenants_own_devices_never_make_up_anothers_threshold() -> None:
    # A review: four devices of one tenant beside another tenant's one made k = 5, and the
    # other's reading came out as the max (and mean * readings less their own).
    victim = point(device_key("beta", "secret"), value=17.3)
    sybils = [point(device_key("gamma", f"gs{i}"), value=10.0) for i in range(4)]
    assert decide(window("zz-solo", victim, *sybils), k=5, merge=False) == []
    # Covered: gamma's own four taken away, five of beta's are left, and the other way round.
    betas = [point(device_key("beta", f"b{i}")) for i in range(5)]
    assert decide(window("zz", *betas, *sybils), k=5, merge=False) == []  # 9 - 5 = 4 < 5
    gammas = [point(device_key("gamma", f"g{i}")) for i in range(5)]
    assert decide(window("zz", *betas, *gammas), k=5, merge=False) == [("zz", 10)]
    # One tenant's own devices alone: nobody but that tenant knows any of them.
    assert decide(window("zz", *betas), k=5, merge=False) == [("zz", 5)]
    # Subjects likewise, a personal device without one standing for its own.
    people = [point(device_key("beta", f"p{i}"), personal=True) for i in range(5)]
    assert decide(window("zz", *people), k=5, merge=False) == [("zz", 5)]
    one = [point(device_key("beta", "p0"), personal=True)]
    mixed = one + [point(device_key("gamma", f"q{i}"), personal=True) for i in range(4)]
    assert decide(window("zz", *mixed), k=5, merge=False) == []


def test_many_readings_of_few_devices_do_not_pass() -> None:
    busy = window("centrum", *(point(f"d{i % 2}", value=i) for i in range(100)))
    assert decide(busy) == []


def test_small_areas_are_merged_when_together_they_pass() -> None:
    big = window("centrum", *(point(f"d{i}") for i in range(3)))
    a = window("noord", point("n1"), point("n2"))
    b = window("oost", point("o1"))
    assert decide(big, a, b) == [("centrum", 3), (MERGED_AREA, 3)]
    decision = publishable(GROUP, [big, a, b], k=3, merge=True, decimals=1, grace_us=GRACE)
    assert (decision.withheld, decision.merged) == (0, 2)


def test_a_merged_group_below_the_threshold_is_withheld() -> None:
    a = window("noord", point("n1"))
    b = window("oost", point("o1"))
    assert decide(a, b) == []


def test_a_merged_group_sharing_a_device_with_a_published_area_is_withheld() -> None:
    big = window("centrum", *(point(f"d{i}") for i in range(3)))
    # d0 moved from centrum to noord within the window.
    a = window("noord", point("d0"), point("n1"))
    b = window("oost", point("o1"), point("o2"))
    assert decide(big, a, b) == [("centrum", 3)]


def test_personal_contributors_need_k_subjects_too() -> None:
    # Three devices of one person (a household's sensors): three devices, one subject.
    one_person = window("centrum", *(point(f"p{i}", subject="s1", personal=True) for i in range(3)))
    assert decide(one_person) == []
    three = window("centrum", *(point(f"p{i}", subject=f"s{i}", personal=True) for i in range(3)))
    assert decide(three) == [("centrum", 3)]
    # Without a personal device, subjects do not matter.
    devices = window("centrum", *(point(f"d{i}", subject="s1") for i in range(3)))
    assert decide(devices) == [("centrum", 3)]


def test_values_are_rounded_and_extremes_left_out_where_a_personal_device_contributed() -> None:
    values = (10.04, 10.06, 20.17)
    plain = window("centrum", *(point(f"d{i}", value=v) for i, v in enumerate(values)))
    (record,) = publishable(GROUP, [plain], k=3, merge=True, decimals=1, grace_us=GRACE).windows
    assert (record.mean, record.min, record.max) == (13.4, 10.0, 20.2)
    assert (record.window_start, record.window_end) == (
        "2025-12-03T10:00:00.000Z",
        "2025-12-03T11:00:00.000Z",
    )
    assert record.published_at == "2025-12-03T11:02:00.000Z"
    assert record.key == "air/centrum/pm2_5/2025-12-03T10:00:00.000Z"
    mixed = window(
        "centrum",
        *(point(f"p{i}", value=v, subject=f"s{i}", personal=i == 0) for i, v in enumerate(values)),
    )
    (record,) = publishable(GROUP, [mixed], k=3, merge=True, decimals=0, grace_us=GRACE).windows
    assert (record.mean, record.min, record.max) == (13.0, None, None)


def test_the_mean_does_not_depend_on_the_order() -> None:
    values = [1e16, 1.0, -1e16, 0.1, 0.2, 0.3]
    forward = window("centrum", *(point(f"d{i}", value=v) for i, v in enumerate(values)))
    backward = window(
        "centrum", *(point(f"d{i}", value=v) for i, v in reversed(list(enumerate(values))))
    )
    assert forward.mean == backward.mean == sum([1.0, 0.1, 0.2, 0.3], 0.0) / 6


def config(k: int = 3) -> PublisherConfig:
    return PublisherConfig(
        window_us={"air": HOUR_US}, k=k, merge=True, grace_us=GRACE, decimals_of=lambda q: 1
    )


def test_a_group_closes_once_at_end_plus_grace_and_a_late_point_is_dropped() -> None:
    state = PublisherState(config())
    for i in range(3):
        state.add(point(f"d{i}"))
    assert state.advance(END + GRACE - 1) == []
    records = state.advance(END + GRACE)
    assert [r.area for r in records] == ["centrum"]
    state.add(point("late"))
    assert state.counters["late"] == 1
    assert state.advance(END + GRACE + 10) == []
    assert state.counters["published"] == 1


def test_the_state_survives_its_changelog() -> None:
    state = PublisherState(config())
    for i in range(3):
        state.add(point(f"d{i}", area="centrum"))
    state.add(point("n1", area="noord"))
    state.add(point("x1", at=END + 5))  # next window
    table: dict[str, object] = {}

    def write() -> dict[str, object] | None:
        meta, entries = state.take_changes()
        for key, value in entries.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = orjson.loads(orjson.dumps(value))
        return meta

    meta = write()
    restored = PublisherState.from_entries(meta, list(table.items()), config())
    assert len(restored) == len(state) == 3
    assert restored.advance(END + GRACE) == state.advance(END + GRACE)
    meta = write()
    again = PublisherState.from_entries(meta, list(table.items()), config())
    assert again.watermark == END + GRACE
    assert [r.area for r in again.closed_records()] == ["centrum"]
    assert len(again) == 1
    # A window size after closing, the closed group is forgotten.
    state.advance(END + GRACE + HOUR_US)
    write()
    assert not any(key.startswith('["closed"') for key in table)


def test_entries_that_do_not_parse_are_left_out() -> None:
    state = PublisherState.from_entries(
        {"watermark": 5}, [("nonsense", {}), ('["open","air"]', {}), ("[1]", None)], config()
    )
    assert (state.watermark, len(state)) == (5, 0)


def test_a_set_is_never_rewritten_whole_each_member_is_written_once() -> None:
    state = PublisherState(config())
    state.add(point("d1"), 0)
    _, first = state.take_changes()
    assert len(first) == 3  # the stats, the device, the subject
    state.add(point("d1", value=11.0), 1)
    _, second = state.take_changes()
    assert list(second) == [k for k in first if k.startswith('["open"')]
    state.add(point("d1", value=12.0), 1)  # a replay of offset 1
    assert state.take_changes()[1] == {}
    assert state.counters["replayed"] == 1
    state.advance(END + GRACE)
    _, closing = state.take_changes()
    assert sorted(k for k, v in closing.items() if v is None) == sorted(first)
