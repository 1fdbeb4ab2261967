"""Shared by the dead-letter tests: a registry of two tenants with public, internal and
personal device types and one device of each."""

from __future__ import annotations

import json
from typing import Any

from cityhub.schemas.registry import DeviceType, Tenant
from cityhub.streams.registry.view import RegistryView

TS = "2026-12-04T10:00:00.000Z"


def registry_view() -> RegistryView:
    view = RegistryView()
    records: list[tuple[str, Any]] = []
    for tenant in ("north", "south"):
        records.append(
            (f"tenant/{tenant}", Tenant(id=tenant, name=tenant, created_at=TS, updated_at=TS))
        )
    for tenant, type_id, cls in (
        ("north", "aq", "public"),
        ("north", "tracker", "personal"),
        ("south", "aq", "internal"),
    ):
        records.append(
            (
                f"device_type/{tenant}/{type_id}",
                DeviceType(
                    tenant=tenant,
                    id=type_id,
                    name=type_id,
                    decoder="network",
                    fields=[],
                    only_mapped=False,
                    classification=cls,  # type: ignore[arg-type]  # pydantic coerces
                    created_at=TS,
                    updated_at=TS,
                ),
            )
        )
    for offset, (key, record) in enumerate(records):
        view.apply(key, record.model_dump_json().encode(), offset)
    for i, (tenant, type_id, dev_id, eui) in enumerate(
        (
            ("north", "aq", "n-aq-1", "00000000000000a1"),
            ("north", "tracker", "n-track-1", "00000000000000b1"),
            ("south", "aq", "s-aq-1", "00000000000000c1"),
        )
    ):
        doc: dict[str, Any] = {
            "kind": "device",
            "tenant": tenant,
            "id": dev_id,
            "name": dev_id,
            "type": type_id,
            "dev_eui": eui,
            "location": None,
            "area": None,
            "tags": [],
            "active": True,
            "app_key_sha256": None,
            "created_at": TS,
            "updated_at": TS,
        }
        view.apply(f"device/{dev_id}", json.dumps(doc).encode(), 100 + i)
    return view
