"""Resource paths of the SensorThings service (OGC 18-088 section 9.2): ``Things``,
``Things(7)``, ``Things(7)/Datastreams``, ``Datastreams(3)/Thing/name``, ``.../name/$value``,
``Things(7)/Datastreams/$ref``.

Pure: a path in, its segments out, or a ``QueryError`` (answered 400) for one that cannot be
read; whether the entities exist is the service's question (404).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cityhub.streams.sensorthings.expr import QueryError

MAX_SEGMENTS = 12
_SEGMENT = re.compile(r"^(?P<name>\$?[A-Za-z][A-Za-z0-9_]*)(?:\((?P<id>[^()]*)\))?$")


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    id: int | None
    """The key in parentheses; -1 for one that is no id of this service (never found)."""


def parse_path(path: str) -> list[Segment]:
    """The segments of a resource path below the service root (no leading slash needed)."""
    parts = [p for p in path.strip("/").split("/") if p] if path.strip("/") else []
    if len(parts) > MAX_SEGMENTS:
        raise QueryError(f"a resource path has at most {MAX_SEGMENTS} segments")
    segments = []
    for part in parts:
        match = _SEGMENT.match(part)
        if match is None:
            raise QueryError(f"cannot read the path segment {part[:64]!r}")
        key = match.group("id")
        if key is None:
            segments.append(Segment(match.group("name"), None))
        elif re.fullmatch(r"[0-9]{1,19}", key):
            segments.append(Segment(match.group("name"), int(key)))
        else:
            # A quoted string or anything else is a well-formed key no entity here has.
            segments.append(Segment(match.group("name"), -1))
    return segments
