"""Payload decoders: the one registry that maps a decoder name to a ``PayloadDecoder``.

Built in: ``cayenne-lpp``. Plugins add decoders through the entry-point group
``cityhub.decoders``; each entry point names a ``PayloadDecoder`` instance, or a class or
factory that returns one when called with no arguments. Entry points are read lazily, once,
the first time a name is not found among the registered decoders (or when the names are
listed), so importing this package costs nothing and a broken plugin cannot stop start-up.
"""

from __future__ import annotations

import logging
import threading
from importlib.metadata import entry_points

from cityhub.connectors.decoders.base import PayloadDecoder
from cityhub.connectors.decoders.cayenne import CayenneLppDecoder
from cityhub.schemas.errors import UnknownDecoder

__all__ = [
    "ENTRY_POINT_GROUP",
    "PayloadDecoder",
    "decoder_names",
    "get_decoder",
    "register_decoder",
]

ENTRY_POINT_GROUP = "cityhub.decoders"

_log = logging.getLogger(__name__)
_decoders: dict[str, PayloadDecoder] = {}
_plugins_loaded = False
_lock = threading.Lock()


def register_decoder(decoder: PayloadDecoder, *, replace: bool = False) -> None:
    """Make ``decoder`` available under ``decoder.name``.

    Raises ``ValueError`` if another decoder already has that name, unless ``replace``.
    """
    if not isinstance(decoder, PayloadDecoder):
        raise TypeError(f"{decoder!r} is not a PayloadDecoder (needs name and decode())")
    existing = _decoders.get(decoder.name)
    if existing is not None and existing is not decoder and not replace:
        raise ValueError(f"a decoder named {decoder.name!r} is already registered: {existing!r}")
    _decoders[decoder.name] = decoder


def _load_plugins() -> None:
    global _plugins_loaded
    with _lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                decoder = obj if isinstance(obj, PayloadDecoder) else obj()
                if decoder.name in _decoders:
                    _log.warning(
                        "decoder plugin %s ignored: %r is already registered",
                        ep.value,
                        decoder.name,
                    )
                    continue
                register_decoder(decoder)
            except Exception:  # a broken plugin must not take the hub down
                _log.exception("decoder plugin %s = %s could not be loaded", ep.name, ep.value)


def get_decoder(name: str) -> PayloadDecoder:
    """The decoder registered as ``name``; raises ``UnknownDecoder`` if there is none."""
    decoder = _decoders.get(name)
    if decoder is None:
        if not _plugins_loaded:
            _load_plugins()
            decoder = _decoders.get(name)
        if decoder is None:
            raise UnknownDecoder(
                f"no payload decoder named {name!r}; known: {', '.join(decoder_names())}"
            )
    return decoder


def decoder_names() -> list[str]:
    """The names of all decoders, built-in and plugins, sorted."""
    _load_plugins()
    return sorted(_decoders)


register_decoder(CayenneLppDecoder())
