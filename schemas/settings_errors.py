"""What is wrong with the settings, in words for the operator who set them. Pure.

pydantic's own text of a ``ValidationError`` repeats the input: for a section checked as a whole
(``kafka`` needs a SASL mechanism with SASL_SSL) that is every value of the section, passwords
included, and ``cityhub run`` writes its children's errors to the hub's log. This names each
invalid setting by its path and its environment variable, with pydantic's reason, never a value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from cityhub.schemas.settings import Settings

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


_FIELD = re.compile(r'field "([a-z_]+)"')


def json_setting_problem(message: str, environ: Mapping[str, str]) -> str:
    """What pydantic-settings' "error parsing value for field "<section>"" means: a list or
    object setting of that section whose value is not JSON, named by its variable (each of the
    section's variables in ``environ`` whose value does not parse; never the value)."""
    found = _FIELD.search(message)
    section = found.group(1) if found else ""
    head = f"{ENV_PREFIX}{section.upper()}__"
    structured = {f"{head}{name.upper()}" for name in _structured_fields(section)}
    suspects = sorted(
        name for name, value in environ.items() if name in structured and _not_json(value)
    )
    named = ", ".join(suspects) if suspects else f"a {head}* variable"
    return (
        f"{named}: a list or object setting is JSON, e.g. "
        """CITYHUB_SUBSCRIPTIONS__WEBHOOK_ALLOWED_HOSTS='["127.0.0.1"]'"""
    )


def _structured_fields(section: str) -> list[str]:
    """The fields of a settings section whose values are lists or objects (JSON in a variable)."""
    field = Settings.model_fields.get(section)
    model = field.annotation if field is not None else None
    if not isinstance(model, type) or not issubclass(model, BaseModel):
        return []
    return [name for name, info in model.model_fields.items() if _structured(info.annotation)]


def _structured(annotation: Any) -> bool:
    """Whether a field of this type is written as JSON: a list, tuple, set, dict or model, or
    an optional one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    if get_origin(annotation) in (list, tuple, set, frozenset, dict):
        return True
    return any(_structured(arg) for arg in get_args(annotation) if arg is not type(None))


def _not_json(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return True
    return False
