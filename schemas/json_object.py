"""A record's value read as a JSON object, or nothing: for readers that skip (and count) what is
not theirs rather than fail on it. Pure."""

from __future__ import annotations

from typing import Any

import orjson


def json_object(value: bytes | None) -> dict[str, Any] | None:
    """``value`` parsed, if it is a JSON object; None when it is absent (a tombstone), empty,
    not JSON or another JSON value."""
    if not value:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None
