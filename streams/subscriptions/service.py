"""The subscriptions' operations, as the HTTP API uses them.

Authorisation lives here, as in the registry's services (``streams/registry/principals.py``),
with the same ``Principal`` and the same errors (``streams/service_errors.py``; the API answers
them as problem documents):

- ``subscriber`` and ``admin``: create, read, list, pause, resume and delete the subscriptions
  of their own tenant (an admin: of any tenant);
- ``operator``: none of it (403 in its own tenant); operators run devices, not consumers;
- another tenant's subscriptions, or a tenant that does not exist, are *not found* (404),
  never *forbidden*, so that a key cannot learn what exists elsewhere.

A spec is read as the registered delivery kinds read it (``cityhub.connectors.sinks``), and its
delivery is checked by its kind in context when a subscription is created: a webhook URL against
SSRF (the delivery task checks it again before each connection), a Kafka topic name's length. A
secret a kind generates (a webhook's signing secret) is returned once, by ``create``, and never
afterwards: callers answer with ``Subscription.public()``.

With a secrets store (``secrets``), a record's secrets never go to the subscriptions topic,
which the worker reads: each write puts the secrets on the subscription-secrets topic first
(``acks=all``, read back), then the record without them (``split_secrets``); a delete tombstones
both. ``move_inline_secrets`` does the same for records written before the split; the API runs
it when it starts. Without one (tests, tools) records keep their secrets inline, as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter
from pydantic import ValidationError

from cityhub.connectors.sinks import (
    InvalidDeliverySpec,
    Serving,
    SpecContext,
    UnknownSinkKind,
    get_sink,
    resolve_spec,
)
from cityhub.connectors.sinks.encodings import check_encoding
from cityhub.connectors.sinks.ssrf import Resolver, system_resolver
from cityhub.schemas.registry import Role
from cityhub.schemas.settings import QuotaSettings, Settings
from cityhub.schemas.subscription import (
    Replay,
    ReplaySpec,
    Subscription,
    SubscriptionSpec,
    SubscriptionState,
    build_subscription,
    record_key,
    subscription_topic,
)
from cityhub.schemas.subscription_secrets import split_secrets
from cityhub.schemas.timefmt import parse_rfc3339, rfc3339, rfc3339_from_datetime
from cityhub.streams.privacy.purpose import Activities
from cityhub.streams.quotas import QuotaExceeded
from cityhub.streams.registry.principals import Principal, require_own_tenant
from cityhub.streams.registry.view import RegistryView
from cityhub.streams.service_errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from cityhub.streams.subscriptions.secret_store import SubscriptionSecretRecordStore
from cityhub.streams.subscriptions.store import SubscriptionRecordStore
from cityhub.streams.subscriptions.topics import TopicNameTaken
from cityhub.streams.subscriptions.view import SubscriptionView

log = logging.getLogger("cityhub.subscriptions")

SECRETS_MOVED = Counter(
    "cityhub_subscription_secrets_moved",
    "Subscriptions whose inline secrets (records from before the secrets topic) the API moved "
    "to the subscription-secrets topic.",
)

MANAGING_ROLES = frozenset({Role.SUBSCRIBER, Role.ADMIN})
DEFAULT_SUBSCRIPTIONS_PER_TENANT = QuotaSettings().subscriptions_per_tenant


def personal_items(record: Subscription) -> dict[str, Any]:
    """Whether the subscription can receive personal items, and on what terms (the API says so
    in every answer about a subscription)."""
    if record.delivery.serving is Serving.TOPIC:
        return {
            "received": False,
            "reason": "a Kafka-topic subscription is read directly from its topic, where a "
            "withdrawal or an erasure could not stop an item and no use could be logged: it "
            "never receives personal items",
        }
    if record.processing_activity is None:
        return {
            "received": False,
            "reason": "no processing_activity declared: personal items are not delivered",
        }
    return {
        "received": True,
        "processing_activity": record.processing_activity,
        "terms": "only while the activity is valid, for the personal-data categories it lists, "
        "and, where its legal basis is Consent, for data subjects who consent; checked when "
        "routed and again when delivered, and every delivery is written to the processing log",
    }


class Subscriptions:
    """The subscriptions service over a store; every method checks ``who``.

    Reads come from the store's view; writes return once the view shows them (read-your-writes).
    An id taken in the view or by a write in flight in this instance is a conflict; two
    instances creating the same id at the same moment could both succeed (the later wins).
    """

    def __init__(
        self,
        store: SubscriptionRecordStore,
        registry_view: RegistryView,
        *,
        webhook_allowed_hosts: Iterable[str] | None = None,
        topic_prefix: str | None = None,
        settings: Settings | None = None,
        resolver: Resolver = system_resolver,
        new_secret: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.time,
        ensure_topic: Callable[[str], Awaitable[bool | None]] | None = None,
        remove_topic: Callable[[str], Awaitable[None]] | None = None,
        subscriptions_per_tenant: int = DEFAULT_SUBSCRIPTIONS_PER_TENANT,
        activities: Activities | None = None,
        secrets: SubscriptionSecretRecordStore | None = None,
    ) -> None:
        """``secrets`` is where records' secrets go (see the module docstring; None: inline).
        ``activities`` is the register of processing activities a subscription's
        ``processing_activity`` must be in (None: no register, so none may be declared).
        ``settings`` are what delivery kinds check a spec against (``topic_prefix`` and
        ``webhook_allowed_hosts``, when given, replace theirs); ``new_secret`` replaces a kind's
        own secret generator (tests)."""
        self._store = store
        self._secrets = secrets
        self._registry = registry_view
        base = settings if settings is not None else Settings.model_construct()
        kafka = base.kafka
        if topic_prefix is not None:
            kafka = kafka.model_copy(update={"topic_prefix": topic_prefix})
        hooks = base.subscriptions
        if webhook_allowed_hosts is not None:
            hooks = hooks.model_copy(update={"webhook_allowed_hosts": tuple(webhook_allowed_hosts)})
        self._settings = base.model_copy(update={"kafka": kafka, "subscriptions": hooks})
        self._topic_prefix = kafka.topic_prefix
        self._resolver = resolver
        self._new_secret = new_secret
        self._clock = clock
        self._pending: set[str] = set()
        self._ensure_topic = ensure_topic
        self._remove_topic = remove_topic
        """Deletes a topic a deleted subscription left (``ensure_topic`` says False: it was
        there already), so that a new subscription of the same id never reads its items."""
        """Creates a subscription's Kafka topic before its record is written, so that a
        Kafka-topic subscriber can subscribe as soon as it has the answer (the worker creates
        it too, before routing to it)."""
        self._max_per_tenant = subscriptions_per_tenant
        self._activities = activities
        self._creating: dict[str, list[str]] = {}
        """Ids being created in this instance, by tenant: each holds one of the tenant's slots
        until the view shows it."""

    @property
    def store(self) -> SubscriptionRecordStore:
        return self._store

    @property
    def view(self) -> SubscriptionView:
        """Every subscription, for the delivery tasks (no authorisation)."""
        return self._store.view

    def public(self, record: Subscription) -> dict[str, Any]:
        """``record.public()``, the name of its Kafka topic (``topic``: a Kafka-topic
        subscriber consumes it, and every other delivery reads from it) and whether it can
        receive personal items (``personal_items``)."""
        return {
            **record.public(),
            "topic": subscription_topic(self._topic_prefix, record.tenant, record.id),
            "personal_items": personal_items(record),
        }

    # --- helpers -------------------------------------------------------------------------------
    def _scope(self, who: Principal, tenant: str) -> None:
        """Raise unless ``who`` may manage ``tenant``'s subscriptions: NotFound for another
        tenant or one that does not exist, Forbidden for a role that may not manage any."""
        if who.role is not Role.ADMIN and who.tenant != tenant:
            raise NotFound(f"tenant {tenant!r} not found")
        if who.role not in MANAGING_ROLES:
            raise Forbidden(f"{who.role} keys may not manage subscriptions; use a subscriber key")
        if self._registry.tenant(tenant) is None:
            raise NotFound(f"tenant {tenant!r} not found")

    def _existing(self, tenant: str, subscription_id: str) -> Subscription:
        record = self.view.get(tenant, subscription_id)
        if record is None:
            raise NotFound(f"subscription {subscription_id!r} not found in tenant {tenant!r}")
        return record

    @staticmethod
    def _resolved(spec: SubscriptionSpec) -> SubscriptionSpec:
        """``spec`` as the registered kinds read it; Invalid for a kind none of them is."""
        try:
            return resolve_spec(spec)
        except UnknownSinkKind as exc:
            raise Invalid(str(exc), errors=[FieldError("delivery.kind", str(exc))]) from None
        except ValidationError as exc:
            raise Invalid(
                "the subscription is not valid for its delivery kind",
                errors=[
                    FieldError(".".join(str(p) for p in e["loc"]) or "(body)", e["msg"])
                    for e in exc.errors()
                ],
            ) from None

    @contextmanager
    def _reserve(self, token: str) -> Iterator[None]:
        if token in self._pending:
            raise Conflict("another request is writing the same subscription; try again")
        self._pending.add(token)
        try:
            yield
        finally:
            self._pending.discard(token)

    @contextmanager
    def _quota_slot(self, tenant: str, subscription_id: str) -> Iterator[None]:
        """Hold one of ``tenant``'s subscription slots while ``subscription_id`` is created, or
        raise QuotaExceeded when none is left. The tenant's subscriptions in the view count, and
        so do creates in flight here that the view does not show yet, so that concurrent
        creates in one instance cannot take the tenant past its quota."""
        creating = self._creating.setdefault(tenant, [])
        in_flight = sum(1 for i in creating if self.view.get(tenant, i) is None)
        count = len(self.view.of_tenant(tenant)) + in_flight
        if count >= self._max_per_tenant:
            if not creating:
                del self._creating[tenant]
            raise QuotaExceeded(
                f"Tenant {tenant!r} has {count} subscriptions, as many as it may have; delete "
                "one it no longer needs first.",
                quota="subscriptions_per_tenant",
                limit=self._max_per_tenant,
                tenant=tenant,
            )
        creating.append(subscription_id)
        try:
            yield
        finally:
            creating.remove(subscription_id)
            if not creating:
                del self._creating[tenant]

    async def _check_delivery(self, tenant: str, spec: SubscriptionSpec) -> None:
        """The delivery's encoding must serve its kind, and the kind checks the delivery in
        context; a refusal is ``Invalid``, naming the fields."""
        try:
            sink = get_sink(spec.delivery.kind)
        except UnknownSinkKind as exc:
            raise Invalid(str(exc), errors=[FieldError("delivery.kind", str(exc))]) from None
        context = SpecContext(tenant, spec.id, self._settings, self._resolver)
        try:
            check_encoding(spec.delivery.kind, spec.delivery.encoding)
            await sink.check(spec.delivery, context)
        except InvalidDeliverySpec as exc:
            raise Invalid(
                exc.detail, errors=[FieldError(field, message) for field, message in exc.errors]
            ) from None

    def _check_activity(self, tenant: str, spec: SubscriptionSpec) -> None:
        """A declared processing activity must be in the tenant's register and not ended."""
        slug = spec.processing_activity
        if slug is None:
            return
        activity = self._activities.get(tenant, slug) if self._activities is not None else None
        if activity is None:
            message = (
                f"no processing activity {slug!r} in tenant {tenant!r}'s register "
                "(GET /api/v1/processing-activities?tenant=...)"
            )
            raise Invalid(message, errors=[FieldError("processing_activity", message)])
        ended = activity.current.valid_to
        if ended is not None and parse_rfc3339(ended).timestamp() <= self._clock():
            message = f"processing activity {slug!r} ended at {ended}"
            raise Invalid(message, errors=[FieldError("processing_activity", message)])

    async def _write(self, record: Subscription) -> None:
        """Write ``record``: with a secrets store, its secrets first (the delivery waits for a
        webhook's secret, so a record seen before it is never delivered unsigned), then the
        record without them."""
        if self._secrets is None:
            await self._store.put(record)
            return
        stripped, secrets = split_secrets(record)
        if secrets is not None:
            await self._secrets.put(secrets)
        await self._store.put(stripped)

    async def move_inline_secrets(self) -> int:
        """Move every inline secret in the view (records written before the secrets topic) to
        the secrets topic and rewrite the record without it; how many records were moved.
        Idempotent (a moved record holds no inline secret), and a no-op without a secrets
        store. Each record is written as the view holds it, so a change another instance wrote
        in the same moment could be undone: run it at start, before serving requests."""
        if self._secrets is None:
            return 0
        moved = 0
        for record in self.view.all():
            if split_secrets(record)[1] is None:
                continue
            with self._reserve(record_key(record)):
                await self._write(record)
            moved += 1
            SECRETS_MOVED.inc()
        if moved:
            log.info(
                "moved the inline secrets of %d subscription(s) to the subscription-secrets "
                "topic; the subscriptions topic drops the old records at its next compaction",
                moved,
            )
        return moved

    async def _set_state(
        self, who: Principal, tenant: str, subscription_id: str, state: SubscriptionState
    ) -> Subscription:
        self._scope(who, tenant)
        record = self._existing(tenant, subscription_id)
        if record.state is state:
            return record
        changed = record.model_copy(update={"state": state, "updated_at": rfc3339(self._clock())})
        with self._reserve(record_key(record)):
            await self._write(changed)
        return changed

    # --- operations ----------------------------------------------------------------------------
    async def create(
        self, who: Principal, tenant: str, spec: SubscriptionSpec
    ) -> tuple[Subscription, str | None]:
        """A new subscription, and the secret cityhub generated for its delivery (a webhook's;
        None if the spec carried one, or for kinds without one): show it once, it is never
        returned again. Conflict if the id exists in the tenant; Invalid if the delivery's kind
        refuses it (a webhook URL, a topic name too long) or no such kind is registered;
        QuotaExceeded (409) if the tenant has its ``subscriptions_per_tenant`` already."""
        self._scope(who, tenant)
        spec = self._resolved(spec)
        if spec.processing_activity is not None:
            # Personal data of a tenant's residents goes to the tenant's own keys only: not
            # even another tenant's admin key may subscribe to it.
            require_own_tenant(who, tenant)
        if self.view.get(tenant, spec.id) is not None:
            raise Conflict(
                f"subscription {spec.id!r} already exists in tenant {tenant!r}",
                errors=[FieldError("id", "already exists")],
            )
        self._check_activity(tenant, spec)
        with self._quota_slot(tenant, spec.id):
            await self._check_delivery(tenant, spec)
            record, secret = build_subscription(
                spec, tenant=tenant, now=rfc3339(self._clock()), new_secret=self._new_secret
            )
            key = record_key(record)
            with self._reserve(key):
                if self.view.get(tenant, spec.id) is not None:  # created while the URL was checked
                    raise Conflict(
                        f"subscription {spec.id!r} already exists in tenant {tenant!r}",
                        errors=[FieldError("id", "already exists")],
                    )
                if self._ensure_topic is not None:
                    topic = subscription_topic(self._topic_prefix, tenant, spec.id)
                    try:
                        created = await self._ensure_topic(topic)
                    except TopicNameTaken:
                        # Another tenant's topic differs only by '.' versus '_': say no more
                        # than that this id cannot be had (not whose, not that it exists).
                        raise Conflict(
                            f"the subscription id {spec.id!r} is not available in this tenant; "
                            "choose another",
                            errors=[FieldError("id", "not available")],
                        ) from None
                    if created is False and self._remove_topic is not None:
                        # Left by a deleted subscription of this id: its items (personal ones
                        # among them) were for that one, not for whoever takes the id now.
                        await self._remove_topic(topic)
                        raise Conflict(
                            f"the subscription id {spec.id!r} was used by a subscription deleted "
                            "moments ago, whose topic is being removed; try again in a few "
                            "seconds, or choose another id",
                            errors=[FieldError("id", "recently used")],
                        )
                await self._write(record)
        return record, secret

    def get(self, who: Principal, tenant: str, subscription_id: str) -> Subscription:
        """The tenant's subscription (answer with ``public()``); NotFound otherwise."""
        self._scope(who, tenant)
        return self._existing(tenant, subscription_id)

    def list(self, who: Principal, tenant: str) -> list[Subscription]:
        """The tenant's subscriptions in id order (answer each with ``public()``)."""
        self._scope(who, tenant)
        return self.view.of_tenant(tenant)

    async def pause(self, who: Principal, tenant: str, subscription_id: str) -> Subscription:
        """Stop delivering; the subscription keeps its Kafka position. Idempotent."""
        return await self._set_state(who, tenant, subscription_id, SubscriptionState.PAUSED)

    async def resume(self, who: Principal, tenant: str, subscription_id: str) -> Subscription:
        """Deliver again (also after ``failing``: the subscriber says its sink is back).
        Idempotent."""
        return await self._set_state(who, tenant, subscription_id, SubscriptionState.ACTIVE)

    async def replay(
        self, who: Principal, tenant: str, subscription_id: str, spec: ReplaySpec
    ) -> Subscription:
        """Ask the subscription's delivery to restart from a time or an offset of its topic.
        Kinds a delivery task serves only (webhook, MQTT): a Kafka-topic subscriber seeks its
        own consumer, and a live stream client reconnects with ``Last-Event-ID`` or
        ``?fromTime=`` (Conflict)."""
        self._scope(who, tenant)
        record = self._existing(tenant, subscription_id)
        serving = record.delivery.serving
        if serving is not Serving.TASK:
            how = (
                "seek your own consumer of the subscription's topic"
                if serving is Serving.TOPIC
                else "reconnect to the stream with Last-Event-ID or ?fromTime="
            )
            raise Conflict(
                f"a {record.delivery.kind} subscription is replayed by its client: {how}"
            )
        now = rfc3339(self._clock())
        replay = Replay(
            generation=(record.replay.generation if record.replay is not None else 0) + 1,
            from_time=(
                rfc3339_from_datetime(spec.from_time) if spec.from_time is not None else None
            ),
            from_offset=spec.from_offset,
            requested_at=now,
        )
        changed = record.model_copy(update={"replay": replay, "updated_at": now})
        with self._reserve(record_key(record)):
            await self._write(changed)
        return changed

    async def delete(self, who: Principal, tenant: str, subscription_id: str) -> None:
        """Delete the tenant's subscription (a tombstone on the topic, and on the secrets
        topic: the record first, so that no delivery waits for a secret that went first);
        NotFound otherwise."""
        self._scope(who, tenant)
        record = self._existing(tenant, subscription_id)
        key = record_key(record)
        with self._reserve(key):
            await self._store.delete(key)
            if self._secrets is not None:
                await self._secrets.delete(key)
