"""Nothing in cityhub has to be the only one of its kind: two bridges share the MQTT load through
a shared subscription, two workers share the raw topic's partitions, and when one worker is
killed the other takes its partitions over, losing nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .hub import Hub, free_port, publish, read_topic
from .uplinks import tts, unique_eui

pytestmark = pytest.mark.integration

MESSAGES = 2000


def uplinks(count: int) -> tuple[list[tuple[str, bytes]], set[tuple[str, int]]]:
    euis = [unique_eui() for _ in range(20)]
    messages = [
        tts(f"so-{eui[:8]}", eui, n, decoded={"count": n})
        for n in range(1, count // len(euis) + 1)
        for eui in euis
    ]
    return messages, {(eui, n) for eui in euis for n in range(1, count // len(euis) + 1)}


def assigned(hub: Hub, topic: str) -> set[str]:
    """The partitions of ``topic`` a worker holds (its lag gauge is set for those only)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        sample.labels["partition"]
        for family in text_string_to_metric_families(hub.metrics())
        for sample in family.samples
        if sample.name == "cityhub_consumer_lag_messages" and sample.labels["topic"] == topic
    }


async def both_assigned(workers: list[Hub], topic: str, timeout: float = 60.0) -> None:
    """Wait until the group has settled: each worker holds some partitions, together all four."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        held = [assigned(w, topic) for w in workers]
        if all(held) and len(set().union(*held)) == 4:
            return
        await asyncio.sleep(1.0)
    raise AssertionError(f"the workers did not share the partitions: {held}")


def shared(tmp_path: Path, prefix: str, command: str, name: str, **env: str) -> Hub:
    return Hub(
        tmp_path / name,
        command=command,
        prefix=prefix,
        port=free_port(),
        extra_env={
            "CITYHUB_WORKER__ALLOW_UNKNOWN_DEVICES": "true",
            "CITYHUB_MQTT__CLIENT_ID": f"{prefix}-{name}",
            **env,
        },
    )


async def test_two_bridges_share_the_mqtt_load(tmp_path: Path) -> None:
    first = Hub(tmp_path / "a", command="bridge")
    prefix = first.prefix
    group = {"CITYHUB_MQTT__SHARE_GROUP": f"{prefix}-bridges"}
    bridges = [
        shared(tmp_path, prefix, "bridge", "bridge-a", **group),
        shared(tmp_path, prefix, "bridge", "bridge-b", **group),
    ]
    for hub in bridges:
        hub.workdir.mkdir(parents=True)
        hub.start()
    try:
        messages, _ = uplinks(MESSAGES)
        await publish(messages, rate=2000)
        raw = await read_topic(
            bridges[0].topics["raw"],
            until=lambda r: len({x["payload"] for x in r}) >= len(messages),
            timeout=60,
        )
        assert len({x["payload"] for x in raw}) == len(messages)
        shares = [hub.metric("cityhub_bridge_messages_written_total") for hub in bridges]
        assert all(share > 0 for share in shares), shares
        assert sum(shares) >= len(messages)
    finally:
        for hub in bridges:
            hub.stop()


async def test_two_workers_share_partitions_and_survive_one_being_killed(tmp_path: Path) -> None:
    bridge = Hub(tmp_path / "bridge", command="bridge")
    prefix = bridge.prefix
    bridge.extra_env["CITYHUB_WORKER__ALLOW_UNKNOWN_DEVICES"] = "true"
    workers = [
        shared(tmp_path, prefix, "worker", "worker-a"),
        shared(tmp_path, prefix, "worker", "worker-b"),
    ]
    for hub in (bridge, *workers):
        hub.workdir.mkdir(parents=True, exist_ok=True)
        hub.start()
    try:
        await both_assigned(workers, bridge.topics["raw"])
        messages, expected = uplinks(MESSAGES)
        half = len(messages) // 2
        await publish(messages[:half], rate=2000)

        def seen(records: list[dict[str, object]]) -> set[tuple[object, object]]:
            return {(r["dev_eui"], r["network"]["f_cnt"]) for r in records}  # type: ignore[index]

        await read_topic(
            bridge.topics["observations"], until=lambda r: len(seen(r)) >= half // 2, timeout=60
        )
        shares = [hub.metric("cityhub_normaliser_messages_total") for hub in workers]
        assert all(share > 0 for share in shares), shares  # both hold partitions

        workers[0].kill()  # its partitions move to the other worker within the session timeout
        publisher = asyncio.create_task(publish(messages[half:], rate=2000))
        observations = await read_topic(
            bridge.topics["observations"], until=lambda r: seen(r) >= expected, timeout=120
        )
        await publisher
        missing = expected - seen(observations)
        assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:3]}"
    finally:
        for hub in (bridge, *workers):
            hub.stop()
