"""The aggregator's pure helpers: table keys, rebuilding states from table entries, and the
watermark header that carries a device partition's watermark across the repartition."""

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson

from cityhub.schemas.settings import Settings
from cityhub.streams.aggregation.agent import (
    WATERMARK_HEADER,
    _Aggregator,
    read_watermark,
    state_from_entries,
    table_key,
    watermark_header,
    window_config,
)
from cityhub.streams.aggregation.windows import US, Point, WindowConfig, WindowState, epoch_us
from cityhub.streams.runtime.intake import InputOrder

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


# -- input order: holes in what faust delivers, copies, acknowledgements in offset order ---------


def test_input_order_admits_the_next_offset_reports_holes_and_copies() -> None:
    order = InputOrder(5)
    assert order.admit(5) == range(0)
    assert order.admit(6) == range(0)
    assert order.admit(9) == range(7, 9)  # 7 and 8 never came: the caller processes them first
    assert order.due == 10
    assert order.admit(8) is None  # taken already (read for the hole): a copy
    assert order.admit(9) is None
    assert order.due == 10


async def test_input_order_acknowledges_in_offset_order_and_never_after_a_failure() -> None:
    loop = asyncio.get_running_loop()
    order = InputOrder(0)
    acked: list[int] = []
    failures: list[BaseException] = []
    first, second, third = (loop.create_future() for _ in range(3))
    order.acknowledge([first], lambda: acked.append(0), failures.append)
    order.acknowledge([second], lambda: acked.append(1), failures.append)
    order.acknowledge([], lambda: acked.append(2), failures.append)  # wrote nothing
    order.acknowledge([third, third], lambda: acked.append(3), failures.append)
    third.set_result(None)
    second.set_result(None)
    await asyncio.sleep(0)
    assert acked == []  # confirmed, but the first is not
    first.set_result(None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert acked == [0, 1, 2, 3]

    broken, later = loop.create_future(), loop.create_future()
    order.acknowledge([broken], lambda: acked.append(4), failures.append)
    order.acknowledge([later], lambda: acked.append(5), failures.append)
    later.set_result(None)
    broken.set_exception(RuntimeError("not confirmed"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert acked == [0, 1, 2, 3]
    assert len(failures) == 1


class FakeWriter:
    """Hands out one unresolved delivery per record written."""

    attached = True

    def __init__(self) -> None:
        self.deliveries: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, value: Any = None, key: Any = None, **_: Any) -> Any:
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        return delivery

    async def flush(self) -> None:
        pass


class FakeConsumer:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, message: Any) -> bool:
        self.acked.append(message.offset)
        return True

    def topic_partitions(self, topic: str) -> int:
        return 4


def record(offset: int) -> SimpleNamespace:
    doc = {
        "event_id": f"e{offset}",
        "device_id": "d1",
        "quantity": "temperature",
        "value": float(offset),
        "unit": "Cel",
        "observed_at": f"2026-01-01T10:00:{offset:02d}Z",
        "tenant": None,
        "area": None,
    }
    return SimpleNamespace(
        topic="obs",
        partition=2,
        offset=offset,
        key=b"d1",
        value=orjson.dumps(doc),
        headers=[],
        timestamp=0,
        timestamp_type=0,
    )


async def test_the_agent_processes_a_record_faust_skipped_and_not_a_copy_twice() -> None:
    """faust empties the agents' input buffers when a recovery completes: a record fetched into
    them is never delivered (and was committed over); after a seek some come twice."""
    app = SimpleNamespace(consumer=FakeConsumer())
    table = SimpleNamespace(data={}, changelog_topic=SimpleNamespace(get_topic_name=lambda: "cl"))
    failures: list[BaseException] = []
    agg = _Aggregator(app, Settings(), "device", "obs", table, failures.append)  # type: ignore[arg-type]
    writer = FakeWriter()
    agg.writer = writer  # type: ignore[assignment]
    read: list[range] = []

    async def start_offset(partition: int) -> int:
        return 0  # the group's committed offset

    async def read_missing(partition: int, offsets: range) -> list[Any]:
        read.append(offsets)
        return [record(o) for o in offsets]

    agg.intake.start_offset = start_offset  # type: ignore[method-assign]
    agg.intake.read_missing = read_missing  # type: ignore[method-assign]
    acked: list[int] = []
    released: list[int] = []

    async def deliver(offset: int) -> None:
        message = record(offset)
        event = SimpleNamespace(message=message, ack=lambda: acked.append(offset))
        await agg.intake.take(event, agg.process, lambda: released.append(offset), failures.append)

    # Offset 2 was dropped from the buffer; 1 comes again after a seek back.
    for offset in (0, 1, 3, 1):
        await deliver(offset)
    assert read == [range(2, 3)]
    state = agg.states[2]
    assert state.counters["observations"] == 4  # 0, 1, 2 (read directly), 3; not the copy
    assert state.counters["duplicates"] == 0
    for delivery in reversed(writer.deliveries):  # Kafka confirms the last writes first
        delivery.set_result(None)
        await asyncio.sleep(0)
    for _ in range(10):
        await asyncio.sleep(0)
    assert app.consumer.acked == [2]  # acknowledged to faust by the agent
    assert acked == [0, 1, 3, 1]  # in offset order, the copy after what it copies
    assert sorted(released) == [0, 1, 1, 3]
    assert failures == []
