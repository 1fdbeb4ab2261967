"""Ingest formats: the one registry that maps a format name to an ``IngestFormat``.

Built in: ``tts-v3`` (The Things Stack v3 uplinks), ``chirpstack-v4`` (ChirpStack v4 uplink
events), ``cityhub-json`` (SenML pack or generic JSON object on ``cityhub/ingest/{device}``)
and ``senml-json`` (SenML packs only). Plugins add formats through the entry-point group
``cityhub.formats``; each entry point names an ``IngestFormat`` instance, or a class or factory
that returns one when called with no arguments. Entry points are read lazily, once, the first
time a name is not found (or when the names are listed); a broken plugin is logged and skipped.
"""

from __future__ import annotations

from cityhub.connectors.formats.base import IngestFormat, Measurement, Uplink
from cityhub.connectors.formats.chirpstack import ChirpstackV4Format
from cityhub.connectors.formats.cityhub_json import CityhubJsonFormat
from cityhub.connectors.formats.senml import SenmlJsonFormat
from cityhub.connectors.formats.tts import TtsV3Format
from cityhub.connectors.plugins import PluginRegistry
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

_registry: PluginRegistry[IngestFormat] = PluginRegistry(
    kind="ingest format",
    protocol=IngestFormat,
    entry_point_group=ENTRY_POINT_GROUP,
    not_found=UnknownFormat,
)


def register_format(fmt: IngestFormat, *, replace: bool = False) -> None:
    """Make ``fmt`` available under ``fmt.name``.

    Raises ``ValueError`` if another format already has that name, unless ``replace``.
    """
    _registry.register(fmt, replace=replace)


def get_format(name: str) -> IngestFormat:
    """The format registered as ``name``; raises ``UnknownFormat`` if there is none."""
    return _registry.get(name)


def format_names() -> list[str]:
    """The names of all formats, built-in and plugins, sorted."""
    return _registry.names()


for _builtin in (TtsV3Format(), ChirpstackV4Format(), CityhubJsonFormat(), SenmlJsonFormat()):
    register_format(_builtin)
