"""Shared helpers of the open-data publisher's unit tests: observations, records, a register."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cityhub.schemas.open_data import OpenDataset, OpenDataSettings
from cityhub.schemas.processing import ActivityVersion, LegalBasis, ProcessingActivity
from cityhub.schemas.settings import Settings

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
HOUR_US = 3600 * 1_000_000


def settings(k: int = 3, *, merge: bool = True, partitions: int = 2, **od: Any) -> Settings:
    datasets = (
        OpenDataset(
            id="air",
            title="Air",
            description="Air quality per area.",
            quantities=("pm2_5", "temperature"),
        ),
        OpenDataset(
            id="comfort",
            title="Comfort",
            description="Indoor comfort per area, personal devices included.",
            quantities=("temperature",),
            include_personal=True,
        ),
    )
    open_data = OpenDataSettings(k=k, merge_small_areas=merge, datasets=datasets, **od)
    return Settings().model_copy(
        update={
            "open_data": open_data,
            "kafka": Settings().kafka.model_copy(update={"partitions": partitions}),
        }
    )


def observation(
    device: str,
    *,
    area: str | None = "centrum",
    quantity: str = "pm2_5",
    value: Any = 12.34,
    at: str = "2026-12-03T10:15:00Z",
    tenant: str | None = "acme",
    classification: str | None = "public",
    unit: str | None = "ug/m3",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "event_id": f"{device}-{at}-{quantity}",
        "device_id": device,
        "quantity": quantity,
        "value": value,
        "unit": unit,
        "observed_at": at,
        "tenant": tenant,
        "area": area,
        "classification": classification,
        **extra,
    }


def activity(
    slug: str = "open-data",
    *,
    tenant: str = "acme",
    valid_from: str = "2026-01-01T00:00:00Z",
    valid_to: str | None = None,
) -> ProcessingActivity:
    version = ActivityVersion(
        version=1,
        name=slug,
        purpose="Open data on indoor comfort",
        legal_basis=LegalBasis.PUBLIC_TASK,
        personal_data_categories=["indoor climate"],
        retention="P30D",
        controller="Municipality",
        recipients=[],
        valid_from=valid_from,
        valid_to=valid_to,
        recorded_at=valid_from,
    )
    return ProcessingActivity(
        id=f"urn:x:{tenant}:{slug}",
        tenant=tenant,
        slug=slug,
        created_at=valid_from,
        versions=[version],
    )


class Register:
    def __init__(self, *activities: ProcessingActivity) -> None:
        self._by_key = {(a.tenant, a.slug): a for a in activities}

    def get(self, tenant: str, slug: str) -> ProcessingActivity | None:
        return self._by_key.get((tenant, slug))


@dataclass
class Rec:
    """An input record as the runtime hands it to an agent."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 0
