"""Recognising duplicate uplinks: the same device and frame within a time window.

A frame is what ``normalise.duplicate_key`` makes of an uplink: for LoRaWAN the session's
DevAddr and the frame counter (``f260b1a2c:17``; the counter alone, ``f17``, when the message
names no DevAddr), so that a rejoined device's frames 0, 1, 2... are new and not the old
session's; for plain MQTT the payload's own time (``t2026-...Z``). The device is its DevEUI, else
its device id, so one frame through two network servers is one frame.

State is kept per device as a small mapping ``{frame key: [first seen (epoch s), source offset]}``
in the worker's state (it survives restarts through its changelog topic). Pure: the caller passes
the clock and the offset. Keys written before DevAddrs were part of them (``f17``) never match
the new ones: after that upgrade a copy of a frame whose first copy came before it is taken for
a new frame, once, within one window.

Why the offset: cityhub processes at least once, so after a crash a raw record may be processed
again, and its frame is then already in the state. Only a *different* record with the same frame
is a duplicate; the same record seen again (same offset) is a replay and must produce its
observations again, or a crash between writing the state and writing the observations would
lose them.
"""

from __future__ import annotations

from collections.abc import Mapping

DeviceFrames = dict[str, list[float]]
"""Frame key → [first seen, raw offset]; JSON-friendly for the table's changelog."""

MAX_FRAMES_PER_DEVICE = 64


def check_duplicate(
    frames: Mapping[str, list[float]] | None,
    key: str,
    *,
    now: float,
    offset: int,
    window: float,
    max_frames: int = MAX_FRAMES_PER_DEVICE,
) -> tuple[bool, DeviceFrames]:
    """Whether the record at ``offset`` with frame ``key`` duplicates an earlier one, and the
    device's state to store back (a new mapping; ``frames`` is not changed). Frames older than
    ``window`` seconds are forgotten; at most ``max_frames`` are kept (the oldest go first)."""
    horizon = now - window
    state: DeviceFrames = dict(frames) if frames else {}
    seen = state.get(key)
    if seen is not None and seen[0] >= horizon:
        return int(seen[1]) != offset, state
    state.pop(key, None)
    state[key] = [now, float(offset)]
    # Entries go in in arrival order, so the expired and the surplus ones are at the front.
    for old in list(state):
        first_seen = state[old][0]
        if first_seen >= horizon and len(state) <= max_frames:
            break
        del state[old]
    return False, state
