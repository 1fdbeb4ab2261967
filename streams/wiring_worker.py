"""The parts of a process that runs the worker (``cityhub worker``): the pipeline (the
subscription routing loop and the worker's agents on one consumer group and one writer) and the
side stages (the open-data publisher and device health, each on a consumer group of its own).
``cityhub.streams.wiring`` adds them to a process: ``cityhub run`` runs the pipeline in one
process per core and the side stages in a process of their own (``cityhub worker --stages``),
so that they never take the pipeline's event loop. A new pipeline agent is added to the list
``worker_parts`` builds, a new side stage to ``side_stage_parts``.
"""

from __future__ import annotations

from cityhub.schemas.settings import Settings
from cityhub.streams.aggregation.agent import AggregatorAgent
from cityhub.streams.http import HealthCheck
from cityhub.streams.normaliser.agent import NormaliserAgent
from cityhub.streams.normaliser.personal import PersonalSealer
from cityhub.streams.privacy.stores import PrivacyStores
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.runtime.host import Part
from cityhub.streams.runtime.worker import Worker
from cityhub.streams.sharing.stores import SharingStores
from cityhub.streams.subscriptions.router import SubscriptionRouter
from cityhub.streams.subscriptions.routing import Routing
from cityhub.streams.subscriptions.store import SubscriptionStore
from cityhub.streams.subscriptions.topics import SubscriptionTopics
from cityhub.streams.wiring_adapters import category_of, flag, interval_of, type_of
from cityhub.streams.wiring_stage import side_stage_part, stage_part, stage_writer


def worker_parts(
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
        return type_of(registry, tenant, device_id)

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
    checks["routing"] = flag(routing, "ready")
    writer = stage_writer(settings, f"{settings.worker.app_id}-out")
    intervals = interval_of(registry, settings.health.default_expected_interval_seconds)
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
                settings,
                "device",
                router,
                gate=privacy.gate,
                category_of=category_of(registry),
                interval_of=intervals,
            ),
            AggregatorAgent(settings, "area", router, gate=privacy.gate, interval_of=intervals),
        ],
        writer,
        # No observation may pass before the registry, the privacy views and the routing
        # caught up: a registered device would be taken for unknown, a subscriber would miss
        # it, a personal item would meet no key or no consent.
        ready=lambda: registry.ready and privacy.ready and sharing.ready and routing.ready,
    )
    checks["worker"] = flag(worker, "healthy")
    return [Part("subscription routing", routing.run), stage_part("worker", worker, writer)]


def side_stage_parts(
    settings: Settings,
    registry: RegistryStore,
    privacy: PrivacyStores,
    checks: dict[str, HealthCheck],
) -> list[Part]:
    """The side stages the settings switch on: the open-data publisher (``open_data.enabled``)
    and device health (``health.enabled``). Each reads what the pipeline wrote, on a consumer
    group of its own, so its pace never holds the pipeline back."""
    parts = []
    if settings.open_data.enabled:
        parts.append(_open_data_worker_part(settings, privacy, checks))
    if settings.health.enabled:
        from cityhub.streams.health.wiring import health_worker_part

        parts.append(health_worker_part(settings, registry, checks))
    return parts


def has_side_stages(settings: Settings) -> bool:
    """Whether ``side_stage_parts`` has anything to run."""
    return settings.open_data.enabled or settings.health.enabled


def _open_data_worker_part(
    settings: Settings, privacy: PrivacyStores, checks: dict[str, HealthCheck]
) -> Part:
    """The open-data publisher's two agents (``cityhub.streams.opendata.agent``) on a runtime
    and a consumer group of their own (``open_data_group``): its point stage reads the
    observations, which the aggregator reads in the worker group."""
    from cityhub.schemas.topics import open_data_group
    from cityhub.streams.opendata.agent import OpenDataPointsAgent, OpenDataPublisherAgent

    return side_stage_part(
        "open-data publisher",
        settings,
        open_data_group(settings.worker.app_id),
        [OpenDataPointsAgent(settings, privacy.register.view), OpenDataPublisherAgent(settings)],
        # A personal device's point needs its tenant's register.
        ready=lambda: privacy.ready,
        check="open_data_worker",
        checks=checks,
    )
