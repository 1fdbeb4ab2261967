"""Which subscription topics an observation or an aggregate goes to.

Pure: no I/O. The worker keeps one ``SubscriptionRouter`` beside each agent that writes
observations (the normaliser) or aggregates (the aggregator), refreshes it when the
subscriptions view changes (``refresh``), and writes every item to each topic ``route`` names,
before it acknowledges the input: the subscription's own topic ``<prefix>.sub.<tenant>.<id>`` is
then the Kafka-topic delivery itself, and the buffer in front of every other delivery (see
``cityhub.streams.delivery``). Routing at the point where an item is made saves decoding every
observation a second time in a separate router stage.

A subscription served by its topic (``kafka``) finds there what it asked for: the canonical JSON,
or, with another ``delivery.encoding`` (CloudEvents), each item in that encoding (``write``,
``cityhub.connectors.sinks.encodings``); every other kind's topic is the buffer in front of its
delivery task, holds the canonical JSON, and the task encodes.

Paused subscriptions are routed too: pausing stops the delivery, not the routing, so a resumed
subscription catches up from its topic and loses nothing. A subscription is routed only once
its topic exists (``ready_topics``): the worker creates the topic, then routes to it.

Items under an agreement (issue 13): an item of tenant A also reaches the subscriptions of
tenant B whose filters take it while B holds an agreement with A in force that covers it
(``cityhub.streams.sharing.grants``: kind, classification, selection, period). The grants come
from ``grants`` (a source: the sharing view's current ones) and the clock at every item, never a
cached answer, so an agreement stops counting the moment it expires. Such a copy carries the
agreement's id in the ``cityhub-agreement`` header (``write``), so that a delivery can check the
agreement again just before it sends (``agreements.py``). Subscriptions read directly from their
Kafka topic (``kafka_topic``) receive no agreement items: nothing could stop or count what their
reader takes after the agreement ends (as personal items are refused to them). An item whose
tenant holds no agreement as a provider costs one dictionary look-up more than before.

The cost of routing one item must not grow with subscriptions that do not receive it, so that
one tenant's thousands of subscriptions cannot slow everybody's data down: the router looks an
item up in an index of the subscriptions (``route_index.py``) instead of running every compiled
filter on every item. ``route`` returns exactly what evaluating every subscription's predicate
returns (``LinearSubscriptionRouter`` in ``linear_router.py``, kept as the reference:
``tests/unit/test_router_index.py`` checks the two agree on random subscriptions and items).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime

from cityhub.connectors.sinks.base import Item as SinkItem
from cityhub.connectors.sinks.encodings import EncodingContext, get_encoding
from cityhub.connectors.sinks.errors import UnknownEncoding
from cityhub.schemas.observation import Observation
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import (
    DEFAULT_ENCODING,
    Serving,
    Source,
    Subscription,
    subscription_topic,
)
from cityhub.streams.runtime.agent import Headers, Write
from cityhub.streams.sharing.grants import DeviceFacts, Grant, Grants, GrantsSource, facts_of
from cityhub.streams.subscriptions.agreement_routing import KIND_OF_SOURCE, takes_agreement_items
from cityhub.streams.subscriptions.agreements import agreement_header
from cityhub.streams.subscriptions.filter import (
    PUBLIC,
    DeviceTypeOf,
    Item,
    compile_filter,
)
from cityhub.streams.subscriptions.route_index import (
    Key,
    Point,
    Route,
    RouteIndex,
    SourceIndex,
    grid_cell,
    index_keys,
)

log = logging.getLogger("cityhub.subscriptions.router")

TopicEncoder = Callable[[str, bytes, bytes, "int | None", "Headers | None"], Write]
"""``(topic, key, doc, timestamp_ms, headers) -> the record to write`` for one topic."""


def _str_of(value: object) -> str | None:
    return value if type(value) is str else None


def _doc_tags(carried: object) -> list[str]:
    """A JSON item's tags as the compiled filter reads them: the strings of a list."""
    if type(carried) is list or isinstance(carried, tuple):
        return [tag for tag in carried if type(tag) is str]
    return []


def _doc_values(item: Mapping[str, object], point: Point | None, cells: bool) -> list[object]:
    """A JSON item's index values (device id, area, cell, tag slot, quantity)."""
    get = item.get
    return [
        _str_of(get("device_id")),
        _str_of(get("area")),
        grid_cell(*point) if cells and point is not None else None,
        None,
        _str_of(get("quantity")),
    ]


def _doc_point(location: object) -> Point | None:
    """A JSON item's location as the compiled filter's box check reads it: a mapping with
    latitude and longitude of type float or int exactly (not bool), else None (in no box)."""
    if type(location) is not dict and not isinstance(location, Mapping):
        return None
    latitude, longitude = location.get("latitude"), location.get("longitude")
    if not (isinstance(latitude, float | int) and isinstance(longitude, float | int)):
        return None
    if type(latitude) not in (float, int) or type(longitude) not in (float, int):
        return None  # bool, and other subclasses, are not numbers to the filter
    return latitude, longitude


class SubscriptionRouter:
    """The compiled filters of every subscription, indexed by source, tenant and criteria."""

    def __init__(
        self,
        topic_prefix: str,
        device_type_of: DeviceTypeOf | None = None,
        *,
        settings: Settings | None = None,
        grants: GrantsSource | None = None,
        device_of: DeviceFacts | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``device_type_of`` looks a device's type up (the registry view) for items that do not
        carry one (aggregates), so that a ``device_types`` filter applies to them too.
        ``settings`` are what encodings read (the CloudEvents attributes); None: the
        environment's, read when a subscription first needs them. ``grants``: the current
        agreements (None: no sharing beyond ``public``); ``device_of`` gives a device's type
        and tags to the agreements' selections for items that do not carry them (aggregates);
        ``clock`` is when an agreement is asked about."""
        self._prefix = topic_prefix
        self._device_type_of = device_type_of
        self._settings = settings
        self._grants = grants
        self._device_of = device_of
        self._clock = clock
        self._granted: dict[str, Grant] = {}
        """The topics the last ``route`` chose under an agreement, with its grant."""
        self._sources = {source: SourceIndex() for source in Source}
        self._by_key: dict[Key, Route] = {}
        self._by_topic: dict[str, Route] = {}
        self._encoders: dict[str, TopicEncoder] = {}
        """Topics whose items are written in an encoding other than cityhub's (kafka kind)."""
        self.generation = 0
        """Bumped by every ``refresh`` that changed something (for callers' caches)."""

    def topic_of(self, record: Subscription) -> str:
        """The topic ``record`` is routed to (the one it was routed to first, if it is)."""
        known = self._by_key.get((record.tenant, record.id))
        return (
            known.topic
            if known is not None
            else subscription_topic(self._prefix, record.tenant, record.id)
        )

    def refresh(
        self, subscriptions: Iterable[Subscription], ready_topics: Collection[str] | None = None
    ) -> bool:
        """Route to exactly ``subscriptions`` (those whose topic is in ``ready_topics``, when
        given). Incremental: unchanged records keep their compiled filter and their place in the
        index, and only what was added, changed or removed is indexed again. Returns whether
        anything changed."""
        old = self._by_key
        current: dict[Key, Route] = {}
        for record in subscriptions:
            key = (record.tenant, record.id)
            route = old.get(key)
            if route is not None and (
                route.record is record or _same_routing(route.record, record)
            ):
                route.record = record  # the next refresh recognises it by identity
            else:
                route = None
            topic = route.topic if route is not None else self.topic_of(record)
            if ready_topics is not None and topic not in ready_topics:
                continue
            current[key] = route if route is not None else self._compile(record, topic)
        removed = [route for key, route in old.items() if current.get(key) is not route]
        added = [route for key, route in current.items() if old.get(key) is not route]
        if not removed and not added:
            return False
        for route in removed:
            self._sources[route.record.source].remove(route)
        for route in added:
            self._sources[route.record.source].add(route)
        self._by_key = current
        self._by_topic = {route.topic: route for route in current.values()}
        # A route kept as it was keeps its encoder (same kind, encoding and source).
        kept = self._encoders
        fresh = {id(route) for route in added}
        self._encoders = {}
        for route in current.values():
            if _encoded_on_topic(route.record):
                known = kept.get(route.topic)
                self._encoders[route.topic] = (
                    known
                    if known is not None and id(route) not in fresh
                    else self._encoder(route.record)
                )
        self.generation += 1
        return True

    def write(
        self,
        topic: str,
        key: bytes,
        doc: bytes,
        *,
        timestamp_ms: int | None = None,
        headers: Headers | None = None,
    ) -> Write:
        """The record that carries ``doc`` (an item ``route`` sent to ``topic``) there: the
        canonical JSON, or the item in the encoding of a subscription served by its topic. A
        copy the last ``route`` chose under an agreement carries the agreement's header."""
        if self._granted:
            grant = self._granted.get(topic)
            if grant is not None:
                headers = [*(headers or ()), agreement_header(grant)]
        encode = self._encoders.get(topic)
        if encode is None:
            return Write(topic, key, doc, None, timestamp_ms, headers)
        return encode(topic, key, doc, timestamp_ms, headers)

    def _encoder(self, record: Subscription) -> TopicEncoder:
        """How items go into the topic of ``record`` (served by its topic, not in cityhub's
        encoding): each as the encoding's message, its headers added to the item's."""
        if self._settings is None:
            self._settings = Settings()
        context = EncodingContext(
            "kafka", record.source.value, record.tenant, record.id, self._settings
        )
        try:
            encoding = get_encoding(record.delivery.encoding)
        except UnknownEncoding:
            # The API that accepted the subscription knew the encoding; this worker lacks the
            # plugin. The canonical JSON still goes (nothing is lost), and the gap is logged.
            log.error(
                "subscription %s/%s: encoding %r is not installed in this worker; its topic "
                "receives cityhub's JSON",
                record.tenant,
                record.id,
                record.delivery.encoding,
            )
            return _plain

        def encode(
            topic: str, key: bytes, doc: bytes, timestamp_ms: int | None, headers: Headers | None
        ) -> Write:
            message = encoding.encode_message(
                SinkItem(-1, -1, timestamp_ms or 0, key, doc, tuple(headers or ())), context
            )
            out: Headers = list(headers or ())
            if message.content_type is not None:
                out.append(("content-type", message.content_type.encode()))
            out.extend((name, value.encode()) for name, value in message.headers)
            return Write(topic, key, message.payload, None, timestamp_ms, out or None)

        return encode

    def _compile(self, record: Subscription, topic: str) -> Route:
        columns, keys, covered = index_keys(record.filter)
        matches = compile_filter(
            record.filter, tenant=record.tenant, device_type_of=self._device_type_of
        )
        box = record.filter.bbox
        shared = None
        if takes_agreement_items(record):
            shared = compile_filter(
                record.filter,
                tenant=record.tenant,
                device_type_of=self._device_type_of,
                shared=True,
            )
        return Route(
            (record.tenant, record.id),
            topic,
            matches,
            record,
            columns,
            tuple(keys),
            exact=covered and box is None,
            box=(box.min_lat, box.max_lat, box.min_lon, box.max_lon) if covered and box else None,
            shared=shared,
        )

    def route(self, item: Item, source: Source = Source.OBSERVATIONS) -> list[str]:
        """The topics of the subscriptions that receive ``item``, each once, in no particular
        order: exactly those whose compiled filter takes it, and those of other tenants whose
        filter takes it under an agreement in force now (``grant_at`` names the agreement of
        each of those until the next call)."""
        if self._granted:
            self._granted = {}
        sources = self._sources[source]
        index: RouteIndex | None
        if isinstance(item, Observation):
            owner: object = item.tenant
            if type(owner) is str and item.classification == PUBLIC:
                index = sources.everyone
            else:
                index = sources.own.get(owner) if isinstance(owner, str) else None
                if self._grants is not None and type(owner) is str:
                    grants = self._grants()
                    if grants.consumers_of(owner):
                        return self._route_shared(item, source, owner, index, grants)
            if index is None:
                return []
            location = item.location
            point = None if location is None else (location.latitude, location.longitude)
            cell = grid_cell(*point) if index.cells and point is not None else None
            return index.route(
                item, [item.device_id, item.area, cell, None, item.quantity], item.tags, point
            )
        # A JSON item: a value counts only as an exact str, as the compiled filter reads it.
        get = item.get
        owner = get("tenant")
        if type(owner) is str and get("classification") == PUBLIC:
            index = sources.everyone
        else:
            index = sources.own.get(owner) if isinstance(owner, str) else None
            if self._grants is not None and type(owner) is str:
                grants = self._grants()
                if grants.consumers_of(owner):
                    return self._route_shared(item, source, owner, index, grants)
        if index is None:
            return []
        tags, point = _doc_tags(get("tags")), _doc_point(get("location"))
        return index.route(item, _doc_values(item, point, bool(index.cells)), tags, point)

    def _route_shared(
        self, item: Item, source: Source, owner: str, own: RouteIndex | None, grants: Grants
    ) -> list[str]:
        """``route`` for a non-public item of a tenant that holds agreements as a provider: its
        own tenant's topics, and those of each consumer whose agreement in force covers it."""
        if isinstance(item, Observation):
            location = item.location
            point = None if location is None else (location.latitude, location.longitude)
            values: list[object] = [
                item.device_id,
                item.area,
                grid_cell(*point) if point is not None else None,
                None,
                item.quantity,
            ]
            tags: list[str] = list(item.tags)
        else:
            point = _doc_point(item.get("location"))
            values = _doc_values(item, point, True)
            tags = _doc_tags(item.get("tags"))
        out = own.route(item, list(values), tags, point) if own is not None else []
        facts = facts_of(item, KIND_OF_SOURCE[source], self._device_of)
        when = datetime.fromtimestamp(self._clock(), UTC)
        shared = self._sources[source].shared
        for consumer in grants.consumers_of(owner):
            index = shared.get(consumer)
            if index is None:
                continue
            grant = grants.grant_for(consumer, facts, when)
            if grant is None:
                continue
            for topic in index.route(item, list(values), tags, point):
                self._granted[topic] = grant
                out.append(topic)
        return out

    def grant_at(self, topic: str) -> Grant | None:
        """The agreement under which the last ``route`` chose ``topic`` (None: the item is the
        subscription's tenant's own, or public, or ``topic`` was not chosen)."""
        return self._granted.get(topic)

    def subscription_at(self, topic: str) -> Subscription | None:
        """The subscription routed to ``topic`` (its latest version), if any: what the privacy
        gate checks a personal item against."""
        route = self._by_topic.get(topic)
        return route.record if route is not None else None

    @property
    def topics(self) -> set[str]:
        """The topics currently routed to."""
        return {r.topic for r in self._by_key.values()}

    def __len__(self) -> int:
        return len(self._by_key)


def _same_routing(a: Subscription, b: Subscription) -> bool:
    """Whether two versions of a subscription route alike: the same filter and source, and
    the same delivery kind and encoding (which decide what its topic receives); the state and
    the delivery's other options do not matter."""
    return (
        a.filter == b.filter
        and a.source == b.source
        and a.delivery.kind == b.delivery.kind
        and a.delivery.encoding == b.delivery.encoding
    )


def _encoded_on_topic(record: Subscription) -> bool:
    """Whether ``record``'s topic receives its items in an encoding other than cityhub's: a
    kind served by its topic; every other kind's task encodes what it reads."""
    return record.delivery.serving is Serving.TOPIC and record.delivery.encoding != DEFAULT_ENCODING


def _plain(
    topic: str, key: bytes, doc: bytes, timestamp_ms: int | None, headers: Headers | None
) -> Write:
    return Write(topic, key, doc, None, timestamp_ms, headers)
