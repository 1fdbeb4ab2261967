"""What the subscriptions, dead-letter and import pages need in an API process, made and
started together (``OpsServices.for_settings``; ``attach`` ties them to the console's app).

- the subscriptions' statuses: the ``subscription-status`` topic followed into a view, started
  with the app in the background (a page shows "no report yet" until it has caught up);
- the dead letters: a reader of the dead-letter topic, started the first time a dead-letter page
  is asked for (``cityhub.streams.deadletters.reader``);
- the imports: background jobs in this process (``cityhub.streams.registry.import_jobs``) with the
  quotas' limits on a file's bytes and rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from aiohttp import web

from cityhub.schemas.settings import Settings
from cityhub.streams.deadletters.reader import DeadLetterReader
from cityhub.streams.delivery.status_publisher import SubscriptionStatusStore
from cityhub.streams.delivery.status_view import SubscriptionStatusView
from cityhub.streams.registry.import_jobs import ImportJobs
from cityhub.streams.registry.service import Registry

log = logging.getLogger("cityhub.console")


@dataclass
class OpsServices:
    status_store: SubscriptionStatusStore | None
    dead_letters: DeadLetterReader | None
    imports: ImportJobs | None
    _starting: asyncio.Task[None] | None = None

    @classmethod
    def for_settings(cls, settings: Settings, registry: Registry) -> OpsServices:
        return cls(
            status_store=SubscriptionStatusStore(settings, client_id="cityhub-console-status"),
            dead_letters=DeadLetterReader(
                settings,
                registry.view,
                scan_back=settings.console.dead_letter_scan_back,
                per_tenant=settings.console.dead_letters_per_tenant,
                preview_bytes=settings.console.dead_letter_preview_bytes,
            ),
            imports=ImportJobs(
                registry,
                max_bytes=settings.quotas.import_max_bytes,
                max_rows=settings.quotas.import_max_rows,
            ),
        )

    @property
    def status_view(self) -> SubscriptionStatusView | None:
        return self.status_store.view if self.status_store is not None else None

    def attach(self, app: web.Application) -> None:
        """Start the status store with ``app`` (in the background) and stop everything when
        it is cleaned up."""
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)

    async def _start(self, app: web.Application) -> None:
        if self.status_store is not None:
            self._starting = asyncio.create_task(self._start_status(self.status_store))

    @staticmethod
    async def _start_status(store: SubscriptionStatusStore) -> None:
        try:
            await store.start()
        except Exception as exc:  # the page says the figures are missing; the API serves on
            log.warning("the console cannot follow the subscriptions' statuses: %r", exc)

    async def _stop(self, app: web.Application) -> None:
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                await self._starting
        if self.status_store is not None:
            with contextlib.suppress(Exception):
                await self.status_store.stop()
        if self.dead_letters is not None:
            await self.dead_letters.stop()
        if self.imports is not None:
            await self.imports.close()


__all__ = ["OpsServices"]
