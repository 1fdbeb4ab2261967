"""Erasure of a data subject (GDPR article 17) in an append-only log: crypto-shredding.

Kafka cannot delete one record, so a subject's personal values are kept sealed with their data
keys (``sealing.py``) and erasure deletes the keys. ``Erasure.erase`` does, in this order:

1. **shreds the keys**: a tombstone for every key record of the subject on the compacted
   ``subject-keys`` topic. Every process follows that topic and drops the key when it reads
   the tombstone (within a second); from then on no interface can open the subject's sealed
   values, wherever copies of them lie (observations, subscriptions' topics, queued deliveries);
   then **deletes the subject's rows in the history store** when it is enabled (sealed there
   too, so unreadable already; deleted because a database, unlike Kafka, can);
2. **withdraws every consent** of the subject (``Consents.withdraw_all``), so that no
   consent-based activity takes new data of theirs;
3. **unlinks every device** of the subject, so that new readings are no longer theirs;
4. **writes a processing-log record** ``action="erase"``.

Shredding comes first so that the moment the request is acknowledged, nothing readable is left;
if a later step fails the call raises, and calling again finishes the job (every step is
idempotent: a second erasure finds nothing left and says so). It is logged last, so that a
record says the erasure is done; a record that could not be written makes the call fail (and a
retry log it).

Who: an ``operator`` or ``admin`` key of the tenant (another tenant's key: not found, a
``subscriber`` key: forbidden), the CLI's ``system`` principal, or the ``Resident`` who is that
subject. Messages never repeat the subject's id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter

from cityhub.schemas.processing import DEFAULT_BASE_URI, activity_uri
from cityhub.schemas.processing_log import ProcessingLogRecord, processing_record
from cityhub.schemas.registry import validate_data_subject
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.trace_context import TraceContext
from cityhub.streams.privacy.resident import Resident
from cityhub.streams.registry.principals import (
    Principal,
    require_own_tenant,
    require_tenant_access,
)
from cityhub.streams.registry.service import Registry
from cityhub.streams.service_errors import FieldError, Invalid, NotFound

log = logging.getLogger("cityhub.privacy.erasure")

ERASURES = Counter(
    "cityhub_erasures_total",
    "Erasure requests carried out, by whether anything was left to erase.",
    ["outcome"],
)

ERASURE_SLUG = "erasure"
"""The processing-log records of erasures name the activity ``<register base><tenant>:erasure``
(a tenant may describe it in its register under that slug)."""
CONSENT_REASON = "erasure of the data subject (GDPR article 17)"
SYSTEM = Principal.system()


class KeyShredder(Protocol):
    async def shred(self, tenant: str, subject: str) -> int: ...


class ConsentWithdrawer(Protocol):
    async def withdraw_all(self, tenant: str, subject: str, *, reason: str) -> Sequence[Any]: ...


class LogWriter(Protocol):
    async def write(self, records: Sequence[ProcessingLogRecord]) -> None: ...


class TokenRemover(Protocol):
    async def delete_all(self, tenant: str, subject: str) -> int: ...


class HistoryRows(Protocol):
    async def erase(self, tenant: str, subject: str) -> int:
        """Delete the subject's rows in the history store; how many there were."""
        ...


@dataclass(frozen=True, slots=True)
class HistoryStoreRows:
    """``HistoryRows`` of the history store the settings name (a connection per erasure:
    erasures are rare, and an idle pooled connection would outlive the request)."""

    settings: Settings

    async def erase(self, tenant: str, subject: str) -> int:
        """The rows deleted; 0 when the store's schema has no tables yet (nothing was ever
        written to it: the writer migrates it before its first row). Raises when the store
        cannot be reached."""
        # Imported here: a process without history never loads the PostgreSQL driver.
        from psycopg.errors import UndefinedTable

        from cityhub.streams.history.connection import connect
        from cityhub.streams.history.erasure import erase_subject

        async with await connect(
            self.settings, application_name="cityhub-erasure", autocommit=True
        ) as conn:
            try:
                return await erase_subject(conn, tenant, subject)
            except UndefinedTable:
                log.warning(
                    "erasure: the history schema %s has no tables yet; no rows to delete",
                    self.settings.history.db_schema,
                )
                return 0


def history_rows(settings: Settings) -> HistoryRows | None:
    """The history store's rows to erase, when ``history.enabled``."""
    return HistoryStoreRows(settings) if settings.history.enabled else None


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What one erasure did. It names the tenant but not the subject: the caller knows it, and
    an answer that is logged or cached somewhere should not hold it."""

    tenant: str
    keys_shredded: int
    consents_withdrawn: int
    devices_unlinked: tuple[str, ...]
    erased_at: str
    logged: bool
    tokens_removed: int = 0
    history_rows_deleted: int = 0

    @property
    def nothing_left(self) -> bool:
        """The subject had nothing left to erase (a repeated request, or a subject never seen)."""
        return not (
            self.keys_shredded
            or self.consents_withdrawn
            or self.devices_unlinked
            or self.tokens_removed
            or self.history_rows_deleted
        )

    def public(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "keys_shredded": self.keys_shredded,
            "consents_withdrawn": self.consents_withdrawn,
            "devices_unlinked": list(self.devices_unlinked),
            "tokens_removed": self.tokens_removed,
            "history_rows_deleted": self.history_rows_deleted,
            "erased_at": self.erased_at,
            "logged": self.logged,
            "nothing_left": self.nothing_left,
        }


class Erasure:
    """Erases data subjects: keys, consents, links, and a log record (see the module)."""

    def __init__(
        self,
        registry: Registry,
        keys: KeyShredder,
        *,
        consents: ConsentWithdrawer | None,
        log_writer: LogWriter | None,
        tokens: TokenRemover | None = None,
        history: HistoryRows | None = None,
        register_base_uri: str = DEFAULT_BASE_URI,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``tokens``: the residents' tokens, removed with the subject (they name it);
        ``history``: the subject's rows in the history store (``history_rows(settings)``)."""
        # consents/log_writer None: only for tests and tools that have no such store; the API
        # and the CLI always pass both (an erasure must withdraw and must be logged).
        self._registry = registry
        self._keys = keys
        self._consents = consents
        self._log_writer = log_writer
        self._tokens = tokens
        self._history = history
        self._base = register_base_uri
        self._clock = clock

    def _authorise(self, who: Principal | Resident, tenant: str, subject: str) -> None:
        if isinstance(who, Resident):
            if who.tenant != tenant or who.subject != subject:
                raise NotFound("data subject not found")
        else:
            require_own_tenant(who, tenant)
            require_tenant_access(self._registry.view, who, tenant, write=True)
        try:
            validate_data_subject(subject)
        except ValueError as exc:
            raise Invalid(str(exc), errors=[FieldError("data_subject", str(exc))]) from None

    async def erase(
        self,
        who: Principal | Resident,
        tenant: str,
        subject: str,
        *,
        trace: TraceContext | None = None,
    ) -> ErasureReport:
        """Erase ``subject`` of ``tenant`` (see the module for the order and the guarantees);
        ``trace``: the request's trace context, which the log record continues."""
        self._authorise(who, tenant, subject)
        started = self._clock()
        shredded = await self._keys.shred(tenant, subject)
        # Right after the keys: a store that cannot be reached fails the call before anything
        # says it is done, and calling again deletes what is left.
        rows_deleted = 0 if self._history is None else await self._history.erase(tenant, subject)
        withdrawn = 0
        if self._consents is not None:
            withdrawn = len(
                await self._consents.withdraw_all(tenant, subject, reason=CONSENT_REASON)
            )
        unlinked: list[str] = []
        for device in self._registry.view.devices_of_subject(tenant, subject):
            # Switched off too: it still measures the same person, whose readings would go on
            # unsealed (no subject to seal them for). The tenant switches it on again when it
            # is handed to someone else (and links them).
            await self._registry.devices.set_subject(SYSTEM, tenant, device.id, None, active=False)
            unlinked.append(device.id)
        removed = 0 if self._tokens is None else await self._tokens.delete_all(tenant, subject)
        ended = self._clock()
        if self._log_writer is not None:
            record = processing_record(
                name="cityhub.erasure",
                trace=trace,
                parent_span_id=None,
                started=started,
                ended=ended,
                ok=True,
                activity_id=activity_uri(self._base, tenant, ERASURE_SLUG),
                tenant=tenant,
                subject=subject,
                recipient=None,
                items=shredded,
                action="erase",
            )
            await self._log_writer.write([record])
        report = ErasureReport(
            tenant=tenant,
            keys_shredded=shredded,
            consents_withdrawn=withdrawn,
            devices_unlinked=tuple(unlinked),
            erased_at=rfc3339(ended),
            logged=self._log_writer is not None,
            tokens_removed=removed,
            history_rows_deleted=rows_deleted,
        )
        ERASURES.labels("nothing_left" if report.nothing_left else "erased").inc()
        log.info(
            "erased a data subject of tenant %s: %d key(s), %d consent(s), %d device link(s), "
            "%d history row(s)",
            tenant,
            shredded,
            withdrawn,
            len(unlinked),
            rows_deleted,
        )
        return report


__all__ = ["ERASURE_SLUG", "Erasure", "ErasureReport", "HistoryRows", "history_rows"]
