"""Recognising duplicate uplinks: the same device and frame within a time window.

A frame is what ``normalise.duplicate_key`` makes of an uplink: for LoRaWAN the session's
DevAddr and the frame counter (``f260b1a2c:17``; the counter alone, ``f17``, when the message
names no DevAddr), so that a rejoined device's frames 0, 1, 2... are new and not the old
session's; for plain MQTT the payload's own time (``t2026-...Z``). The device is its DevEUI, else
its device id, so one frame through two network servers is one frame.

Two records with one frame key are copies only if their contents agree: each record's frame
carries a digest of what it says (``normalise.frame_digest``: the LoRaWAN application payload, or
a plain MQTT message's bytes), and a frame whose digest is not among those seen under its key is
a new frame that happens to share it. So an ABP device, which keeps its DevAddr, that resets its
frame counter within the window (a reboot, a brown-out loop, with the network server's counter
check off) has its new frames kept, unless one repeats the very payload of the old frame of that
number; and two plain MQTT messages stamped with the same time but saying different things are
both kept. A record without a digest (a network server that sent only decoded fields) matches any
copy, as before.

State is kept per device as a small mapping ``{frame key: [first seen (epoch s), offset,
digest, offset, digest, ...]}``: one (raw offset, digest) pair per distinct frame under the key, at
most ``MAX_COPIES_PER_KEY`` (digest -1: unknown). It is the worker's state (it survives restarts
through its changelog topic). Pure: the caller passes the clock and the offset. Entries of the
older shape ``[first seen, offset]`` read as one frame of unknown digest. Keys written before
DevAddrs were part of them (``f17``) never match the new ones: after that upgrade a copy of a
frame whose first copy came before it is taken for a new frame, once, within one window.

Why the offset: cityhub processes at least once, so after a crash a raw record may be processed
again, and its frame is then already in the state. Only a *different* record with the same frame
is a duplicate; the same record seen again (same offset) is a replay and must produce its
observations again, or a crash between writing the state and writing the observations would
lose them.
"""

from __future__ import annotations

from collections.abc import Mapping

DeviceFrames = dict[str, list[float]]
"""Frame key → [first seen, offset, digest, offset, digest, ...]; JSON-friendly for the
table's changelog."""

MAX_FRAMES_PER_DEVICE = 64
MAX_COPIES_PER_KEY = 4
"""Distinct frames remembered under one key (a device resetting its counter over and over
within the window); the oldest is forgotten first."""
UNKNOWN_DIGEST = -1.0


def check_duplicate(
    frames: Mapping[str, list[float]] | None,
    key: str,
    *,
    now: float,
    offset: int,
    window: float,
    digest: int | None = None,
    max_frames: int = MAX_FRAMES_PER_DEVICE,
) -> tuple[bool, DeviceFrames]:
    """Whether the record at ``offset`` with frame ``key`` and content ``digest`` (None: not
    known) duplicates an earlier one, and the device's state to store back (a new mapping;
    ``frames`` is not changed). Frames older than ``window`` seconds are forgotten; at most
    ``max_frames`` keys are kept (the oldest go first)."""
    horizon = now - window
    state: DeviceFrames = dict(frames) if frames else {}
    mine = UNKNOWN_DIGEST if digest is None else float(digest)
    seen = _copies(state.get(key))
    if seen is not None and seen[0] >= horizon:
        pairs = list(zip(seen[1::2], seen[2::2], strict=True))
        if any(int(o) == offset for o, _ in pairs):
            return False, state  # this very record again: a replay, not a copy
        if mine == UNKNOWN_DIGEST or any(d in (mine, UNKNOWN_DIGEST) for _, d in pairs):
            return True, state
        # Another frame under the same key (a counter reset): kept, and remembered beside it.
        pairs = [*pairs[1 - MAX_COPIES_PER_KEY :], (float(offset), mine)]
        state[key] = [seen[0], *(x for pair in pairs for x in pair)]
        return False, state
    state.pop(key, None)
    state[key] = [now, float(offset), mine]
    # Entries go in in arrival order, so the expired and the surplus ones are at the front.
    for old in list(state):
        entry = _copies(state[old])
        if entry is not None and entry[0] >= horizon and len(state) <= max_frames:
            break
        del state[old]
    return False, state


def _copies(entry: object) -> list[float] | None:
    """An entry as ``[first seen, offset, digest, ...]``, the older ``[first seen, offset]``
    with an unknown digest; None for anything else (a changelog value of another shape)."""
    if not isinstance(entry, list):
        return None
    if len(entry) == 2:
        entry = [*entry, UNKNOWN_DIGEST]
    if len(entry) < 3 or len(entry) % 2 == 0:
        return None
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in entry):
        return None
    return entry
