"""Starting and stopping the brokers as detached processes tracked by pid files.

A pid file alone cannot be trusted: the process may have died (the file is stale) or the pid may
since belong to another program. A pid counts as ours only while ``/proc/<pid>/cmdline`` still
names the config file that this state dir gave it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cityhub.schemas.errors import StackError

log = logging.getLogger("cityhub.stack")

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessSpec:
    """How to recognise one of the stack's processes."""

    name: str
    pid_file: Path
    markers: tuple[str, ...]
    """Strings that must each occur in some argument of the process's command line."""
    stop_signal: signal.Signals = signal.SIGTERM
    """What ``stop`` sends first (SIGKILL follows after the grace period)."""


def parse_pid(text: str) -> int | None:
    """The pid in a pid file's text, or None if it holds no usable pid."""
    text = text.strip()
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if pid > 1 else None


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file``, or None if there is none (or it is garbage)."""
    try:
        return parse_pid(pid_file.read_text(encoding="ascii", errors="replace"))
    except (FileNotFoundError, NotADirectoryError):
        return None


def cmdline_matches(argv: Sequence[str], markers: Sequence[str]) -> bool:
    """Whether a command line is the process the markers describe."""
    return bool(argv) and all(any(marker in arg for arg in argv) for marker in markers)


def parse_proc_state(stat: str) -> str:
    """The one-letter state in ``/proc/<pid>/stat``; the command name may hold spaces and ``)``."""
    return stat[stat.rindex(")") + 2 :].split(" ", 1)[0]


def process_argv(pid: int) -> list[str] | None:
    """The live command line of ``pid``; None if it is gone or a zombie awaiting its reaper."""
    try:
        state = parse_proc_state((_PROC / str(pid) / "stat").read_text())
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    if state in ("Z", "X"):
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def owned_pid(spec: ProcessSpec) -> int | None:
    """The pid of the running process ``spec`` describes, or None.

    Removes a stale pid file: the process is gone, or the pid now belongs to something else.
    """
    pid = read_pid(spec.pid_file)
    if pid is None:
        if spec.pid_file.exists():
            log.info("%s: removing unreadable pid file %s", spec.name, spec.pid_file)
            spec.pid_file.unlink(missing_ok=True)
        return None
    argv = process_argv(pid)
    if argv is not None and cmdline_matches(argv, spec.markers):
        return pid
    why = "is gone" if argv is None else f"is now another program ({shlex.join(argv[:3])}...)"
    log.info("%s: stale pid file %s: process %d %s", spec.name, spec.pid_file, pid, why)
    spec.pid_file.unlink(missing_ok=True)
    return None


def start_detached(
    spec: ProcessSpec, argv: Sequence[str], *, cwd: Path, output: Path, env: dict[str, str]
) -> int:
    """Start ``argv`` in a new session, detached from us, output appended to ``output``.

    A throwaway shell backgrounds the program and prints its pid, then exits: the program is
    re-parented and outlives this Python process (the CLI exits right after ``up``), and no
    ``Popen`` object is left to warn about a child still running.
    """
    with output.open("a", encoding="utf-8") as out:
        out.write(f"\n--- cityhub stack: starting {spec.name} at {time.strftime('%FT%T%z')} ---\n")
    script = f"{shlex.join(argv)} </dev/null >>{shlex.quote(str(output))} 2>&1 & echo $!"
    done = subprocess.run(  # noqa: S603 - our own fixed argv, no user input in a shell string
        ["/bin/sh", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        start_new_session=True,
        check=False,
    )
    pid = parse_pid(done.stdout)
    if done.returncode != 0 or pid is None:
        raise StackError(f"could not start {spec.name}: {done.stderr.strip() or done.stdout!r}")
    spec.pid_file.write_text(f"{pid}\n", encoding="ascii")
    return pid


async def _wait_gone(pid: int, within_s: float) -> bool:
    """Poll until ``pid`` has exited (it is not our child: there is nothing to wait() on)."""
    deadline = time.monotonic() + within_s
    while process_argv(pid) is not None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def stop(spec: ProcessSpec, *, grace_s: float) -> bool:
    """Stop the process by its pid file: its stop signal (SIGTERM unless it says otherwise), then
    SIGKILL after ``grace_s`` seconds.

    Returns whether a process was running. Idempotent: no process, nothing to do.
    """
    pid = owned_pid(spec)
    if pid is None:
        spec.pid_file.unlink(missing_ok=True)
        return False
    log.info("%s: stopping (pid %d, %s)", spec.name, pid, spec.stop_signal.name)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, spec.stop_signal)
    if not await _wait_gone(pid, grace_s):
        log.warning("%s: still running after %.0f s, sending SIGKILL", spec.name, grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not await _wait_gone(pid, 10.0):
            raise StackError(f"{spec.name}: pid {pid} survived SIGKILL; is it stuck in the kernel?")
    spec.pid_file.unlink(missing_ok=True)
    log.info("%s: stopped", spec.name)
    return True


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, for error messages ('' if there is none)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
