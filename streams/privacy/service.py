"""The register of processing activities' operations, as the API and the CLI use them.

Reading is public: anyone, without a key, may list and read every tenant's activities (openness
is the point of the register). Writing follows the registry's rules (``principals.py``): an
``operator`` key of the tenant or an ``admin`` key creates, updates and ends activities; a
``subscriber`` key gets 403 in its own tenant; another tenant's key, or a tenant that does not
exist, gets 404. Nothing is ever deleted: an update appends a version, an end is a version with
``valid_to``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

from cityhub.schemas.processing import (
    MAX_VERSIONS,
    ActivityEnd,
    ActivityFields,
    ActivitySpec,
    ActivityUpdate,
    ActivityVersion,
    LegalBasis,
    ProcessingActivity,
    activity_uri,
    make_version,
)
from cityhub.schemas.timefmt import parse_rfc3339, rfc3339
from cityhub.streams.privacy.store import RegisterRecordStore
from cityhub.streams.privacy.view import RegisterView
from cityhub.streams.registry.paging import Page
from cityhub.streams.registry.principals import (
    Principal,
    require_own_tenant,
    require_tenant_access,
)
from cityhub.streams.registry.view import RegistryView
from cityhub.streams.service_errors import Conflict, FieldError, Invalid, NotFound


class ProcessingRegister:
    """The register over a store; writes check ``who`` against the registry's view and return
    once the store's view shows them. Writes of one instance are serialised (they are rare), so
    a version number is never given twice by one instance; ``base_version`` guards against
    another instance or another editor."""

    def __init__(
        self,
        store: RegisterRecordStore,
        registry_view: RegistryView,
        *,
        base_uri: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._registry = registry_view
        self._base_uri = base_uri
        self._clock = clock
        self._writing = asyncio.Lock()

    @property
    def view(self) -> RegisterView:
        return self._store.view

    # --- public reads ---------------------------------------------------------------------
    def list(
        self,
        *,
        tenant: str | None = None,
        legal_basis: LegalBasis | None = None,
        valid_at: datetime | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> Page[ProcessingActivity]:
        """Every tenant's activities that match the filters, paged (no key needed)."""
        return self.view.page(
            tenant=tenant, legal_basis=legal_basis, valid_at=valid_at, limit=limit, cursor=cursor
        )

    def get(self, tenant: str, slug: str) -> ProcessingActivity:
        """One activity with its versions; NotFound if there is none (no key needed)."""
        found = self.view.get(tenant, slug)
        if found is None:
            raise NotFound(f"no processing activity {slug!r} in tenant {tenant!r}")
        return found

    # --- writes -----------------------------------------------------------------------------
    def _now(self) -> str:
        return rfc3339(self._clock())

    def _may_write(self, who: Principal, tenant: str) -> None:
        """The tenant's own operator and admin keys (and the CLI): the register is its
        controller's declaration, and its legal basis decides what the purpose check lets
        through, so another tenant's admin key gets 404 as every other key of another tenant."""
        require_tenant_access(self._registry, who, tenant, write=True)
        require_own_tenant(who, tenant)

    def _writable(self, who: Principal, tenant: str, slug: str) -> ProcessingActivity:
        self._may_write(who, tenant)
        return self.get(tenant, slug)

    async def create(self, who: Principal, tenant: str, spec: ActivitySpec) -> ProcessingActivity:
        """Record a new activity (version 1); Conflict if the slug is taken in the tenant."""
        self._may_write(who, tenant)
        async with self._writing:
            if self.view.get(tenant, spec.slug) is not None:
                raise Conflict(
                    f"processing activity {spec.slug!r} exists in tenant {tenant!r}; "
                    "update it to record a new version",
                    errors=[FieldError("slug", "taken in this tenant")],
                )
            now = self._now()
            record = ProcessingActivity(
                id=activity_uri(self._base_uri, tenant, spec.slug),
                tenant=tenant,
                slug=spec.slug,
                created_at=now,
                versions=[_version(spec, 1, now)],
            )
            await self._store.put(record)
            return record

    async def update(
        self, who: Principal, tenant: str, slug: str, spec: ActivityUpdate
    ) -> ProcessingActivity:
        """Record a new version stating ``spec``; the earlier ones are kept."""
        self._writable(who, tenant, slug)
        async with self._writing:
            current = self.get(tenant, slug)
            _check_base(current, spec.base_version)
            next_version = _version(spec, current.current.version + 1, self._now())
            return await self._append(current, next_version)

    async def end(
        self, who: Principal, tenant: str, slug: str, spec: ActivityEnd
    ) -> ProcessingActivity:
        """Record a version that ends the activity at ``spec.valid_to`` (default: now)."""
        self._writable(who, tenant, slug)
        async with self._writing:
            current = self.get(tenant, slug)
            _check_base(current, spec.base_version)
            now = self._now()
            last = current.current
            if last.valid_to is not None and parse_rfc3339(last.valid_to) <= parse_rfc3339(now):
                raise Conflict(f"processing activity {slug!r} already ended at {last.valid_to}")
            valid_to = spec.valid_to or now
            if parse_rfc3339(valid_to) <= parse_rfc3339(last.valid_from):
                raise Invalid(
                    "valid_to must be after the activity's valid_from",
                    errors=[FieldError("valid_to", f"must be after {last.valid_from}")],
                )
            ended = last.model_copy(
                update={"version": last.version + 1, "valid_to": valid_to, "recorded_at": now}
            )
            return await self._append(current, ended)

    async def _append(
        self, current: ProcessingActivity, version: ActivityVersion
    ) -> ProcessingActivity:
        if len(current.versions) >= MAX_VERSIONS:
            raise Conflict(
                f"processing activity {current.slug!r} has {MAX_VERSIONS} versions, the most "
                "kept; end it and record a new activity"
            )
        record = current.model_copy(update={"versions": [*current.versions, version]})
        await self._store.put(record)
        return record


def _check_base(current: ProcessingActivity, base_version: int | None) -> None:
    if base_version is not None and base_version != current.current.version:
        raise Conflict(
            f"base_version {base_version} is not the current version "
            f"({current.current.version}); read the activity again and redo the change",
            errors=[
                FieldError("base_version", f"the current version is {current.current.version}")
            ],
        )


def _version(spec: ActivityFields, version: int, now: str) -> ActivityVersion:
    """``spec`` as version ``version`` recorded at ``now``; Invalid naming ``valid_to`` when it
    is not after the (defaulted) ``valid_from``."""
    try:
        return make_version(spec, version=version, now=now)
    except ValueError as exc:
        raise Invalid(str(exc), errors=[FieldError("valid_to", str(exc))]) from None
