"""Where the NGSI-LD API reads values: the history store's observations, through the history
reads every interface shares (``cityhub.streams.history.reads``: the visibility rule and the
exclusion of personal rows are in their SQL).

``HistoryValues`` borrows connections from a small pool made from the settings, opened at the
first read; tests give it their own schema's settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cityhub.connectors.ngsi_ld.entities import Reading
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import rfc3339_from_datetime
from cityhub.streams.history.connection import ConnectionPool
from cityhub.streams.history.queries import MAX_DEVICES
from cityhub.streams.history.reads import (
    ObservationFilter,
    ObservationRow,
    Order,
    Viewer,
    latest_observations,
    observations,
)

MAX_INSTANCES = 10_000
"""Most attribute instances one temporal answer holds (over all its attributes)."""


def reading_of(row: ObservationRow) -> Reading | None:
    """The reading of a history row; None for a row without a value."""
    if row.value is None:
        return None
    return Reading(
        quantity=row.quantity,
        value=row.value,
        unit=row.unit,
        observed_at=rfc3339_from_datetime(row.observed_at),
        instance_id=row.event_id,
    )


class HistoryValues:
    """Latest values and series of devices from the history store.

    Its connections never prepare statements (``history.connection.connect`` says why).
    """

    def __init__(self, settings: Settings, *, pool_size: int = 2) -> None:
        self._pool = ConnectionPool(settings, size=pool_size, application_name="cityhub-ngsi-ld")

    async def latest(self, viewer: Viewer, device_ids: Sequence[str]) -> dict[str, list[Reading]]:
        """The latest reading of each quantity of each device, by device id."""
        found: dict[str, list[Reading]] = {device_id: [] for device_id in device_ids}
        ids = list(device_ids)
        async with self._pool.connection() as conn:
            for start in range(0, len(ids), MAX_DEVICES):
                rows = await latest_observations(conn, viewer, ids[start : start + MAX_DEVICES])
                for row in rows:
                    reading = reading_of(row)
                    if reading is not None and row.device_id in found:
                        found[row.device_id].append(reading)
        return found

    async def series(
        self,
        viewer: Viewer,
        device_id: str,
        *,
        quantities: Sequence[str] | None,
        start: datetime | None,
        end: datetime | None,
        last_n: int | None,
    ) -> tuple[list[Reading], bool]:
        """The device's readings in ``[start, end)`` oldest first, of ``quantities`` (None:
        all): the last ``last_n`` of each quantity when given, else all up to
        ``MAX_INSTANCES``; and whether more were left out."""
        async with self._pool.connection() as conn:
            if last_n is None:
                filt = ObservationFilter([device_id], quantities, start, end)
                page = await observations(conn, viewer, filt, order=Order.DESC, limit=MAX_INSTANCES)
                rows, more = page.items, page.next is not None
            else:
                if quantities is None:
                    latest = await latest_observations(conn, viewer, [device_id])
                    quantities = [row.quantity for row in latest]
                rows, more = [], False
                budget = MAX_INSTANCES
                for quantity in quantities:
                    if budget <= 0:
                        more = True
                        break
                    filt = ObservationFilter([device_id], [quantity], start, end)
                    limit = min(last_n, budget)
                    page = await observations(conn, viewer, filt, order=Order.DESC, limit=limit)
                    rows.extend(page.items)
                    budget -= len(page.items)
        rows.sort(key=lambda row: (row.observed_at, row.event_id))
        readings = [r for r in map(reading_of, rows) if r is not None]
        return readings, more

    async def close(self) -> None:
        await self._pool.close()
