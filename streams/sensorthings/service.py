"""The SensorThings read service: a resource path and query options in, a JSON document out.

Registry-backed entities (``model.Graph``) are filtered and sorted in Python
(``evaluate.py``); Observations in PostgreSQL (``sql.py``, ``observations.py``). A bad query
is a ``QueryError`` (400), an entity the viewer cannot see or that does not exist a ``Missing``
(404): the two are the same answer, so that a key learns nothing about other tenants.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from cityhub.schemas.settings import SensorThingsSettings
from cityhub.streams.history.queries import Viewer as HistoryViewer
from cityhub.streams.sensorthings.documents import iso
from cityhub.streams.sensorthings.evaluate import Resolve, many, matches, sort
from cityhub.streams.sensorthings.expr import Expand, Expr, NotSupported, Query, QueryError
from cityhub.streams.sensorthings.ids import MAX_OBSERVATION_ID, event_id_bounds
from cityhub.streams.sensorthings.model import (
    ENTITY_SETS,
    RELATIONS,
    SET_OF,
    Entity,
    Graph,
    is_plural,
)
from cityhub.streams.sensorthings.observations import HistoryReads, ObservationQuery
from cityhub.streams.sensorthings.parser import parse_options
from cityhub.streams.sensorthings.resources import Segment, parse_path
from cityhub.streams.sensorthings.sql import Params, compile_filter, compile_orderby

CONFORMANCE = (
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
)
"""The conformance classes served (read only: no create-update-delete, no MQTT)."""

MAX_EXPANDED = 10_000
"""The most entities one response may hold with everything it expands (past it: 400)."""
MAX_BUILD_SECONDS = 5.0
"""The longest one response may take to build (past it: 400). Nested ``$expand`` reads one
collection per parent: within the entity cap a review's four-level expand still took 10 s and
5.8 MB, and four of them at once 35 s each."""


class Missing(LookupError):
    """No such entity (or not one this key may see): answered 404."""


@dataclass
class Context:
    """One request's view: the viewer's entities, the history viewer, the links' root."""

    graph: Graph
    viewer: HistoryViewer
    base: str
    settings: SensorThingsSettings
    reads: HistoryReads | None
    expanded: int = 0
    clock: Callable[[], float] = time.monotonic
    started: float = 0.0
    devices: list[str] = field(default_factory=list)
    tally: dict[str, int] = field(default_factory=dict)
    """Entities rendered per agreement (another tenant's, seen under it): the read's usage."""

    def __post_init__(self) -> None:
        self.devices = self.graph.visible_devices()
        self.started = self.clock()


@dataclass(frozen=True, slots=True)
class Source:
    """Where a collection comes from: a whole entity set, or a navigation from ``parent``."""

    kind: str
    parent: Entity | None = None
    navigation: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """A response: a JSON document, or raw text for ``$value`` (``text``), or no content."""

    document: dict[str, Any] | None = None
    text: str | None = None


# --- navigation and property paths ----------------------------------------------------------


def related(ctx: Context, entity: Entity, navigation: str) -> list[Entity]:
    """The registry-backed entities a navigation reaches (not Observations)."""
    if entity.kind == "Observation":
        device_id, quantity = entity.key
        if navigation == "Datastream":
            found = ctx.graph.by_key("Datastream", (device_id, quantity))
        else:
            found = ctx.graph.by_key("FeatureOfInterest", device_id)
        return [] if found is None else [found]
    return ctx.graph.related(entity, navigation)


def resolve_path(ctx: Context, entity: Entity, path: Sequence[str]) -> Any:
    """The value of a property path for ``entity`` (a ``many`` list past a to-many step).
    Entities a step reaches are taken once each, however many ways lead to them: a path that
    goes back and forth (``Datastreams/Thing/Datastreams/Thing/...``) would otherwise multiply
    them at every to-many step, exponentially in the path's length."""
    frontier, plural = [entity], False
    for i, head in enumerate(path):
        rest = path[i + 1 :]
        if head in ("id", "@iot.id") and not rest:
            return _gathered([e.id for e in frontier], plural)
        kind = frontier[0].kind
        relations = RELATIONS[kind]
        if head in relations:
            if relations[head] == "Observation":
                raise NotSupported("filters cannot follow a navigation to Observations")
            if not rest:
                raise QueryError(f"the path {head} must end in a property of what it reaches")
            reached: dict[object, Entity] = {}
            for source in frontier:
                for target in related(ctx, source, head):
                    reached.setdefault(target.id, target)
            plural = plural or is_plural(head)
            if not reached:
                return many([]) if plural else None
            frontier = list(reached.values())
            continue
        if kind != "Observation" and any(head not in e.props for e in frontier):
            raise QueryError(f"a {kind} has no property {head[:64]!r}")
        values = []
        for source in frontier:
            value = source.props.get(head)
            for step in rest:
                value = value.get(step) if isinstance(value, dict) else None
            values.append(value)
        return _gathered(values, plural)
    raise QueryError("the path is empty")


def _gathered(values: list[Any], plural: bool) -> Any:
    return many(values) if plural else values[0]


def resolver(ctx: Context, entity: Entity) -> Resolve:
    """The path resolver of one entity for the Python evaluator."""
    return lambda path: resolve_path(ctx, entity, path)


# --- collections --------------------------------------------------------------------------


def _page_size(ctx: Context, query: Query) -> int:
    top = ctx.settings.default_top if query.top is None else query.top
    return min(top, ctx.settings.max_top)


def _navigation_sql(ctx: Context, candidates: Sequence[Entity]) -> Any:
    def compile_navigation(expr: Expr, params: Params) -> str:
        pairs = []
        for stream in candidates:

            def resolve(path: tuple[str, ...], stream: Entity = stream) -> Any:
                if path[0] == "Datastream":
                    return resolve_path(ctx, stream, path[1:])
                feature = ctx.graph.by_key("FeatureOfInterest", stream.key[0])
                return None if feature is None else resolve_path(ctx, feature, path[1:])

            if matches(expr, resolve):
                pairs.append(stream.key)
        if not pairs:
            return "FALSE"
        devices = params.add([p[0] for p in pairs])
        quantities = params.add([p[1] for p in pairs])
        # Placeholders only: the pairs travel as two array parameters.
        return (
            f"((device_id, quantity) IN (SELECT * FROM unnest({devices}::text[], "  # noqa: S608
            f"{quantities}::text[])))"
        )

    return compile_navigation


def _observation_scope(
    ctx: Context, source: Source, params: Params
) -> tuple[list[str], list[Entity]]:
    """The SQL conditions of a navigation to Observations, and the Datastreams in scope."""
    parent = source.parent
    if parent is None:
        return [], ctx.graph.all("Datastream")
    if parent.kind == "Datastream":
        device_id, quantity = parent.key
        where = [f"device_id = {params.add(device_id)}", f"quantity = {params.add(quantity)}"]
        return where, [parent]
    device_id = parent.key  # a FeatureOfInterest: the device's observations
    streams = [s for s in ctx.graph.all("Datastream") if s.key[0] == device_id]
    return [f"device_id = {params.add(device_id)}"], streams


async def _observations(
    ctx: Context, source: Source, query: Query, size: int, event_id: int | None = None
) -> tuple[list[Entity], int | None, bool]:
    if ctx.reads is None:  # no history store: no Observations
        if event_id is not None:
            raise Missing("no such Observation")
        return [], (0 if query.count else None), False
    params = Params()
    where, streams = _observation_scope(ctx, source, params)
    if event_id is not None:
        low, high = event_id_bounds(event_id)
        where.append(f"(event_id BETWEEN {params.add(low)} AND {params.add(high)})")
    if query.filter is not None:
        where.append(compile_filter(query.filter, params, _navigation_sql(ctx, streams)))
    if query.orderby:
        order = compile_orderby(query.orderby, params)
    elif source.parent is None:
        # The whole set by id: the primary key's order, a few ms on millions of rows, where
        # newest first would sort every visible row.
        order = "event_id ASC"
    else:
        # A Datastream's (or a device's) newest first: its index gives them in this order.
        order = "observed_at DESC, event_id ASC"
    statement = ObservationQuery(where, params.values, order, size + 1, query.skip)
    rows = await ctx.reads.page(ctx.viewer, ctx.devices, statement)
    count = await ctx.reads.count(ctx.viewer, ctx.devices, statement) if query.count else None
    return rows[:size], count, size > 0 and len(rows) > size


async def collection(
    ctx: Context, source: Source, query: Query
) -> tuple[list[Entity], int | None, bool]:
    """One page of a collection after ``$filter``, ``$orderby``, ``$skip`` and ``$top``; the
    ``$count`` of all that pass the filter (None unless asked); whether more follow."""
    size = _page_size(ctx, query)
    if source.kind == "Observation":
        return await _observations(ctx, source, query, size)
    if source.parent is None:
        if query.filter is None and not query.orderby:
            # A plain page of a whole set makes only the entities it shows.
            total = ctx.graph.count(source.kind)
            page = ctx.graph.page(source.kind, query.skip, size)
            return page, (total if query.count else None), size > 0 and total > query.skip + size
        items = ctx.graph.all(source.kind)
    else:
        items = related(ctx, source.parent, source.navigation or "")
    if query.filter is not None:
        expr = query.filter
        items = [e for e in items if matches(expr, resolver(ctx, e))]
    items = sort(items, query.orderby, lambda e: resolver(ctx, e))
    count = len(items) if query.count else None
    page = items[query.skip : query.skip + size]
    return page, count, size > 0 and len(items) > query.skip + size


async def find(ctx: Context, source: Source, entity_id: int) -> Entity:
    """The entity with ``entity_id`` in ``source``; Missing if there is none."""
    if source.kind == "Observation":
        if not 0 <= entity_id <= MAX_OBSERVATION_ID:
            raise Missing("no such Observation")
        found, _, _ = await _observations(ctx, source, Query(), 1, event_id=entity_id)
        if not found:
            raise Missing("no such Observation")
        return found[0]
    if source.parent is None:
        entity = ctx.graph.get(source.kind, entity_id)
    else:
        reached = related(ctx, source.parent, source.navigation or "")
        entity = next((e for e in reached if e.id == entity_id), None)
    if entity is None:
        raise Missing(f"no such {source.kind}")
    return entity


# --- rendering ------------------------------------------------------------------------------


def self_link(ctx: Context, entity: Entity) -> str:
    """An entity's ``@iot.selfLink``."""
    return f"{ctx.base}/{SET_OF[entity.kind]}({entity.id})"


def _json_value(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


def _count(ctx: Context, entity: Entity) -> None:
    """Count an entity the response shows (its properties, not only a link) for the agreement
    it is seen under, if any."""
    agreement = ctx.graph.agreement_of(entity)
    if agreement is not None:
        ctx.tally[agreement] = ctx.tally.get(agreement, 0) + 1


async def render(ctx: Context, entity: Entity, query: Query) -> dict[str, Any]:
    """An entity's document: ``@iot.id``, ``@iot.selfLink``, properties (``$select``),
    navigation links, and what ``$expand`` asks for."""
    ctx.expanded += 1
    if ctx.expanded > MAX_EXPANDED:
        raise QueryError(f"the response would hold more than {MAX_EXPANDED} entities: page it")
    if ctx.clock() - ctx.started > MAX_BUILD_SECONDS:
        raise QueryError(
            f"the response took more than {MAX_BUILD_SECONDS:.0f} s to build: ask for less "
            "($top, fewer or shallower $expand) and page it"
        )
    _count(ctx, entity)
    link = self_link(ctx, entity)
    selected = set(query.select)
    doc: dict[str, Any] = {}
    if not selected or "id" in selected:
        doc["@iot.id"] = entity.id
    doc["@iot.selfLink"] = link
    for name, value in entity.props.items():
        if not selected or name in selected:
            doc[name] = _json_value(value)
    unknown = selected - set(entity.props) - set(RELATIONS[entity.kind]) - {"id"}
    if unknown:
        raise QueryError(f"a {entity.kind} has no property {sorted(unknown)[0][:64]!r}")
    for navigation in RELATIONS[entity.kind]:
        if not selected or navigation in selected:
            doc[f"{navigation}@iot.navigationLink"] = f"{link}/{navigation}"
    for item in query.expand:
        await _expand(ctx, entity, item, doc, link)
    return doc


async def _expand(
    ctx: Context, entity: Entity, item: Expand, doc: dict[str, Any], link: str
) -> None:
    navigation = item.navigation
    if navigation not in RELATIONS[entity.kind]:
        raise QueryError(f"a {entity.kind} has no navigation property {navigation[:64]!r}")
    target = RELATIONS[entity.kind][navigation]
    if is_plural(navigation):
        source = Source(target, entity, navigation)
        items, count, more = await collection(ctx, source, item.query)
        doc[navigation] = [await render(ctx, e, item.query) for e in items]
        if count is not None:
            doc[f"{navigation}@iot.count"] = count
        if more:
            nested = dict(item.query.options)
            doc[f"{navigation}@iot.nextLink"] = _page_link(
                f"{link}/{navigation}", nested, _page_size(ctx, item.query), item.query.skip
            )
        return
    reached = related(ctx, entity, navigation)
    doc[navigation] = await render(ctx, reached[0], item.query) if reached else None


# --- requests -------------------------------------------------------------------------------


def root_document(base: str) -> dict[str, Any]:
    """The service root: every entity set's URL and the conformance classes."""
    return {
        "value": [{"name": name, "url": f"{base}/{name}"} for name in ENTITY_SETS],
        "serverSettings": {"conformance": list(CONFORMANCE)},
    }


def _page_link(url: str, options: Mapping[str, str], size: int, skip: int) -> str:
    """``url`` with ``options`` and ``$top``/``$skip`` of the page after one from ``skip``."""
    wanted = {k: v for k, v in options.items() if k not in ("$top", "$skip")}
    wanted["$top"] = str(size)
    wanted["$skip"] = str(skip + size)
    return f"{url}?" + urlencode(wanted, quote_via=quote, safe="$(),'/:")


def _next_link(ctx: Context, path: str, options: Mapping[str, str], query: Query) -> str:
    return _page_link(f"{ctx.base}/{path}", options, _page_size(ctx, query), query.skip)


async def answer(ctx: Context, path: str, options: Mapping[str, str]) -> Answer:
    """The response to GET ``<root>/<path>?<options>``: raises QueryError (400) or
    Missing (404)."""
    segments = parse_path(path)
    query = parse_options(options)
    if not segments:
        return Answer(root_document(ctx.base))
    first = segments[0]
    if first.name not in ENTITY_SETS:
        raise Missing(f"no entity set {first.name[:64]!r}")
    source = Source(ENTITY_SETS[first.name])
    entity = None if first.id is None else await find(ctx, source, first.id)
    rest = segments[1:]
    while rest:
        segment, rest = rest[0], rest[1:]
        if segment.name == "$ref":
            if rest:
                raise Missing("nothing follows $ref")
            return await _refs(ctx, source, entity, query, path, options)
        if entity is None:
            raise Missing(f"{segment.name[:64]!r} needs one entity before it, not a collection")
        if segment.name in RELATIONS[entity.kind]:
            target = RELATIONS[entity.kind][segment.name]
            if is_plural(segment.name):
                source = Source(target, entity, segment.name)
                entity = None if segment.id is None else await find(ctx, source, segment.id)
                continue
            if segment.id is not None:
                raise Missing(f"{segment.name} reaches one entity: it takes no key")
            reached = related(ctx, entity, segment.name)
            if not reached:
                raise Missing(f"no {segment.name}")
            source, entity = Source(target), reached[0]
            continue
        _count(ctx, entity)
        return _property(entity, segment, rest)
    if entity is not None:
        return Answer(await render(ctx, entity, query))
    items, count, more = await collection(ctx, source, query)
    document: dict[str, Any] = {}
    if count is not None:
        document["@iot.count"] = count
    document["value"] = [await render(ctx, e, query) for e in items]
    if more:
        document["@iot.nextLink"] = _next_link(ctx, path, options, query)
    return Answer(document)


def _property(entity: Entity, segment: Segment, rest: list[Segment]) -> Answer:
    name = segment.name
    if segment.id is not None or name not in entity.props:
        raise Missing(f"a {entity.kind} has no property {name[:64]!r}")
    value = _json_value(entity.props[name])
    if not rest:
        return Answer({name: value})
    if len(rest) == 1 and rest[0].name == "$value" and rest[0].id is None:
        if value is None:
            return Answer()
        if isinstance(value, dict | list):
            return Answer(text=json.dumps(value))
        return Answer(text=str(value).lower() if isinstance(value, bool) else str(value))
    raise Missing("a property path ends with the property or its $value")


async def _refs(
    ctx: Context,
    source: Source,
    entity: Entity | None,
    query: Query,
    path: str,
    options: Mapping[str, str],
) -> Answer:
    if entity is not None:
        return Answer({"@iot.selfLink": self_link(ctx, entity)})
    items, count, more = await collection(ctx, source, query)
    document: dict[str, Any] = {}
    if count is not None:
        document["@iot.count"] = count
    document["value"] = [{"@iot.selfLink": self_link(ctx, e)} for e in items]
    if more:
        document["@iot.nextLink"] = _next_link(ctx, path, options, query)
    return Answer(document)
