"""A hub killed with SIGKILL mid-stream and started again loses nothing that Mosquitto accepted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .hub import Hub, publish, read_topic
from .uplinks import tts, unique_eui

pytestmark = pytest.mark.integration

DEVICES = 20
FRAMES = 150  # 3 000 uplinks


async def test_sigkill_mid_stream_loses_nothing(tmp_path: Path) -> None:
    hub = Hub(tmp_path, extra_env={"CITYHUB_WORKER__ALLOW_UNKNOWN_DEVICES": "true"})
    hub.start()
    euis = [unique_eui() for _ in range(DEVICES)]
    messages = [
        tts(f"kill-{eui[:8]}", eui, f_cnt, decoded={"temperature": f_cnt / 10})
        for f_cnt in range(1, FRAMES + 1)
        for eui in euis
    ]
    expected = {(eui, f_cnt) for eui in euis for f_cnt in range(1, FRAMES + 1)}
    try:
        publisher = asyncio.create_task(publish(messages, rate=1000))
        # Let the hub get into the stream (some observations out, publishing still going on),
        # then kill it without warning.
        await read_topic(
            hub.topics["observations"],
            until=lambda r: len(r) >= 30 or publisher.done(),
            timeout=60,
        )
        hub.kill()
        killed_while_publishing = not publisher.done()
        assert await publisher == len(messages)
        hub.start()

        def complete(records: list[dict[str, object]]) -> bool:
            return expected <= {(r["dev_eui"], r["network"]["f_cnt"]) for r in records}  # type: ignore[index]

        observations = await read_topic(hub.topics["observations"], until=complete, timeout=120)
        seen = {(r["dev_eui"], r["network"]["f_cnt"]) for r in observations}
        missing = expected - seen
        assert not missing, (
            f"{len(missing)} uplinks lost, e.g. {sorted(missing)[:5]}\n{hub.log_tail()}"
        )
        assert killed_while_publishing, "the kill came after the last publish: not mid-stream"
        # At least once: a replay may repeat observations, always with the same event id.
        by_id: dict[str, tuple[object, object]] = {}
        for r in observations:
            key = (r["dev_eui"], r["network"]["f_cnt"])  # type: ignore[index]
            assert by_id.setdefault(r["event_id"], key) == key
        ids_of: dict[tuple[object, object], set[str]] = {}
        for event, key in by_id.items():
            ids_of.setdefault(key, set()).add(event)
        extra = {k: ids for k, ids in ids_of.items() if len(ids) > 1 or k not in expected}
        assert len(by_id) == len(expected), (
            f"{len(by_id)} event ids for {len(expected)} uplinks; e.g. "
            f"{[(k, sorted(extra[k])) for k in list(extra)[:3]]}"
        )
    finally:
        hub.stop()
