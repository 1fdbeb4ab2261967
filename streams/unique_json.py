"""JSON documents from clients, with each member named once per object.

RFC 8259 (section 4) leaves an object with a repeated name to the parser: some take the first
value, most the last. A proxy or firewall that reads ``{"id": "a", "id": "b"}`` as ``a`` would
pass a request the hub then acts on as ``b``. So the documents the API takes (request bodies,
bulk imports) are refused when an object repeats a name.

orjson parses first (strict: UTF-8, no NaN, nesting bounded); only a valid document is read
again by the standard library, whose ``object_pairs_hook`` sees each object's members in order.
That second pass costs about as much as parsing with ``json`` alone: bodies are capped, and an
import of 10 000 devices (1.6 MB) took 48 ms instead of orjson's 27 ms on the project's two-core
machine.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


class DuplicateMember(ValueError):
    """An object of the document names a member twice."""

    def __init__(self, name: str) -> None:
        shown = name if len(name) <= 64 else name[:64] + "…"
        super().__init__(
            f"an object names the member {shown!r} more than once; send each member once "
            "(parsers disagree on which value counts)"
        )
        self.name = name


class TooDeep(ValueError):
    """The document nests deeper than the standard library's parser goes."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateMember(name)
            seen.add(name)
    return doc


def loads_unique(data: bytes | str) -> Any:
    """The JSON value of ``data``. Raises ``orjson.JSONDecodeError`` if it is not JSON,
    ``DuplicateMember`` if an object repeats a name, ``TooDeep`` if it nests too deeply to
    check."""
    value = orjson.loads(data)
    if not isinstance(value, dict | list):
        return value
    try:
        json.loads(data, object_pairs_hook=_unique)
    except RecursionError:
        raise TooDeep("the document nests too deeply") from None
    except json.JSONDecodeError as exc:  # not seen: orjson is the stricter of the two
        raise orjson.JSONDecodeError(exc.msg, exc.doc, exc.pos) from None
    return value
