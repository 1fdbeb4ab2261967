"""The public's data requests, as the API uses them (``docs/data-requests.md``).

- Filing needs no key. Each client address (an IPv6 address by its /64) may file
  ``open_data.max_requests_per_address`` requests per hour in this process (429 with
  ``Retry-After`` past it), and no more than ``max_open`` requests may be open at once (503
  with ``Retry-After``: an admin answers or declines some first).
- Reading is public and never shows a contact (``DataRequest.public``).
- A tenant's operator or admin key answers a request with one of the tenant's own offers (that
  is not withdrawn) or with a published open dataset; the request becomes ``answered`` and
  links to the answer. A declined request takes no answer.
- An admin key declines a request with a reason (its contact is erased at once), reads the
  contact, and erases it when the requester asks. ``erase_expired_contacts`` erases every
  contact past its retention (``cityhub.schemas.data_request.contact_expired``);
  ``run_retention`` calls it hourly.

Writes of one instance are serialised (they are rare): an answer or a decline never overwrites
another made by this instance in between; two instances may race, and the later write wins.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from cityhub.schemas.data_request import (
    MAX_ANSWERS,
    MAX_OPEN_REQUESTS,
    Answer,
    AnswerKind,
    AnswerSpec,
    DataRequest,
    DataRequestSpec,
    DataRequestStatus,
    DeclineSpec,
    contact_expired,
    without_contact,
)
from cityhub.schemas.sharing import Offer
from cityhub.schemas.timefmt import datetime_from_epoch, rfc3339
from cityhub.streams.api.rate_limit import RateLimiter, retry_after_seconds
from cityhub.streams.opendata.requests_store import DataRequestRecordStore
from cityhub.streams.opendata.requests_view import DataRequestView, new_request_id
from cityhub.streams.quotas import QuotaExceeded
from cityhub.streams.registry.paging import Page
from cityhub.streams.registry.principals import Principal, require_admin, require_tenant_access
from cityhub.streams.registry.view import RegistryView
from cityhub.streams.service_errors import Conflict, FieldError, Invalid, NotFound, Unavailable

log = logging.getLogger("cityhub.opendata.requests")

HOUR = 3600.0
PER_ADDRESS_SETTING = "CITYHUB_OPEN_DATA__MAX_REQUESTS_PER_ADDRESS"

OfferLookup = Callable[[str, str], Offer | None]
"""``offer(tenant, id)``: the tenant's offer, or None (the sharing service's offers view)."""


@dataclass(frozen=True, slots=True)
class AnswerLinks:
    """Where an answer points: the address of an offer (``tenant``, ``id``) and of a dataset."""

    offer: Callable[[str, str], str]
    dataset: Callable[[str], str]

    @classmethod
    def under(cls, root: str) -> AnswerLinks:
        """The API's own addresses under ``root`` (``https://data.city.example``, or ``""`` for
        paths): the offer's (as the catalogue names it) and the open dataset's."""
        root = root.rstrip("/")
        return cls(
            offer=lambda tenant, offer_id: f"{root}/api/v1/tenants/{tenant}/offers/{offer_id}",
            dataset=lambda dataset_id: f"{root}/api/v1/open/datasets/{dataset_id}",
        )


class DataRequestQuota(QuotaExceeded):
    """A filing refused by one of the data requests' limits: the problem names the limit and
    what raises it (a setting, or an admin's work)."""

    def __init__(
        self, detail: str, *, quota: str, limit: int, status: int, retry_after: int, setting: str
    ) -> None:
        self._setting = setting
        super().__init__(detail, quota=quota, limit=limit, status=status, retry_after=retry_after)
        self.detail = detail
        self.args = (detail,)

    @property
    def setting(self) -> str:
        return self._setting


class DataRequests:
    """The data requests over a store; writes return once the store's view shows them."""

    def __init__(
        self,
        store: DataRequestRecordStore,
        registry_view: RegistryView,
        *,
        datasets: Collection[str],
        offers: OfferLookup | None = None,
        links: AnswerLinks | None = None,
        per_address_per_hour: int = 5,
        max_open: int = MAX_OPEN_REQUESTS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_address_per_hour < 1 or max_open < 1:
            raise ValueError("the data requests' limits must be at least 1")
        self._store = store
        self._registry = registry_view
        self._datasets = frozenset(datasets)
        self._offers = offers
        self._links = links or AnswerLinks.under("")
        self._per_address = per_address_per_hour
        self._filings = RateLimiter(per_address_per_hour / HOUR, per_address_per_hour)
        self._max_open = max_open
        self._clock = clock
        self._monotonic = monotonic
        self._writing = asyncio.Lock()

    @property
    def view(self) -> DataRequestView:
        return self._store.view

    def _now(self) -> str:
        return rfc3339(self._clock())

    # --- public ------------------------------------------------------------------------------
    def list(
        self, *, status: DataRequestStatus | None = None, limit: int, cursor: str | None = None
    ) -> Page[DataRequest]:
        """Requests newest first, paged; render each with ``public()`` (no key needed)."""
        return self.view.page(status=status, limit=limit, cursor=cursor)

    def get(self, request_id: str) -> DataRequest:
        """One request; NotFound if there is none. Render with ``public()`` (no key needed)."""
        found = self.view.get(request_id)
        if found is None:
            raise NotFound(f"no data request {request_id!r}")
        return found

    async def file(self, spec: DataRequestSpec, client: str) -> DataRequest:
        """Store a new open request from ``client`` (its network: ``client_network``);
        ``DataRequestQuota`` past the per-address rate or the cap on open requests. The
        address is counted in memory only, never stored."""
        if not self._store.ready:
            raise Unavailable("the data requests are not loaded yet; try again in a moment")
        if self.view.open_count() >= self._max_open:
            raise DataRequestQuota(
                f"{self._max_open} data requests are open, the most this hub keeps; try again "
                "later, once some have been answered.",
                quota="open_data_requests",
                limit=self._max_open,
                status=503,
                retry_after=int(HOUR),
                setting="",
            )
        wait = self._filings.take(client, self._monotonic())
        if wait > 0:
            seconds = retry_after_seconds(wait)
            raise DataRequestQuota(
                f"This client address filed {self._per_address} data requests within the hour, "
                f"the most it may; try again in {seconds} s.",
                quota="data_requests_per_address",
                limit=self._per_address,
                status=429,
                retry_after=seconds,
                setting=PER_ADDRESS_SETTING,
            )
        now = self._now()
        record = DataRequest(
            id=new_request_id(self._clock()), spec=spec, created_at=now, updated_at=now
        )
        await self._store.put(record)
        return record

    # --- tenants -----------------------------------------------------------------------------
    async def answer(
        self, who: Principal, tenant: str, request_id: str, spec: AnswerSpec
    ) -> DataRequest:
        """Add ``tenant``'s answer (an operator or admin key of it): its own offer, not
        withdrawn, or a published open dataset. Conflict on a declined request, the same answer
        twice or ``MAX_ANSWERS``; Invalid naming the field for an offer or dataset there is not."""
        require_tenant_access(self._registry, who, tenant, write=True)
        self.get(request_id)
        url = self._answer_url(tenant, spec)
        async with self._writing:
            current = self.get(request_id)
            if current.status is DataRequestStatus.DECLINED:
                raise Conflict(f"data request {request_id!r} was declined; it takes no answers")
            if any(a.kind is spec.kind and a.ref == spec.ref for a in current.answers):
                raise Conflict(f"data request {request_id!r} has this answer already")
            if len(current.answers) >= MAX_ANSWERS:
                raise Conflict(f"data request {request_id!r} has {MAX_ANSWERS} answers, the most")
            now = self._now()
            answer = Answer(
                kind=spec.kind, ref=spec.ref, tenant=tenant, note=spec.note, at=now, url=url
            )
            record = current.model_copy(
                update={
                    "status": DataRequestStatus.ANSWERED,
                    "answers": (*current.answers, answer),
                    "updated_at": now,
                }
            )
            await self._store.put(record)
            return record

    def _answer_url(self, tenant: str, spec: AnswerSpec) -> str:
        if spec.kind is AnswerKind.DATASET:
            if spec.ref not in self._datasets:
                raise Invalid(
                    f"no open dataset {spec.ref!r} is published",
                    errors=[FieldError("dataset", "not a published open dataset's id")],
                )
            return self._links.dataset(spec.ref)
        owner, _, offer_id = spec.ref.partition("/")
        if owner != tenant:
            raise Invalid(
                "a tenant answers with its own offers only",
                errors=[FieldError("offer", f"must be {tenant}/<offer id>")],
            )
        if self._offers is None:
            raise Unavailable("offers are not served by this instance; answer with a dataset")
        offer = self._offers(tenant, offer_id)
        if offer is None:
            raise Invalid(
                f"tenant {tenant!r} has no offer {offer_id!r}",
                errors=[FieldError("offer", "no such offer of this tenant")],
            )
        if offer.withdrawn_at is not None:
            raise Invalid(
                f"offer {spec.ref!r} is withdrawn",
                errors=[FieldError("offer", "withdrawn: answer with an offer that stands")],
            )
        return self._links.offer(tenant, offer_id)

    # --- admin -------------------------------------------------------------------------------
    def get_as_admin(self, who: Principal, request_id: str) -> DataRequest:
        """One request, to render with ``admin()`` (its contact); admin keys only."""
        require_admin(who, "read a data request's contact")
        return self.get(request_id)

    def list_as_admin(
        self,
        who: Principal,
        *,
        status: DataRequestStatus | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> Page[DataRequest]:
        """``list``, to render with ``admin()``; admin keys only."""
        require_admin(who, "list data requests with their contacts")
        return self.list(status=status, limit=limit, cursor=cursor)

    async def decline(self, who: Principal, request_id: str, spec: DeclineSpec) -> DataRequest:
        """Decline a request with a reason (admin keys only): its text leaves the public view
        and its contact is erased. Conflict if it was declined already."""
        require_admin(who, "decline a data request")
        self.get(request_id)
        async with self._writing:
            current = self.get(request_id)
            if current.status is DataRequestStatus.DECLINED:
                raise Conflict(f"data request {request_id!r} was declined already")
            now = self._now()
            record = current.model_copy(
                update={
                    "status": DataRequestStatus.DECLINED,
                    "declined_at": now,
                    "decline_reason": spec.reason,
                    "updated_at": now,
                }
            )
            if record.contact is not None:
                record = without_contact(record, now)
            await self._store.put(record)
            return record

    async def erase_contact(self, who: Principal, request_id: str) -> DataRequest:
        """Erase a request's contact now (admin keys only): the requester asked for it, or it is
        no longer needed. Nothing is written when there is none."""
        require_admin(who, "erase a data request's contact")
        self.get(request_id)
        async with self._writing:
            current = self.get(request_id)
            if current.contact is None:
                return current
            record = without_contact(current, self._now())
            await self._store.put(record)
            return record

    async def erase_expired_contacts(self) -> int:
        """Erase every contact past its retention; how many were erased."""
        when = datetime_from_epoch(self._clock())
        expired = [r.id for r in self.view.all() if contact_expired(r, when)]
        erased = 0
        for request_id in expired:
            async with self._writing:
                current = self.view.get(request_id)
                if current is None or not contact_expired(current, when):
                    continue
                await self._store.put(without_contact(current, self._now()))
                erased += 1
        if erased:
            log.info("erased the contacts of %d data request(s) past their retention", erased)
        return erased

    async def run_retention(self, *, interval: float = HOUR) -> None:
        """Erase expired contacts every ``interval`` seconds, once the store is ready; runs
        until cancelled. A failed round is logged and tried again at the next."""
        while True:
            if self._store.ready:
                try:
                    await self.erase_expired_contacts()
                except Unavailable:
                    log.warning("erasing expired data-request contacts failed; trying again later")
            await asyncio.sleep(interval)


__all__ = ["AnswerLinks", "DataRequestQuota", "DataRequests", "OfferLookup"]
