"""The open-data agents as the runtime drives them: points, watermarks, publishing, restarts."""

from __future__ import annotations

import orjson

from cityhub.schemas.open_data import OpenWindow
from cityhub.schemas.topics import OPEN_DATA_WINDOWS, STATES, Topics, changelog
from cityhub.streams.aggregation.agent import read_watermark
from cityhub.streams.aggregation.points import epoch_us
from cityhub.streams.opendata.agent import (
    OpenDataPointsAgent,
    OpenDataPublisherAgent,
    dataset_partition,
)
from cityhub.streams.runtime.agent import StoredEntry, Write
from tests.unit.opendata_support import NOW, Rec, Register, activity, observation, settings

TOPICS = Topics.for_prefix("cityhub")
NOW_S = NOW.timestamp()


def obs_records(partition: int, *docs: dict[str, object]) -> list[Rec]:
    return [
        Rec(TOPICS.observations, partition, i, b"k", orjson.dumps(doc))
        for i, doc in enumerate(docs)
    ]


def as_records(writes: list[Write]) -> dict[int, list[Rec]]:
    out: dict[int, list[Rec]] = {}
    for i, w in enumerate(writes):
        assert w.topic == TOPICS.open_data_points
        assert w.partition is not None
        out.setdefault(w.partition, []).append(
            Rec(w.topic, w.partition, i, w.key, w.value, w.headers or [])
        )
    return out


def test_the_point_stage_writes_stripped_points_of_a_dataset_to_one_partition() -> None:
    agent = OpenDataPointsAgent(settings(partitions=4), Register())
    agent.assign(1, [])
    writes = agent.step(
        1,
        obs_records(
            1,
            observation("d1", area="centrum"),
            observation("d2", area="noord"),
            observation("d3", quantity="battery"),
        ),
        NOW_S,
    )
    assert [w.key for w in writes] == [b"air/centrum", b"air/noord"]
    assert {w.partition for w in writes} == {dataset_partition("air", 4)}
    for w in writes:
        assert w.value is not None
        assert b"d1" not in w.value
        assert b"d2" not in w.value
        assert read_watermark(w.headers) is not None


def test_every_points_partition_hears_every_observations_partition_watermark() -> None:
    agent = OpenDataPointsAgent(settings(partitions=3), Register())
    for p in range(3):
        agent.assign(p, [])
    agent.step(0, obs_records(0, observation("d1", at="2026-12-03T10:00:00Z")), NOW_S)
    marks = agent.tick(NOW_S + 1, lambda p: False)
    # Partition 0 has a watermark, the others none yet (not quiet long enough to move).
    assert sorted((w.partition, read_watermark(w.headers)) for w in marks) == [
        (t, (0, epoch_us("2026-12-03T10:00:00Z"))) for t in range(3)
    ]
    # Quiet and caught up: every partition moves to the clock minus idle_close.
    marks = agent.tick(NOW_S + 100, lambda p: True)
    assert len(marks) == 9
    assert all(w.value is None for w in marks)


def test_the_publisher_waits_for_every_source_and_publishes_once() -> None:
    config = settings(k=2, partitions=2)
    stage1 = OpenDataPointsAgent(config, Register())
    stage2 = OpenDataPublisherAgent(config)
    for p in range(2):
        stage1.assign(p, [])
        stage2.assign(p, [])
    target = dataset_partition("air", 2)
    points = stage1.step(
        0, obs_records(0, observation("d1", value=10.0), observation("d2", value=12.0)), NOW_S
    )
    writes = stage2.step(target, as_records(points)[target], NOW_S)
    assert not [w for w in writes if w.topic == TOPICS.open_data]
    # Partition 0 reports 12:00 (its clock) but partition 1 has not reported: nothing closes.
    marks = stage1.tick(NOW_S + 3600, lambda p: p == 0)
    writes = stage2.step(target, as_records(marks)[target], NOW_S)
    assert not [w for w in writes if w.topic == TOPICS.open_data]
    marks = stage1.tick(NOW_S + 3600, lambda p: True)
    writes = stage2.step(target, as_records(marks)[target], NOW_S)
    (published,) = [w for w in writes if w.topic == TOPICS.open_data]
    record = OpenWindow.model_validate_json(published.value or b"")
    assert published.key == record.key.encode()
    assert (record.area, record.mean, record.readings) == ("centrum", 11.0, 2)
    assert b"d1" not in (published.value or b"")
    # The changelog holds the state; a restart writes the same record again, and no other.
    table = {w.key: w.value for w in writes if w.topic == stage2.changelog}
    restarted = OpenDataPublisherAgent(config)
    stored = [StoredEntry(k, v) for k, v in table.items() if v is not None]
    assert restarted.assign(target, stored) == [published]
    # More points of the closed window are late: nothing is revised.
    late = stage1.step(0, obs_records(0, observation("d3", value=99.0)), NOW_S + 3600)
    writes = restarted.step(target, as_records(late)[target], NOW_S)
    assert not [w for w in writes if w.topic == TOPICS.open_data]
    assert restarted.states[target].counters["late"] == 1


def test_personal_points_need_the_tenants_activity() -> None:
    doc = observation("p1", quantity="temperature", classification="personal")
    without = OpenDataPointsAgent(settings(), Register())
    without.assign(0, [])
    assert without.step(0, obs_records(0, doc), NOW_S) == []
    with_activity = OpenDataPointsAgent(settings(), Register(activity()))
    with_activity.assign(0, [])
    (point,) = with_activity.step(0, obs_records(0, doc), NOW_S)
    assert point.key == b"comfort/centrum"


def test_the_publisher_keeps_its_state_in_a_changelog_the_topic_admin_creates() -> None:
    agent = OpenDataPublisherAgent(settings())
    assert OPEN_DATA_WINDOWS in STATES
    assert agent.changelog == changelog("cityhub", OPEN_DATA_WINDOWS)


def test_a_record_that_is_not_a_point_is_counted_not_raised() -> None:
    agent = OpenDataPublisherAgent(settings())
    rec = Rec(TOPICS.open_data_points, 0, 0, b"air/x", b"{not json")
    assert [w.topic for w in agent.step(0, [rec], NOW_S)] == []
