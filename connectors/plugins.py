"""One registry of named plugins (ingest formats, payload decoders, later sinks), with the
entry-point discovery they share.

Entry points are read lazily, once, the first time a name is not found (or when the names are
listed), so importing costs nothing; a broken plugin is logged and skipped, never stops start-up.
Each entry point names an instance, or a class or factory that returns one when called.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, Protocol, TypeVar


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)

log = logging.getLogger("cityhub.plugins")


class PluginRegistry(Generic[T]):
    """Maps a name to a plugin of one kind; built-ins are registered, plugins discovered."""

    def __init__(
        self,
        *,
        kind: str,
        protocol: type[Any],
        entry_point_group: str,
        not_found: Callable[[str], Exception],
    ) -> None:
        """``protocol`` is a runtime-checkable Protocol every plugin must satisfy; ``not_found``
        builds the error raised for an unknown name (given the message)."""
        self._kind = kind
        self._protocol = protocol
        self._group = entry_point_group
        self._not_found = not_found
        self._items: dict[str, T] = {}
        self._discovered = False
        self._lock = threading.Lock()

    def register(self, item: T, *, replace: bool = False) -> None:
        """Make ``item`` available under ``item.name``; ValueError if the name is taken by
        another, unless ``replace``; TypeError if it is not a plugin of this kind."""
        if not isinstance(item, self._protocol):
            raise TypeError(f"{item!r} is not a {self._protocol.__name__}")
        existing = self._items.get(item.name)
        if existing is not None and existing is not item and not replace:
            raise ValueError(
                f"a {self._kind} named {item.name!r} is already registered: {existing!r}"
            )
        self._items[item.name] = item

    def get(self, name: str) -> T:
        """The plugin registered as ``name``; raises the registry's not-found error."""
        item = self._items.get(name)
        if item is None:
            self._discover()
            item = self._items.get(name)
            if item is None:
                raise self._not_found(
                    f"no {self._kind} named {name!r}; known: {', '.join(self.names())}"
                )
        return item

    def names(self) -> list[str]:
        """Every registered name, built-in and plugins, sorted."""
        self._discover()
        return sorted(self._items)

    def _discover(self) -> None:
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            for ep in entry_points(group=self._group):
                try:
                    obj = ep.load()
                    item = obj if isinstance(obj, self._protocol) else obj()
                    if item.name in self._items:
                        log.warning(
                            "%s plugin %s ignored: %r is taken", self._kind, ep.value, item.name
                        )
                        continue
                    self.register(item)
                except Exception:  # a broken plugin must not take the hub down
                    log.exception(
                        "%s plugin %s = %s could not be loaded", self._kind, ep.name, ep.value
                    )
