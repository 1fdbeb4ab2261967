"""Ingest formats: the one registry that maps a format name to an ``IngestFormat``.

Built in: ``tts-v3`` (The Things Stack v3 uplinks), ``chirpstack-v4`` (ChirpStack v4 uplink
events), ``cityhub-json`` (SenML pack or generic JSON object on ``cityhub/ingest/{device}``)
and ``senml-json`` (SenML packs only). Plugins add formats through the entry-point group
``cityhub.formats``; each entry point names an ``IngestFormat`` instance, or a class or factory
that returns one when called with no arguments. Entry points are read lazily, once, the first
time a name is not found (or when the names are listed); a broken plugin is logged and skipped.
"""

from __future__ import annotations

import logging
import threading
from importlib.metadata import entry_points

from cityhub.connectors.formats.base import IngestFormat, Measurement, Uplink
from cityhub.connectors.formats.chirpstack import ChirpstackV4Format
from cityhub.connectors.formats.cityhub_json import CityhubJsonFormat
from cityhub.connectors.formats.senml import SenmlJsonFormat
from cityhub.connectors.formats.tts import TtsV3Format
from cityhub.schemas.errors import UnknownFormat

__all__ = [
    "ENTRY_POINT_GROUP",
    "IngestFormat",
    "Measurement",
    "Uplink",
    "format_names",
    "get_format",
    "register_format",
]

ENTRY_POINT_GROUP = "cityhub.formats"

_log = logging.getLogger(__name__)
_formats: dict[str, IngestFormat] = {}
_plugins_loaded = False
_lock = threading.Lock()


def register_format(fmt: IngestFormat, *, replace: bool = False) -> None:
    """Make ``fmt`` available under ``fmt.name``.

    Raises ``ValueError`` if another format already has that name, unless ``replace``.
    """
    if not isinstance(fmt, IngestFormat):
        raise TypeError(f"{fmt!r} is not an IngestFormat (needs name, partition_key, parse)")
    existing = _formats.get(fmt.name)
    if existing is not None and existing is not fmt and not replace:
        raise ValueError(f"a format named {fmt.name!r} is already registered: {existing!r}")
    _formats[fmt.name] = fmt


def _load_plugins() -> None:
    global _plugins_loaded
    with _lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                fmt = obj if isinstance(obj, IngestFormat) else obj()
                if fmt.name in _formats:
                    _log.warning("format plugin %s ignored: %r is taken", ep.value, fmt.name)
                    continue
                register_format(fmt)
            except Exception:  # a broken plugin must not take the hub down
                _log.exception("format plugin %s = %s could not be loaded", ep.name, ep.value)


def get_format(name: str) -> IngestFormat:
    """The format registered as ``name``; raises ``UnknownFormat`` if there is none."""
    fmt = _formats.get(name)
    if fmt is None:
        if not _plugins_loaded:
            _load_plugins()
            fmt = _formats.get(name)
        if fmt is None:
            raise UnknownFormat(f"no ingest format named {name!r}; known: {format_names()}")
    return fmt


def format_names() -> list[str]:
    """The names of all formats, built-in and plugins, sorted."""
    _load_plugins()
    return sorted(_formats)


for _builtin in (TtsV3Format(), ChirpstackV4Format(), CityhubJsonFormat(), SenmlJsonFormat()):
    register_format(_builtin)
