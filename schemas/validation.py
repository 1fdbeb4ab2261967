"""The canonical JSON Schema files of ``schemas/json/``, loaded for validation.

The dataclasses and models in this package write records that these schemas accept (the tests
check both directions, on records made by the code that writes them); other services can
validate what they read with the same files.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_NAMES = (
    "raw-envelope",
    "observation",
    "deadletter",
    "aggregate",
    "device-health",
    "subscription-status",
    "open-data-window",
)
"""Every schema of ``schemas/json/`` (``<name>.schema.json``): the records of the topics a
service outside cityhub may read, as ``schemas/asyncapi.yaml`` lists them."""


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema document named ``name`` (one of SCHEMA_NAMES)."""
    if name not in SCHEMA_NAMES:
        raise KeyError(f"no schema named {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    text = files("cityhub.schemas").joinpath(f"json/{name}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def validator(name: str) -> Draft202012Validator:
    """A validator for schema ``name``, with RFC 3339 ``date-time`` and ``uuid`` checked."""
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def errors(name: str, document: Any) -> list[str]:
    """Human-readable validation errors of ``document`` against schema ``name`` (empty: valid)."""
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validator(name).iter_errors(document)
    ]
