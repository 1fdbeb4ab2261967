"""How long the bridge waits before its next MQTT session. Pure: the jitter source is passed in.

Capped exponential backoff with jitter (0.5 s doubling to 30 s, each wait 0.5 to 1.5 times the
delay), so that a broker refusing us (untrusted certificate, wrong password, ACL) is not hammered.
The delay starts over after a session that worked: subscribed and held for ``stable_after_s``.
A session that ended before it subscribed, or was taken away soon after (a client-id takeover
by another process, a broker restarting in a loop), keeps the delay growing. Before, the delay
started over only after a session of 30 s, so a Mosquitto restarted twice within half a minute
kept the bridge away for up to 17 s after the second restart.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
STABLE_AFTER_S = 5.0


@dataclass(slots=True)
class ReconnectBackoff:
    """The wait after each ended session (``after_session``)."""

    first_s: float = FIRST_DELAY_S
    cap_s: float = MAX_DELAY_S
    stable_after_s: float = STABLE_AFTER_S
    jitter: Callable[[], float] = field(default=random.random)  # 0 <= x < 1
    _delay: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._delay = self.first_s

    def after_session(self, subscribed_for_s: float | None) -> float:
        """The seconds to wait before the next session, given how long the one that ended was
        subscribed (None: it never was)."""
        if subscribed_for_s is not None and subscribed_for_s >= self.stable_after_s:
            self._delay = self.first_s
        wait = self._delay * (0.5 + self.jitter())
        self._delay = min(self._delay * 2, self.cap_s)
        return wait
