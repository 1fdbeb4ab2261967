"""A process that watches its supervisor's pipe stops once the supervisor's end is closed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from cityhub.streams.parent_watch import SUPERVISOR_FD_VARIABLE, watch_supervisor

CHILD = """
import os, sys, time
from cityhub.streams.parent_watch import watch_supervisor
assert watch_supervisor(os.environ)
print("watching", flush=True)
time.sleep(30)
"""


def test_the_child_gets_sigterm_when_the_write_end_closes() -> None:
    lifeline, held = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env={**os.environ, SUPERVISOR_FD_VARIABLE: str(lifeline)},
        pass_fds=(lifeline,),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        os.close(lifeline)
        assert child.stdout is not None
        assert child.stdout.readline() == "watching\n"
        time.sleep(0.2)
        assert child.poll() is None, "the child stopped while the supervisor still held its end"
        os.close(held)  # what the kernel does when the supervisor ends, however it ends
        assert child.wait(10) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        assert child.stdout is not None
        child.stdout.close()


def test_without_the_variable_nothing_is_watched() -> None:
    environ = {"PATH": "/usr/bin"}
    assert watch_supervisor(environ) is False
    assert environ == {"PATH": "/usr/bin"}


def test_a_variable_naming_no_open_file_is_taken_out_and_ignored() -> None:
    for value in ("not-a-number", "987654"):
        environ = {SUPERVISOR_FD_VARIABLE: value}
        assert watch_supervisor(environ) is False
        assert environ == {}, "the variable must not reach the child's own children"


HANGING_CHILD = """
import os, signal, time
import cityhub.streams.parent_watch as watch
watch.ORPHAN_STOP_S = 0.5
signal.signal(signal.SIGTERM, lambda *_: None)  # a stop that never ends (a live stream held it)
assert watch.watch_supervisor(os.environ)
print("watching", flush=True)
time.sleep(30)
"""


def test_an_orphan_whose_stop_hangs_exits_after_the_grace() -> None:
    lifeline, held = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", HANGING_CHILD],
        env={**os.environ, SUPERVISOR_FD_VARIABLE: str(lifeline)},
        pass_fds=(lifeline,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        os.close(lifeline)
        assert child.stdout is not None
        assert child.stdout.readline() == "watching\n"
        os.close(held)
        assert child.wait(10) == 1
        assert child.stderr is not None
        assert "exiting now" in child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            assert stream is not None
            stream.close()
