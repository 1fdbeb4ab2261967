"""Offers and agreements: the rules, as the API uses them (docs/sharing.md).

Who may do what (keys as in ``cityhub.streams.registry.principals``):

- offers: an ``operator`` or ``admin`` key of the providing tenant creates, replaces and
  withdraws them; any key of the tenant reads them; any key of any tenant reads the offers
  their providers *listed* (and have not withdrawn), to find what to ask for.
- agreements: an ``operator`` or ``admin`` key of the consuming tenant asks for one; an
  ``operator`` or ``admin`` key of the providing tenant approves or rejects it (only while it
  is ``requested``); either side revokes an approved one. Any key of either party reads it,
  with the uses counted under it. A third tenant learns nothing of it (404), as with everything
  of another tenant; an ``admin`` key reaches every tenant, as in the registry.

The rules of the offer: its selection names device types of the provider's registry (ids,
areas and tags may be anything); a ``personal`` offer names a valid processing activity of the
provider's register with recipients, and an agreement on it is approved only for a consumer
among those recipients (its id or name, case-insensitive). The offer's terms are copied into the
agreement at the request and again at the approval: what was approved is what is enforced.

Invalid input is 400 (``Invalid``), never 422: the NL API Design Rules this API follows answer
every invalid input with 400 (docs/api-conventions.md).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from cityhub.schemas.processing import ProcessingActivity
from cityhub.schemas.registry import Classification, Role
from cityhub.schemas.sharing import (
    MAX_AGREEMENT_DAYS,
    Agreement,
    AgreementDecision,
    AgreementEvent,
    AgreementRequest,
    AgreementState,
    Offer,
    OfferSpec,
)
from cityhub.schemas.timefmt import parse_rfc3339, rfc3339
from cityhub.streams.privacy.view import RegisterView
from cityhub.streams.registry.principals import Principal, require_admin, require_tenant_access
from cityhub.streams.registry.view import RegistryView
from cityhub.streams.service_errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from cityhub.streams.sharing.store import AgreementRecordStore, OfferRecordStore
from cityhub.streams.sharing.usage_view import UsageTotals

MAX_OFFERS_PER_TENANT = 200
"""Offers one tenant may hold (withdrawn ones included): they are kept whole in every process."""
MAX_OPEN_REQUESTS = 50
"""Agreements one consumer may have waiting (``requested``) at once: a bound on what a key can
make the providers read, and on the view every process keeps."""

ROLES = ("provider", "consumer")


def _no_usage(agreement_id: str) -> UsageTotals:
    return UsageTotals()


class Sharing:
    """The offers and agreements over their stores; writes check ``who`` against the
    registry's view and return once the stores' views show them. Writes of one instance are
    serialised (they are rare), so a check and the write it allows cannot interleave with
    another write of this instance; and each first catches the views up with their topics
    (``sync``), so that it decides on what another instance wrote a moment before. Two
    instances deciding on the same record within the same few milliseconds can still both
    succeed (Kafka has no compare-and-set); the later write stands."""

    def __init__(
        self,
        offers: OfferRecordStore,
        agreements: AgreementRecordStore,
        registry: RegistryView,
        activities: RegisterView,
        *,
        usage_of: Callable[[str], UsageTotals] = _no_usage,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: f"agr-{secrets.token_hex(8)}",
    ) -> None:
        self._offers = offers
        self._agreements = agreements
        self._registry = registry
        self._activities = activities
        self._usage_of = usage_of
        self._clock = clock
        self._new_id = new_id
        self._writing = asyncio.Lock()

    def _now(self) -> str:
        return rfc3339(self._clock())

    def now(self) -> datetime:
        return parse_rfc3339(self._now())

    # --- offers -----------------------------------------------------------------------------
    def _check_offer(self, tenant: str, spec: OfferSpec) -> None:
        """Invalid unless the selection's device types exist in ``tenant`` and a personal
        offer's activity is valid now and names recipients."""
        missing = [
            t for t in spec.selection.device_types if self._registry.device_type(tenant, t) is None
        ]
        if missing:
            raise Invalid(
                f"the selection names device types tenant {tenant!r} does not have: "
                + ", ".join(missing[:10]),
                errors=[
                    FieldError("selection.device_types", f"unknown device type {t!r}")
                    for t in missing[:10]
                ],
            )
        if spec.classification is Classification.PERSONAL:
            assert spec.processing_activity is not None  # the spec's own rule
            self._personal_activity(tenant, spec.processing_activity, field="processing_activity")

    def _personal_activity(self, tenant: str, slug: str, *, field: str) -> ProcessingActivity:
        activity = self._activities.get(tenant, slug)
        if activity is None:
            raise Invalid(
                f"a personal offer needs a processing activity of tenant {tenant!r}'s register; "
                f"{slug!r} is not one",
                errors=[FieldError(field, "not an activity of the provider's register")],
            )
        if not activity.current.valid_at(self.now()):
            raise Invalid(
                f"processing activity {slug!r} is not valid now: personal data may be shared "
                "only under a valid activity",
                errors=[FieldError(field, "the activity is not valid now")],
            )
        if not activity.current.recipients:
            raise Invalid(
                f"processing activity {slug!r} names no recipients: a personal offer may be "
                "shared only with recipients its activity names",
                errors=[FieldError(field, "the activity names no recipients")],
            )
        return activity

    def _offer(self, tenant: str, offer_id: str) -> Offer:
        found = self._offers.view.get(tenant, offer_id)
        if found is None:
            raise NotFound(f"no offer {offer_id!r} in tenant {tenant!r}")
        return found

    def get_offer(self, who: Principal, tenant: str, offer_id: str) -> Offer:
        """An offer of ``tenant``: any key of the tenant (or an admin) reads it; another tenant's
        key only while it is listed and not withdrawn (else NotFound, as if it did not exist)."""
        if who.role is Role.ADMIN or who.tenant == tenant:
            require_tenant_access(self._registry, who, tenant, write=False)
            return self._offer(tenant, offer_id)
        found = self._offers.view.get(tenant, offer_id)
        if found is None or not found.spec.listed or found.withdrawn_at is not None:
            raise NotFound(f"no offer {offer_id!r} in tenant {tenant!r}")
        return found

    def list_offers(self, who: Principal, tenant: str) -> list[Offer]:
        """Every offer of ``tenant``, withdrawn ones included, in id order."""
        require_tenant_access(self._registry, who, tenant, write=False)
        return self._offers.view.of_tenant(tenant)

    def listed_offers(self, who: Principal, tenant: str | None = None) -> list[Offer]:
        """The offers every tenant's providers listed and have not withdrawn (any key)."""
        return [
            o
            for o in self._offers.view.all()
            if o.spec.listed and o.withdrawn_at is None and (tenant is None or o.tenant == tenant)
        ]

    async def create_offer(self, who: Principal, tenant: str, spec: OfferSpec) -> Offer:
        """A new offer; Conflict if the id is taken in the tenant (withdrawn offers too)."""
        require_tenant_access(self._registry, who, tenant, write=True)
        self._check_offer(tenant, spec)
        async with self._writing:
            await self._offers.sync()
            if self._offers.view.get(tenant, spec.id) is not None:
                raise Conflict(
                    f"offer {spec.id!r} exists in tenant {tenant!r}; replace it with PUT",
                    errors=[FieldError("id", "taken in this tenant")],
                )
            if len(self._offers.view.of_tenant(tenant)) >= MAX_OFFERS_PER_TENANT:
                raise Conflict(
                    f"tenant {tenant!r} holds {MAX_OFFERS_PER_TENANT} offers, the most kept"
                )
            now = self._now()
            record = Offer(tenant=tenant, spec=spec, created_at=now, updated_at=now)
            await self._offers.put(record)
            return record

    async def replace_offer(
        self, who: Principal, tenant: str, offer_id: str, spec: OfferSpec
    ) -> Offer:
        """The offer with new terms. Agreements already made keep theirs (copied at their
        approval); a withdrawn offer cannot be replaced (Conflict)."""
        require_tenant_access(self._registry, who, tenant, write=True)
        if spec.id != offer_id:
            raise Invalid(
                f"the body's id {spec.id!r} is not the path's {offer_id!r}",
                errors=[FieldError("id", f"must be {offer_id!r}")],
            )
        self._check_offer(tenant, spec)
        async with self._writing:
            await self._offers.sync()
            current = self._offer(tenant, offer_id)
            if current.withdrawn_at is not None:
                raise Conflict(
                    f"offer {offer_id!r} was withdrawn at {current.withdrawn_at}; make a new one"
                )
            record = current.model_copy(update={"spec": spec, "updated_at": self._now()})
            await self._offers.put(record)
            return record

    async def withdraw_offer(self, who: Principal, tenant: str, offer_id: str) -> Offer:
        """Withdraw an offer: no new agreement on it; approved ones run on until they end or
        are revoked. Conflict if it was withdrawn already."""
        require_tenant_access(self._registry, who, tenant, write=True)
        async with self._writing:
            await self._offers.sync()
            current = self._offer(tenant, offer_id)
            if current.withdrawn_at is not None:
                raise Conflict(f"offer {offer_id!r} was withdrawn at {current.withdrawn_at}")
            now = self._now()
            record = current.model_copy(update={"withdrawn_at": now, "updated_at": now})
            await self._offers.put(record)
            return record

    # --- agreements ---------------------------------------------------------------------------
    def usage(self, agreement_id: str) -> UsageTotals:
        """The uses counted under an agreement, summed over every counting process."""
        return self._usage_of(agreement_id)

    def _party(self, who: Principal, tenant: str, agreement_id: str) -> Agreement:
        """The agreement if ``tenant`` is a party and ``who`` may read in ``tenant``; NotFound
        otherwise (another tenant learns nothing of it)."""
        require_tenant_access(self._registry, who, tenant, write=False)
        found = self._agreements.view.get(agreement_id)
        if found is None or tenant not in (found.provider, found.consumer):
            raise NotFound(f"no agreement {agreement_id!r} of tenant {tenant!r}")
        return found

    def get_agreement(self, who: Principal, tenant: str, agreement_id: str) -> Agreement:
        return self._party(who, tenant, agreement_id)

    def list_agreements(
        self, who: Principal, tenant: str, role: str | None = None
    ) -> list[Agreement]:
        """The agreements ``tenant`` is a party to (as ``role``: provider, consumer, or
        either), in id order."""
        require_tenant_access(self._registry, who, tenant, write=False)
        if role is not None and role not in ROLES:
            raise Invalid(
                f"role is provider or consumer, not {role!r}",
                errors=[FieldError("role", "provider or consumer")],
            )
        return self._agreements.view.of_tenant(tenant, role=role)

    def all_agreements(self, who: Principal) -> list[Agreement]:
        """Every agreement of every tenant, in id order (an admin key, or the CLI)."""
        require_admin(who, "list every tenant's agreements")
        return self._agreements.view.all()

    def agreement_for_admin(self, who: Principal, agreement_id: str) -> Agreement:
        """Any agreement by its id (an admin key, or the CLI)."""
        require_admin(who, "read any agreement by its id")
        found = self._agreements.view.get(agreement_id)
        if found is None:
            raise NotFound(f"no agreement {agreement_id!r}")
        return found

    async def request_agreement(
        self, who: Principal, consumer: str, request: AgreementRequest
    ) -> Agreement:
        """A new agreement in state ``requested``, with the offer's current terms."""
        require_tenant_access(self._registry, who, consumer, write=True)
        await self._offers.sync()
        provider, _, offer_id = request.offer.partition("/")
        if provider == consumer:
            raise Invalid(
                "a tenant needs no agreement to see its own data",
                errors=[FieldError("offer", "an offer of another tenant")],
            )
        found = self._offers.view.get(provider, offer_id)
        if found is None or self._registry.tenant(provider) is None:
            raise Invalid(
                f"there is no offer {request.offer!r}",
                errors=[FieldError("offer", "no such offer")],
            )
        if found.withdrawn_at is not None:
            raise Conflict(
                f"offer {request.offer!r} was withdrawn at {found.withdrawn_at}",
                errors=[FieldError("offer", "withdrawn")],
            )
        _check_purpose(found.spec, request.purpose)
        now = self._now()
        start = parse_rfc3339(request.starts_at) if request.starts_at else parse_rfc3339(now)
        end = parse_rfc3339(request.ends_at)
        if end <= parse_rfc3339(now):
            raise Invalid(
                "ends_at is in the past", errors=[FieldError("ends_at", "must be in the future")]
            )
        if end - start > timedelta(days=MAX_AGREEMENT_DAYS):
            raise Invalid(
                f"an agreement runs at most {MAX_AGREEMENT_DAYS} days",
                errors=[
                    FieldError("ends_at", f"at most {MAX_AGREEMENT_DAYS} days after the start")
                ],
            )
        async with self._writing:
            await self._agreements.sync()
            # A request whose period ended unanswered no longer waits.
            waiting = [
                a
                for a in self._agreements.view.of_tenant(consumer, role="consumer")
                if a.state is AgreementState.REQUESTED
                and parse_rfc3339(a.ends_at) > parse_rfc3339(now)
            ]
            if len(waiting) >= MAX_OPEN_REQUESTS:
                raise Conflict(
                    f"tenant {consumer!r} has {MAX_OPEN_REQUESTS} requests waiting for an "
                    "answer, the most it may; wait for one or ask a provider to answer"
                )
            record = Agreement(
                id=self._new_id(),
                provider=provider,
                consumer=consumer,
                offer_id=offer_id,
                offer_spec=found.spec,
                purpose=request.purpose,
                starts_at=request.starts_at,
                ends_at=request.ends_at,
                state=AgreementState.REQUESTED,
                requested_at=now,
                history=[
                    AgreementEvent(
                        state=AgreementState.REQUESTED,
                        at=now,
                        by_tenant=consumer,
                        reason=request.note,
                    )
                ],
                note=request.note,
            )
            await self._agreements.put(record)
            return record

    def _as_provider(
        self, who: Principal, tenant: str, agreement_id: str, action: str
    ) -> Agreement:
        require_tenant_access(self._registry, who, tenant, write=True)
        found = self._party(who, tenant, agreement_id)
        if found.provider != tenant:
            raise Forbidden(f"only the provider ({found.provider}) may {action} this agreement")
        if found.state is not AgreementState.REQUESTED:
            done = "approved" if action == "approve" else "rejected"
            raise Conflict(
                f"agreement {agreement_id!r} is {found.state.value}: only a requested one can "
                f"be {done}"
            )
        return found

    async def approve(
        self, who: Principal, tenant: str, agreement_id: str, decision: AgreementDecision
    ) -> Agreement:
        """Approve a requested agreement, with the offer's current terms. Conflict when the
        offer was withdrawn, no longer lists the purpose, or the period has ended; Invalid for a
        personal offer whose activity is not valid or does not name the consumer."""
        async with self._writing:
            await self._agreements.sync()
            await self._offers.sync()
            found = self._as_provider(who, tenant, agreement_id, "approve")
            offer = self._offers.view.get(tenant, found.offer_id)
            if offer is None or offer.withdrawn_at is not None:
                raise Conflict(f"offer {found.offer_id!r} was withdrawn: reject the request")
            spec = offer.spec
            if found.purpose not in spec.purposes:
                raise Conflict(
                    f"the offer no longer lists the purpose {found.purpose!r}: reject the request"
                )
            now = self._now()
            if parse_rfc3339(found.ends_at) <= parse_rfc3339(now):
                raise Conflict(f"the agreement's period ended at {found.ends_at}")
            if spec.classification is Classification.PERSONAL:
                assert spec.processing_activity is not None
                activity = self._personal_activity(
                    tenant, spec.processing_activity, field="offer.processing_activity"
                )
                self._check_recipient(found.consumer, activity)
            return await self._decide(found, AgreementState.APPROVED, tenant, decision, spec=spec)

    def _check_recipient(self, consumer: str, activity: ProcessingActivity) -> None:
        names = {consumer.casefold()}
        tenant = self._registry.tenant(consumer)
        if tenant is not None:
            names.add(tenant.name.casefold())
        recipients = {r.strip().casefold() for r in activity.current.recipients}
        if names.isdisjoint(recipients):
            raise Invalid(
                f"tenant {consumer!r} is not among the recipients of processing activity "
                f"{activity.slug!r}: personal data may be shared only with a recipient the "
                "activity names; add it there first",
                errors=[FieldError("consumer", "not a recipient of the offer's activity")],
            )

    async def reject(
        self, who: Principal, tenant: str, agreement_id: str, decision: AgreementDecision
    ) -> Agreement:
        async with self._writing:
            await self._agreements.sync()
            found = self._as_provider(who, tenant, agreement_id, "reject")
            return await self._decide(found, AgreementState.REJECTED, tenant, decision)

    async def revoke(
        self, who: Principal, tenant: str, agreement_id: str, decision: AgreementDecision
    ) -> Agreement:
        """Either party ends an approved agreement at once (every process within seconds);
        the consumer also withdraws its own request while it waits (it counted towards the
        consumer's cap of waiting requests until its ``ends_at``, which may be years ahead)."""
        require_tenant_access(self._registry, who, tenant, write=True)
        async with self._writing:
            await self._agreements.sync()
            found = self._party(who, tenant, agreement_id)
            withdrawn = found.state is AgreementState.REQUESTED and tenant == found.consumer
            if found.state is not AgreementState.APPROVED and not withdrawn:
                raise Conflict(
                    f"agreement {agreement_id!r} is {found.state.value}: only an approved one "
                    "can be revoked (or a request, by the tenant that asked)"
                )
            return await self._decide(found, AgreementState.REVOKED, tenant, decision)

    async def _decide(
        self,
        found: Agreement,
        state: AgreementState,
        by: str,
        decision: AgreementDecision,
        *,
        spec: OfferSpec | None = None,
    ) -> Agreement:
        event = AgreementEvent(state=state, at=self._now(), by_tenant=by, reason=decision.reason)
        update: dict[str, object] = {"state": state, "history": [*found.history, event]}
        if spec is not None:
            update["offer_spec"] = spec
        record = found.model_copy(update=update)
        await self._agreements.put(record)
        return record


def _check_purpose(spec: OfferSpec, purpose: str) -> None:
    if purpose not in spec.purposes:
        raise Invalid(
            f"the offer may be used for {', '.join(repr(p) for p in spec.purposes)}; not for "
            f"{purpose!r}",
            errors=[FieldError("purpose", "one of the offer's purposes, as it spells them")],
        )


__all__ = ["MAX_OFFERS_PER_TENANT", "MAX_OPEN_REQUESTS", "Sharing"]
