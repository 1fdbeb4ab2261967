"""Payload decoders: the one registry that maps a decoder name to a ``PayloadDecoder``.

Built in: ``cayenne-lpp``. Plugins add decoders through the entry-point group
``cityhub.decoders``; each entry point names a ``PayloadDecoder`` instance, or a class or
factory that returns one when called with no arguments. Entry points are read lazily, once,
the first time a name is not found among the registered decoders (or when the names are
listed), so importing this package costs nothing and a broken plugin cannot stop start-up.
"""

from __future__ import annotations

from cityhub.connectors.decoders.base import PayloadDecoder
from cityhub.connectors.decoders.cayenne import CayenneLppDecoder
from cityhub.connectors.plugins import PluginRegistry
from cityhub.schemas.errors import UnknownDecoder

__all__ = [
    "ENTRY_POINT_GROUP",
    "PayloadDecoder",
    "decoder_names",
    "get_decoder",
    "register_decoder",
]

ENTRY_POINT_GROUP = "cityhub.decoders"

_registry: PluginRegistry[PayloadDecoder] = PluginRegistry(
    kind="payload decoder",
    protocol=PayloadDecoder,
    entry_point_group=ENTRY_POINT_GROUP,
    not_found=UnknownDecoder,
)


def register_decoder(decoder: PayloadDecoder, *, replace: bool = False) -> None:
    """Make ``decoder`` available under ``decoder.name``.

    Raises ``ValueError`` if another decoder already has that name, unless ``replace``.
    """
    _registry.register(decoder, replace=replace)


def get_decoder(name: str) -> PayloadDecoder:
    """The decoder registered as ``name``; raises ``UnknownDecoder`` if there is none."""
    return _registry.get(name)


def decoder_names() -> list[str]:
    """The names of all decoders, built-in and plugins, sorted."""
    return _registry.names()


register_decoder(CayenneLppDecoder())
