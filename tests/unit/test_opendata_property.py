"""The k-threshold property of the open-data feed (issue 13), through both agents.

For any mix of devices (tenants, areas, classifications, data subjects), observations and
arrival orders over any number of partitions, with the publisher crashing at any point (its
last state written or lost) and restarted from its changelog, taking the last record again:

* no published window has fewer than k distinct devices, nor fewer than k distinct data
  subjects when a personal device is in it;
* the merged area never holds a device of an area published on its own in the same window;
* no published record contains a device id, a data subject, a tenant, or a device's key;
* every published value is the rounded mean of exactly the eligible readings;
* a window is published once: every write of a key carries the same bytes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cityhub.schemas.open_data import MERGED_AREA
from cityhub.schemas.topics import Topics
from cityhub.streams.aggregation.points import epoch_us
from cityhub.streams.opendata.agent import OpenDataPointsAgent, OpenDataPublisherAgent
from cityhub.streams.opendata.points import device_key, subject_key
from cityhub.streams.runtime.agent import StoredEntry, Write
from tests.unit.opendata_support import NOW, Rec, Register, activity, observation
from tests.unit.opendata_support import settings as make_settings

AREAS = ("centrum", "noord", "oost")
TENANTS = ("acme", "woonstad")  # only acme has the open-data activity
CLASSES = ("public", "internal", "personal", "personal", None)
QUANTITIES = ("pm2_5", "temperature")
TOPICS = Topics.for_prefix("cityhub")

device_st = st.tuples(
    st.sampled_from(TENANTS),
    st.sampled_from(AREAS),
    st.sampled_from(CLASSES),
    st.none() | st.integers(0, 3),  # data subject (few: people with several devices)
    st.lists(  # its readings
        st.tuples(
            st.sampled_from(QUANTITIES),
            st.integers(0, 5400),  # seconds after 10:00: two windows, the first fuller
            st.floats(-50, 150, allow_nan=False),
            st.integers(0, 2),  # 0: reported from the next area (moved within the window)
        ),
        min_size=1,
        max_size=4,
    ),
)


def eligible(tenant: str, classification: str | None, dataset: str) -> bool:
    if classification in ("public", "internal"):
        return True
    return classification == "personal" and dataset == "comfort" and tenant == "acme"


def datasets_of(quantity: str) -> tuple[str, ...]:
    return ("air", "comfort") if quantity == "temperature" else ("air",)


def hidden(members: set[tuple[str, str]], k: int) -> bool:
    """The oracle's threshold, over (tenant, member) pairs: at least ``k`` members, and no
    tenant that could subtract its own from the rest and be left with fewer than ``k``."""
    if len(members) < k:
        return False
    own: dict[str, int] = defaultdict(int)
    for tenant, _ in members:
        own[tenant] += 1
    return all(n == len(members) or len(members) - n >= k for n in own.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    devices=st.lists(device_st, min_size=4, max_size=40),
    k=st.integers(2, 4),
    merge=st.booleans(),
    partitions=st.integers(1, 3),
    order=st.randoms(use_true_random=False),
    restarts=st.sets(st.integers(0, 200), max_size=3),
)
def test_no_published_window_can_single_out_a_device_or_a_person(
    devices: list[tuple[str, str, str | None, int | None, list[tuple[str, int, float, int]]]],
    k: int,
    merge: bool,
    partitions: int,
    order: Any,
    restarts: set[int],
) -> None:
    config = make_settings(k, merge=merge, partitions=partitions, grace_seconds=3 * 24 * 3600)
    stage1 = OpenDataPointsAgent(config, Register(activity()))
    stage2 = OpenDataPublisherAgent(config)
    table: dict[tuple[int, bytes], bytes] = {}
    published: dict[bytes, bytes] = {}

    def write_all(writes: list[Write]) -> list[Write]:
        """Keep the changelog and the published records; return the points to deliver."""
        points = []
        for w in writes:
            if w.topic == stage2.changelog:
                assert w.partition is not None
                if w.value is None:
                    table.pop((w.partition, w.key), None)
                else:
                    table[(w.partition, w.key)] = w.value
            elif w.topic == TOPICS.open_data:
                assert w.value is not None
                assert published.setdefault(w.key, w.value) == w.value, "a window was revised"
            else:
                assert w.topic == TOPICS.open_data_points
                points.append(w)
        return points

    def restart() -> None:
        nonlocal stage2
        stage2 = OpenDataPublisherAgent(config)
        for p in range(partitions):
            stored = [StoredEntry(key, value) for (tp, key), value in table.items() if tp == p]
            write_all(stage2.assign(p, stored))

    offsets = [0] * partitions

    def deliver(points: list[Write], step_no: int) -> None:
        for w in points:
            assert w.partition is not None
            rec = Rec(w.topic, w.partition, offsets[w.partition], w.key, w.value, w.headers or [])
            offsets[w.partition] += 1
            before = dict(table)
            write_all(stage2.step(w.partition, [rec], now))
            if step_no in restarts:
                # A crash: the step's state may be lost (rolled back, drawn) or kept, its input
                # was not committed, so the restarted publisher takes the record again.
                if step_no % 2:
                    table.clear()
                    table.update(before)
                restart()
                write_all(stage2.step(w.partition, [rec], now))

    for p in range(partitions):
        stage1.assign(p, [])
        stage2.assign(p, [])
    # The observations, in the drawn arrival order, each on its device's partition.
    docs = []
    readings = [(d, *r) for d, device in enumerate(devices) for r in device[4]]
    for d, quantity, second, value, moved in readings:
        tenant, area, classification, subject, _ = devices[d]
        if moved == 0:
            area = AREAS[(AREAS.index(area) + 1) % len(AREAS)]
        at = f"2026-12-03T{10 + second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
        extra = {} if subject is None else {"data_subject": f"subject-{tenant}-{subject}"}
        docs.append(
            (
                d,
                observation(
                    f"device-{d:04d}",
                    area=area,
                    quantity=quantity,
                    value=value,
                    at=at,
                    tenant=tenant,
                    classification=classification,
                    **extra,
                ),
            )
        )
    order.shuffle(docs)
    now = NOW.timestamp()
    for step_no, (d, doc) in enumerate(docs):
        p = d % partitions
        rec = Rec(TOPICS.observations, p, step_no, str(d).encode(), orjson.dumps(doc))
        deliver(write_all(stage1.step(p, [rec], now)), step_no)
    # Everything goes quiet: the point stage's clock closes every window.
    late = now + 10 * 24 * 3600
    deliver(write_all(stage1.tick(late, lambda p: True)), -1)

    # The oracle: every eligible reading, by (dataset, quantity, unit, window start, area).
    truth: dict[tuple[str, str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"devices": set(), "subjects": set(), "personal": False, "values": []}
    )
    secrets: set[str] = set()
    for d, doc in docs:
        tenant, _, classification, _, _ = devices[d]
        secrets |= {doc["device_id"], device_key(tenant, doc["device_id"])}
        if "data_subject" in doc:
            secrets |= {doc["data_subject"], subject_key(tenant, doc["data_subject"])}
        for dataset in datasets_of(doc["quantity"]):
            if not eligible(tenant, classification, dataset):
                continue
            hour = doc["observed_at"][:13] + ":00:00.000Z"
            w = truth[(dataset, doc["quantity"], hour, doc["area"])]
            w["devices"].add((tenant, doc["device_id"]))
            w["subjects"].add((tenant, doc.get("data_subject") or "device:" + doc["device_id"]))
            w["personal"] = w["personal"] or classification == "personal"
            w["values"].append(doc["value"])

    records = [orjson.loads(v) for v in published.values()]
    event(f"published: {min(len(records), 3)}+")
    event(f"merged published: {any(r['area'] == MERGED_AREA for r in records)}")
    event(f"personal published: {any(r['min'] is None for r in records)}")
    by_window: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        text = orjson.dumps(record).decode()
        assert not any(secret in text for secret in secrets), text
        assert not any(tenant in text for tenant in TENANTS), text
        by_window[(record["dataset"], record["quantity"], record["window_start"])].append(record)

    for (dataset, quantity, start), shown in by_window.items():
        areas = {
            a: w for (ds, q, s, a), w in truth.items() if (ds, q, s) == (dataset, quantity, start)
        }
        alone = {r["area"] for r in shown if r["area"] != MERGED_AREA}
        shown_devices = set().union(*(areas[a]["devices"] for a in alone))
        for record in shown:
            if record["area"] == MERGED_AREA:
                assert merge
                parts = [w for a, w in areas.items() if a not in alone]
                assert parts
                group: dict[str, Any] = {
                    "devices": set().union(*(w["devices"] for w in parts)),
                    "subjects": set().union(*(w["subjects"] for w in parts)),
                    "personal": any(w["personal"] for w in parts),
                    "values": [v for w in parts for v in w["values"]],
                }
                assert group["devices"].isdisjoint(shown_devices)
            else:
                group = areas[record["area"]]
            assert hidden(group["devices"], k)
            if group["personal"]:
                assert hidden(group["subjects"], k)
                assert record["min"] is None
                assert record["max"] is None
            assert record["readings"] == len(group["values"])
            decimals = config.open_data.decimals_of(quantity)
            mean = math.fsum(group["values"]) / len(group["values"])
            assert record["mean"] == round(mean, decimals) + 0.0
            assert epoch_us(record["window_end"]) - epoch_us(record["window_start"]) == 3600 * 10**6

    # And what could be published was: an area with k devices (and subjects) is never withheld.
    for (dataset, quantity, start, area), w in truth.items():
        if hidden(w["devices"], k) and (not w["personal"] or hidden(w["subjects"], k)):
            assert any(r["area"] == area for r in by_window[(dataset, quantity, start)]), (
                dataset,
                quantity,
                start,
                area,
            )
