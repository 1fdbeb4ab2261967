"""cityhub's Kafka topics, named from the configured prefix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DUPLICATE_FRAMES: Final = "duplicate-frames"
"""The normaliser's state: recent frames per device (duplicates)."""
DEVICE_WINDOWS: Final = "device-windows"
AREA_WINDOWS: Final = "area-windows"
"""The aggregators' states: the open and recent windows of each input partition."""
OPEN_DATA_WINDOWS: Final = "open-data-windows"
"""The open-data publisher's state: the open windows (with their exact device and subject
sets) and the recently published ones of each points partition."""
HEALTH_ACTIVITY: Final = "health-activity"
HEALTH_DEAD_LETTERS: Final = "health-deadletters"
"""The health stage's states: each device's activity, and its dead letters of the last day."""
STATES: Final = (
    DUPLICATE_FRAMES,
    DEVICE_WINDOWS,
    AREA_WINDOWS,
    OPEN_DATA_WINDOWS,
    HEALTH_ACTIVITY,
    HEALTH_DEAD_LETTERS,
)


def open_data_group(app_id: str) -> str:
    """The consumer group of the open-data publisher's agents in the worker process: a group
    of its own, as its point stage reads the observations that the aggregator reads too (one
    group commits one offset per partition), and so that the publisher's pace never holds the
    main pipeline back."""
    return f"{app_id}-open-data"


def health_group(app_id: str) -> str:
    """The consumer group of the health stage's agents (``cityhub.streams.health.agent``): a
    group of its own, as it reads the observations that the aggregator reads too."""
    return f"{app_id}-health"


def changelog(app_id: str, state: str) -> str:
    """The compacted topic that keeps an agent's ``state`` for the worker group ``app_id``:
    ``<app_id>-<state>-changelog`` (the names faust gave its tables, so state outlives the move
    away from faust). One partition per input partition."""
    return f"{app_id}-{state}-changelog"


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names; ``Topics.for_prefix("cityhub").raw == "cityhub.raw"``."""

    raw: str
    observations: str
    deadletter: str
    registry: str
    """Compacted: the device registry's records keyed by kind and id (see streams/registry)."""
    subscriptions: str
    """Compacted: subscriptions keyed ``subscription/<tenant>/<id>`` (see streams/subscriptions)."""
    subscription_secrets: str
    """Compacted: the subscriptions' secrets (a webhook's signing secret), keyed as the
    subscriptions; read by the API and the delivery only (streams/subscriptions/secret_store)."""
    processing_activities: str
    """Compacted: the register of processing activities, keyed
    ``processing_activity/<tenant>/<slug>`` (see streams/privacy)."""
    consents: str
    """Compacted: consent records (ISO/IEC TS 27560 shape, hash-chained history), keyed
    ``consent/<tenant>/<data subject>/<activity slug>``."""
    subject_keys: str
    """Compacted: each data subject's data keys, wrapped with the key-encryption key, keyed
    ``subject_key/<tenant>/<data subject>/<key id>``; a tombstone is a crypto-shredding erasure."""
    resident_tokens: str
    """Compacted: residents' access tokens (fingerprints only), keyed
    ``resident_token/<tenant>/<token id>``."""
    processing_log: str
    """Append-only, long retention: the processing log (Logboek Dataverwerkingen records), keyed
    ``<tenant>/<data subject>``."""
    aggregates: str
    """Window aggregates keyed by their group (``device/<device id>`` or
    ``area/<tenant>/<area>``), so that every window of one group is in one partition; the record
    timestamp is the window end."""
    area_observations: str
    """Internal: the observations that carry an area, repartitioned by ``<tenant>/<area>`` so that
    one worker sees all of an area's observations (for the area windows)."""
    offers: str
    """Compacted: the tenants' offers of data to share, keyed ``offer/<tenant>/<id>``
    (``cityhub.schemas.sharing``)."""
    agreements: str
    """Compacted: agreements between tenants, keyed ``agreement/<id>``."""
    agreement_usage: str
    """Compacted: the uses counted under each agreement, keyed
    ``usage/<agreement id>/<counting process>`` (cumulative counts; readers sum the processes)."""
    open_data_points: str
    """Internal: the observations that feed open datasets, stripped to what the open-data
    windows need and repartitioned by ``<dataset>/<area>`` (every tenant's devices of an area
    together, so that the k-threshold counts them all)."""
    open_data: str
    """Compacted: the published open-data windows (``cityhub.schemas.open_data.OpenWindow``),
    keyed ``<dataset>/<area>/<quantity>/<window start>``."""
    data_requests: str
    """Compacted: the public's data requests and their answers, keyed ``data_request/<id>``."""
    device_health: str
    """Compacted: each device's health as the health stage last wrote it, keyed
    ``device/<tenant>/<id>`` (its activity) and ``deadletters/<tenant>/<id>/<partition>`` (its
    dead letters per reason; ``cityhub.schemas.device_health``); read whole by the API."""
    subscription_status: str
    """Compacted: each subscription's delivery status (state, lag, delivered, failures) as its
    delivery process last wrote it, keyed ``status/<tenant>/<id>``
    (``cityhub.schemas.subscription_status``); read by the API for the console."""
    console_signouts: str
    """Compacted and deleted after a week and a day: the console's signed-out sessions, keyed by
    the session id, each with its expiry (``cityhub.streams.console.signouts``); read whole by
    every API process, so that a signed-out cookie opens in none."""

    @classmethod
    def for_prefix(cls, prefix: str) -> Topics:
        return cls(
            raw=f"{prefix}.raw",
            observations=f"{prefix}.observations",
            deadletter=f"{prefix}.deadletter",
            registry=f"{prefix}.registry",
            subscriptions=f"{prefix}.subscriptions",
            subscription_secrets=f"{prefix}.subscription-secrets",
            processing_activities=f"{prefix}.processing-activities",
            consents=f"{prefix}.consents",
            subject_keys=f"{prefix}.subject-keys",
            resident_tokens=f"{prefix}.resident-tokens",
            processing_log=f"{prefix}.processing-log",
            aggregates=f"{prefix}.aggregates",
            area_observations=f"{prefix}.observations-by-area",
            offers=f"{prefix}.offers",
            agreements=f"{prefix}.agreements",
            agreement_usage=f"{prefix}.agreement-usage",
            open_data_points=f"{prefix}.open-data-points",
            open_data=f"{prefix}.open-data",
            data_requests=f"{prefix}.data-requests",
            device_health=f"{prefix}.device-health",
            subscription_status=f"{prefix}.subscription-status",
            console_signouts=f"{prefix}.console-signouts",
        )
