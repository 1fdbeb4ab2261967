"""What one cityhub process runs, wired together: the one place that knows every part.

``process_parts`` builds the parts a command asks for (``cityhub worker``, ``bridge``, ``api``,
``deliver``, or several of them) with what they share: one registry store and one
subscriptions store per process, the routing that the worker's agents write through, and the
management endpoint with each part's health. ``cityhub.streams.runtime.host.run_parts`` then
runs them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cityhub.connectors.batching_writer import BatchingWriter
from cityhub.connectors.dead_letter_route import DeadLetterRoute
from cityhub.connectors.mqtt.bridge import MqttBridge, bridge_writer
from cityhub.connectors.mqtt.broker_stats_exporter import BrokerStatsExporter
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams import metrics
from cityhub.streams.aggregation.agent import AggregatorAgent
from cityhub.streams.http import HealthCheck
from cityhub.streams.normaliser.agent import NormaliserAgent
from cityhub.streams.normaliser.personal import PersonalSealer
from cityhub.streams.normaliser.personal import category_of as personal_category
from cityhub.streams.privacy.stores import PrivacyStores
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.runtime.heap import heap_part
from cityhub.streams.runtime.host import Part, management_part, server_part, store_part
from cityhub.streams.runtime.worker import Worker
from cityhub.streams.sharing.stores import SharingStores
from cityhub.streams.subscriptions.router import SubscriptionRouter
from cityhub.streams.subscriptions.routing import Routing
from cityhub.streams.subscriptions.secret_store import SubscriptionSecretStore
from cityhub.streams.subscriptions.store import SubscriptionStore
from cityhub.streams.subscriptions.topics import SubscriptionTopics

if TYPE_CHECKING:  # imported where the API is built: a worker process does without it
    from cityhub.streams.delivery.agreement_screen import DeliverySharing
    from cityhub.streams.opendata.distributions import OpenDataDistributions
    from cityhub.streams.opendata.requests import DataRequests
    from cityhub.streams.sharing.service import Sharing
    from cityhub.streams.sharing.usage_publisher import UsageStore
    from cityhub.streams.subscriptions.service import Subscriptions

WRITER_STAGE = "worker"
"""The stage of the dead letters the worker's writer makes itself (a record too large once
made, or refused by Kafka): the agents' own dead letters name their stage."""


@dataclass(frozen=True, slots=True)
class Roles:
    """What a process runs."""

    bridge: bool = False
    worker: bool = False
    api: bool = False
    deliver: bool = False
    simulate: dict[str, float] | None = None
    """The simulator's options (devices, rate, duplicate_ratio), when it runs here."""
    api_limits: dict[str, int] = field(default_factory=dict)
    """``build_api``'s body caps (``max_body_bytes``, ``max_import_bytes``)."""


def process_parts(settings: Settings, roles: Roles) -> list[Part]:
    """The parts of one process, the management endpoint last, in start order."""
    parts: list[Part] = []
    checks: dict[str, HealthCheck] = {}
    registry: RegistryStore | None = None
    subscriptions: SubscriptionStore | None = None
    if roles.worker or roles.api or roles.deliver or roles.simulate is not None:
        # A delivering process keeps it for the NGSI-LD encodings: a device's Smart Data
        # Model is its type's (cityhub.streams.ngsi_ld.encodings).
        registry = RegistryStore(settings)
        parts.append(store_part("registry", registry))
        checks["registry"] = _flag(registry, "ready")
    if roles.worker or roles.api or roles.deliver:
        # Kept like the registry: a compacted topic tailed into a view, in every process that
        # routes, serves or delivers subscriptions.
        subscriptions = SubscriptionStore(settings)
        parts.append(store_part("subscriptions", subscriptions))
        checks["subscriptions"] = _flag(subscriptions, "ready")
    secrets: SubscriptionSecretStore | None = None
    if roles.api or roles.deliver:
        # The subscriptions' secrets, apart from the records the worker reads: only the API
        # (which writes them) and the delivery (which signs) hold them.
        secrets = SubscriptionSecretStore(settings)
        parts.append(store_part("subscription secrets", secrets))
        checks["subscription_secrets"] = _flag(secrets, "ready")
    privacy: PrivacyStores | None = None
    if roles.worker or roles.api or roles.deliver:
        # The register, the consents and the subjects' keys, in every process that routes,
        # delivers or serves personal items: the purpose check reads them at every decision.
        privacy = PrivacyStores.for_settings(settings, log=roles.api or roles.deliver)
        parts += privacy.parts()
        checks["privacy"] = _flag(privacy, "ready")
    sharing: SharingStores | None = None
    if roles.worker or roles.api or roles.deliver:
        # Offers and agreements (docs/sharing.md), in every process that routes, delivers or
        # serves items: the enforcement points ask ``sharing.grants()`` per item and count
        # what they let through into ``sharing.usage``, which the publisher writes out.
        sharing = SharingStores.for_settings(settings)
        parts += sharing.parts()
        checks["sharing"] = _flag(sharing, "ready")
        if privacy is not None:
            # Another tenant's personal item goes under the provider's activity of its agreement.
            privacy.gate.grants = sharing.grants
    if roles.worker:
        assert registry is not None
        assert subscriptions is not None
        assert privacy is not None
        assert sharing is not None
        parts += _worker_parts(settings, registry, subscriptions, privacy, sharing, checks)
    if roles.deliver:
        from cityhub.streams.delivery.manager import DeliveryManager

        assert subscriptions is not None
        assert privacy is not None
        assert sharing is not None
        manager = DeliveryManager(
            settings,
            subscriptions,
            gate=privacy.gate,
            processing_log=privacy.log_writer,
            secrets=secrets,
            sharing=_delivery_sharing(sharing),
        )
        if registry is not None:
            from cityhub.streams.ngsi_ld.encodings import use_registry

            # The NGSI-LD encodings show each device as its type's Smart Data Model.
            use_registry(registry)
        parts.append(Part("delivery", manager.run))
        checks["delivery"] = _flag(manager, "ready")
    if roles.bridge:
        parts.append(_bridge_part(settings, checks))
        if settings.bridge.broker_stats:
            # The broker's own queue and clients, beside the ingest session (docs/observability.md).
            exporter = BrokerStatsExporter(
                settings.mqtt, store_file=settings.bridge.broker_store_file
            )
            parts.append(Part("mqtt broker figures", exporter.run))
    if roles.simulate is not None:
        assert registry is not None
        parts.append(_simulator_part(settings, registry, roles.simulate))
    if roles.api:
        assert registry is not None
        assert subscriptions is not None
        assert privacy is not None
        assert secrets is not None
        parts += _api_part(
            settings,
            registry,
            (subscriptions, secrets),
            privacy,
            roles.api_limits,
            checks,
            sharing=sharing,
        )
    parts.append(management_part(settings.management.host, settings.management.port, checks))
    parts.append(heap_part(ready=lambda: all(check() for check in checks.values())))
    return parts


def _type_of(registry: RegistryStore, tenant: str, device_id: str) -> str | None:
    """The type of ``tenant``'s device ``device_id``, if it has one."""
    entry = registry.view.device_by_id(device_id)
    return entry.type if entry is not None and entry.tenant == tenant else None


def _category_of(registry: RegistryStore) -> Callable[[str, str], str]:
    """The personal-data category of a tenant's device (its type's), from the registry."""

    def category_of(tenant: str, device_id: str) -> str:
        return personal_category(registry.view, tenant, _type_of(registry, tenant, device_id))

    return category_of


def _delivery_sharing(sharing: SharingStores) -> DeliverySharing:
    """What a delivery checks items under agreements against: the current grants, held while
    the agreements' view has not been caught up for ``MAX_STALENESS_S`` (a revocation must stop
    queued items within 5 seconds), counted into the process's usage."""
    from cityhub.streams.delivery.agreement_screen import DeliverySharing
    from cityhub.streams.privacy.gate import MAX_STALENESS_S

    agreements = sharing.agreements
    return DeliverySharing(
        sharing.grants,
        sharing.usage,
        stale=lambda: time.time() - agreements.caught_up_at > MAX_STALENESS_S,
    )


def _flag(owner: object, name: str) -> HealthCheck:
    return lambda: bool(getattr(owner, name))


def _worker_parts(
    settings: Settings,
    registry: RegistryStore,
    subscriptions: SubscriptionStore,
    privacy: PrivacyStores,
    sharing: SharingStores,
    checks: dict[str, HealthCheck],
) -> list[Part]:
    """The routing loop and the worker: the normaliser and both aggregators on one consumer
    group, writing through one writer. The router also routes items under agreements."""

    def device_type_of(tenant: str, device_id: str) -> str | None:
        return _type_of(registry, tenant, device_id)

    def device_of(tenant: str, device_id: str) -> tuple[str | None, tuple[str, ...]] | None:
        entry = registry.view.device_by_id(device_id)
        if entry is None or entry.tenant != tenant:
            return None
        return entry.type, tuple(entry.tags)

    router = SubscriptionRouter(
        settings.kafka.topic_prefix,
        device_type_of,
        settings=settings,
        grants=sharing.grants,
        device_of=device_of,
    )
    routing = Routing(subscriptions, router, SubscriptionTopics(settings))
    checks["routing"] = _flag(routing, "ready")
    writer = BatchingWriter.for_kafka(
        settings.kafka,
        client_id=f"{settings.worker.app_id}-out",
        dead_letters=DeadLetterRoute(
            Topics.for_prefix(settings.kafka.topic_prefix).deadletter,
            WRITER_STAGE,
            settings.bridge.max_payload_bytes,
            count=lambda reason: metrics.DEADLETTERS.labels(WRITER_STAGE, reason.value).inc(),
        ),
    )
    worker = Worker(
        settings,
        [
            NormaliserAgent(
                settings,
                registry.view,
                router,
                sealer=PersonalSealer(registry.view, privacy.keys.view),
                gate=privacy.gate,
            ),
            AggregatorAgent(
                settings, "device", router, gate=privacy.gate, category_of=_category_of(registry)
            ),
            AggregatorAgent(settings, "area", router, gate=privacy.gate),
        ],
        writer,
        # No observation may pass before the registry, the privacy views and the routing
        # caught up: a registered device would be taken for unknown, a subscriber would miss
        # it, a personal item would meet no key or no consent.
        ready=lambda: registry.ready and privacy.ready and sharing.ready and routing.ready,
    )
    checks["worker"] = _flag(worker, "running")

    async def run_worker() -> None:
        await writer.start()
        try:
            await worker.run()
        finally:
            await writer.stop()

    parts = [Part("subscription routing", routing.run), Part("worker", run_worker)]
    if settings.open_data.enabled:
        parts.append(_open_data_worker_part(settings, privacy, checks))
    return parts


def _open_data_worker_part(
    settings: Settings, privacy: PrivacyStores, checks: dict[str, HealthCheck]
) -> Part:
    """The open-data publisher's two agents (``cityhub.streams.opendata.agent``) on a runtime
    and a consumer group of their own (``open_data_group``): its point stage reads the
    observations, which the aggregator reads in the worker group."""
    from cityhub.schemas.topics import open_data_group
    from cityhub.streams.opendata.agent import OpenDataPointsAgent, OpenDataPublisherAgent

    group = open_data_group(settings.worker.app_id)
    writer = BatchingWriter.for_kafka(
        settings.kafka,
        client_id=f"{group}-out",
        dead_letters=DeadLetterRoute(
            Topics.for_prefix(settings.kafka.topic_prefix).deadletter,
            WRITER_STAGE,
            settings.bridge.max_payload_bytes,
            count=lambda reason: metrics.DEADLETTERS.labels(WRITER_STAGE, reason.value).inc(),
        ),
    )
    # The agents name their changelog after the worker's app id; only the group is another.
    in_group = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"app_id": group})}
    )
    worker = Worker(
        in_group,
        [OpenDataPointsAgent(settings, privacy.register.view), OpenDataPublisherAgent(settings)],
        writer,
        client_id=f"{group}-worker",
        # A personal device's point needs its tenant's register.
        ready=lambda: privacy.ready,
    )
    checks["open_data_worker"] = _flag(worker, "running")

    async def run() -> None:
        await writer.start()
        try:
            await worker.run()
        finally:
            await writer.stop()

    return Part("open-data publisher", run)


def _bridge_part(settings: Settings, checks: dict[str, HealthCheck]) -> Part:
    holder: dict[str, MqttBridge] = {}
    checks["bridge"] = lambda: bool(holder.get("bridge") and holder["bridge"].healthy)

    async def run_bridge() -> None:
        writer = bridge_writer(settings)
        await writer.start()
        try:
            holder["bridge"] = MqttBridge(settings, writer)
            await holder["bridge"].run()
        finally:
            await writer.stop()

    return Part("mqtt bridge", run_bridge)


def _simulator_part(settings: Settings, registry: RegistryStore, options: dict[str, float]) -> Part:
    from cityhub.streams.devtools.simulator import build_fleet
    from cityhub.streams.devtools.simulator import simulate as run_simulation
    from cityhub.streams.devtools.simulator.registration import register_fleet
    from cityhub.streams.registry.service import Registry

    async def run_simulator() -> None:
        while not registry.ready:  # noqa: ASYNC110 - the store offers readiness as a flag
            await asyncio.sleep(0.1)
        devices = int(options["devices"])
        await register_fleet(Registry(registry), build_fleet(devices))
        await asyncio.sleep(2.0)  # let the bridge subscribe first
        await run_simulation(
            settings,
            devices,
            float(options["rate"]),
            duplicate_ratio=float(options.get("duplicate_ratio", 0.0)),
        )

    return Part("simulator", run_simulator)


def _api_part(
    settings: Settings,
    registry: RegistryStore,
    subscription_stores: tuple[SubscriptionStore, SubscriptionSecretStore],
    privacy: PrivacyStores,
    limits: dict[str, int],
    checks: dict[str, HealthCheck],
    *,
    sharing: SharingStores | None = None,
) -> list[Part]:
    """The operator API and what only it keeps: the residents' tokens and the processing log's
    index (each API process follows them whole). It moves the subscriptions' inline secrets (of
    records from before the secrets topic) to the secrets topic before it serves."""
    from cityhub.streams.api.app import DEFAULT_MAX_BODY_BYTES, build_api
    from cityhub.streams.api.resident_tokens import ResidentServices
    from cityhub.streams.delivery.sse import LiveStreams
    from cityhub.streams.privacy.consent_service import Consents, consent_logger
    from cityhub.streams.privacy.device_observations import KafkaObservationReader
    from cityhub.streams.privacy.erasure import Erasure, history_rows
    from cityhub.streams.privacy.log_follower import ProcessingLogFollower
    from cityhub.streams.privacy.log_service import ProcessingLogQueries
    from cityhub.streams.privacy.oidc import OidcVerifier
    from cityhub.streams.privacy.reads import PersonalReads
    from cityhub.streams.privacy.resident_token_service import ResidentTokens
    from cityhub.streams.privacy.resident_tokens import ResidentTokenStore
    from cityhub.streams.privacy.service import ProcessingRegister
    from cityhub.streams.privacy.subject_access import SubjectAccess
    from cityhub.streams.registry.service import Registry
    from cityhub.streams.sharing.read_access import ReadAccess
    from cityhub.streams.subscriptions.service import Subscriptions

    log_writer = privacy.log_writer
    assert log_writer is not None  # made for every process that serves the API
    tokens_store = ResidentTokenStore(settings)
    log_follower = ProcessingLogFollower(settings)
    checks["resident_tokens"] = _flag(tokens_store, "ready")
    checks["processing_log_index"] = _flag(log_follower, "ready")
    subscription_topics = SubscriptionTopics(settings)
    subscription_store, secret_store = subscription_stores
    subscriptions = Subscriptions(
        subscription_store,
        registry.view,
        webhook_allowed_hosts=settings.subscriptions.webhook_allowed_hosts,
        topic_prefix=settings.kafka.topic_prefix,
        ensure_topic=subscription_topics.ensure,
        remove_topic=subscription_topics.delete,
        subscriptions_per_tenant=settings.quotas.subscriptions_per_tenant,
        activities=privacy.register.view,
        secrets=secret_store,
    )
    # A data subject's key is made before any device is linked to them.
    service = Registry(registry, subject_keys=privacy.keys)
    # Every change of a consent is written to the processing log as well.
    consents = Consents(
        privacy.consents,
        privacy.register.view,
        registry.view,
        on_change=consent_logger(log_writer),
    )
    tokens = ResidentTokens(tokens_store, registry.view)
    base_uri = settings.privacy.register_base_uri
    oidc = settings.privacy.oidc
    open_data = _open_data(settings, checks)
    data_requests, data_request_parts = _data_requests(settings, registry, sharing, checks)
    sharing_service, usage_store = _sharing_service(settings, sharing, registry, privacy, checks)
    # /api/v1 only: metrics and health are on the management port, which asks for no key.
    app = build_api(
        service,
        subscriptions=subscriptions,
        live=LiveStreams(
            settings,
            gate=privacy.gate,
            processing_log=log_writer,
            sharing=_delivery_sharing(sharing) if sharing is not None else None,
        ),
        max_body_bytes=limits.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES),
        max_import_bytes=limits.get("max_import_bytes"),  # None: the quota setting
        quotas=settings.quotas,
        processing=ProcessingRegister(privacy.register, registry.view, base_uri=base_uri),
        processing_log=ProcessingLogQueries(
            log_follower.index, registry.view, privacy.register.view
        ),
        consents=consents,
        erasure=Erasure(
            service,
            privacy.keys,
            consents=consents,
            log_writer=log_writer,
            tokens=tokens,
            history=history_rows(settings),
            register_base_uri=base_uri,
        ),
        personal_reads=PersonalReads(
            privacy.gate,
            log_writer,
            _category_of(registry),
        ),
        read_access=ReadAccess(sharing.grants, sharing.usage) if sharing is not None else None,
        residents=ResidentServices(
            tokens=tokens,
            access=SubjectAccess(
                registry.view,
                base_uri=base_uri,
                observations=KafkaObservationReader(settings),
                keys=privacy.keys.view,
                log=log_writer,
            ),
            oidc=OidcVerifier(oidc, tenant_exists=lambda t: registry.view.tenant(t) is not None)
            if oidc.enabled
            else None,
        ),
        open_data=open_data,
        data_requests=data_requests,
        sharing=sharing_service,
        # The catalogue lists the offers their providers chose to list (their metadata only).
        listed_offers=sharing.view.listed_offers if sharing is not None else None,
    )
    mover = _SecretsMover(subscriptions, subscription_store, secret_store)
    checks["subscription_secrets_moved"] = _flag(mover, "done")
    return [
        store_part("resident tokens", tokens_store),
        store_part("processing log index", log_follower),
        Part("subscription secrets mover", mover.run),
        *([store_part("open data", open_data)] if open_data is not None else []),
        *data_request_parts,
        *([store_part("agreement usage", usage_store)] if usage_store is not None else []),
        server_part("operator API", app, settings.http.host, settings.http.port),
    ]


def _data_requests(
    settings: Settings,
    registry: RegistryStore,
    sharing: SharingStores | None,
    checks: dict[str, HealthCheck],
) -> tuple[DataRequests | None, list[Part]]:
    """The public's data requests (``cityhub.streams.opendata.requests``), when the hub
    publishes open data: every API process follows their topic and erases contacts past their
    retention hourly (two processes erasing the same contact write the same record)."""
    if not settings.open_data.enabled:
        return None, []
    from cityhub.streams.opendata.requests import AnswerLinks, DataRequests
    from cityhub.streams.opendata.requests_store import DataRequestStore

    store = DataRequestStore(settings)
    checks["data_requests"] = _flag(store, "ready")
    service = DataRequests(
        store,
        registry.view,
        datasets=[dataset.id for dataset in settings.open_data.datasets],
        offers=sharing.view.offer if sharing is not None else None,
        links=AnswerLinks.under(settings.open_data.base_url or ""),
        per_address_per_hour=settings.open_data.max_requests_per_address,
    )
    return service, [
        store_part("data requests", store),
        Part("data request contacts' retention", service.run_retention),
    ]


def _open_data(settings: Settings, checks: dict[str, HealthCheck]) -> OpenDataDistributions | None:
    """The open data's view and daily files (``cityhub.streams.opendata.distributions``), when
    the hub publishes open data; every API process follows the topic and writes the files."""
    if not settings.open_data.enabled:
        return None
    from cityhub.streams.opendata.distributions import OpenDataDistributions

    open_data = OpenDataDistributions(settings)
    checks["open_data"] = _flag(open_data, "ready")
    return open_data


def _sharing_service(
    settings: Settings,
    sharing: SharingStores | None,
    registry: RegistryStore,
    privacy: PrivacyStores,
    checks: dict[str, HealthCheck],
) -> tuple[Sharing | None, UsageStore | None]:
    """The offers' and agreements' service over the process's sharing stores, with the uses
    every counting process wrote (the usage topic, followed whole by each API process)."""
    if sharing is None:
        return None, None
    from cityhub.streams.sharing.service import Sharing
    from cityhub.streams.sharing.usage_publisher import UsageStore

    usage_store = UsageStore(settings)
    checks["agreement_usage"] = _flag(usage_store, "ready")
    service = Sharing(
        sharing.offers,
        sharing.agreements,
        registry.view,
        privacy.register.view,
        usage_of=usage_store.view.of,
    )
    return service, usage_store


class _SecretsMover:
    """Moves inline secrets (``Subscriptions.move_inline_secrets``) once both stores have caught
    up; the API reports ready only after (``done``), so it is not sent requests before."""

    def __init__(
        self,
        service: Subscriptions,
        records: SubscriptionStore,
        secrets: SubscriptionSecretStore,
    ) -> None:
        self._service = service
        self._stores = (records, secrets)
        self.done = False

    async def run(self) -> None:
        while not all(store.ready for store in self._stores):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await self._service.move_inline_secrets()
        self.done = True
        await asyncio.Event().wait()
