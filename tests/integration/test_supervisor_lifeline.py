"""A supervisor killed alone (SIGKILL, no chance to stop its children) leaves no orphans: every
child of ``cityhub run`` notices and stops, so that a supervisor started again does not run a
second bridge that takes the MQTT session from the first one in a loop."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from .hub import Hub

pytestmark = pytest.mark.integration


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(p) for p in (task / "children").read_text().split()}
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_the_children_stop_when_the_supervisor_is_killed_alone(tmp_path: Path) -> None:
    # cityhub run --workers 1: bridge, worker, worker-side, api, deliver, history
    hub = Hub(tmp_path)
    try:
        hub.start()
        assert hub.proc is not None
        children = children_of(hub.proc.pid)
        assert len(children) == 6, f"expected 6 children, found {children}"
        os.kill(hub.proc.pid, signal.SIGKILL)  # the supervisor alone, not its process group
        hub.proc.wait(10)
        deadline = asyncio.get_running_loop().time() + 40  # a child stops within its stop timeout
        while {pid for pid in children if alive(pid)} and (
            asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.2)
        orphans = {pid for pid in children if alive(pid)}
        assert not orphans, f"children outlived their supervisor: {orphans}\n{hub.log_tail()}"
    finally:
        hub.stop()
