"""``cityhub devices export``: a tenant's devices as the JSON that ``devices import`` takes."""

from __future__ import annotations

from typing import Any

import click

from cityhub.streams.registry.cli.output import device_filters, echo_json
from cityhub.streams.registry.cli.session import SYSTEM, run_read
from cityhub.streams.registry.paging import MAX_PAGE_SIZE
from cityhub.streams.registry.service import Registry


@click.command("export")
@device_filters
def devices_export(
    tenant: str, type_id: str | None, area: str | None, tag: str | None, active: bool | None
) -> None:
    """Print a tenant's devices, in id order, as a JSON array that `cityhub devices import`
    takes back (into this tenant or another with the same device types).

    Left out: app keys (write-only: an import keeps a device's key when the row has none) and
    data-subject links (personal data: an import keeps a device's link when the row has none;
    a new tenant's devices are linked again with `devices update --data-subject`)."""

    def everything(registry: Registry) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = registry.list_devices(
                SYSTEM,
                tenant,
                type_id=type_id,
                area=area,
                tag=tag,
                active=active,
                limit=MAX_PAGE_SIZE,
                cursor=cursor,
            )
            docs.extend(device.spec_doc() for device in page.items)
            if page.next_cursor is None:
                return docs
            cursor = page.next_cursor

    echo_json(run_read(everything))
