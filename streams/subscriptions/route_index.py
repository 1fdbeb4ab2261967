"""The index of the subscriptions' compiled filters that ``SubscriptionRouter`` looks items up in.

Pure: no I/O. The cost of routing one item must not grow with subscriptions that do not receive
it, so that one tenant's thousands of subscriptions cannot slow everybody's data down. The
router therefore indexes the subscriptions instead of running every compiled filter on every
item:

- by source, then by tenant: an item is looked up among its own tenant's subscriptions, and,
  only when it is classified ``public``, among every tenant's (the tenant rule of
  ``cityhub.streams.subscriptions.filter``); an item that an agreement lets another tenant see
  is also looked up among that tenant's subscriptions that may receive agreement items (all
  but those read from their Kafka topic), whose predicates leave the tenant rule to the
  agreement (``SourceIndex.shared``);
- then by a key of the filter's criteria, most selective first: device ids, areas, the grid
  cells its box covers (``CELL_DEGREES`` square), tags, quantities. A filter naming areas
  ``a, b`` and quantity ``q`` is found under the keys ``(a, q)`` and ``(b, q)``, and an item
  looks up the key of its own area and quantity. A filter's criteria join its key while it
  stays within ``MAX_KEYS`` keys (its first criterion always does); a filter with none of them
  (a device-type filter, or no criterion at all) has the empty key.

A filter whose every criterion is in its key is decided by the look-up itself: its topic is
taken without evaluating anything (a box in addition is decided by comparing the item's
location with it). Every other one found is a candidate whose full compiled predicate decides.
So ``SubscriptionRouter.route`` returns exactly what evaluating every subscription's predicate
returns, and its cost is a look-up per shape of key in use in the item's index, plus the
candidates and the topics it finds. A public item's topics are many by the tenant rule (every
tenant's subscription to everything takes it); those are receivers, not wasted work
(``bench/routing.py`` measures both).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Any

from cityhub.schemas.subscription import BoundingBox, Subscription, SubscriptionFilter
from cityhub.streams.subscriptions.filter import Item, Predicate

MAX_KEYS = 64
"""Most keys a filter is indexed under, unless its first criterion alone has more values (then
that many): a further criterion that would multiply past it stays out of the key and is
evaluated instead."""
CELL_DEGREES = 0.01
"""The grid that boxes are indexed on: about 1.1 km north-south, 0.7 km east-west at 52°N."""
MAX_CELLS = 1024
"""A box covering more cells than this (about 35 km square) is not indexed by its cells."""

Key = tuple[str, str]
"""A subscription's (tenant, id)."""
Cell = tuple[int, int]
Point = tuple[float, float]
"""An item's (latitude, longitude)."""

# Positions of the criteria in an item's values and in a key, most selective first.
_DEVICE, _AREA, _CELL, _TAG, _QUANTITY = range(5)


@dataclass(eq=False, slots=True)
class Route:
    """One subscription's compiled filter and its topic, with its place in the index."""

    key: Key
    topic: str
    matches: Predicate
    record: Subscription
    """The version whose filter was compiled (or a later one that routes alike)."""
    columns: tuple[int, ...]
    """The criteria of its index key (positions above); () for the empty key."""
    keys: tuple[Hashable, ...]
    """Its index keys: a value for a one-criterion key, a tuple of values otherwise."""
    exact: bool
    """Whether the look-up decides it: every criterion of its filter is in its key, no box."""
    box: tuple[float, float, float, float] | None
    """(min_lat, max_lat, min_lon, max_lon) when the look-up and this box decide it: every
    other criterion is in its key. Cheaper to compare than to run the predicate."""
    shared: Predicate | None = None
    """Its filter without the tenant rule, for items under an agreement its tenant holds; None
    when it may not receive such items (a subscription read from its Kafka topic)."""


def grid_cell(latitude: float, longitude: float) -> Cell | None:
    """The grid cell of a point, or None for a point outside every box (not finite, or beyond
    the poles or the antimeridian)."""
    if not (-90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0):
        return None
    # floor(x / d) never decreases as x grows, so a point inside a box is in one of its cells.
    return math.floor(latitude / CELL_DEGREES), math.floor(longitude / CELL_DEGREES)


def box_cells(box: BoundingBox) -> list[Cell] | None:
    """The cells a box covers, or None when they are more than ``MAX_CELLS``."""
    # A box's corners are valid coordinates (the model checks them), so each has a cell.
    south, west = math.floor(box.min_lat / CELL_DEGREES), math.floor(box.min_lon / CELL_DEGREES)
    north, east = math.floor(box.max_lat / CELL_DEGREES), math.floor(box.max_lon / CELL_DEGREES)
    if (north - south + 1) * (east - west + 1) > MAX_CELLS:
        return None
    return [(row, col) for row in range(south, north + 1) for col in range(west, east + 1)]


def index_keys(spec_filter: SubscriptionFilter) -> tuple[tuple[int, ...], list[Hashable], bool]:
    """The criteria a filter is indexed by, its keys, and whether every criterion but its box
    is in them."""
    cells = box_cells(spec_filter.bbox) if spec_filter.bbox is not None else None
    criteria: list[tuple[int, Sequence[Hashable]]] = [
        (column, sorted(set(values)))
        for column, values in (
            (_DEVICE, spec_filter.device_ids),
            (_AREA, spec_filter.areas),
            (_TAG, spec_filter.tags),
            (_QUANTITY, spec_filter.quantities),
        )
        if values
    ]
    if cells is not None:
        criteria.append((_CELL, cells))
        criteria.sort(key=lambda criterion: criterion[0])
    chosen: list[tuple[int, Sequence[Hashable]]] = []
    count = 1
    for column, values in criteria:
        if chosen and count * len(values) > MAX_KEYS:
            continue
        chosen.append((column, values))
        count *= len(values)
    columns = tuple(column for column, _ in chosen)
    keys: list[Hashable]
    if len(chosen) == 1:
        keys = list(chosen[0][1])
    else:  # no criterion chosen: the one key (), which the index keeps apart
        keys = list(itertools.product(*(values for _, values in chosen)))
    boxed = spec_filter.bbox is not None
    covered = len(chosen) - (_CELL in columns) == spec_filter.criteria - boxed
    return columns, keys, covered


class _Group:
    """The routes of one index key shape (the same criteria), by key."""

    __slots__ = ("check", "exact", "getter", "has_tag")

    def __init__(self, columns: tuple[int, ...]) -> None:
        # An item's key: one value for a one-criterion key, a tuple of values for more.
        self.getter = itemgetter(*columns)
        self.has_tag = _TAG in columns
        self.exact: dict[Hashable, dict[Key, str]] = {}
        """Topics of routes the look-up decides."""
        self.check: dict[Hashable, dict[Key, Route]] = {}
        """Routes whose predicate decides."""


_Step = tuple[
    bool, Any, "dict[Hashable, dict[Key, str]] | None", "dict[Hashable, dict[Key, Route]] | None"
]
"""One look-up of ``RouteIndex.route``: (keyed by a tag, key getter, exact table, check table)."""


class RouteIndex:
    """Routes by their key shape and key; ``route`` looks an item up in every shape in use."""

    __slots__ = ("_plan", "cells", "groups", "match_all", "residual", "size")

    def __init__(self) -> None:
        self.groups: dict[tuple[int, ...], _Group] = {}
        self.cells = 0
        """Groups keyed by cells: an item's cell is worked out only when some are."""
        self.size = 0
        self.match_all: dict[Key, str] = {}
        """Topics of the filters without any criterion (the empty key, decided)."""
        self.residual: dict[Key, Route] = {}
        """The empty key's other routes, tried on every item: device types alone, or a box
        too large for the grid."""
        self._plan: tuple[_Step, ...] | None = None

    def add(self, route: Route) -> None:
        """Index ``route`` under each of its keys (or as a match-all or residual route)."""
        self.size += 1
        self._plan = None
        if not route.columns:
            if route.exact:
                self.match_all[route.key] = route.topic
            else:
                self.residual[route.key] = route
            return
        group = self.groups.get(route.columns)
        if group is None:
            group = self.groups[route.columns] = _Group(route.columns)
            self.cells += _CELL in route.columns
        for key in route.keys:
            if route.exact:
                group.exact.setdefault(key, {})[route.key] = route.topic
            else:
                group.check.setdefault(key, {})[route.key] = route

    def remove(self, route: Route) -> None:
        """Take ``route`` out of the index, and a key shape with it once no route has it."""
        self.size -= 1
        self._plan = None
        if not route.columns:
            del (self.match_all if route.exact else self.residual)[route.key]
            return
        group = self.groups[route.columns]
        table: dict[Hashable, dict[Key, Any]] = group.exact if route.exact else group.check
        for key in route.keys:
            routes = table[key]
            del routes[route.key]
            if not routes:
                del table[key]
        if not group.exact and not group.check:
            del self.groups[route.columns]
            self.cells -= _CELL in route.columns

    def _steps(self) -> tuple[_Step, ...]:
        # Rebuilt after a change (rare) so that routing an item (often) reads local tuples
        # instead of attributes: a tenth of the cost of routing an item.
        self._plan = tuple(
            (group.has_tag, group.getter, group.exact or None, group.check or None)
            for group in self.groups.values()
        )
        return self._plan

    def route(
        self, item: Item, values: list[Any], tags: Sequence[str], point: Point | None
    ) -> list[str]:
        """The topics of the routes that take ``item``, whose tenant rule lets it reach this
        index. ``values`` are its device id, area, cell, None (for a tag), quantity, None where
        it has none; ``tags`` its tags; ``point`` its location as the compiled filter reads it."""
        out = list(self.match_all.values())
        for candidate in self.residual.values():
            if takes(candidate, item, point):
                out.append(candidate.topic)
        for tagged, getter, exact, check in self._plan or self._steps():
            if tagged:
                if not tags:
                    continue
                if len(tags) > 1:
                    self._route_tags(getter, exact, check, item, values, tags, point, out)
                    continue
                values[_TAG] = tags[0]
            key = getter(values)
            if exact is not None:
                topics = exact.get(key)
                if topics:
                    out.extend(topics.values())
            if check is not None:
                candidates = check.get(key)
                if candidates:
                    for candidate in candidates.values():
                        box = candidate.box  # inline: this loop is the hot one
                        if box is None:
                            if candidate.matches(item):
                                out.append(candidate.topic)
                        elif (
                            point is not None
                            and box[0] <= point[0] <= box[1]
                            and box[2] <= point[1] <= box[3]
                        ):
                            out.append(candidate.topic)
        return out

    @staticmethod
    def _route_tags(
        getter: Any,
        exact: dict[Hashable, dict[Key, str]] | None,
        check: dict[Hashable, dict[Key, Route]] | None,
        item: Item,
        values: list[Any],
        tags: Sequence[str],
        point: Point | None,
        out: list[str],
    ) -> None:
        # A filter naming two of the item's tags is found under both: merging the tables by
        # subscription takes it once.
        topics: dict[Key, str] = {}
        candidates: dict[Key, Route] = {}
        for tag in tags:
            values[_TAG] = tag
            key = getter(values)
            if exact is not None and (found := exact.get(key)):
                topics.update(found)
            if check is not None and (maybe := check.get(key)):
                candidates.update(maybe)
        out.extend(topics.values())
        for candidate in candidates.values():
            if takes(candidate, item, point):
                out.append(candidate.topic)


def takes(candidate: Route, item: Item, point: Point | None) -> bool:
    """Whether a route found by its key takes the item: its box, or its predicate, decides."""
    box = candidate.box
    if box is None:
        return candidate.matches(item)
    return point is not None and box[0] <= point[0] <= box[1] and box[2] <= point[1] <= box[3]


class SourceIndex:
    """The routes of one source: per tenant, all of them (for public items), and per tenant
    those that may receive items under its agreements (with their ``shared`` predicates)."""

    __slots__ = ("everyone", "own", "shared")

    def __init__(self) -> None:
        self.own: dict[str, RouteIndex] = {}
        self.everyone = RouteIndex()
        self.shared: dict[str, RouteIndex] = {}

    def add(self, route: Route) -> None:
        """Index ``route`` among its tenant's routes and among everyone's (and, when it may
        receive agreement items, among its tenant's shared routes)."""
        _add(self.own, route.key[0], route)
        self.everyone.add(route)
        if route.shared is not None:
            # A twin whose predicate is the filter without the tenant rule; the index finds and
            # removes routes by their key, which the twin shares.
            _add(self.shared, route.key[0], replace(route, matches=route.shared))

    def remove(self, route: Route) -> None:
        """Take ``route`` out of its tenant's index (dropped once empty) and everyone's."""
        _remove(self.own, route.key[0], route)
        self.everyone.remove(route)
        if route.shared is not None:
            _remove(self.shared, route.key[0], route)


def _add(indexes: dict[str, RouteIndex], tenant: str, route: Route) -> None:
    index = indexes.get(tenant)
    if index is None:
        index = indexes[tenant] = RouteIndex()
    index.add(route)


def _remove(indexes: dict[str, RouteIndex], tenant: str, route: Route) -> None:
    index = indexes[tenant]
    index.remove(route)
    if index.size == 0:
        del indexes[tenant]
