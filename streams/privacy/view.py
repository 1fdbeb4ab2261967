"""The register of processing activities in memory: what its compacted topic says.

Pure: no I/O. A store feeds it the topic's records in offset order with ``apply`` (as the
subscriptions' view); every API instance holds one. Activities are few (hundreds per city), so
they are kept as validated records by tenant and slug, and listed in (tenant, slug) order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime

from cityhub.schemas.processing import LegalBasis, ProcessingActivity, record_key
from cityhub.streams.compacted_view import CompactedView
from cityhub.streams.registry.paging import Page, page_limit

log = logging.getLogger("cityhub.privacy.view")


class MalformedActivity(ValueError):
    """A record on the register's topic the view cannot use (logged and counted)."""


def cursor_of(activity: ProcessingActivity) -> str:
    """The opaque cursor after ``activity`` in a listing: ``<tenant>/<slug>``."""
    return f"{activity.tenant}/{activity.slug}"


class RegisterView(CompactedView):
    """The activities after applying the topic's records up to ``offset``. ``apply`` never
    raises on a bad record: it logs the offset and key, counts it and moves on."""

    def __init__(self) -> None:
        super().__init__(log, "processing activity")
        self._activities: dict[tuple[str, str], ProcessingActivity] = {}

    def _apply(self, key: str, value: bytes | None) -> None:
        """A tombstone is refused (nothing is ever deleted from the register) and counted as
        malformed."""
        if value is None:
            raise MalformedActivity("a tombstone: activities are never deleted")
        doc = json.loads(value)
        if not isinstance(doc, dict) or doc.get("kind") != "processing_activity":
            raise MalformedActivity("not a processing activity")
        record = ProcessingActivity.model_validate(doc)
        if key != record_key(record):
            raise MalformedActivity(f"key does not match the record's ({record_key(record)})")
        self._activities[(record.tenant, record.slug)] = record

    def get(self, tenant: str, slug: str) -> ProcessingActivity | None:
        return self._activities.get((tenant, slug))

    def count(self) -> int:
        return len(self._activities)

    def _matching(
        self,
        tenant: str | None,
        legal_basis: LegalBasis | None,
        valid_at: datetime | None,
        after: tuple[str, str] | None,
    ) -> Iterator[ProcessingActivity]:
        for key in sorted(self._activities):
            if after is not None and key <= after:
                continue
            activity = self._activities[key]
            if tenant is not None and activity.tenant != tenant:
                continue
            if legal_basis is not None and activity.current.legal_basis is not legal_basis:
                continue
            if valid_at is not None and not activity.current.valid_at(valid_at):
                continue
            yield activity

    def page(
        self,
        *,
        tenant: str | None = None,
        legal_basis: LegalBasis | None = None,
        valid_at: datetime | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> Page[ProcessingActivity]:
        """The activities that match every filter given, in (tenant, slug) order, after
        ``cursor``; a cursor that names no activity starts after where it would be."""
        size = page_limit(limit)
        after = None
        if cursor is not None:
            cursor_tenant, _, cursor_slug = cursor.partition("/")
            after = (cursor_tenant, cursor_slug)
        items: list[ProcessingActivity] = []
        for activity in self._matching(tenant, legal_basis, valid_at, after):
            if len(items) == size:
                return Page(items, cursor_of(items[-1]))
            items.append(activity)
        return Page(items, None)
