"""What is wrong with the settings, in words for the operator who set them. Pure.

pydantic's own text of a ``ValidationError`` repeats the input: for a section checked as a whole
(``kafka`` needs a SASL mechanism with SASL_SSL) that is every value of the section, passwords
included, and ``cityhub run`` writes its children's errors to the hub's log. This names each
invalid setting by its path and its environment variable, with pydantic's reason, never a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ENV_PREFIX = "CITYHUB_"
_PREFIXES = ("Value error, ", "Assertion failed, ")


def settings_problems(errors: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per error of ``ValidationError.errors(include_input=False)``: the setting's path,
    its variable and why, e.g. ``kafka.port (CITYHUB_KAFKA__PORT): Input should be less than or
    equal to 65535``."""
    lines = []
    for error in errors:
        where = _path(error.get("loc", ()))
        why = str(error.get("msg", "invalid"))
        for prefix in _PREFIXES:
            why = why.removeprefix(prefix)
        lines.append(f"{where}: {why}" if where else why)
    return lines


def _path(loc: Sequence[Any]) -> str:
    """``bridge.subscriptions[0].filter (CITYHUB_BRIDGE__SUBSCRIPTIONS)``; a section checked as a
    whole (``kafka``) has no variable of its own, and its reason names the settings."""
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    names = [part for part in loc if isinstance(part, str)]
    if len(names) < 2:
        return path.lstrip(".")
    # A variable names a setting by its section and field; deeper parts are in its JSON value.
    return f"{path.lstrip('.')} ({ENV_PREFIX}{names[0].upper()}__{names[1].upper()})"
