"""What one cityhub process runs, wired together: the one place that knows every part.

``process_parts`` builds the parts a command asks for (``cityhub worker``, ``bridge``, ``api``,
``deliver``, or several of them) with what they share: one registry store and one
subscriptions store per process, the routing that the worker's agents write through, and the
management endpoint with each part's health. ``cityhub.streams.runtime.host.run_parts`` then
runs them. The worker's parts are built in ``cityhub.streams.wiring_worker``, the API's in
``cityhub.streams.wiring_api``.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field

from cityhub.connectors.mqtt.bridge import MqttBridge, bridge_writer
from cityhub.connectors.mqtt.broker_stats_exporter import BrokerStatsExporter
from cityhub.schemas.settings import Settings
from cityhub.streams.http import HealthCheck
from cityhub.streams.privacy.stores import PrivacyStores
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.runtime.heap import heap_part
from cityhub.streams.runtime.host import Part, management_part, store_part
from cityhub.streams.sharing.stores import SharingStores
from cityhub.streams.subscriptions.secret_store import SubscriptionSecretStore
from cityhub.streams.subscriptions.store import SubscriptionStore
from cityhub.streams.wiring_adapters import delivery_sharing, flag
from cityhub.streams.wiring_api import api_parts
from cityhub.streams.wiring_worker import side_stage_parts, worker_parts


@dataclass(frozen=True, slots=True)
class Roles:
    """What a process runs."""

    bridge: bool = False
    worker: bool = False
    """The pipeline: the normaliser, the aggregators and the routing to subscriptions."""
    side_stages: bool = False
    """The side stages (``wiring_worker.side_stage_parts``): open data and device health."""
    api: bool = False
    deliver: bool = False
    simulate: dict[str, float] | None = None
    """The simulator's options (devices, rate, duplicate_ratio, fault_ratio), when it runs here."""
    api_limits: dict[str, int] = field(default_factory=dict)
    """``build_api``'s body caps (``max_body_bytes``, ``max_import_bytes``)."""


def process_parts(settings: Settings, roles: Roles) -> list[Part]:
    """The parts of one process, the management endpoint last, in start order."""
    parts: list[Part] = []
    checks: dict[str, HealthCheck] = {}
    registry: RegistryStore | None = None
    subscriptions: SubscriptionStore | None = None
    simulates = roles.simulate is not None
    if roles.worker or roles.side_stages or roles.api or roles.deliver or simulates:
        # A delivering process keeps it for the NGSI-LD encodings: a device's Smart Data
        # Model is its type's (cityhub.streams.ngsi_ld.encodings).
        registry = RegistryStore(settings)
        parts.append(store_part("registry", registry))
        checks["registry"] = flag(registry, "ready")
    if roles.worker or roles.api or roles.deliver:
        # Kept like the registry: a compacted topic tailed into a view, in every process that
        # routes, serves or delivers subscriptions.
        subscriptions = SubscriptionStore(settings)
        parts.append(store_part("subscriptions", subscriptions))
        checks["subscriptions"] = flag(subscriptions, "ready")
    secrets: SubscriptionSecretStore | None = None
    if roles.api or roles.deliver:
        # The subscriptions' secrets, apart from the records the worker reads: only the API
        # (which writes them) and the delivery (which signs) hold them.
        secrets = SubscriptionSecretStore(settings)
        parts.append(store_part("subscription secrets", secrets))
        checks["subscription_secrets"] = flag(secrets, "ready")
    privacy: PrivacyStores | None = None
    if roles.worker or roles.side_stages or roles.api or roles.deliver:
        # The register, the consents and the subjects' keys, in every process that routes,
        # delivers or serves personal items: the purpose check reads them at every decision.
        privacy = PrivacyStores.for_settings(settings, log=roles.api or roles.deliver)
        parts += privacy.parts()
        checks["privacy"] = flag(privacy, "ready")
    sharing: SharingStores | None = None
    if roles.worker or roles.api or roles.deliver:
        # Offers and agreements (docs/sharing.md), in every process that routes, delivers or
        # serves items: the enforcement points ask ``sharing.grants()`` per item and count
        # what they let through into ``sharing.usage``, which the publisher writes out.
        sharing = SharingStores.for_settings(settings)
        parts += sharing.parts()
        checks["sharing"] = flag(sharing, "ready")
        if privacy is not None:
            # Another tenant's personal item goes under the provider's activity of its agreement.
            privacy.gate.grants = sharing.grants
    if roles.worker:
        assert registry is not None
        assert subscriptions is not None
        assert privacy is not None
        assert sharing is not None
        parts += worker_parts(settings, registry, subscriptions, privacy, sharing, checks)
    if roles.side_stages:
        assert registry is not None
        assert privacy is not None
        parts += side_stage_parts(settings, registry, privacy, checks)
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
            sharing=delivery_sharing(sharing),
        )
        if registry is not None:
            from cityhub.streams.ngsi_ld.encodings import use_registry

            # The NGSI-LD encodings show each device as its type's Smart Data Model.
            use_registry(registry)
        parts.append(Part("delivery", manager.run))
        checks["delivery"] = flag(manager, "ready")
        from cityhub.streams.delivery.status_publisher import StatusPublisher

        # Each subscription's state, lag and failures for the console (docs/console.md).
        parts.append(
            Part("subscription status", functools.partial(StatusPublisher(manager).run, settings))
        )
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
        parts += api_parts(
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
    from cityhub.streams.devtools.simulator.registration import expected_interval, register_fleet
    from cityhub.streams.registry.service import Registry

    async def run_simulator() -> None:
        while not registry.ready:  # noqa: ASYNC110 - the store offers readiness as a flag
            await asyncio.sleep(0.1)
        devices = int(options["devices"])
        interval = expected_interval(devices, float(options["rate"]))
        await register_fleet(Registry(registry), build_fleet(devices), interval_seconds=interval)
        await asyncio.sleep(2.0)  # let the bridge subscribe first
        await run_simulation(
            settings,
            devices,
            float(options["rate"]),
            duplicate_ratio=float(options.get("duplicate_ratio", 0.0)),
            fault_ratio=float(options.get("fault_ratio", 0.0)),
        )

    return Part("simulator", run_simulator)
