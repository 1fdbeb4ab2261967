"""One registry of named plugins (ingest formats, payload decoders, delivery sinks), with the
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
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _name(item: Any) -> str:
    return str(item.name)


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
        key: Callable[[T], str] = _name,
        check: Callable[[T], None] | None = None,
    ) -> None:
        """``protocol`` is a runtime-checkable Protocol every plugin must satisfy; ``not_found``
        builds the error raised for an unknown name (given the message); ``key`` reads a
        plugin's name (its ``name`` by default; a delivery sink names itself by ``kind``);
        ``check``, when given, raises (TypeError, ValueError) for a plugin that satisfies the
        Protocol but cannot be used, so that a broken plugin is refused when it registers."""
        self._kind = kind
        self._protocol = protocol
        self._group = entry_point_group
        self._not_found = not_found
        self._key = key
        self._check = check
        self._items: dict[str, T] = {}
        self._discovered = False
        self._lock = threading.Lock()

    def register(self, item: T, *, replace: bool = False) -> None:
        """Make ``item`` available under its name; ValueError if the name is taken by
        another, unless ``replace``; TypeError if it is not a plugin of this kind."""
        if not isinstance(item, self._protocol):
            raise TypeError(f"{item!r} is not a {self._protocol.__name__}")
        if self._check is not None:
            self._check(item)
        name = self._key(item)
        existing = self._items.get(name)
        if existing is not None and existing is not item and not replace:
            raise ValueError(f"a {self._kind} named {name!r} is already registered: {existing!r}")
        self._items[name] = item

    def unregister(self, name: str) -> T | None:
        """Forget the plugin registered as ``name`` and return it (None if there was none):
        for tests that register a plugin of their own."""
        return self._items.pop(name, None)

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
                    # A class is called even when its class attributes look like a plugin's.
                    is_item = isinstance(obj, self._protocol) and not isinstance(obj, type)
                    item = obj if is_item else obj()
                    if self._key(item) in self._items:
                        log.warning(
                            "%s plugin %s ignored: %r is taken",
                            self._kind,
                            ep.value,
                            self._key(item),
                        )
                        continue
                    self.register(item)
                except Exception:  # a broken plugin must not take the hub down
                    log.exception(
                        "%s plugin %s = %s could not be loaded", self._kind, ep.name, ep.value
                    )
