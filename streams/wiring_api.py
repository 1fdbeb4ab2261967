"""The parts of a process that serves the operator API (``cityhub api``): the API server and
what only an API process keeps (the residents' tokens, the processing log's index, the moving of
the subscriptions' inline secrets), with, when the hub publishes open data, the open data's view
and files and the public's data requests, and the offers' and agreements' service with their
usage. ``cityhub.streams.wiring`` adds them to a process.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cityhub.schemas.settings import Settings
from cityhub.streams.http import HealthCheck
from cityhub.streams.privacy.stores import PrivacyStores
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.runtime.host import Part, server_part, store_part
from cityhub.streams.sharing.stores import SharingStores
from cityhub.streams.subscriptions.secret_store import SubscriptionSecretStore
from cityhub.streams.subscriptions.store import SubscriptionStore
from cityhub.streams.subscriptions.topics import SubscriptionTopics
from cityhub.streams.wiring_adapters import category_of, delivery_sharing, flag

if TYPE_CHECKING:  # imported where the API is built: a worker process does without it
    from aiohttp import web

    from cityhub.streams.opendata.distributions import OpenDataDistributions
    from cityhub.streams.opendata.requests import DataRequests
    from cityhub.streams.registry.service import Registry
    from cityhub.streams.sharing.service import Sharing
    from cityhub.streams.sharing.usage_publisher import UsageStore
    from cityhub.streams.subscriptions.service import Subscriptions


def api_parts(
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
    checks["resident_tokens"] = flag(tokens_store, "ready")
    checks["processing_log_index"] = flag(log_follower, "ready")
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
    service = Registry(
        registry,
        subject_keys=privacy.keys,
        devices_per_tenant=settings.quotas.devices_per_tenant,
    )
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
    console_app, console_parts = _console(settings, service, subscriptions, checks)
    app = build_api(
        service,
        subscriptions=subscriptions,
        live=LiveStreams(
            settings,
            gate=privacy.gate,
            processing_log=log_writer,
            sharing=delivery_sharing(sharing) if sharing is not None else None,
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
            category_of(registry),
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
        console=console_app,
    )
    health_parts: list[Part] = []
    if settings.health.enabled:  # device health (docs/health.md): its view, routes and gauges
        from cityhub.streams.api.device_health import DEVICE_HEALTH_KEY
        from cityhub.streams.health.serving import device_health_parts

        app[DEVICE_HEALTH_KEY], health_parts = device_health_parts(settings, registry, checks)
    if console_app is not None:  # a subscription's delivery status through the API too,
        from cityhub.streams.api.subscription_status import SUBSCRIPTION_STATUS_KEY
        from cityhub.streams.console.app import CONSOLE_KEY

        status_view = console_app[CONSOLE_KEY].services.subscription_status
        if status_view is not None:
            app[SUBSCRIPTION_STATUS_KEY] = status_view
        dead_letters = console_app[CONSOLE_KEY].services.dead_letters
        if dead_letters is not None:  # and the console's reader of the dead letters
            from cityhub.streams.api.dead_letters import DEAD_LETTERS_KEY

            app[DEAD_LETTERS_KEY] = dead_letters
    mover = _SecretsMover(subscriptions, subscription_store, secret_store)
    checks["subscription_secrets_moved"] = flag(mover, "done")
    return [
        store_part("resident tokens", tokens_store),
        store_part("processing log index", log_follower),
        Part("subscription secrets mover", mover.run),
        *([store_part("open data", open_data)] if open_data is not None else []),
        *data_request_parts,
        *([store_part("agreement usage", usage_store)] if usage_store is not None else []),
        *health_parts,
        *console_parts,
        server_part(
            "operator API",
            app,
            settings.http.host,
            settings.http.port,
            idle_timeout=settings.http.idle_timeout_seconds,
        ),
    ]


def _console(
    settings: Settings,
    registry: Registry,
    subscriptions: Subscriptions,
    checks: dict[str, HealthCheck],
) -> tuple[web.Application | None, list[Part]]:
    """The operator console (``cityhub.streams.console``), when enabled: its session cookies
    are sealed with a key derived from the KEK, which every API process has, and its sign-outs
    are on a topic every API process follows whole (the process is not ready before it has)."""
    if not settings.console.enabled:
        return None, []
    from cityhub.streams.console.app import build_console
    from cityhub.streams.console.live import LiveObservations
    from cityhub.streams.console.live_kafka import observations_reader
    from cityhub.streams.console.ops import OpsServices
    from cityhub.streams.console.services import ConsoleServices
    from cityhub.streams.console.signouts import SignOutStore
    from cityhub.streams.privacy.keys_store import load_kek

    console = settings.console
    live = LiveObservations(
        observations_reader(settings),
        per_session=console.live_streams_per_session,
        total=console.live_streams,
        buffer=console.live_buffer,
    )
    # The subscriptions', dead-letter and import pages' own parts (cityhub.streams.console.ops).
    ops = OpsServices.for_settings(settings, registry)
    signouts = SignOutStore(settings)
    checks["console_signouts"] = flag(signouts, "ready")
    services = ConsoleServices(
        registry=registry,
        signouts=signouts,
        subscriptions=subscriptions,
        live=live,
        subscription_status=ops.status_view,
        dead_letters=ops.dead_letters,
        imports=ops.imports,
    )
    app = build_console(services, console, load_kek(settings))
    ops.attach(app)
    return app, [store_part("console sign-outs", signouts)]


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
    checks["data_requests"] = flag(store, "ready")
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
    checks["open_data"] = flag(open_data, "ready")
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
    checks["agreement_usage"] = flag(usage_store, "ready")
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
