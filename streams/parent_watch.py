"""A child of ``cityhub run`` stops when its supervisor is gone, however the supervisor ended.

The supervisor stops its children itself on SIGINT or SIGTERM. A supervisor killed with SIGKILL
(the OOM killer, ``kill -9``) cannot; its children would live on as orphans: a bridge still
holding the hub's MQTT client id, so that a supervisor started again would run two bridges that
take the session from each other in a loop. So the supervisor holds the write end of a pipe that
only it holds, and every child inherits the read end (its number in ``SUPERVISOR_FD_VARIABLE``).
The kernel closes the write end when the supervisor ends, in every way it can end; the child
reads end-of-file and sends itself SIGTERM, which stops it as cleanly as a Ctrl-C. A child
still running ``ORPHAN_STOP_S`` later exits at once, as the supervisor would have killed it: with
nobody left to kill it, an orphan that hangs in its stop would live on for ever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import MutableMapping

log = logging.getLogger("cityhub.supervisor")

SUPERVISOR_FD_VARIABLE = "CITYHUB_SUPERVISOR_FD"
"""The number of the inherited read end, in a child's environment (not a setting)."""
ORPHAN_STOP_S = 30.0
"""How long an orphaned child may take to stop (the supervisor's own ``STOP_TIMEOUT_S``)."""


def watch_supervisor(environ: MutableMapping[str, str]) -> bool:
    """When ``environ`` names a supervisor's pipe, take the variable out (the child's own
    children must not watch a pipe they do not hold) and start a daemon thread that sends this
    process SIGTERM once the supervisor is gone. Returns whether it watches."""
    value = environ.pop(SUPERVISOR_FD_VARIABLE, None)
    if value is None:
        return False
    try:
        fd = int(value)
        os.fstat(fd)
    except (ValueError, OSError):
        log.warning(
            "%s=%r names no open file; not watching the supervisor", SUPERVISOR_FD_VARIABLE, value
        )
        return False
    threading.Thread(target=_wait_for_end, args=(fd,), name="supervisor-watch", daemon=True).start()
    return True


def _wait_for_end(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 1):  # the supervisor never writes; b"": it is gone
            pass
    log.warning("the supervisor is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_STOP_S)  # a daemon thread: a process that stopped took it along
    log.error("still running %.0f s after the supervisor ended; exiting now", ORPHAN_STOP_S)
    logging.shutdown()
    os._exit(1)
