"""Who may read the processing log, and the questions they may ask of it.

- A tenant's privacy officer (an ``operator`` or ``admin`` key *of that tenant*, or the CLI):
  the tenant's records, by processing activity, by data subject, or both, in a time range.
  Another tenant's key, an admin key of another tenant included, gets *not found*: the log names
  the tenant's data subjects, which no other tenant may learn. A ``subscriber`` key of the
  tenant is refused (403).
- A resident: the records of their own data subject only (``for_resident``).

Reading the log is not itself logged: it holds no personal values, only who received what
under which activity (and the subject's pseudonym).
"""

from __future__ import annotations

from dataclasses import dataclass

from cityhub.schemas.processing_log import MAX_TEXT
from cityhub.schemas.registry import Role, validate_data_subject
from cityhub.streams.privacy.log_index import LogPage, ProcessingLogIndex
from cityhub.streams.privacy.resident import Resident
from cityhub.streams.privacy.view import RegisterView
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.view import RegistryView
from cityhub.streams.service_errors import FieldError, Forbidden, Invalid, NotFound, Unavailable

SYSTEM = Principal.system()


@dataclass(frozen=True, slots=True)
class LogQuery:
    """The filters of a query; times are Unix milliseconds, ``since`` inclusive, ``until``
    exclusive, on the records' ``start_time``."""

    since: int | None = None
    until: int | None = None
    limit: int = 100
    cursor: str | None = None

    def check(self) -> None:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise Invalid(
                "to must be later than from",
                errors=[FieldError("to", "must be later than from")],
            )


class ProcessingLogQueries:
    """The processing log's reads over an index, with the registry (tenants) and the register
    of processing activities (to resolve an activity's slug to its URI)."""

    def __init__(
        self,
        index: ProcessingLogIndex,
        registry: RegistryView,
        register: RegisterView | None = None,
    ) -> None:
        self._index = index
        self._registry = registry
        self._register = register

    @property
    def index(self) -> ProcessingLogIndex:
        return self._index

    def _ready(self) -> None:
        if not self._index.ready:
            raise Unavailable("the processing log is still being read; try again shortly")

    def activity_id(self, tenant: str, activity: str) -> str:
        """The URI of ``activity``: a slug of the tenant's register (NotFound if it has none of
        that name), or a URI as it is (it may name an activity the register no longer shows
        under that slug, or one recorded under an earlier base URI)."""
        if ":" in activity or "/" in activity:
            if len(activity) > MAX_TEXT:
                raise Invalid(
                    "activity is too long",
                    errors=[FieldError("activity", f"at most {MAX_TEXT} characters")],
                )
            return activity
        found = self._register.get(tenant, activity) if self._register is not None else None
        if found is None:
            raise NotFound(f"no processing activity {activity!r} in tenant {tenant!r}")
        return found.id

    def for_officer(
        self,
        who: Principal,
        tenant: str,
        query: LogQuery,
        *,
        activity: str | None = None,
        subject: str | None = None,
    ) -> LogPage:
        """The tenant's records (of ``activity``, a slug or URI, and/or of data subject
        ``subject``), newest first. NotFound for another tenant's key or a tenant that does not
        exist; Forbidden for a subscriber key; Invalid for a subject id that is not one;
        Unavailable until the index has caught up."""
        if who != SYSTEM and who.tenant != tenant:
            raise NotFound(f"tenant {tenant!r} not found")
        if who.role is Role.SUBSCRIBER:
            raise Forbidden(
                "the processing log is for the tenant's privacy officer: an operator or admin key"
            )
        if self._registry.tenant(tenant) is None:
            raise NotFound(f"tenant {tenant!r} not found")
        query.check()
        if subject is not None:
            try:
                validate_data_subject(subject)
            except ValueError as error:
                # The message states the rule and never repeats the value.
                raise Invalid(
                    "data_subject is not a data subject id",
                    errors=[FieldError("data_subject", str(error))],
                ) from None
        activity_id = self.activity_id(tenant, activity) if activity is not None else None
        self._ready()
        since, until, limit, cursor = query.since, query.until, query.limit, query.cursor
        if subject is not None:
            return self._index.of_subject(
                tenant,
                subject,
                activity_id=activity_id,
                since=since,
                until=until,
                limit=limit,
                cursor=cursor,
            )
        if activity_id is not None:
            return self._index.of_activity(
                tenant, activity_id, since=since, until=until, limit=limit, cursor=cursor
            )
        return self._index.of_tenant(tenant, since=since, until=until, limit=limit, cursor=cursor)

    def for_resident(
        self, resident: Resident, query: LogQuery, *, activity: str | None = None
    ) -> LogPage:
        """The records of the resident's own data subject (of ``activity`` only, a slug or URI
        of their tenant, if given), newest first: who received what and why."""
        query.check()
        activity_id = self.activity_id(resident.tenant, activity) if activity is not None else None
        self._ready()
        return self._index.of_subject(
            resident.tenant,
            resident.subject,
            activity_id=activity_id,
            since=query.since,
            until=query.until,
            limit=query.limit,
            cursor=query.cursor,
        )
