"""The console's own metrics: sign-ins by method and result, sign-outs by whether the server
recorded them, and the live device streams."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SIGN_INS = Counter(
    "cityhub_console_sign_ins_total",
    "Console sign-ins, by method (key, oidc) and result (ok, refused).",
    ["method", "result"],
)
SIGN_OUTS = Counter(
    "cityhub_console_sign_outs_total",
    "Console sign-outs, by result: recorded (Kafka confirmed the sign-out record; copies of the "
    "cookie are refused), unrecorded (the write failed: the cookie was deleted in this browser "
    "only).",
    ["result"],
)
LIVE_STREAMS = Gauge(
    "cityhub_console_live_streams",
    "Live device streams (device pages watching) open in this API process.",
)
LIVE_DROPPED = Counter(
    "cityhub_console_live_dropped_total",
    "Observations a slow live device stream lost (its oldest, past console.live_buffer).",
)
